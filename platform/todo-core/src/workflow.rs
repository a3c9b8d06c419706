//! Hosting durable Dapr Workflows in a service: the worker that runs this
//! app's orchestrators and activities, starting instances with ids that
//! make a second start of the same work harmless, and telling whether an
//! instance is still getting on with its work ([`Starter::progress`]) so a
//! service's watchdog can start its work again when the engine lost or
//! wedged it.
//!
//! The worker reconnects by itself when its stream breaks. A watchdog round
//! that finds late work ([`restart_late`]) also makes it open a new
//! work-item stream: under overlapping restarts of sidecars, placement and
//! the app, Dapr 1.18 can leave a sidecar answering that this app's workflow
//! actor types are "not registered" while a stream is open (or one whose
//! stream never finishes opening), and only a new stream, which registers
//! the types again, brings it back. Every replica's watchdog sees the same
//! late work, so the replica whose sidecar is the broken one reconnects too.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dapr::workflow::{
    FetchOptions, Registry, RuntimeStatus, ScheduleOptions, WorkerHandle, WorkflowClient,
    WorkflowSchedulingClient,
};
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::settings::DaprSettings;

/// Why a workflow could not be started.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The sidecar failed or did not answer; worth retrying.
    #[error("starting workflow {instance_id}: {message}")]
    Unavailable {
        instance_id: String,
        message: String,
    },
    /// The sidecar refused the start itself (an invalid id or input, an
    /// unknown workflow): retrying the same request cannot help.
    #[error("starting workflow {instance_id} refused: {message}")]
    Refused {
        instance_id: String,
        message: String,
    },
}

impl From<WorkflowError> for crate::intent::ActError {
    fn from(e: WorkflowError) -> Self {
        match e {
            WorkflowError::Unavailable { .. } => Self::Transient(e.to_string()),
            WorkflowError::Refused { .. } => Self::Refused(e.to_string()),
        }
    }
}

/// How a start request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A new instance runs.
    New,
    /// An instance with this id is still running: the work is already under way.
    AlreadyRunning,
}

/// The app's workflow worker and a client to start instances with.
pub struct Workflows {
    client: WorkflowSchedulingClient,
    reconnect: Reconnect,
    supervisor: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
    call_timeout: Duration,
}

/// Asks the worker to open a new work-item stream; clone freely.
#[derive(Debug, Clone, Default)]
pub struct Reconnect(Arc<Notify>);

impl Reconnect {
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Least time between two reconnects.
const RECONNECT_COOLDOWN: Duration = Duration::from_secs(30);

/// A registration of this app's workflows and activities, run again on each reconnect.
type Register = Arc<dyn Fn(&mut Registry) + Send + Sync>;

async fn start_worker(address: &str, register: &Register) -> anyhow::Result<WorkerHandle> {
    let mut client = WorkflowClient::new_with_address(address)
        .await
        .map_err(|e| anyhow::anyhow!("connecting the workflow client to {address}: {e}"))?;
    register(client.registry_mut());
    client
        .start_worker()
        .await
        .map_err(|e| anyhow::anyhow!("starting the workflow worker: {e}"))
}

/// Stops a worker, waiting a little for its in-flight work.
async fn stop_worker(worker: WorkerHandle) {
    match tokio::time::timeout(Duration::from_secs(10), worker.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "workflow worker did not stop cleanly"),
        Err(_) => tracing::warn!("workflow worker did not stop within 10s; dropped"),
    }
}

/// Owns the worker: replaces it with a new one when asked (at most once per
/// [`RECONNECT_COOLDOWN`]), stops it when `stop` is cancelled.
async fn supervise(
    mut worker: WorkerHandle,
    address: String,
    register: Register,
    reconnect: Reconnect,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = reconnect.0.notified() => {}
        }
        // Close the old stream first: the sidecar registers the actor types
        // again only when a stream opens while none is open.
        stop_worker(worker).await;
        let mut delay = Duration::from_millis(500);
        worker = loop {
            match start_worker(&address, &register).await {
                Ok(w) => break w,
                Err(e) => {
                    tracing::warn!(error = %e, "reconnecting the workflow worker failed; trying again");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        };
        metrics::counter!("workflow_worker_reconnects_total").increment(1);
        tracing::warn!(
            "workflow worker reconnected: work was late, so its sidecar gets a new stream"
        );
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RECONNECT_COOLDOWN) => {}
        }
    }
    stop_worker(worker).await;
}

