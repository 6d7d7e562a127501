//! The real `postern` binary: durability across SIGKILL, and CLI validation.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use postern_tests::node::{Server, cli, cli_ok, configure, configure_domain_and_smart_host, wait_for_listener};
use postern_tests::sink::Sink;
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestDb, free_port};

#[tokio::test]
async fn a_message_acknowledged_with_250_survives_sigkill_and_is_delivered_after_restart() {
    let db = TestDb::new().await;
    let (smtp_port, sink_port) = (free_port(), free_port());
    configure(&db, smtp_port, sink_port);
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
    // A second copy would come from a later claim of the message (its outcome not
    // recorded, or the killed node's lease coming back). Once the outcome `done` is
    // recorded no claim can take it again, so the sink is counted after that, not after
    // a guess at how long a retry takes.
    let store = db.store().await;
    let id = uuid::Uuid::parse_str(queue_id).unwrap();
    postern_tests::eventually(Duration::from_secs(15), "the delivery recorded as done", || async {
        let state: String = sqlx::query_scalar("select state from messages where id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        state == "done"
    })
    .await;
    assert_eq!(sink.received().len(), 1, "delivered exactly once");
}

#[tokio::test]
async fn bad_cli_input_gets_a_clear_error_and_changes_nothing() {
    let db = TestDb::new().await;
    configure(&db, free_port(), free_port());
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
            "receive-connector|new|--name|X|--bindings|0.0.0.0:2527|--remote-ip-ranges|10.0.0.1|--auth-mechanisms|basic-auth-require-tls",
            "basic auth requires TLS here, but the connector has none",
        ),
        (
            "receive-connector|new|--name|X|--bindings|0.0.0.0:2527|--remote-ip-ranges|10.0.0.1|--permission-groups|authenticated",
            "needs an auth mechanism",
        ),
        (
            "receive-connector|set|SMTP Relay Script|--tls-certificate-file|/nonexistent.pem|--tls-key-file|/nonexistent.key",
            "cannot read /nonexistent.pem",
        ),
        ("service-account|new|--name|svc mailer|--address|svc@cloudmonkeys.xyz", "name: must be 1 to 64 characters"),
        ("service-account|new|--name|svc|--address|not-an-address", "address: address has no @domain part"),
        ("service-account|new|--name|svc|--address|svc@cloudmonkeys.xyz|--password-stdin", "expected the password"),
        ("service-account|set|nobody|--enabled|false", "service account \"nobody\" not found"),
        ("send-as|add|--account|nobody|--sender|smb1@cloudmonkeys.xyz", "service account \"nobody\" not found"),
        ("send-as|add|--account|nobody|--sender|*@", "sender:"),
        ("accepted-domain|new|cloudmonkeys.xyz", "already an accepted domain"),
        ("accepted-domain|new|bad_domain!", "not a valid domain"),
        ("queue|retry|xyz", "not a queue id"),
        ("tracking-log|--client-ip|192.168.1.300", "is not an IP address"),
        ("protocol-log|--session-id|nope", "is not a session id"),
        ("tracking-log|--start|yesterday", "neither a relative time"),
        (
            "what-if|--server|nope|--client-ip|1.2.3.4|--mail-from|a@b.example|--rcpt-to|x@y.example",
            "is not an IP:port",
        ),
    ] {
        let args: Vec<&str> = args.split('|').collect();
        let out = cli(&db, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(expected), "{args:?}: expected {expected:?} in {stderr}");
    }
    assert_eq!(snapshot().await, before, "nothing changed");
}

