//! Hosting durable Dapr Workflows in a service: the worker that runs this
//! app's orchestrators and activities, and starting instances with ids that
//! make a second start of the same work harmless.

use std::time::Duration;

use dapr::workflow::{
    Registry, ScheduleOptions, WorkerHandle, WorkflowClient, WorkflowSchedulingClient,
};
use serde::Serialize;

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
    worker: WorkerHandle,
    call_timeout: Duration,
}

impl Workflows {
    /// Connects to the sidecar's gRPC API, registers this app's workflows and
    /// activities with `register`, and starts the worker (it reconnects by
    /// itself when the sidecar restarts).
    pub async fn start(
        settings: &DaprSettings,
        call_timeout: Duration,
        register: impl FnOnce(&mut Registry),
    ) -> anyhow::Result<Workflows> {
        let address = format!("http://127.0.0.1:{}", settings.dapr_grpc_port);
        let mut client = WorkflowClient::new_with_address(&address)
            .await
            .map_err(|e| anyhow::anyhow!("connecting the workflow client to {address}: {e}"))?;
        register(client.registry_mut());
        let worker = client
            .start_worker()
            .await
            .map_err(|e| anyhow::anyhow!("starting the workflow worker: {e}"))?;
        Ok(Workflows {
            client: client.scheduling_client(),
            worker,
            call_timeout,
        })
    }

    /// A cheap handle for starting instances.
    pub fn starter(&self) -> Starter {
        Starter {
            client: self.client.clone(),
            call_timeout: self.call_timeout,
        }
    }

    /// Stops taking work items (in-flight ones finish first).
    pub async fn shutdown(self) {
        if let Err(e) = self.worker.shutdown().await {
            tracing::warn!(error = %e, "workflow worker did not stop cleanly");
        }
    }
}

/// Starts workflow instances; clone freely.
#[derive(Clone)]
pub struct Starter {
    client: WorkflowSchedulingClient,
    call_timeout: Duration,
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
