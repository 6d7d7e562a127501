//! The real `postern` binary: durability across SIGKILL, and CLI validation.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_tests::sink::Sink;
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestDb, free_port, postern_binary};

fn postern(db: &TestDb, http_port: u16) -> Command {
    let mut command = Command::new(postern_binary());
    command
        .env("DATABASE_URL", &db.url)
        .env("POSTERN_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("POSTERN_RETRY_SCHEDULE_SECS", "[1]")
        .env("POSTERN_HOSTNAME", "relay.test")
        .env("POSTERN_LOG_LEVEL", "warn")
        .stdin(Stdio::null());
    command
}

fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    postern(db, free_port()).args(args).output().unwrap()
}

/// A running `postern serve`, killed (SIGKILL) when dropped, also when a test fails.
struct Server(std::process::Child);

impl Server {
    fn start(db: &TestDb) -> Self {
        Self(postern(db, free_port()).arg("serve").spawn().unwrap())
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_for_listener(addr: SocketAddr) {
    let start = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "postern did not start listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn configure(db: &TestDb, smtp_port: u16, sink_port: u16) {
    for args in [
        vec!["accepted-domain", "new", "cloudmonkeys.xyz"],
        vec![
            "receive-connector",
            "new",
            "--name",
            "SMTP Relay Script",
            "--bindings",
            &format!("127.0.0.1:{smtp_port}"),
            "--remote-ip-ranges",
            "127.0.0.1",
            "--permission-groups",
            "anonymous",
        ],
        vec![
            "send-connector",
            "new",
            "--name",
            "Smart host",
            "--address-spaces",
            "*",
            "--smart-hosts",
            &format!("127.0.0.1:{sink_port}"),
            "--tls-policy",
            "none",
        ],
    ] {
        let out = cli(db, &args);
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[tokio::test]
async fn a_message_acknowledged_with_250_survives_sigkill_and_is_delivered_after_restart() {
    let db = TestDb::new().await;
    let (smtp_port, sink_port) = (free_port(), free_port());
    configure(&db, smtp_port, sink_port).await;
    let smtp = SocketAddr::from(([127, 0, 0, 1], smtp_port));

    // The smart host is down: the message must wait in the queue.
    let mut server = Server::start(&db);
    wait_for_listener(smtp).await;
    let mut client = RawClient::connect(smtp).await;
    assert!(client.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: survive\r\n\r\ndurable\r\n.\r\n").await;
    let queued = client.reply().await;
    assert!(queued.starts_with("250 2.6.0"), "{queued}");
    server.kill(); // SIGKILL: no shutdown code runs.

    let sink = Sink::start_on(SocketAddr::from(([127, 0, 0, 1], sink_port))).await;
    let _restarted = Server::start(&db);
    let delivered = sink.wait_for(1).await;
    assert_eq!(delivered[0].recipients, ["user@cloudmonkeys.xyz"]);
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains("durable"));
    let queue_id = queued.split(['<', '>']).nth(1).unwrap();
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains(&format!("id {queue_id}")));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.received().len(), 1, "delivered exactly once");
}

#[tokio::test]
async fn bad_cli_input_gets_a_clear_error_and_changes_nothing() {
    let db = TestDb::new().await;
    configure(&db, free_port(), free_port()).await;
    let store = db.store().await;
    let snapshot = || async {
        let connectors: Vec<(String, Vec<String>)> =
            sqlx::query_as("select name, bindings from receive_connectors order by name")
                .fetch_all(store.pool())
                .await
                .unwrap();
        let audit: i64 = sqlx::query_scalar("select count(*) from audit_log").fetch_one(store.pool()).await.unwrap();
        (connectors, audit)
    };
    let before = snapshot().await;
    // Arguments separated by '|' (names may contain spaces), and the error expected.
    for (args, expected) in [
        (
            "receive-connector|new|--name|X|--bindings|0.0.0.0:2527|--remote-ip-ranges|192.168.1.0/33",
            "not an IP address or CIDR range",
        ),
        ("receive-connector|new|--name|X|--bindings|0.0.0.0|--remote-ip-ranges|10.0.0.1", "is not a binding"),
        (
            "receive-connector|new|--name|smtp relay script|--bindings|0.0.0.0:2527|--remote-ip-ranges|10.0.0.1",
            "already exists",
        ),
        ("receive-connector|set|No Such Connector|--accept-any-recipient|true", "not found"),
        (
            "receive-connector|new|--name|X|--bindings|0.0.0.0:2527|--remote-ip-ranges|10.0.0.1/8",
            "did you mean 10.0.0.0/8",
        ),
        (
            "receive-connector|new|--name|X|--bindings|0.0.0.0:2527|--remote-ip-ranges|10.0.0.1|--tls-mode|implicit",
            "not available yet",
        ),
        ("accepted-domain|new|cloudmonkeys.xyz", "already an accepted domain"),
        ("accepted-domain|new|bad_domain!", "not a valid domain"),
        ("queue|retry|xyz", "not a queue id"),
    ] {
        let args: Vec<&str> = args.split('|').collect();
        let out = cli(&db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    }
    assert_eq!(snapshot().await, before, "nothing changed");
}
