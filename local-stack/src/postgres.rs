//! PostgreSQL: the stack's own cluster in `<state>/pg` (Debian binaries, run as
//! user `postgres`), or an existing server named by `TODO_PLATFORM_PG_ADMIN_URL`;
//! then idempotent provisioning of the database, roles and schemas.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use reqwest::Url;
use tokio::process::Command;

use crate::cmd;
use crate::creds::{Credentials, DbEndpoint};
use crate::install;
use crate::proc::{self, Launch, Managed};
use crate::spec::DAPR_SCHEMA;
use crate::spec::DATABASE;

pub const ADMIN_URL_ENV: &str = "TODO_PLATFORM_PG_ADMIN_URL";

/// Where the stack's PostgreSQL is.
#[derive(Debug, Clone)]
pub(crate) enum PgTarget {
    /// Our own cluster.
    Own {
        bin: PathBuf,
        dir: PathBuf,
        port: u16,
    },
    /// An existing server (superuser URL from the environment).
    External { admin_url: Url },
}

impl PgTarget {
    pub fn from_env() -> Result<Option<PgTarget>> {
        match std::env::var(ADMIN_URL_ENV) {
            Ok(url) if !url.trim().is_empty() => {
                let admin_url = Url::parse(url.trim())
                    .with_context(|| format!("{ADMIN_URL_ENV} is not a URL"))?;
                Ok(Some(PgTarget::External { admin_url }))
            }
            _ => Ok(None),
        }
    }

    /// Our own cluster in `<state>/pg`, listening on `port`.
    pub fn own(state: &Path, port: u16) -> Result<PgTarget> {
        let bin = install::require(
            install::pg_bin_dir(),
            "PostgreSQL server (/usr/lib/postgresql/*/bin/initdb)",
        )?;
        Ok(PgTarget::Own {
            bin,
            dir: state.join("pg"),
            port,
        })
    }

    pub fn endpoint(&self) -> DbEndpoint {
        match self {
            PgTarget::Own { port, .. } => DbEndpoint {
                host: "127.0.0.1".into(),
                port: *port,
            },
            PgTarget::External { admin_url } => DbEndpoint {
                host: admin_url.host_str().unwrap_or("127.0.0.1").to_string(),
                port: admin_url.port().unwrap_or(5432),
            },
        }
    }

    /// Superuser URL on the platform database.
    pub fn admin_url(&self, creds: &Credentials) -> String {
        match self {
            PgTarget::Own { port, .. } => format!(
                "postgres://postgres:{}@127.0.0.1:{port}/{DATABASE}",
                creds.pg_admin_password
            ),
            PgTarget::External { admin_url } => {
                let mut u = admin_url.clone();
                u.set_path(&format!("/{DATABASE}"));
                u.to_string()
            }
        }
    }
}

fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

fn socket_dir(dir: &Path) -> PathBuf {
    dir.join("run")
}

/// A command run as user `postgres` (PostgreSQL refuses to run as root).
/// `setpriv` execs the binary, so no wrapper process remains.
fn as_postgres(program: &Path) -> (OsString, Vec<OsString>) {
    if install::is_root() {
        (
            "setpriv".into(),
            vec![
                "--reuid=postgres".into(),
                "--regid=postgres".into(),
                "--init-groups".into(),
                program.as_os_str().to_owned(),
            ],
        )
    } else {
        (program.as_os_str().to_owned(), vec![])
    }
}

fn pg_command(program: &Path, cwd: &Path) -> Command {
    let (p, pre) = as_postgres(program);
    let mut c = Command::new(p);
    c.args(pre).current_dir(cwd);
    c
}

async fn chown_postgres(path: &Path) -> Result<()> {
    if install::is_root() {
        cmd::run(
            Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(path),
        )
        .await?;
    }
    Ok(())
}

/// Creates the cluster on first use (into a temporary folder renamed at the end,
/// so an interrupted initdb is redone).
async fn init_cluster(bin: &Path, dir: &Path, creds: &Credentials) -> Result<()> {
    let data = data_dir(dir);
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let started = Instant::now();
    cmd::step(format!("postgres: initdb {}", data.display()));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join("data.tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let pwfile = dir.join("initdb-pw");
    std::fs::write(&pwfile, format!("{}\n", creds.pg_admin_password))?;
    chown_postgres(dir).await?;
    // Before anything else: the postgres user must be able to reach the folder.
    let (p, pre) = as_postgres(Path::new("/usr/bin/test"));
    let ok = cmd::run_quiet(
        Command::new(p)
            .args(pre)
            .arg("-w")
            .arg(dir)
            .current_dir(dir),
        None,
    )
    .await
    .map(|o| o.status.success())
    .unwrap_or(false);
    if !ok {
        bail!(
            "user postgres cannot write {} (is every parent folder world-executable?)",
            dir.display()
        );
    }
    let result = cmd::run_capture(
        pg_command(&bin.join("initdb"), dir)
            .arg("-D")
            .arg(&tmp)
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-instructions",
                "--no-sync",
            ]),
        None,
    )
    .await;
    let _ = std::fs::remove_file(&pwfile);
    result?;
    std::fs::rename(&tmp, &data)?;
    cmd::done("postgres: cluster created", started);
    Ok(())
}

