//! The PostgreSQL server the tests create their databases on.
//!
//! With `TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432`), that server.
//! Without it, one embedded cluster, started by the same `EmbeddedPostgres` that `postern
//! serve` uses, in `target/test-postgres` (or `POSTERN_TEST_PG_DIR`), reachable only on a
//! unix socket: nothing to install beyond Debian's `postgresql` binaries, nothing to
//! configure. One cluster serves every test process of a run: each holds a shared lock on
//! `users.lock` while it lives, and `test-postgres-reaper.sh` stops the cluster once no
//! process has held it for a few seconds, however the last one ended (panic, Ctrl-C,
//! SIGKILL).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use postern::embedded_postgres::EmbeddedPostgres;

/// Seconds without a test process before the reaper stops the cluster: longer than the
/// gap between two test binaries of one `cargo test`, short enough to leave nothing behind.
const IDLE_SECS: &str = "5";

enum Server {
    /// `TEST_DATABASE_URL`: a server URL without a database.
    Url(String),
    /// The embedded cluster's socket directory; the lock file is kept open (and so
    /// locked) for the life of the process.
    Socket(PathBuf, #[allow(dead_code)] File),
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => Server::Url(url.trim_end_matches('/').to_string()),
        // A thread of its own: the caller may be inside a runtime, where blocking on
        // another would panic.
        Err(_) => std::thread::spawn(start_embedded).join().expect("the embedded test cluster starts"),
    })
}

/// The URL of database `name` on the tests' server.
pub fn database_url(name: &str) -> String {
    match server() {
        Server::Url(base) => format!("{base}/{name}"),
        Server::Socket(dir, _) => format!("postgres://postgres@localhost/{name}?host={}", dir.display()),
    }
}

/// The directory of the embedded cluster (`None` with `TEST_DATABASE_URL`).
pub fn embedded_dir() -> Option<PathBuf> {
    match server() {
        Server::Url(_) => None,
        Server::Socket(dir, _) => dir.parent().map(Path::to_path_buf),
    }
}

fn cluster_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POSTERN_TEST_PG_DIR") {
        return PathBuf::from(dir);
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    target.join("test-postgres")
}

fn start_embedded() -> Server {
    let dir = cluster_dir();
    std::fs::create_dir_all(&dir).expect("create the test cluster's directory");
    let open = |name: &str| {
        OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(name)).expect("open a lock file")
    };
    // Starting is one process at a time, and never while the reaper is stopping it.
    let starting = open("start.lock");
    starting.lock().expect("lock start.lock");
    let user = open("users.lock");
    user.lock_shared().expect("lock users.lock");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = runtime
        .block_on(EmbeddedPostgres::start(&dir))
        .unwrap_or_else(|e| panic!("the embedded test cluster in {} did not start: {e}", dir.display()));
    spawn_reaper(&dir);
    drop(starting);
    Server::Socket(cluster.socket_dir().to_path_buf(), user)
}

/// One reaper per cluster: `flock -n reaper.lock` makes a second one exit at once.
fn spawn_reaper(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/test-postgres-reaper.sh");
    let status = Command::new("setsid")
        .arg("-f")
        .args(["flock", "-n"])
        .arg(dir.join("reaper.lock"))
        .arg("sh")
        .arg(&script)
        .arg(dir)
        .arg(IDLE_SECS)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("setsid (util-linux) starts the test cluster's reaper");
    assert!(status.success(), "the test cluster's reaper did not start");
}
