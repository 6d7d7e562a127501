//! The quick-start database: a private PostgreSQL cluster in `<data_dir>/postgres`,
//! created with the machine's `initdb` and run with `pg_ctl`, reachable only through a
//! unix socket inside that directory (no TCP port). When Postern runs as root, the
//! cluster runs as the unprivileged `postgres` user (or `nobody`), as PostgreSQL
//! refuses to run as root. The server keeps running if Postern is killed, and the next
//! start of Postern (or any CLI command) finds and reuses it.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sqlx::postgres::PgConnectOptions;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH); install the \
         'postgresql' package or set DATABASE_URL"
    )]
    BinariesNotFound,
    #[error("{0}")]
    Setup(String),
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// A running embedded cluster.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    pgdata: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<(u32, u32)>,
}

const DATABASE: &str = "postern";

impl EmbeddedPostgres {
    /// Initialises the cluster if needed and starts it if it is not running.
    pub async fn start(data_dir: &Path) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::BinariesNotFound)?;
        std::fs::create_dir_all(data_dir).map_err(|source| EmbeddedError::Io { path: data_dir.into(), source })?;
        let data_dir = data_dir.canonicalize().map_err(|source| EmbeddedError::Io { path: data_dir.into(), source })?;
        let pgdata = data_dir.join("postgres");
        let run_as = if is_root() { Some(unprivileged_user()?) } else { None };
        let cluster = Self { pgdata, bin_dir, run_as };
        if !cluster.pgdata.join("PG_VERSION").exists() {
            cluster.init().await?;
        }
        if !cluster.is_running().await {
            cluster.launch().await?;
        }
        Ok(cluster)
    }

    /// The directory of the cluster's unix socket (its data directory).
    pub fn socket_dir(&self) -> &Path {
        &self.pgdata
    }

    /// Options for the superuser connection to the `postern` database over the socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new().host(&self.pgdata.to_string_lossy()).username("postgres").database(DATABASE)
    }

    /// Creates the `postern` database if it does not exist yet.
    pub async fn ensure_database(&self) -> Result<(), EmbeddedError> {
        let admin =
            PgConnectOptions::new().host(&self.pgdata.to_string_lossy()).username("postgres").database("postgres");
        let setup = |e: sqlx::Error| EmbeddedError::Setup(format!("embedded database: {e}"));
        let mut conn = sqlx::ConnectOptions::connect(&admin).await.map_err(setup)?;
        let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await
            .map_err(setup)?;
        if !exists {
            sqlx::query(concat!("create database ", "postern")).execute(&mut conn).await.map_err(setup)?;
        }
        Ok(())
    }

    /// Restarts the cluster whenever it is found stopped (crashed, or killed by the OS),
    /// until `shutdown`. Sessions meanwhile answer 451 4.3.0 and recover on their own.
    pub async fn supervise(&self, shutdown: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                () = shutdown.cancelled() => return,
            }
            if !self.is_running().await {
                tracing::warn!(pgdata = %self.pgdata.display(), "embedded PostgreSQL is not running; restarting it");
                if let Err(e) = self.launch().await {
                    tracing::error!(error = %e, "embedded PostgreSQL did not restart");
                }
            }
        }
    }

    /// Stops the cluster (fast shutdown: sessions are ended, everything is flushed).
    pub async fn stop(&self) -> Result<(), EmbeddedError> {
        let pgdata = self.pgdata.to_string_lossy().to_string();
        self.run("pg_ctl", &["-D", &pgdata, "-m", "fast", "-w", "stop"]).await
    }

    async fn init(&self) -> Result<(), EmbeddedError> {
        tracing::info!(pgdata = %self.pgdata.display(), "initialising the embedded PostgreSQL cluster");
        std::fs::create_dir_all(&self.pgdata)
            .map_err(|source| EmbeddedError::Io { path: self.pgdata.clone(), source })?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&self.pgdata, Some(uid), Some(gid))
                .map_err(|source| EmbeddedError::Io { path: self.pgdata.clone(), source })?;
        }
        let pgdata = self.pgdata.to_string_lossy().to_string();
        self.run(
            "initdb",
            &["-D", &pgdata, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"],
        )
        .await
    }

    async fn launch(&self) -> Result<(), EmbeddedError> {
        let pgdata = self.pgdata.to_string_lossy().to_string();
        let log = self.pgdata.join("server.log").to_string_lossy().to_string();
        // No TCP at all; the socket lives in the cluster directory (mode 0700), so only
        // this user (and root) can connect.
        let options = format!("-c listen_addresses='' -k {pgdata} -c unix_socket_permissions=0700");
        tracing::info!(pgdata = %self.pgdata.display(), "starting the embedded PostgreSQL cluster");
        self.run("pg_ctl", &["-D", &pgdata, "-l", &log, "-o", &options, "-w", "-t", "60", "start"]).await
    }

    async fn is_running(&self) -> bool {
        let pgdata = self.pgdata.to_string_lossy().to_string();
        self.run("pg_ctl", &["-D", &pgdata, "status"]).await.is_ok()
    }

    async fn run(&self, program: &str, args: &[&str]) -> Result<(), EmbeddedError> {
        let mut command = Command::new(self.bin_dir.join(program));
        command.args(args).current_dir(&self.pgdata).stdin(Stdio::null()).kill_on_drop(false);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid).env("HOME", &self.pgdata);
        }
        let output = command
            .output()
            .await
            .map_err(|e| EmbeddedError::Command { command: program.into(), output: e.to_string() })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if text.is_empty() {
            text = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(EmbeddedError::Command { command: format!("{program} {}", args.join(" ")), output: text })
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin`, else the directory of `pg_ctl` on PATH.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(PathBuf::from)
        .find(|dir| dir.join("pg_ctl").exists() && dir.join("initdb").exists())
}

fn is_root() -> bool {
    // /proc/self/status carries the real and effective uid; avoids unsafe libc calls.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// uid and gid of `postgres`, else `nobody`, from /etc/passwd.
fn unprivileged_user() -> Result<(u32, u32), EmbeddedError> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|source| EmbeddedError::Io { path: "/etc/passwd".into(), source })?;
    let entry = |name: &str| {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name) && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
    };
    entry("postgres").or_else(|| entry("nobody")).ok_or_else(|| {
        EmbeddedError::Setup("running as root, but there is no 'postgres' or 'nobody' user to run PostgreSQL as".into())
    })
}
