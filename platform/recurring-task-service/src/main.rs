//! `recurring-task-service`: creates the next instances of recurring tasks and
//! fires reminders. `recurring-task-service openapi` prints the OpenAPI
//! document instead.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    todo_core::bootstrap::main::<recurring_task_service::Application>().await
}
