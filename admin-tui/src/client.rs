//! The console's HTTP calls to the services, with the operator's token:
//! audit trail, notifications and retry, schedules and reminders, health,
//! counters and connections, dead letters and failed intents with their
//! redrive and retry. Every failure becomes a [`FetchError`] that
//! says whether the service was down, refused the token, or answered
//! something else; nothing here panics or retries (the update loop asks
//! again on its next tick).

use std::time::Duration;

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::config::Endpoints;
use crate::model::{
    AuditPage, AuditRecord, ConsumerCounters, DeadLetterPage, FailedIntentPage, IntentRetried,
    Notification, NotificationPage, Readiness, RedriveAll, Redriven, Reminder, ReminderPage,
    Schedule, SchedulePage,
};
use crate::state::NotificationQuery;
use crate::token::TokenSource;

/// How long a call may take before the service counts as down.
const TIMEOUT: Duration = Duration::from_secs(3);

/// The most rows a list asks for (the APIs' own maximum).
pub const PAGE: u32 = 500;

/// Why a call gave nothing usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No answer: refused, reset, timed out.
    #[error("down: {0}")]
    Down(String),
    /// 401: the token is missing, expired or not accepted.
    #[error("token refused: {0}")]
    Unauthorized(String),
    /// 403: the token is good but not an operator's.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Any other status, with the problem's message.
    #[error("answered {status}: {message}")]
    Status { status: u16, message: String },
    /// A 2xx whose body is not what the API documents.
    #[error("unreadable answer: {0}")]
    Body(String),
    /// No token to send (the local stack's key could not be read).
    #[error("no token: {0}")]
    NoToken(String),
}

impl FetchError {
    /// Whether the token is the problem (said in the status line).
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            FetchError::Unauthorized(_) | FetchError::Forbidden(_) | FetchError::NoToken(_)
        )
    }

    fn from_reqwest(e: &reqwest::Error) -> FetchError {
        if e.is_decode() || e.is_body() {
            return FetchError::Body(e.to_string());
        }
        // The innermost cause says it best ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let what = if e.is_timeout() {
            format!("no answer within {}s", TIMEOUT.as_secs())
        } else {
            cause.to_string()
        };
        FetchError::Down(what)
    }
}

/// The services' HTTP APIs as the console uses them.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoints: Endpoints,
    token: TokenSource,
}

/// The problem's text from an error answer (`WWW-Authenticate`'s
/// description for a refused token, else the JSON problem's message).
async fn problem(response: reqwest::Response) -> FetchError {
    let status = response.status();
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("error_description=\"").nth(1))
        .and_then(|v| v.split('"').next())
        .map(str::to_owned);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let message = challenge.unwrap_or_else(|| {
        body.get("message")
            .and_then(Value::as_str)
            .unwrap_or("no message")
            .to_owned()
    });
    match status {
        StatusCode::UNAUTHORIZED => FetchError::Unauthorized(message),
        StatusCode::FORBIDDEN => FetchError::Forbidden(message),
        s => FetchError::Status {
            status: s.as_u16(),
            message,
        },
    }
}

