//! `openapi/audit.json` must be the document the service serves.

#[test]
fn the_committed_openapi_document_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/audit.json");
    todo_core::server::check_committed_document(
        &todo_core::server::document(&audit_service::openapi()),
        &path,
    )
    .unwrap();
}
