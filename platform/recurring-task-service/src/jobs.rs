//! Reminder jobs through the Dapr Jobs API (`/v1.0/jobs/<name>` on the
//! sidecar). The job calls back `POST /job/<name>` on this app when due
//! ([`crate::trigger`]).

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde_json::json;
use todo_contract::Reminder;
use todo_core::intent::{self, ActError};
use todo_core::sidecar::Sidecar;

/// Retry interval of a failed trigger (the app down, Kafka down).
const RETRY_INTERVAL: &str = "2s";
/// Retries of a failed trigger: with [`RETRY_INTERVAL`], 15 minutes of trying.
const MAX_RETRIES: u32 = 450;

/// Why a Jobs API call failed.
#[derive(Debug, thiserror::Error)]
#[error("Dapr Jobs API: {message}")]
pub struct JobsError {
    message: String,
    /// The sidecar refused the request itself (see
    /// [`todo_core::intent::refuses`]); otherwise worth retrying later.
    refused: bool,
}

impl From<JobsError> for ActError {
    fn from(e: JobsError) -> Self {
        if e.refused {
            ActError::Refused(e.to_string())
        } else {
            ActError::Transient(e.to_string())
        }
    }
}

/// The sidecar's Jobs API.
#[derive(Debug, Clone)]
pub struct Jobs {
    sidecar: Sidecar,
}

/// The job's due time: `remind_at` rounded *up* to the whole second, since
/// the scheduler fires with second granularity and a reminder is never early.
pub fn due_time(remind_at: DateTime<Utc>) -> String {
    let floor = remind_at
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap_or(remind_at);
    let due = if floor < remind_at {
        floor + TimeDelta::seconds(1)
    } else {
        floor
    };
    due.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Jobs {
    pub fn new(sidecar: Sidecar) -> Self {
        Jobs { sidecar }
    }

    /// Schedules (or replaces) the reminder's job; its data is the reminder.
    /// A reminder whose time has passed fires within the second.
    pub async fn schedule(&self, r: &Reminder) -> Result<(), JobsError> {
        let body = json!({
            "dueTime": due_time(r.remind_at.get().max(Utc::now())),
            "data": r,
            "overwrite": true,
            "failurePolicy": { "constant": { "interval": RETRY_INTERVAL, "maxRetries": MAX_RETRIES } },
        });
        let url = format!("{}/v1.0/jobs/{}", self.sidecar.http_base(), r.job_name());
        let response = self.sidecar.http().post(&url).json(&body).send().await;
        expect_success(response, "scheduling", &r.job_name()).await
    }

    /// Deletes a job (deleting one that does not exist succeeds).
    pub async fn delete(&self, name: &str) -> Result<(), JobsError> {
        let url = format!("{}/v1.0/jobs/{name}", self.sidecar.http_base());
        let response = self.sidecar.http().delete(&url).send().await;
        expect_success(response, "deleting", name).await
    }
}

async fn expect_success(
    response: reqwest::Result<reqwest::Response>,
    what: &str,
    name: &str,
) -> Result<(), JobsError> {
    match response {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            Err(JobsError {
                message: format!("{what} job {name}: {status}: {body}"),
                refused: intent::refuses(status.as_u16()),
            })
        }
        Err(e) => Err(JobsError {
            message: format!("{what} job {name}: {e}"),
            refused: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn due_times_round_up_to_the_second() {
        assert_eq!(due_time(at("2026-03-01T08:00:00Z")), "2026-03-01T08:00:00Z");
        assert_eq!(
            due_time(at("2026-03-01T08:00:00.001Z")),
            "2026-03-01T08:00:01Z"
        );
        assert_eq!(
            due_time(at("2026-03-01T23:59:59.999Z")),
            "2026-03-02T00:00:00Z"
        );
    }
}