impl Workflows {
    /// Connects to the sidecar's gRPC API, registers this app's workflows and
    /// activities with `register`, and starts the worker (it reconnects by
    /// itself when the sidecar restarts, and with `register` run again when
    /// the sidecar says it lost the registrations).
    pub async fn start(
        settings: &DaprSettings,
        call_timeout: Duration,
        register: impl Fn(&mut Registry) + Send + Sync + 'static,
    ) -> anyhow::Result<Workflows> {
        let address = format!("http://127.0.0.1:{}", settings.dapr_grpc_port);
        let register: Register = Arc::new(register);
        let client = WorkflowClient::new_with_address(&address)
            .await
            .map_err(|e| anyhow::anyhow!("connecting the workflow client to {address}: {e}"))?;
        let worker = start_worker(&address, &register).await?;
        let (reconnect, stop) = (Reconnect::default(), CancellationToken::new());
        let supervisor = tokio::spawn(supervise(
            worker,
            address,
            register,
            reconnect.clone(),
            stop.clone(),
        ));
        Ok(Workflows {
            client: client.scheduling_client(),
            reconnect,
            supervisor,
            stop,
            call_timeout,
        })
    }

    /// A cheap handle for starting instances.
    pub fn starter(&self) -> Starter {
        Starter {
            client: self.client.clone(),
            call_timeout: self.call_timeout,
            reconnect: self.reconnect.clone(),
        }
    }

    /// Stops taking work items (in-flight ones finish first).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.supervisor.await;
    }
}

/// Starts workflow instances; clone freely.
#[derive(Clone)]
pub struct Starter {
    client: WorkflowSchedulingClient,
    call_timeout: Duration,
    reconnect: Reconnect,
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Starter").finish_non_exhaustive()
    }
}

impl Starter {
    /// Starts workflow `name` as instance `instance_id` with `input`. An
    /// instance of that id that is still running counts as started
    /// ([`Started::AlreadyRunning`]); one that has finished runs again, so the
    /// workflow's effects must be idempotent themselves.
    pub async fn start(
        &self,
        name: &str,
        instance_id: &str,
        input: &impl Serialize,
    ) -> Result<Started, WorkflowError> {
        let unavailable = |message: String| WorkflowError::Unavailable {
            instance_id: instance_id.to_owned(),
            message,
        };
        let options = ScheduleOptions::new()
            .with_instance_id(instance_id)
            .try_with_input(input)
            .map_err(|e| WorkflowError::Refused {
                instance_id: instance_id.to_owned(),
                message: format!("serializing the input: {e}"),
            })?;
        let mut client = self.client.clone();
        let result =
            tokio::time::timeout(self.call_timeout, client.schedule_workflow(name, options))
                .await
                .map_err(|_| unavailable(format!("no answer within {:?}", self.call_timeout)))?;
        match result {
            Ok(_) => Ok(Started::New),
            Err(e) if already_exists(&e) => Ok(Started::AlreadyRunning),
            Err(dapr::workflow::WorkflowError::GrpcError(status))
                if crate::intent::refuses_grpc(status.code()) =>
            {
                Err(WorkflowError::Refused {
                    instance_id: instance_id.to_owned(),
                    message: status.to_string(),
                })
            }
            Err(e) => Err(unavailable(e.to_string())),
        }
    }

    /// How instance `instance_id` is getting on: [`Progress::Moving`] if it is
    /// running and its history grew within `stale`. An error is an engine
    /// that could not tell (away, or its registrations lost).
    pub async fn progress(
        &self,
        instance_id: &str,
        stale: Duration,
    ) -> Result<Progress, WorkflowError> {
        let mut client = self.client.clone();
        let fetched = tokio::time::timeout(
            self.call_timeout,
            client.fetch_workflow_metadata(instance_id, FetchOptions::new()),
        )
        .await
        .map_err(|_| WorkflowError::Unavailable {
            instance_id: instance_id.to_owned(),
            message: format!("no answer within {:?}", self.call_timeout),
        })?;
        let state = match fetched {
            Ok(state) => state,
            Err(dapr::workflow::WorkflowError::InstanceNotFound { .. }) => {
                return Ok(Progress::Missing);
            }
            Err(dapr::workflow::WorkflowError::GrpcError(status))
                if status.code() == tonic::Code::NotFound =>
            {
                return Ok(Progress::Missing);
            }
            // The engine answered, but cannot read the instance back (its
            // state was partly saved when PostgreSQL went away, say): it will
            // never move again.
            Err(dapr::workflow::WorkflowError::GrpcError(status))
                if unreadable_instance(status.code()) =>
            {
                return Ok(Progress::Unreadable(status.message().to_owned()));
            }
            Err(e) => {
                return Err(WorkflowError::Unavailable {
                    instance_id: instance_id.to_owned(),
                    message: e.to_string(),
                });
            }
        };
        Ok(progress_of(
            state.runtime_status,
            state.last_updated_at.or(state.created_at),
            Utc::now(),
            stale,
        ))
    }

