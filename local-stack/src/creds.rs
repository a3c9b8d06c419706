//! Credentials generated once per state folder, and the `secrets.json` the
//! `localsecrets` Dapr component reads (daprd's cwd is the state folder).
//!
//! Fields are added with `#[serde(default)]` and filled in on the next load,
//! and fields no longer used are ignored (never `deny_unknown_fields`), so a
//! state folder of any earlier version keeps its data and passwords.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use todo_core::auth::{AuthSettings, SIGNING_SECRET_KEY};

use crate::spec::DATABASE;

/// `<state>/credentials.json`: stable across runs of the same state folder.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Credentials {
    /// Password of the `postgres` superuser of the stack's own cluster.
    pub pg_admin_password: String,
    /// App id -> the token its sidecars send to it as `dapr-api-token`
    /// (`APP_API_TOKEN`), each app its own.
    #[serde(default)]
    pub app_api_tokens: BTreeMap<String, String>,
    /// HS256 key the services verify bearer tokens with (secret
    /// `auth-signing-key`, key `key`): 64 hex characters, used as they are
    /// (64 bytes, above `todo_core::auth::MIN_SECRET_BYTES`).
    #[serde(default)]
    pub auth_signing_key: String,
    /// Login role (= schema) -> password.
    pub role_passwords: BTreeMap<String, String>,
}

fn random_secret() -> String {
    // 122 random bits from the OS generator; hex, so safe in URLs and SQL.
    uuid::Uuid::new_v4().simple().to_string()
}

/// 64 hex characters (244 random bits): HS256 wants a key at least as long
/// as its 32-byte hash.
fn random_signing_key() -> String {
    format!("{}{}", random_secret(), random_secret())
}

impl Credentials {
    /// Loads `<state>/credentials.json`, adding whatever is missing (and
    /// writing the file back if anything was).
    pub fn load_or_create(state: &Path, roles: &[&str]) -> Result<Credentials> {
        let path = credentials_path(state);
        let mut creds = Credentials::load(state)?.unwrap_or_default();
        let before = serde_json::to_string(&creds)?;
        if creds.pg_admin_password.is_empty() {
            creds.pg_admin_password = random_secret();
        }
        for spec in crate::spec::SERVICES {
            creds
                .app_api_tokens
                .entry(spec.app_id.to_owned())
                .or_insert_with(random_secret);
        }
        if creds.auth_signing_key.is_empty() {
            creds.auth_signing_key = random_signing_key();
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

    /// Reads `<state>/credentials.json` as it is: `None` if there is none
    /// (no stack ever started with this state folder).
    pub fn load(state: &Path) -> Result<Option<Credentials>> {
        let path = credentials_path(state);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The app API token of `app_id` (empty for an unknown app).
    pub fn app_api_token(&self, app_id: &str) -> &str {
        self.app_api_tokens
            .get(app_id)
            .map(String::as_str)
            .unwrap_or_default()
    }

    pub fn role_password(&self, role: &str) -> &str {
        self.role_passwords
            .get(role)
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// `<state>/credentials.json`.
pub(crate) fn credentials_path(state: &Path) -> PathBuf {
    state.join("credentials.json")
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
    for (app_id, token) in &creds.app_api_tokens {
        secrets.insert(format!("{app_id}-app-token"), json!({ "token": token }));
    }
    secrets.insert(
        AuthSettings::default().signing_secret,
        json!({ SIGNING_SECRET_KEY: creds.auth_signing_key }),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp dir, removed on drop.
    struct TempState(PathBuf);

    impl TempState {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!(
                "todo-local-stack-creds-{}",
                uuid::Uuid::new_v4().simple()
            ));
            fs::create_dir_all(&dir).unwrap();
            TempState(dir)
        }
    }

    impl Drop for TempState {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_new_state_folder_gets_a_64_hex_signing_key_kept_across_loads() {
        let state = TempState::new();
        let first = Credentials::load_or_create(&state.0, &["todo"]).unwrap();
        assert_eq!(first.auth_signing_key.len(), 64);
        assert!(
            first
                .auth_signing_key
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        assert!(first.auth_signing_key.len() >= todo_core::auth::MIN_SECRET_BYTES);
        let again = Credentials::load_or_create(&state.0, &["todo"]).unwrap();
        assert_eq!(again.auth_signing_key, first.auth_signing_key);
    }

    #[test]
    fn an_old_credentials_file_with_an_operator_token_loads_and_gains_a_signing_key() {
        let state = TempState::new();
        let old = json!({
            "pg_admin_password": "pg",
            "app_api_token": "app",
            "operator_token": "0123456789abcdef0123456789abcdef",
            "role_passwords": { "todo": "secret" }
        });
        fs::write(
            credentials_path(&state.0),
            serde_json::to_vec(&old).unwrap(),
        )
        .unwrap();
        assert!(
            Credentials::load(&state.0)
                .unwrap()
                .unwrap()
                .auth_signing_key
                .is_empty()
        );
        let creds = Credentials::load_or_create(&state.0, &["todo"]).unwrap();
        assert_eq!(creds.pg_admin_password, "pg");
        // The one token all apps shared is replaced by one per app.
        assert_eq!(creds.app_api_tokens.len(), crate::spec::SERVICES.len());
        assert!(creds.app_api_tokens.values().all(|t| t != "app"));
        assert_eq!(creds.role_password("todo"), "secret");
        assert_eq!(creds.auth_signing_key.len(), 64);
        let written: serde_json::Value =
            serde_json::from_slice(&fs::read(credentials_path(&state.0)).unwrap()).unwrap();
        assert_eq!(written["auth_signing_key"], creds.auth_signing_key.as_str());
        assert!(written.get("operator_token").is_none());
    }

    #[test]
    fn no_credentials_file_loads_as_none() {
        let state = TempState::new();
        assert!(Credentials::load(&state.0).unwrap().is_none());
    }

    #[test]
    fn secrets_json_serves_the_signing_key_and_no_operator_token() {
        let state = TempState::new();
        let creds = Credentials::load_or_create(&state.0, &["todo", "dapr"]).unwrap();
        let db = DbEndpoint {
            host: "127.0.0.1".into(),
            port: 5432,
        };
        write_secrets_json(&state.0, &creds, &db, &["todo"], "dapr").unwrap();
        let secrets: serde_json::Value =
            serde_json::from_slice(&fs::read(state.0.join("secrets.json")).unwrap()).unwrap();
        assert_eq!(
            secrets["auth-signing-key"]["key"],
            creds.auth_signing_key.as_str()
        );
        let tokens: std::collections::BTreeSet<&str> = crate::spec::SERVICES
            .iter()
            .map(|s| {
                let token = secrets[format!("{}-app-token", s.app_id)]["token"]
                    .as_str()
                    .unwrap();
                assert_eq!(token, creds.app_api_token(s.app_id));
                token
            })
            .collect();
        assert_eq!(
            tokens.len(),
            crate::spec::SERVICES.len(),
            "each app its own"
        );
        assert!(secrets.get("app-api-token").is_none());
        assert!(secrets.get("operator-token").is_none());
    }
}
