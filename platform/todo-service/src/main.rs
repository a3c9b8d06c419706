//! `todo-service`: serves the Todo API. `todo-service openapi` prints the
//! OpenAPI document instead.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    todo_core::bootstrap::main::<todo_service::Application>().await
}