    /// Whether the work of instance `instance_id`, which should have ended
    /// by now, must be started again as a new instance: the engine lost the
    /// instance, finished it without the work done, or it stalled (it is
    /// then terminated first). Logged with the reason; `None` when the engine
    /// could not tell (it is asked again at the next round).
    pub async fn needs_restart(&self, instance_id: &str, stale: Duration) -> Option<bool> {
        match self.progress(instance_id, stale).await {
            Ok(progress) if !progress.needs_rescue() => Some(false),
            Ok(progress) => {
                tracing::warn!(
                    instance_id,
                    ?progress,
                    "a workflow instance did not finish its work; starting it again"
                );
                if let Progress::Stalled { .. } = progress {
                    self.terminate(instance_id).await;
                }
                Some(true)
            }
            Err(e) => {
                tracing::warn!(instance_id, error = %e, "could not tell how a late workflow instance is doing; asking again later");
                None
            }
        }
    }

    /// Ends instance `instance_id` (best effort: one that is gone or already
    /// finished is fine), so a wedged instance cannot act after its work was
    /// started again.
    pub async fn terminate(&self, instance_id: &str) {
        let mut client = self.client.clone();
        match tokio::time::timeout(self.call_timeout, client.terminate_workflow(instance_id)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::info!(instance_id, error = %e, "terminating a stalled workflow instance failed");
            }
            Err(_) => tracing::info!(
                instance_id,
                "terminating a stalled workflow instance timed out"
            ),
        }
    }
}

/// One round of a service's workflow watchdog over `late` work items (work
/// whose instance should have ended by now): each whose current instance
/// ([`Starter::needs_restart`]) must be started again is handed to
/// `restart`, which records the new start in the service's database if no
/// other replica did (its instance id, `None` if another did). Logged with
/// the task and counted as `workflow_restarts_total{workflow}`. If any
/// instance had to be started again, or the engine could not tell about
/// one, the worker gets a new stream (see the module's notes). Whether any
/// was restarted.
pub async fn restart_late<T, F>(
    starter: &Starter,
    workflow: &'static str,
    stale: Duration,
    late: Vec<T>,
    about: impl Fn(&T) -> (String, uuid::Uuid),
    restart: impl Fn(T) -> F,
) -> bool
where
    F: Future<Output = Result<Option<String>, sqlx::Error>>,
{
    use futures::StreamExt;
    // Asked about at once (a few at a time): an engine that is slow to
    // answer must not stretch a round over minutes.
    let verdicts: Vec<(T, String, uuid::Uuid, Option<bool>)> = futures::stream::iter(late)
        .map(|item| {
            let (current, task_id) = about(&item);
            async move {
                let verdict = starter.needs_restart(&current, stale).await;
                (item, current, task_id, verdict)
            }
        })
        .buffer_unordered(WATCH_CONCURRENCY)
        .collect()
        .await;
    if verdicts.iter().any(|(_, _, _, v)| *v != Some(false)) {
        starter.reconnect.request();
    }
    let mut restarted = false;
    for (item, current, task_id, verdict) in verdicts {
        if verdict != Some(true) {
            continue;
        }
        match restart(item).await {
            Ok(Some(instance)) => {
                restarted = true;
                metrics::counter!("workflow_restarts_total", "workflow" => workflow).increment(1);
                tracing::warn!(%task_id, previous = %current, %instance, workflow, "workflow started again");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%task_id, error = %e, workflow, "starting a late workflow again failed; trying again later")
            }
        }
    }
    restarted
}

/// Late instances a watchdog asks the engine about at once.
const WATCH_CONCURRENCY: usize = 8;

