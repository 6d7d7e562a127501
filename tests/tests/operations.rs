//! What an appliance needs to be run: readiness that follows the database, back-pressure
//! (452 4.3.1) that ends when the queue drains, Prometheus metrics that move with the
//! mail, a SIGTERM that loses nothing, and the container image's exact contract (its
//! environment, entrypoint and health check) run against the binary built here, and the
//! console over HTTPS.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use postern_tests::node::{Server, configure, postern, wait_for_listener};
use postern_tests::sink::Sink;
use postern_tests::smtp_client::{RawClient, queue_id, send_one};
use postern_tests::{
    TestApp, TestDb, database_outage, eventually, free_port, generated_certificate, http_get, seed_anonymous_relay,
    test_settings, wait_for,
};

async fn wait_for_status(addr: SocketAddr, path: &str, status: u16, within: Duration) -> String {
    wait_for(within, &format!("{path} answers {status}"), || async {
        let (code, body) = http_get(addr, path, None).await;
        (code == status).then_some(body)
    })
    .await
}

#[tokio::test]
async fn readyz_turns_red_when_the_database_goes_and_green_when_it_returns() {
    let sink = Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    seed_anonymous_relay(&db.store().await, port, sink.addr).await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    let ready = wait_for_status(app.http, "/readyz", 200, Duration::from_secs(5)).await;
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    assert_eq!(
        ready,
        serde_json::json!({ "database": true, "migrations": true, "listeners": true, "configuration_current": true })
    );

    database_outage(&app.db.name, true).await;
    let down = wait_for_status(app.http, "/readyz", 503, Duration::from_secs(10)).await;
    assert!(down.contains("\"database\":false"), "{down}");
    // Liveness is not readiness: the process is alive and says so.
    assert_eq!(http_get(app.http, "/healthz", None).await.0, 200);

    database_outage(&app.db.name, false).await;
    wait_for_status(app.http, "/readyz", 200, Duration::from_secs(10)).await;
    // And it takes mail again without a restart.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(send_one(addr, "after the outage").await.starts_with("250 2.6.0"));
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_red_while_a_binding_cannot_be_opened() {
    let sink = Sink::start().await;
    let db = TestDb::new().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    seed_anonymous_relay(&db.store().await, busy.local_addr().unwrap().port(), sink.addr).await;
    let settings = test_settings(&db);
    let app = TestApp::start(db, settings).await;
    let body = wait_for_status(app.http, "/readyz", 503, Duration::from_secs(5)).await;
    assert!(body.contains("\"listeners\":false") && body.contains("\"database\":true"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn back_pressure_refuses_new_mail_with_452_and_ends_when_the_queue_drains() {
    // The smart host is down: queued mail stays queued.
    let smart_host = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let db = TestDb::new().await;
    let port = free_port();
    seed_anonymous_relay(&db.store().await, port, smart_host).await;
    let mut settings = test_settings(&db);
    settings.max_queue_depth = 3;
    let app = TestApp::start(db, settings).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for i in 0..3 {
        assert!(send_one(addr, &format!("fill {i}")).await.starts_with("250 2.6.0"));
    }

    // Within a second or two the limit is noticed; MAIL is refused, the session stays.
    let mut client = RawClient::connect(addr).await;
    assert!(client.reply().await.starts_with("220"));
    client.ehlo("client.test").await;
    let start = Instant::now();
    let refused = loop {
        let reply = client.command("MAIL FROM:<app@cloudmonkeys.xyz>").await;
        if !reply.starts_with("250") {
            break reply;
        }
        assert!(client.command("RSET").await.starts_with("250"));
        assert!(start.elapsed() < Duration::from_secs(5), "MAIL still accepted with 3 messages queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(refused, "452 4.3.1 Insufficient system resources; try again later");
    assert!(client.command("NOOP").await.starts_with("250"), "the session stays open");
    let store = app.admin.store().clone();
    let queued: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(store.pool()).await.unwrap();
    assert_eq!(queued, 3, "nothing more was taken");
    let throttled = app.wait_for_events("THROTTLE", 1).await;
    assert!(throttled[0].detail.as_deref().unwrap_or_default().contains("452 4.3.1"), "{throttled:?}");

    // The smart host returns, the queue drains, and the same session may send again.
    let sink = Sink::start_on(smart_host).await;
    sink.wait_for(3).await;
    let start = Instant::now();
    loop {
        let reply = client.command("MAIL FROM:<app@cloudmonkeys.xyz>").await;
        if reply.starts_with("250") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "still refused after the queue drained: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(client.command("RCPT TO:<user@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: after\r\n\r\nagain\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));
    app.stop().await;
}

/// The value of one sample line of a Prometheus text exposition (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn metrics_move_when_mail_flows() {
    let db = TestDb::new().await;
    let (smtp_port, sink_port, http_port) = (free_port(), free_port(), free_port());
    configure(&db, smtp_port, sink_port);
    let smtp = SocketAddr::from(([127, 0, 0, 1], smtp_port));
    let http = SocketAddr::from(([127, 0, 0, 1], http_port));
    let sink = Sink::start_on(SocketAddr::from(([127, 0, 0, 1], sink_port))).await;
    sink.reject_rcpt("nobody@", "550 5.1.1 no such user");
    let _server = Server::start_with_http(&db, http_port);
    wait_for_listener(smtp).await;
    wait_for_listener(http).await;
    let (code, before) = http_get(http, "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(before.contains("# TYPE postern_queue_depth gauge"), "{before}");

    for i in 0..3 {
        assert!(send_one(smtp, &format!("metered {i}")).await.starts_with("250 2.6.0"));
    }
    let mut client = RawClient::connect(smtp).await;
    assert!(client.start_transaction("app@cloudmonkeys.xyz", "nobody@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: doomed\r\n\r\nx\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));
    assert!(client.command("MAIL FROM:<app@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<someone@elsewhere.example>").await.starts_with("550"), "no relay right");
    sink.wait_for(4).await; // three messages and the DSN

    let after = wait_for(Duration::from_secs(10), "the metrics move", || async {
        let (_, text) = http_get(http, "/metrics", None).await;
        let moved = sample(&text, "postern_recipients_failed_total{connector=\"Smart host\"}") >= 1.0
            && sample(&text, "postern_recipients_sent_total{connector=\"Smart host\"}") >= 4.0
            // Outcomes are written just after they are counted.
            && sample(&text, "postern_queue_depth") == 0.0;
        moved.then_some(text)
    })
    .await;
    let relay = "connector=\"SMTP Relay Script\"";
    assert_eq!(sample(&after, &format!("postern_messages_received_total{{{relay}}}")), 4.0);
    assert_eq!(sample(&after, &format!("postern_smtp_sessions_total{{{relay}}}")), 5.0);
    assert_eq!(sample(&after, &format!("postern_messages_rejected_total{{{relay},reason=\"rejected\"}}")), 1.0);
    assert_eq!(sample(&after, "postern_dsns_total"), 1.0);
    assert_eq!(sample(&after, "postern_delivery_latency_seconds_count"), 4.0);
    assert!(sample(&after, "postern_delivery_latency_seconds_sum") > 0.0);
    assert!(sample(&after, "postern_config_generation") >= 1.0);
    assert_eq!(sample(&after, "postern_listeners_down"), 0.0);
    assert!(after.contains("postern_smtp_sessions "), "the open-sessions gauge is exported");
}

fn sigterm(server: &Server) {
    let status = std::process::Command::new("kill").args(["-TERM", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn sigterm_lets_a_transfer_finish_turns_idle_sessions_away_and_loses_nothing() {
    let db = TestDb::new().await;
    let (smtp_port, sink_port, http_port) = (free_port(), free_port(), free_port());
    configure(&db, smtp_port, sink_port);
    let smtp = SocketAddr::from(([127, 0, 0, 1], smtp_port));
    let mut server = Server::start_with(&db, http_port, &[("POSTERN_SHUTDOWN_GRACE_SECS", "3")]);
    wait_for_listener(smtp).await;

    // One client is in the middle of its data, one between transactions, one never
    // finishes its data.
    let mut sending = RawClient::connect(smtp).await;
    assert!(sending.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(sending.command("DATA").await.starts_with("354"));
    sending.send(b"Subject: in flight\r\n\r\nfirst half\r\n").await;
    let mut idle = RawClient::connect(smtp).await;
    assert!(idle.reply().await.starts_with("220"));
    idle.ehlo("idle.test").await;
    let mut stalled = RawClient::connect(smtp).await;
    assert!(stalled.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(stalled.command("DATA").await.starts_with("354"));
    stalled.send(b"Subject: never finished\r\n\r\npartial").await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopping = Instant::now();
    sigterm(&server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new sessions; the idle one is told to go; the transfer in progress completes.
    assert!(tokio::net::TcpStream::connect(smtp).await.is_err(), "still accepting after SIGTERM");
    let bye = idle.command("NOOP").await;
    assert!(bye.starts_with("421 4.3.2"), "idle session got {bye}");
    sending.send(b"second half\r\n.\r\n").await;
    let queued = sending.reply().await;
    assert!(queued.starts_with("250 2.6.0"), "a transfer in progress may finish: {queued}");
    // The process exits within the grace period; the stalled transfer is cut, not queued.
    let status = tokio::task::spawn_blocking(move || {
        let status = server.0.wait().unwrap();
        (server, status)
    });
    let (_server, status) =
        tokio::time::timeout(Duration::from_secs(10), status).await.expect("exits in time").unwrap();
    assert!(status.success(), "clean exit: {status:?}");
    assert!(stopping.elapsed() < Duration::from_secs(8), "exit took {:?}", stopping.elapsed());
    let store = db.store().await;
    let subjects: Vec<Option<String>> =
        sqlx::query_scalar("select subject from messages").fetch_all(store.pool()).await.unwrap();
    assert_eq!(subjects, [Some("in flight".to_string())], "only the finished transfer is queued");
    let leased: i64 = sqlx::query_scalar("select count(*) from messages where lease_owner is not null")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(leased, 0, "no delivery lease is left behind");

    // Restarted, it delivers what it acknowledged.
    let sink = Sink::start_on(SocketAddr::from(([127, 0, 0, 1], sink_port))).await;
    let _restarted = Server::start(&db);
    let delivered = sink.wait_for(1).await;
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains("first half\r\nsecond half"));
    assert_eq!(queue_id(&queued).simple().to_string().len(), 32);
}

/// `ENV`, `ENTRYPOINT`, `CMD` and `HEALTHCHECK` of docker/Dockerfile's final stage.
struct ImageContract {
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    healthcheck: Vec<String>,
}

fn image_contract() -> ImageContract {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/Dockerfile");
    let text = std::fs::read_to_string(path).unwrap().replace("\\\n", " ");
    let runtime = text.rsplit("\nFROM ").next().unwrap();
    let json_array = |line: &str| -> Vec<String> { serde_json::from_str(line.trim()).unwrap() };
    let mut contract = ImageContract { env: vec![], entrypoint: vec![], cmd: vec![], healthcheck: vec![] };
    for line in runtime.lines() {
        if let Some(rest) = line.strip_prefix("ENV ") {
            for pair in rest.split_whitespace() {
                let (k, v) = pair.split_once('=').unwrap();
                contract.env.push((k.to_string(), v.to_string()));
            }
        } else if let Some(rest) = line.strip_prefix("ENTRYPOINT ") {
            contract.entrypoint = json_array(rest);
        } else if let Some(rest) = line.strip_prefix("CMD ") {
            contract.cmd = json_array(rest);
        } else if let Some(rest) = line.strip_prefix("HEALTHCHECK ") {
            contract.healthcheck = json_array(rest.split_once("CMD ").unwrap().1);
        }
    }
    contract
}

/// Waits until the image's health check passes against `server`, stops it with SIGTERM
/// and returns what it wrote to standard error.
async fn healthy_then_stopped(mut server: Server, health: &mut std::process::Command) -> String {
    let healthy = || std::future::ready(health.output().unwrap().status.success());
    eventually(Duration::from_secs(30), "the HEALTHCHECK command succeeds", healthy).await;
    sigterm(&server);
    tokio::task::spawn_blocking(move || {
        let mut stderr = String::new();
        std::io::Read::read_to_string(server.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        server.kill();
        stderr
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_container_image_contract_runs_against_this_binary() {
    let contract = image_contract();
    assert_eq!(contract.entrypoint, ["/usr/local/bin/postern"]);
    assert_eq!(contract.cmd, ["serve"]);
    assert_eq!(contract.healthcheck, ["/usr/local/bin/postern", "healthcheck"]);
    let data_dir = std::env::temp_dir().join(format!("postern-image-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let http_port = free_port();
    // The image's environment, with its console port and data directory moved to free
    // places on this machine.
    let image_env = |command: &mut std::process::Command| {
        command.env_remove("POSTERN_LOG_LEVEL"); // the image keeps the default level
        for (key, value) in &contract.env {
            let value = match key.as_str() {
                "POSTERN_HTTP_ADDR" => value.replace(":8080", &format!(":{http_port}")),
                "POSTERN_DATA_DIR" => data_dir.to_string_lossy().into_owned(),
                _ => value.clone(),
            };
            command.env(key, value);
        }
    };

    // Without DATABASE_URL the image refuses to start, saying why.
    let db = TestDb::new().await;
    let mut without = postern(&db, http_port);
    image_env(&mut without);
    let out = without.env_remove("DATABASE_URL").args(&contract.cmd).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL is not set"), "{out:?}");

    // With it: JSON logs, the first administrator's password printed once, healthy.
    let mut serve = postern(&db, http_port);
    image_env(&mut serve);
    let server = Server(serve.args(&contract.cmd).stderr(Stdio::piped()).spawn().unwrap());
    let mut health = postern(&db, http_port);
    image_env(&mut health);
    health.args(&contract.healthcheck[1..]);
    let output = healthy_then_stopped(server, &mut health).await;
    let mut json_lines = 0;
    for line in output.lines().filter(|l| l.starts_with('{')) {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(entry["level"].is_string() && entry["fields"].is_object(), "{line}");
        json_lines += 1;
    }
    assert!(json_lines >= 1, "no JSON log lines in:\n{output}");
    assert_eq!(output.matches("created \"admin\" with the password").count(), 1, "{output}");
    // The image listens on every address: the console is HTTPS (and the health check
    // above spoke it).
    assert!(output.contains("\"https\":true"), "the image's console is not HTTPS:\n{output}");

    // The second start finds the administrator and prints no password.
    let mut again = postern(&db, http_port);
    image_env(&mut again);
    let server = Server(again.args(&contract.cmd).stderr(Stdio::piped()).spawn().unwrap());
    let output = healthy_then_stopped(server, &mut health).await;
    assert!(!output.contains("with the password"), "{output}");
    // A stopped node is not healthy.
    assert!(!health.output().unwrap().status.success());
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Runs curl against the node's console at `url`, resolving `relay.test` to loopback and
/// trusting only `ca`: its exit status and what it printed (headers included). (On a
/// blocking thread: the node runs on this test's runtime.)
async fn curl(http: SocketAddr, ca: &std::path::Path, url: &str, form: Option<&str>) -> (Option<i32>, String) {
    let mut command = std::process::Command::new("curl");
    command.args(["--silent", "--include", "--max-time", "10", "--cacert"]).arg(ca);
    command.args(["--resolve", &format!("relay.test:{}:127.0.0.1", http.port())]);
    if let Some(form) = form {
        command.args(["--data", form]);
    }
    command.arg(url);
    let out = tokio::task::spawn_blocking(move || command.output().expect("curl runs")).await.unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// With `console_tls = on` the console speaks HTTPS with the certificate the node made
/// for its host name: curl, trusting only that certificate, verifies chain and name; a
/// client that asks for another name is refused by its own verification; plain HTTP gets
/// no HTTP answer; and the session cookie is `Secure` with the `__Host-` prefix. (A
/// console listening off loopback is HTTPS by default: the image contract test above
/// runs that way.)
#[tokio::test]
async fn the_console_speaks_https_with_the_certificate_generated_for_its_host() {
    postern_tests::require_tool!(Curl);
    let db = TestDb::new().await;
    let settings = postern::settings::Settings { console_tls: postern::settings::ConsoleTls::On, ..test_settings(&db) };
    let app = TestApp::start(db, settings).await;
    app.admin.new_admin_user("alice", "admin", Some("correct-horse-battery".into())).await.unwrap();
    let pem = generated_certificate(app.admin.store(), "relay.test").await;
    let ca = std::env::temp_dir().join(format!("postern-console-{}.pem", uuid::Uuid::new_v4().simple()));
    std::fs::write(&ca, pem).unwrap();
    let port = app.http.port();

    let (code, out) = curl(app.http, &ca, &format!("https://relay.test:{port}/healthz"), None).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The certificate names relay.test, not 127.0.0.1: curl's check fails (60: peer
    // certificate cannot be authenticated).
    let (code, out) = curl(app.http, &ca, &format!("https://127.0.0.1:{port}/healthz"), None).await;
    assert_eq!(code, Some(60), "{out}");
    // Plain HTTP to the HTTPS port: no HTTP response comes back.
    let (code, out) = curl(app.http, &ca, &format!("http://127.0.0.1:{port}/healthz"), None).await;
    assert_ne!(code, Some(0), "{out}");
    assert!(!out.contains("HTTP/1."), "{out}");
    // Signing in over HTTPS sets the secure cookie.
    let sign_in = format!("https://relay.test:{port}/sign-in");
    let (code, out) = curl(app.http, &ca, &sign_in, Some("name=alice&password=correct-horse-battery")).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.starts_with("HTTP/1.1 303"), "{out}");
    let cookie = out.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).unwrap_or_default();
    assert!(cookie.contains("__Host-postern_session=") && cookie.contains("; Secure"), "{cookie}");
    let _ = std::fs::remove_file(&ca);
    app.stop().await;
}
