//! The HTTP API (`/api/v1/connections`): how many WebSocket streams are open.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{Object, OpenApi, Tags, payload::Json};
use todo_core::{auth::Caller, problem::ApiError};

use crate::hub::Hub;

#[derive(Tags)]
enum ApiTags {
    /// Real-time task updates over WebSocket (`GET /ws?since=…`).
    Connections,
}

/// Open WebSocket connections.
#[derive(Debug, Object)]
pub struct ConnectionCount {
    /// User and operator streams open right now.
    pub active_connections: u64,
}

/// The connections API.
pub struct ConnectionsApi;

#[OpenApi(prefix_path = "/api/v1/connections", tag = "ApiTags::Connections")]
impl ConnectionsApi {
    /// How many WebSocket streams are open (this replica's). Operators only.
    #[oai(path = "/", method = "get")]
    async fn count(
        &self,
        hub: Data<&Arc<Hub>>,
        caller: Caller,
    ) -> Result<Json<ConnectionCount>, ApiError> {
        caller.identity().require_operator()?;
        Ok(Json(ConnectionCount {
            active_connections: hub.active_connections() as u64,
        }))
    }
}
