//! `notification-service`: delivers reminders as in-app notifications.
//! `notification-service openapi` prints the OpenAPI document instead.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    todo_core::bootstrap::main::<notification_service::Application>().await
}
