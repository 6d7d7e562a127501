//! The black-box test harness: a fresh Postgres database per test, the real
//! `Application` (or the real binary), a real SMTP sink as the smart host, and raw SMTP
//! clients that read replies like a transcript.

pub mod api;
pub mod browser;
mod cluster;
pub mod console;
pub mod node;
pub mod saml_idp;
pub mod sink;
pub mod smarthost;
pub mod smtp_client;
pub mod tools;
pub mod tripwire;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use postern::admin::{Admin, ReceiveConnectorChanges, SendConnectorChanges, ServiceAccountChanges};
use postern::app::{Application, Dependencies};
use postern::settings::Settings;
use postern::store::{Store, TrackingFilter, TrackingRecord};
use tokio_util::sync::CancellationToken;

pub use cluster::{database_url, embedded_dir};

/// A database of its own for one test, dropped at the end.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("postern_test_{}", uuid::Uuid::new_v4().simple());
        let admin_url = database_url("postgres");
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.expect("connect to test Postgres");
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}"))).execute(&mut conn).await.unwrap();
        Self { url: database_url(&name), name }
    }

    /// A store on this database, migrated.
    pub async fn store(&self) -> Store {
        let store = Store::connect(self.url.parse().unwrap(), 4).await.unwrap();
        store.migrate().await.unwrap();
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-q", "-d", &database_url("postgres"), "-c"])
            .arg(format!("drop database if exists {} with (force)", self.name))
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A port for a listener the code under test opens itself (a connector's binding, a
/// node's HTTP port), which cannot take port 0 and report back. Not from the kernel's
/// ephemeral range (`ip_local_port_range`, 32768-60999 by default): a port taken from
/// there and released could go to any outgoing connection's local end before the
/// listener binds it. Instead each test process walks its own slice of 10000-32767
/// (chosen by its pid), never handing out a port twice, and skips ports in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const FIRST: u16 = 10_000;
    const PORTS: u16 = 32_768 - FIRST;
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let start = (std::process::id() % 64) as u16 * (PORTS / 64);
    let _ = NEXT.compare_exchange(u16::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    loop {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS;
        let on_loopback = std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        let on_any = std::net::TcpListener::bind(("0.0.0.0", port)).is_ok();
        if on_loopback && on_any {
            return port;
        }
    }
}

/// Settings for a test node: fast retries, ephemeral HTTP port.
pub fn test_settings(db: &TestDb) -> Settings {
    Settings {
        database_url: Some(postern::domain::Secret::new(db.url.clone())),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        hostname: "relay.test".into(),
        retry_schedule_secs: vec![1],
        delivery_concurrency: 8,
        db_max_connections: 10,
        shutdown_grace_secs: 5,
        ..Settings::default()
    }
}

/// A running node in this process.
pub struct TestApp {
    pub db: TestDb,
    pub admin: Admin,
    pub http: SocketAddr,
    /// A read-scope API token for /api/v1.
    pub token: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Starts a node on `db` with the production DNS resolver and SMTP client.
    pub async fn start(db: TestDb, settings: Settings) -> Self {
        let deps = Dependencies::production(&settings).expect("dependencies");
        Self::start_with(db, settings, deps).await
    }

    /// Starts a node with the given seams (e.g. a static MX map).
    pub async fn start_with(db: TestDb, settings: Settings, deps: Dependencies) -> Self {
        let app = Application::build_with(settings, deps).await.expect("application starts");
        let http = app.http_addr();
        let admin = Admin::new(app.store().clone(), "test", "relay.test");
        let (_, token) = admin.new_api_token(&format!("tests-{}", uuid::Uuid::new_v4()), "read").await.unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Self { db, admin, http, token, stop, task }
    }

    pub async fn stop(self) -> TestDb {
        self.stop.cancel();
        let _ = self.task.await;
        self.db
    }

    pub async fn tracking(&self, event_id: &str) -> Vec<TrackingRecord> {
        let filter = TrackingFilter { event_id: Some(event_id.into()), limit: 1000, ..TrackingFilter::default() };
        self.admin.store().search_tracking(&filter).await.unwrap()
    }

    /// Waits until at least `n` events of `event_id` are in the tracking log.
    pub async fn wait_for_events(&self, event_id: &str, n: usize) -> Vec<TrackingRecord> {
        let what = format!("{n} {event_id} events");
        wait_for(Duration::from_secs(15), &what, || async {
            let found = self.tracking(event_id).await;
            (found.len() >= n).then_some(found)
        })
        .await
    }
}

impl TestApp {
    /// The node's status document (`/api/v1/status`).
    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = http_get(self.http, "/api/v1/status", Some(&self.token)).await;
        assert_eq!(code, 200, "status answered {code}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until the node runs the configuration generation now committed, so a
    /// change just made is in force.
    pub async fn wait_for_current_config(&self) {
        let committed: i64 = sqlx::query_scalar("select generation from config_state")
            .fetch_one(self.admin.store().pool())
            .await
            .unwrap();
        let what = format!("generation {committed} is loaded");
        eventually(Duration::from_secs(10), &what, || async {
            self.status().await["config_generation"].as_i64().unwrap_or(0) >= committed
        })
        .await;
    }
}

/// A minimal HTTP/1.1 GET, with a bearer token if given: status code and body.
pub async fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let code = response.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

/// Cuts a test database off (`down`): no new connections, and the open ones terminated;
/// or lets connections in again. What a database outage looks like to the node.
pub async fn database_outage(db: &str, down: bool) {
    let admin_url = database_url("postgres");
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
    let allow = if down { "false" } else { "true" };
    sqlx::query(sqlx::AssertSqlSafe(format!("alter database {db} allow_connections {allow}")))
        .execute(&mut pg)
        .await
        .unwrap();
    if down {
        sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
            .bind(db)
            .execute(&mut pg)
            .await
            .unwrap();
    }
}

/// Asks `check` every 50 ms until it answers `Some`, and returns the answer; panics
/// naming `what` when `within` passes first. Every test that waits for something to
/// happen waits through this (or `eventually`), never with a bare sleep.
pub async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `check` holds (see `wait_for`).
pub async fn eventually<F: std::future::Future<Output = bool>>(
    within: Duration,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    wait_for(within, what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Waits until `condition` holds (see `wait_for`).
pub async fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) {
    eventually(deadline, "condition", || std::future::ready(condition())).await
}

/// How many messages are not yet recorded done (queued, deferred, in delivery, poison).
pub async fn messages_not_done(store: &Store) -> i64 {
    sqlx::query_scalar("select count(*) from messages where state <> 'done'").fetch_one(store.pool()).await.unwrap()
}

/// Waits until every message is recorded done. After that no claim can take one again,
/// so no further copy can reach a smart host: count deliveries only then.
pub async fn wait_until_all_done(store: &Store, within: Duration) {
    eventually(within, "every message recorded done", || async { messages_not_done(store).await == 0 }).await
}

/// The seed's PART 1 configuration: accepted domain, the anonymous connector on `port`
/// admitting 127.0.0.1, and a smart host for everything.
pub async fn seed_anonymous_relay(store: &Store, port: u16, smart_host: SocketAddr) {
    let admin = Admin::new(store.clone(), "test", "relay.test");
    admin.new_accepted_domain("cloudmonkeys.xyz", None).await.unwrap();
    admin
        .new_receive_connector(&ReceiveConnectorChanges {
            name: Some("SMTP Relay Script".into()),
            bindings: Some(vec![format!("127.0.0.1:{port}")]),
            remote_ip_ranges: Some(vec!["127.0.0.1".into()]),
            permission_groups: Some(vec!["anonymous".into()]),
            ..Default::default()
        })
        .await
        .unwrap();
    smart_host_for_everything(&admin, smart_host).await;
}

/// A send connector for every domain, to the test sink.
async fn smart_host_for_everything(admin: &Admin, smart_host: SocketAddr) {
    let changes = SendConnectorChanges {
        name: Some("Smart host".into()),
        address_spaces: Some(vec!["*".into()]),
        smart_hosts: Some(vec![smart_host.to_string()]),
        tls_policy: Some("none".into()),
        ..Default::default()
    };
    admin.new_send_connector(&changes).await.unwrap();
}

/// A node with the seed's anonymous relay connector on a fresh port, relaying to a sink.
pub async fn seeded_anonymous_app() -> (TestApp, sink::Sink, SocketAddr) {
    let sink = sink::Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    seed_anonymous_relay(&db.store().await, port, sink.addr).await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    (app, sink, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The seed's service account password in the tests.
pub const SVC_PASSWORD: &str = "Sup3r-Secret-Passw0rd";

/// The seed's PART 2: the "SMTP Auth Relay Script" connector on `port` (TLS required,
/// basic auth only after TLS, authenticated senders only; it admits 127.0.0.0/8 so that
/// 127.0.0.2 can play a second machine), the service account `svc-mailer` with Send-As
/// on smb1, and a smart host for everything.
pub async fn seed_auth_relay(store: &Store, port: u16, smart_host: SocketAddr) {
    let admin = Admin::new(store.clone(), "test", "relay.test");
    admin.new_accepted_domain("cloudmonkeys.xyz", None).await.unwrap();
    admin
        .new_receive_connector(&ReceiveConnectorChanges {
            name: Some("SMTP Auth Relay Script".into()),
            bindings: Some(vec![format!("127.0.0.1:{port}")]),
            remote_ip_ranges: Some(vec!["127.0.0.0/8".into()]),
            auth_mechanisms: Some(vec!["tls,basic-auth,basic-auth-require-tls".into()]),
            permission_groups: Some(vec!["authenticated".into()]),
            require_tls: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    smart_host_for_everything(&admin, smart_host).await;
    admin
        .new_service_account(&ServiceAccountChanges {
            name: Some("svc-mailer".into()),
            address: Some("svc-mailer@cloudmonkeys.xyz".into()),
            password: Some(SVC_PASSWORD.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    admin.add_send_as("svc-mailer", "smb1@cloudmonkeys.xyz").await.unwrap();
}

/// The self-signed certificate the node generated for `fqdn`, as PEM.
pub async fn generated_certificate(store: &Store, fqdn: &str) -> String {
    let what = format!("a certificate generated for {fqdn}");
    wait_for(Duration::from_secs(10), &what, || async {
        let generated = store.generated_certificate(fqdn, || Err("not generated yet".into())).await;
        generated.ok().map(|(cert, _)| cert.certificate_pem)
    })
    .await
}

/// A TLS client that trusts exactly the certificate the node generated for `fqdn`.
pub async fn tls_client(store: &Store, fqdn: &str) -> std::sync::Arc<rustls::ClientConfig> {
    tls_client_trusting(&generated_certificate(store, fqdn).await)
}

/// A TLS client that trusts exactly this (self-signed) certificate.
pub fn tls_client_trusting(pem: &str) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// The variables `cargo test` sets for a test process (the Cargo book, "Environment
/// variables Cargo sets for crates"), which the shell that ran it did not have.
fn set_by_cargo_for_tests(name: &str) -> bool {
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_"];
    const NAMES: &[&str] = &["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR", "LD_LIBRARY_PATH"];
    PREFIXES.iter().any(|prefix| name.starts_with(prefix)) || NAMES.contains(&name)
}

/// The `postern` binary of this workspace, built once per test process.
pub fn postern_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            // The binary as `cargo test --workspace` builds it (for the server's
            // integration test `binary`): the same feature set, dev-dependencies
            // included. `cargo build -p postern` resolves features without them and
            // compiles a third of the tree again.
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo.args(["test", "--quiet", "--workspace", "--no-run", "--test", "binary"]).current_dir(&workspace);
            // And with the environment the outer `cargo test` had, not the one it gives
            // this test: build scripts that watch a variable (ring reads
            // CARGO_MANIFEST_DIR, clang-sys LD_LIBRARY_PATH) would otherwise run again,
            // rebuilding rustls, sqlx and the server here and again at the next
            // `cargo test` (about two minutes each way on the CI machine).
            for (name, _) in std::env::vars_os() {
                if name.to_str().is_some_and(set_by_cargo_for_tests) {
                    cargo.env_remove(name);
                }
            }
            let status = cargo.status().expect("cargo runs");
            assert!(status.success(), "building the postern binary failed");
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
            target.join("debug").join("postern")
        })
        .clone()
}