/// Lists online Debian clusters (`pg_lsclusters`) on our port.
async fn system_cluster_on_port(port: u16) -> Option<(String, String)> {
    let out = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() >= 4 && cols[2] == port.to_string() && cols[3].starts_with("online"))
            .then(|| (cols[0].to_string(), cols[1].to_string()))
    })
}

/// Fails clearly if `port` is taken. `installed_now`: the Debian package was
/// installed by this run, so a system cluster it started there is ours to stop.
pub(crate) async fn check_port(port: u16, installed_now: bool) -> Result<()> {
    if proc::ensure_port_free(port, "PostgreSQL").is_err() {
        match system_cluster_on_port(port).await {
            Some((ver, name)) if installed_now => {
                cmd::step(format!(
                    "postgres: stopping the Debian system cluster {ver}/{name} the package just started on {port}"
                ));
                cmd::run(Command::new("pg_ctlcluster").args([&ver, &name, "stop"])).await?;
            }
            Some((ver, name)) => bail!(
                "port {port} is used by the Debian system cluster {ver}/{name}; stop it with \
                 `pg_ctlcluster {ver} {name} stop` (or point {ADMIN_URL_ENV} at it to use it instead)"
            ),
            None => {}
        }
        proc::ensure_port_free(port, "PostgreSQL")?;
    }
    Ok(())
}

/// Starts our own cluster and waits until it accepts connections.
pub(crate) async fn start_own(
    state: &Path,
    target: &PgTarget,
    creds: &Credentials,
    installed_now: bool,
) -> Result<Managed> {
    let PgTarget::Own { bin, dir, port } = target else {
        bail!("not our own PostgreSQL");
    };
    init_cluster(bin, dir, creds).await?;
    let started = Instant::now();
    let data = data_dir(dir);
    let sock = socket_dir(dir);
    std::fs::create_dir_all(&sock)?;
    if install::is_root() {
        cmd::run_quiet(
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(&sock)
                .arg(&data),
            None,
        )
        .await?;
    }
    let port = *port;
    check_port(port, installed_now).await?;
    cmd::step("postgres: starting");
    let postgres = bin.join("postgres");
    let (program, pre) = as_postgres(&postgres);
    let args: Vec<OsString> = vec![
        "-D".into(),
        data.clone().into(),
        "-c".into(),
        "listen_addresses=127.0.0.1".into(),
        "-c".into(),
        format!("port={port}").into(),
        "-c".into(),
        format!("unix_socket_directories={}", sock.display()).into(),
        "-c".into(),
        "unix_socket_permissions=0700".into(),
        "-c".into(),
        "max_connections=200".into(),
    ];
    let mut final_argv = vec![postgres.to_string_lossy().into_owned()];
    final_argv.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let mut launch = Launch::new("postgres", program, dir).args(pre).args(args);
    launch.stop_signal = Signal::SIGINT; // fast shutdown: no waiting for clients
    launch.stop_timeout = Duration::from_secs(20);
    launch.final_argv = Some(final_argv);
    let mut managed = proc::spawn(state, launch)?;
    let isready = bin.join("pg_isready");
    managed
        .wait_until("pg_isready", Duration::from_secs(60), || async {
            cmd::run_quiet(
                Command::new(&isready)
                    .arg("-q")
                    .arg("-h")
                    .arg(&sock)
                    .arg("-p")
                    .arg(port.to_string()),
                None,
            )
            .await
            .map(|o| o.status.success())
            .unwrap_or(false)
        })
        .await?;
    cmd::done(format!("postgres: ready on 127.0.0.1:{port}"), started);
    Ok(managed)
}

