//! Running part of a test with a service started on other settings.

use anyhow::Result;
use todo_local_stack::Stack;

/// Restarts `app` with the extra environment `vars`, runs `f`, then restarts
/// it with its defaults again whatever `f` returned, so later tests see the
/// service as configured for everyone.
pub async fn with_service_env(
    stack: &mut Stack,
    app: &str,
    vars: &[(&str, &str)],
    f: impl AsyncFnOnce(&mut Stack) -> Result<()>,
) -> Result<()> {
    stack.set_service_env(app, vars)?;
    let outcome = async {
        stack.stop_service(app).await?;
        stack.start_service(app).await?;
        f(stack).await
    }
    .await;
    stack.set_service_env(app, &[])?;
    let restored = async {
        stack.stop_service(app).await?;
        stack.start_service(app).await
    }
    .await;
    outcome.and(restored)
}
