//! `todo-service`: serves the Todo API. `todo-service openapi` prints the
//! OpenAPI document instead.

use anyhow::Context;
use todo_core::{settings, telemetry};
use todo_service::{Application, openapi};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        let mut out = std::io::stdout().lock();
        std::io::Write::write_all(&mut out, openapi().spec().as_bytes())?;
        return Ok(());
    }
    telemetry::init_logging(todo_service::APP_ID);
    let dapr = settings::from_env("")?;
    let config = settings::from_env("TODO_")?;
    let app = Application::build(dapr, config)
        .await
        .context("starting todo-service")?;
    let shutdown = CancellationToken::new();
    tokio::spawn(todo_core::server::stop_on_signal(shutdown.clone()));
    app.run(shutdown).await
}
