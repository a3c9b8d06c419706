//! `websocket-service`: pushes task updates to WebSocket clients.
//! `websocket-service openapi` prints the OpenAPI document instead.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    todo_core::bootstrap::main::<websocket_service::Application>().await
}