impl Client {
    pub fn new(endpoints: Endpoints, token: TokenSource) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .build()
            .unwrap_or_default();
        Client {
            http,
            endpoints,
            token,
        }
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn token(&self) -> &TokenSource {
        &self.token
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, FetchError> {
        let token = self.token.bearer().map_err(FetchError::NoToken)?;
        let response = request
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(problem(response).await)
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        url: String,
        query: &[(&str, String)],
    ) -> Result<T, FetchError> {
        let response = self.send(self.http.get(url).query(query)).await?;
        response
            .json()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))
    }

    /// A task's audit trail, oldest first.
    pub async fn audit(&self, task_id: Uuid) -> Result<Vec<AuditRecord>, FetchError> {
        let page: AuditPage = self
            .get_json(
                format!("{}/api/v1/audit", self.endpoints.audit),
                &[
                    ("task_id", task_id.to_string()),
                    ("limit", PAGE.to_string()),
                ],
            )
            .await?;
        Ok(page.records)
    }

    /// Notifications matching `query`, newest first.
    pub async fn notifications(
        &self,
        query: &NotificationQuery,
    ) -> Result<Vec<Notification>, FetchError> {
        let mut params = vec![("limit", PAGE.to_string())];
        if let Some(s) = query.status {
            params.push(("status", s.as_str().to_owned()));
        }
        if let Some(u) = &query.user {
            params.push(("user_id", u.clone()));
        }
        if let Some(t) = query.task {
            params.push(("task_id", t.to_string()));
        }
        let page: NotificationPage = self
            .get_json(
                format!("{}/api/v1/notifications", self.endpoints.notification),
                &params,
            )
            .await?;
        Ok(page.notifications)
    }

    /// Asks for another delivery of a failed notification; answers it as it
    /// is now (`pending`).
    pub async fn retry(&self, id: Uuid) -> Result<Notification, FetchError> {
        let url = format!(
            "{}/api/v1/notifications/{id}/retry",
            self.endpoints.notification
        );
        let response = self.send(self.http.post(url)).await?;
        response
            .json()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))
    }

    fn user_param(user: Option<&str>) -> Vec<(&'static str, String)> {
        let mut params = vec![("limit", PAGE.to_string())];
        if let Some(u) = user {
            params.push(("user_id", u.to_owned()));
        }
        params
    }

    /// Recurring series, oldest first.
    pub async fn schedules(&self, user: Option<&str>) -> Result<Vec<Schedule>, FetchError> {
        let page: SchedulePage = self
            .get_json(
                format!("{}/api/v1/schedules", self.endpoints.recurring),
                &Self::user_param(user),
            )
            .await?;
        Ok(page.schedules)
    }

    /// Reminder jobs.
    pub async fn reminders(&self, user: Option<&str>) -> Result<Vec<Reminder>, FetchError> {
        let page: ReminderPage = self
            .get_json(
                format!("{}/api/v1/reminders", self.endpoints.recurring),
                &Self::user_param(user),
            )
            .await?;
        Ok(page.reminders)
    }

    /// A service's readiness report; a 503 carries one too.
    pub async fn readiness(&self, base: &str) -> Result<Readiness, FetchError> {
        let response = self
            .http
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        serde_json::from_str(&body).map_err(|_| FetchError::Status {
            status: status.as_u16(),
            message: body.chars().take(200).collect(),
        })
    }

    /// A service's consumer counters from its `/metrics`.
    pub async fn counters(&self, base: &str) -> Result<ConsumerCounters, FetchError> {
        let response = self
            .http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        if !response.status().is_success() {
            return Err(problem(response).await);
        }
        let text = response
            .text()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        Ok(ConsumerCounters::from_metrics(&text))
    }

    /// Open WebSocket streams on the replica that answers.
    pub async fn connections(&self) -> Result<i64, FetchError> {
        let body: Value = self
            .get_json(
                format!("{}/api/v1/connections", self.endpoints.websocket),
                &[],
            )
            .await?;
        body.get("active_connections")
            .and_then(Value::as_i64)
            .ok_or_else(|| FetchError::Body(format!("no active_connections in {body}")))
    }

    /// `base` with `segments` appended, each percent-encoded (a failed
    /// intent's key is free text).
    fn url(base: &str, segments: &[&str]) -> Result<reqwest::Url, FetchError> {
        let mut url = reqwest::Url::parse(base)
            .map_err(|e| FetchError::Down(format!("{base} is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| FetchError::Down(format!("{base} cannot take a path")))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// A consuming service's open dead letters, newest failure first.
    pub async fn dead_letters(&self, base: &str) -> Result<DeadLetterPage, FetchError> {
        let url = Self::url(base, &["api", "v1", "dead-letters"])?;
        self.get_json(
            url.to_string(),
            &[("state", "open".to_owned()), ("limit", PAGE.to_string())],
        )
        .await
    }

    /// Applies one dead letter's event now. A 409 (it failed again) and a
    /// 404 are outcomes, not errors: the operator is told which.
    pub async fn redrive(&self, base: &str, id: i64) -> Result<Redriven, FetchError> {
        let url = Self::url(
            base,
            &["api", "v1", "dead-letters", &id.to_string(), "redrive"],
        )?;
        let response = match self.send(self.http.post(url)).await {
            Ok(r) => r,
            Err(FetchError::Status {
                status: 409,
                message,
            }) => {
                // The route's only conflict is `still_failing`, whose message
                // is "the event failed again: <reason>"; the reason is news.
                let reason = message
                    .strip_prefix("the event failed again: ")
                    .unwrap_or(&message);
                return Ok(Redriven::StillFailing(reason.to_owned()));
            }
            Err(FetchError::Status { status: 404, .. }) => return Ok(Redriven::NotFound),
            Err(e) => return Err(e),
        };
        let body: Value = response
            .json()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))?;
        match body.get("outcome").and_then(Value::as_str) {
            Some("applied") => Ok(Redriven::Applied),
            Some("already_applied") => Ok(Redriven::AlreadyApplied),
            Some("already_redriven") => Ok(Redriven::AlreadyRedriven),
            _ => Err(FetchError::Body(format!("no known outcome in {body}"))),
        }
    }

    /// Redrives every open dead letter of a service.
    pub async fn redrive_all(&self, base: &str) -> Result<RedriveAll, FetchError> {
        let url = Self::url(base, &["api", "v1", "dead-letters", "redrive"])?;
        let response = self.send(self.http.post(url)).await?;
        response
            .json()
            .await
            .map_err(|e| FetchError::from_reqwest(&e))
    }

    /// A service's failed intents, newest first.
    pub async fn failed_intents(&self, base: &str) -> Result<FailedIntentPage, FetchError> {
        let url = Self::url(base, &["api", "v1", "intents", "failed"])?;
        self.get_json(url.to_string(), &[("limit", PAGE.to_string())])
            .await
    }

    /// Runs a failed intent again; a 404 (no such failed intent) is an outcome.
    pub async fn retry_intent(&self, base: &str, key: &str) -> Result<IntentRetried, FetchError> {
        let url = Self::url(base, &["api", "v1", "intents", "failed", key, "retry"])?;
        match self.send(self.http.post(url)).await {
            Ok(_) => Ok(IntentRetried::Accepted),
            Err(FetchError::Status { status: 404, .. }) => Ok(IntentRetried::NotFound),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_intents_key_is_one_path_segment_whatever_it_holds() {
        let url = Client::url("http://h:8005/", &["api", "intents", "a/b c?d", "retry"]).unwrap();
        assert_eq!(
            url.as_str(),
            "http://h:8005/api/intents/a%2Fb%20c%3Fd/retry"
        );
    }
}