/// Runs swaks and returns (success, transcript).
fn swaks(args: &[&str]) -> (bool, String) {
    let out = Command::new("swaks").args(args).output().expect("swaks runs");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The seed's PART 2, step by step with the CLI, then validated the seed's way with
/// `swaks --tls --auth`.
#[tokio::test]
async fn seed_part_2_with_the_cli_and_swaks_gives_the_seeds_results() {
    postern_tests::require_tool!(Swaks);
    let db = TestDb::new().await;
    let (smtp_port, sink_port) = (free_port(), free_port());
    let binding = format!("127.0.0.1:{smtp_port}");
    configure_domain_and_smart_host(&db, sink_port);
    let new_connector = ["receive-connector", "new", "--name", "SMTP Auth Relay Script", "--bindings", &binding];
    let seed_options = [
        "--remote-ip-ranges",
        "127.0.0.1",
        "--auth-mechanisms",
        "tls,basic-auth,basic-auth-require-tls",
        "--permission-groups",
        "authenticated",
        "--require-tls",
        "true",
    ];
    cli_ok(&db, &[&new_connector[..], &seed_options[..]].concat(), None);
    let new_account = [
        "service-account",
        "new",
        "--name",
        "svc-mailer",
        "--address",
        "svc-mailer@cloudmonkeys.xyz",
        "--password-stdin",
    ];
    cli_ok(&db, &new_account, Some("Sup3r-Secret-Passw0rd\n"));
    cli_ok(&db, &["send-as", "add", "--account", "svc-mailer", "--sender", "smb1@cloudmonkeys.xyz"], None);
    let shown = cli(&db, &["receive-connector", "show", "SMTP Auth Relay Script"]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("TlsMode              : starttls_required"), "{shown}");
    assert!(shown.contains("AuthMechanisms       : login, plain"), "{shown}");
    // The what-if tester predicts the seed's results before any client connects.
    let what_if = |from: &str| {
        let args = ["what-if", "--server", &binding, "--client-ip", "127.0.0.1", "--tls", "--account", "svc-mailer"];
        let out = cli(&db, &[&args[..], &["--mail-from", from, "--rcpt-to", "someone@gmail.example"]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let allowed = what_if("smb1@cloudmonkeys.xyz");
    assert!(allowed.contains("connector: SMTP Auth Relay Script") && allowed.contains("250 2.6.0"), "{allowed}");
    assert!(what_if("smb2@cloudmonkeys.xyz").contains("550 5.7.60"));

    let sink = Sink::start_on(SocketAddr::from(([127, 0, 0, 1], sink_port))).await;
    let _server = Server::start(&db);
    wait_for_listener(SocketAddr::from(([127, 0, 0, 1], smtp_port))).await;
    let server = binding.as_str();
    let base = ["--server", server, "--to", "someone@gmail.example", "--tls", "--timeout", "20"];
    let auth = ["--auth", "LOGIN", "--auth-user", "svc-mailer", "--auth-password", "Sup3r-Secret-Passw0rd"];

    // The seed: "Test without credentials → 5.7.57".
    let (ok, transcript) = swaks(&[&base[..], &["--from", "smb1@cloudmonkeys.xyz"]].concat());
    assert!(!ok && transcript.contains("530 5.7.57"), "{transcript}");
    // "Test with credentials → accepted and delivered with sender smb1 (Send-As)".
    let (ok, transcript) = swaks(&[&base[..], &auth[..], &["--from", "smb1@cloudmonkeys.xyz"]].concat());
    assert!(ok && transcript.contains("235 2.7.0") && transcript.contains("250 2.6.0"), "{transcript}");
    let delivered = sink.wait_for(1).await;
    assert_eq!(delivered[0].sender, "smb1@cloudmonkeys.xyz");
    // Send-As outside the grants.
    let (ok, transcript) = swaks(&[&base[..], &auth[..], &["--from", "smb2@cloudmonkeys.xyz"]].concat());
    assert!(!ok && transcript.contains("550 5.7.60"), "{transcript}");
    // A wrong password.
    let wrong = ["--auth", "PLAIN", "--auth-user", "svc-mailer", "--auth-password", "wrong-password-123"];
    let (ok, transcript) = swaks(&[&base[..], &wrong[..], &["--from", "smb1@cloudmonkeys.xyz"]].concat());
    assert!(!ok && transcript.contains("535 5.7.8"), "{transcript}");
    assert_eq!(sink.received().len(), 1);

    // "What happened to the message from this client in the last ten minutes?" — one
    // command, and the same in Exchange's MSGTRK layout for existing scripts.
    tokio::time::sleep(Duration::from_millis(500)).await; // tracking is written in batches
    let out = cli(&db, &["tracking-log", "--client-ip", "127.0.0.1", "--start", "-10m"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for expected in ["RECEIVE", "SEND", "REJECT", "smb1@cloudmonkeys.xyz", "530 5.7.57", "550 5.7.60"] {
        assert!(table.contains(expected), "{expected} missing in:\n{table}");
    }
    let out = cli(&db, &["tracking-log", "--account", "svc-mailer", "--event-id", "RECEIVE", "--csv"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(csv.contains("#Fields: date-time,client-ip,client-hostname,server-ip,"), "{csv}");
    let rows: Vec<&str> = csv.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(
        rows[0].contains(",RECEIVE,") && rows[0].contains("S:Account=svc-mailer") && rows[0].contains("S:Tls=TLS1.3")
    );
}

/// The "done when": a script sets up the seed's two connectors, the service
/// account and its Send-As grant with curl alone, and re-runs safely.
#[tokio::test]
async fn the_seed_is_provisioned_with_curl_alone_and_a_rerun_changes_nothing() {
    let db = TestDb::new().await;
    let out = cli(&db, &["api-token", "new", "--name", "provisioning", "--scope", "write"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let token = stdout.lines().find(|l| l.starts_with("pst_")).expect("the token is printed").to_string();
    let (http_port, anonymous_port, auth_port, sink_port) = (free_port(), free_port(), free_port(), free_port());
    let sink = Sink::start_on(SocketAddr::from(([127, 0, 0, 1], sink_port))).await;
    let _server = Server::start_with_http(&db, http_port);
    wait_for_listener(SocketAddr::from(([127, 0, 0, 1], http_port))).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("api/provision-seed.sh");
    let run = || {
        let out = Command::new("bash")
            .arg(&script)
            .env("POSTERN_URL", format!("http://127.0.0.1:{http_port}"))
            .env("POSTERN_TOKEN", &token)
            .env("SVC_MAILER_PASSWORD", "Sup3r-Secret-Passw0rd")
            .env("ANONYMOUS_BINDING", format!("127.0.0.1:{anonymous_port}"))
            .env("ANONYMOUS_CLIENTS", "127.0.0.1")
            .env("AUTH_BINDING", format!("127.0.0.1:{auth_port}"))
            .env("AUTH_CLIENTS", "127.0.0.0/8")
            .env("SMART_HOST", format!("127.0.0.1:{sink_port}"))
            .env("SMART_HOST_TLS", "none")
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        stdout.lines().map(|l| l.split_once(' ').unwrap().0.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(run(), ["201"; 6], "the first run creates the six objects");
    assert_eq!(run(), ["200"; 6], "the second run finds them as they should be");
    let listed = cli(&db, &["receive-connector", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.matches("SMTP Relay Script").count(), 1, "{listed}");
    assert_eq!(listed.matches("SMTP Auth Relay Script").count(), 1, "{listed}");

    // The result relays the seed's way: anonymous from the allowed address...
    wait_for_listener(SocketAddr::from(([127, 0, 0, 1], anonymous_port))).await;
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], anonymous_port))).await;
    assert!(client.start_transaction("scanner@cloudmonkeys.xyz", "smb1@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    assert!(client.command("Subject: Test\r\n\r\nTest\r\n.").await.starts_with("250"));
    // ...and authenticated as svc-mailer sending as smb1.
    if postern_tests::tools::require(postern_tests::tools::Tool::Swaks) {
        let server = format!("127.0.0.1:{auth_port}");
        let args = ["--server", &server, "--to", "someone@gmail.example", "--tls", "--from", "smb1@cloudmonkeys.xyz"];
        let auth = ["--auth", "LOGIN", "--auth-user", "svc-mailer", "--auth-password", "Sup3r-Secret-Passw0rd"];
        let (ok, transcript) = swaks(&[&args[..], &auth[..]].concat());
        assert!(ok && transcript.contains("250 2.6.0"), "{transcript}");
        sink.wait_for(2).await;
    } else {
        sink.wait_for(1).await;
    }
}