/// How a service's workflow watchdog runs: every `every`, it looks at work
/// whose instance has not moved for `stale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watching {
    pub every: Duration,
    pub stale: Duration,
}

/// The default of `<SERVICE>_WORKFLOW_WATCH_SECS`: how often a watchdog looks.
pub fn default_watch_secs() -> u64 {
    30
}

/// The default of `<SERVICE>_WORKFLOW_STALE_SECS`: how long an instance may go
/// without progress. Five minutes: an instance that keeps retrying its step
/// moves at least every minute.
pub fn default_stale_secs() -> u64 {
    300
}

impl Watching {
    /// From seconds (each at least 1).
    pub fn new(every_secs: u64, stale_secs: u64) -> Self {
        Watching {
            every: Duration::from_secs(every_secs.max(1)),
            stale: Duration::from_secs(stale_secs.max(1)),
        }
    }
}

/// How an instance is getting on with its work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Running (or about to) and its history grew recently.
    Moving,
    /// The engine has no such instance.
    Missing,
    /// It finished (completed, failed, terminated): if its work is still not
    /// done, nothing will do it.
    Finished(String),
    /// Running, but its history has not grown for longer than it may.
    Stalled { since: Option<DateTime<Utc>> },
    /// The engine answered that it cannot read the instance (why).
    Unreadable(String),
}

impl Progress {
    /// Whether its work must be started again.
    pub fn needs_rescue(&self) -> bool {
        !matches!(self, Progress::Moving)
    }
}

/// Whether a gRPC code of the engine's answer to a fetch of an instance
/// means the instance itself is broken (`Unknown`, `Internal`, `DataLoss`:
/// what Dapr answers when the instance's stored state is inconsistent),
/// rather than an engine that is away or busy (`Unavailable`,
/// `DeadlineExceeded`, …), which is asked again later.
fn unreadable_instance(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unknown | tonic::Code::Internal | tonic::Code::DataLoss
    )
}

/// The [`Progress`] of an instance in `status`, last updated at `updated`.
pub fn progress_of(
    status: RuntimeStatus,
    updated: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    stale: Duration,
) -> Progress {
    if status.is_terminal() {
        return Progress::Finished(format!("{status:?}"));
    }
    let stale = chrono::Duration::from_std(stale).unwrap_or(chrono::Duration::MAX);
    match updated {
        Some(at) if now - at <= stale => Progress::Moving,
        since => Progress::Stalled { since },
    }
}

fn already_exists(e: &dapr::workflow::WorkflowError) -> bool {
    match e {
        dapr::workflow::WorkflowError::GrpcError(status) => {
            status.code() == tonic::Code::AlreadyExists
                || status.message().contains("already exists")
        }
        other => other.to_string().contains("already exists"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn only_an_answer_about_the_instance_itself_calls_it_unreadable() {
        for code in [
            tonic::Code::Unknown,
            tonic::Code::Internal,
            tonic::Code::DataLoss,
        ] {
            assert!(unreadable_instance(code), "{code:?}");
        }
        for code in [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::ResourceExhausted,
            tonic::Code::Cancelled,
            tonic::Code::Aborted,
        ] {
            assert!(!unreadable_instance(code), "{code:?}");
        }
    }

    #[test]
    fn an_instance_is_moving_only_while_running_with_a_fresh_history() {
        let now = at("2026-03-01T08:10:00Z");
        let stale = Duration::from_secs(300);
        let fresh = Some(at("2026-03-01T08:06:00Z"));
        let old = Some(at("2026-03-01T08:04:00Z"));
        assert_eq!(
            progress_of(RuntimeStatus::Running, fresh, now, stale),
            Progress::Moving
        );
        assert_eq!(
            progress_of(RuntimeStatus::Pending, fresh, now, stale),
            Progress::Moving
        );
        assert_eq!(
            progress_of(RuntimeStatus::Running, old, now, stale),
            Progress::Stalled { since: old }
        );
        assert!(progress_of(RuntimeStatus::Running, None, now, stale).needs_rescue());
        for done in [
            RuntimeStatus::Completed,
            RuntimeStatus::Failed,
            RuntimeStatus::Terminated,
        ] {
            let p = progress_of(done, fresh, now, stale);
            assert!(matches!(p, Progress::Finished(_)), "{p:?}");
            assert!(p.needs_rescue());
        }
    }
}
