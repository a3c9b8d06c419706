//! `openapi/todo.json` must be the document the service serves; regenerate it
//! with `cargo xtask openapi` when the API changes.

#[test]
fn the_committed_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/todo.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let current = todo_service::openapi().spec();
    assert!(
        committed.trim_end() == current.trim_end(),
        "openapi/todo.json is stale: run `cargo xtask openapi` and commit the result"
    );
}
