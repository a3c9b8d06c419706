//! `audit-service`: records every task event. `audit-service openapi` prints
//! the OpenAPI document instead.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    todo_core::bootstrap::main::<audit_service::Application>().await
}
