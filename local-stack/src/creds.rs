//! Credentials generated once per state folder, and the `secrets.json` the
//! `localsecrets` Dapr component reads (daprd's cwd is the state folder).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::spec::DATABASE;

/// `<state>/credentials.json`: stable across runs of the same state folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Credentials {
    /// Password of the `postgres` superuser of the stack's own cluster.
    pub pg_admin_password: String,
    /// Sent by each sidecar to its app as `dapr-api-token` (`APP_API_TOKEN`).
    pub app_api_token: String,
    /// Guards the WebSocket service's operator stream (secret `operator-token`).
    #[serde(default)]
    pub operator_token: String,
    /// Login role (= schema) -> password.
    pub role_passwords: BTreeMap<String, String>,
}

fn random_secret() -> String {
    // 122 random bits from the OS generator; hex, so safe in URLs and SQL.
    uuid::Uuid::new_v4().simple().to_string()
}

impl Credentials {
    /// Loads `<state>/credentials.json`, adding whatever is missing.
    pub fn load_or_create(state: &Path, roles: &[&str]) -> Result<Credentials> {
        let path = state.join("credentials.json");
        let mut creds: Credentials = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display()))?,
            Err(_) => Credentials::default(),
        };
        let before = serde_json::to_string(&creds)?;
        if creds.pg_admin_password.is_empty() {
            creds.pg_admin_password = random_secret();
        }
        if creds.app_api_token.is_empty() {
            creds.app_api_token = random_secret();
        }
        if creds.operator_token.is_empty() {
            creds.operator_token = random_secret();
        }
        for role in roles {
            creds
                .role_passwords
                .entry((*role).to_string())
                .or_insert_with(random_secret);
        }
        if serde_json::to_string(&creds)? != before {
            write_private(&path, &serde_json::to_vec_pretty(&creds)?)?;
        }
        Ok(creds)
    }

    pub fn role_password(&self, role: &str) -> &str {
        self.role_passwords
            .get(role)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// Where the service roles connect.
#[derive(Debug, Clone)]
pub(crate) struct DbEndpoint {
    pub host: String,
    pub port: u16,
}

impl DbEndpoint {
    pub fn role_url(&self, creds: &Credentials, role: &str) -> String {
        format!(
            "postgres://{role}:{}@{}:{}/{DATABASE}",
            creds.role_password(role),
            self.host,
            self.port
        )
    }

    /// libpq keyword form for the Dapr PostgreSQL state store.
    pub fn role_dsn(&self, creds: &Credentials, role: &str) -> String {
        format!(
            "host={} port={} user={role} password={} dbname={DATABASE} sslmode=disable",
            self.host,
            self.port,
            creds.role_password(role)
        )
    }
}

/// Writes `<state>/secrets.json` (deterministic from the credentials).
pub(crate) fn write_secrets_json(
    state: &Path,
    creds: &Credentials,
    db: &DbEndpoint,
    service_schemas: &[&str],
    dapr_schema: &str,
) -> Result<()> {
    let mut secrets = serde_json::Map::new();
    for schema in service_schemas {
        secrets.insert(
            format!("{schema}-db"),
            json!({ "url": db.role_url(creds, schema) }),
        );
    }
    secrets.insert(
        format!("{dapr_schema}-db"),
        json!({ "url": db.role_dsn(creds, dapr_schema) }),
    );
    secrets.insert(
        "app-api-token".into(),
        json!({ "token": creds.app_api_token }),
    );
    secrets.insert(
        "operator-token".into(),
        json!({ "token": creds.operator_token }),
    );
    let path = state.join("secrets.json");
    let text = serde_json::to_vec_pretty(&serde_json::Value::Object(secrets))?;
    if fs::read(&path).ok().as_deref() != Some(&text[..]) {
        write_private(&path, &text)?;
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, path)?;
    Ok(())
}