/// The SQL that makes the database, one login role + schema per service (and
/// `dapr`), each role reaching only its own schema. Idempotent.
fn provisioning_sql(creds: &Credentials, roles: &[&str]) -> String {
    let mut sql = String::new();
    sql.push_str(&format!(
        "SELECT 'CREATE DATABASE {DATABASE}' WHERE NOT EXISTS \
         (SELECT FROM pg_database WHERE datname = '{DATABASE}')\\gexec\n\
         REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC;\n"
    ));
    for role in roles {
        let pw = creds.role_password(role);
        sql.push_str(&format!(
            "SELECT 'CREATE ROLE {role} LOGIN' WHERE NOT EXISTS \
             (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec\n\
             ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD '{pw}';\n\
             ALTER ROLE {role} SET search_path = {role};\n\
             GRANT CONNECT, TEMPORARY ON DATABASE {DATABASE} TO {role};\n"
        ));
    }
    sql.push_str(&format!(
        "\\connect {DATABASE}\nREVOKE ALL ON SCHEMA public FROM PUBLIC;\n"
    ));
    for role in roles {
        sql.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {role} AUTHORIZATION {role};\n\
             ALTER SCHEMA {role} OWNER TO {role};\n\
             REVOKE ALL ON SCHEMA {role} FROM PUBLIC;\n"
        ));
    }
    if roles.contains(&DAPR_SCHEMA) {
        // The workflow state store's bookkeeping table, made here, before any
        // sidecar starts. Every sidecar of a workflow-hosting app creates it
        // at start-up with `CREATE TABLE IF NOT EXISTS`, and two of them
        // doing so at the same moment on a fresh database make one fail with
        // `type "dapr_metadata" already exists` (42710), which daprd does not
        // retry: that sidecar exits. Same columns as daprd's (components-contrib
        // `postgres_migrations.go`), owned by the role daprd connects as.
        sql.push_str(&format!(
            "CREATE TABLE IF NOT EXISTS {DAPR_SCHEMA}.dapr_metadata \
             (key text NOT NULL PRIMARY KEY, value text NOT NULL);\n\
             ALTER TABLE {DAPR_SCHEMA}.dapr_metadata OWNER TO {DAPR_SCHEMA};\n"
        ));
    }
    sql
}

/// The provisioning SQL of every service's role plus `dapr`, with each
/// role's password left as the psql variable `:'pw_<role>'`: what the Helm
/// chart's provisioning script must run (a test in xtask compares them).
pub fn provisioning_sql_with_password_variables() -> String {
    let roles = crate::start::db_roles();
    let marker = |role: &str| format!("@@pw_{role}@@");
    let creds = Credentials {
        role_passwords: roles.iter().map(|r| ((*r).to_owned(), marker(r))).collect(),
        ..Credentials::default()
    };
    let mut sql = provisioning_sql(&creds, &roles);
    for role in &roles {
        sql = sql.replace(&format!("'{}'", marker(role)), &format!(":'pw_{role}'"));
    }
    sql
}

/// Runs the provisioning SQL with the machine's psql, as the superuser.
pub(crate) async fn provision(
    target: &PgTarget,
    creds: &Credentials,
    roles: &[&str],
) -> Result<()> {
    for role in roles {
        if role.is_empty() || !role.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            bail!("schema/role name {role:?} must be lowercase letters and underscores");
        }
    }
    let started = Instant::now();
    cmd::step(format!(
        "postgres: provisioning database {DATABASE}, roles/schemas {}",
        roles.join(", ")
    ));
    let psql = install::require(install::psql_path(), "psql")?;
    let sql = provisioning_sql(creds, roles);
    let mut command = match target {
        PgTarget::Own { dir, port, .. } => {
            let mut c = pg_command(&psql, dir);
            c.arg("-h")
                .arg(socket_dir(dir))
                .arg("-p")
                .arg(port.to_string())
                .args(["-U", "postgres", "-d", "postgres"]);
            c
        }
        PgTarget::External { admin_url } => {
            let mut u = admin_url.clone();
            let password = u.password().map(str::to_string);
            let _ = u.set_password(None);
            let mut c = Command::new(&psql);
            c.arg("-d").arg(u.as_str());
            if let Some(pw) = password {
                c.env("PGPASSWORD", pw);
            }
            c
        }
    };
    command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"]);
    cmd::run_capture(&mut command, Some(&sql)).await?;
    cmd::done("postgres: provisioned", started);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_state_stores_metadata_table_is_made_before_any_sidecar_starts() {
        let state = std::env::temp_dir().join(format!("todo-pg-sql-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&state).unwrap();
        let creds = Credentials::load_or_create(&state, &["todo", DAPR_SCHEMA]).unwrap();
        std::fs::remove_dir_all(&state).unwrap();
        let with_dapr = provisioning_sql(&creds, &["todo", DAPR_SCHEMA]);
        assert!(with_dapr.contains(
            "CREATE TABLE IF NOT EXISTS dapr.dapr_metadata (key text NOT NULL PRIMARY KEY, value text NOT NULL);"
        ));
        assert!(with_dapr.contains("ALTER TABLE dapr.dapr_metadata OWNER TO dapr;"));
        assert!(!provisioning_sql(&creds, &["todo"]).contains("dapr_metadata"));
    }
}
