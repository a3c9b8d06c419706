//! `openapi/websocket.json` must be the document the service serves.

#[test]
fn the_committed_openapi_document_is_current() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/websocket.json");
    todo_core::server::check_committed_document(
        &todo_core::server::document(&websocket_service::openapi()),
        &path,
    )
    .unwrap();
}
