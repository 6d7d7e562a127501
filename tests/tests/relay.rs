//! The relay engine end to end: real server, real Postgres, real SMTP clients, a real
//! SMTP sink as the smart host.

use std::net::SocketAddr;

use lettre::message::Mailbox;
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use postern::admin::ReceiveConnectorChanges;
use postern_tests::sink::Sink;
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestApp, TestDb, free_port, seed_anonymous_relay, test_settings};

use postern_tests::seeded_anonymous_app as seeded_app;

fn lettre_client(addr: SocketAddr) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .tls(Tls::None)
        .build()
}

fn message(from: &str, to: &str, subject: &str) -> Message {
    Message::builder()
        .from(from.parse::<Mailbox>().unwrap())
        .to(to.parse::<Mailbox>().unwrap())
        .subject(subject)
        .body(String::from("Test"))
        .unwrap()
}

#[tokio::test]
async fn seed_anonymous_relay_is_queued_delivered_and_tracked() {
    let (app, sink, addr) = seeded_app().await;
    let response = lettre_client(addr)
        .send(message("test@cloudmonkeys.xyz", "user@cloudmonkeys.xyz", "Anonymous Test"))
        .await
        .unwrap();
    let reply = response.message().collect::<Vec<_>>().join(" ");
    assert_eq!(response.code().to_string(), "250");
    assert!(reply.contains("Queued mail for delivery"), "{reply}");

    let delivered = sink.wait_for(1).await;
    assert_eq!(delivered[0].sender, "test@cloudmonkeys.xyz");
    assert_eq!(delivered[0].recipients, ["user@cloudmonkeys.xyz"]);
    let text = String::from_utf8_lossy(&delivered[0].raw);
    assert!(text.starts_with("Received: from "), "our trace header comes first: {text}");
    assert!(text.contains("(connector \"SMTP Relay Script\"; no TLS; anonymous)"));
    assert!(text.contains("Subject: Anonymous Test"));

    // Get-MessageTrackingLog: AuthSource = Anonymous, Connector = SMTP Relay Script.
    let received = app.wait_for_events("RECEIVE", 1).await;
    assert_eq!(received[0].connector.as_deref(), Some("SMTP Relay Script"));
    assert_eq!(received[0].auth_as.as_deref(), Some("anonymous"));
    assert_eq!(received[0].subject.as_deref(), Some("Anonymous Test"));
    let sent = app.wait_for_events("SEND", 1).await;
    assert_eq!(sent[0].queue_id, received[0].queue_id);
    assert!(sent[0].recipient_status[0].starts_with("250"), "{:?}", sent[0].recipient_status);
    app.stop().await;
}

#[tokio::test]
async fn unlisted_client_ip_is_greeted_with_554_and_recorded() {
    let (app, sink, addr) = seeded_app().await;
    let mut client = RawClient::connect_from("127.0.0.2", addr).await;
    assert_eq!(client.reply().await, "554 5.7.1 relay.test Access denied");
    assert!(client.command("EHLO other.test").await.starts_with("503"));
    assert_eq!(client.reply().await, "EOF", "the server closes after the next command");
    let rejects = app.wait_for_events("REJECT", 1).await;
    assert_eq!(rejects[0].client_ip.map(|n| n.addr().to_string()).as_deref(), Some("127.0.0.2"));
    assert!(sink.received().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn external_recipient_without_relay_right_gets_5_7_54_and_with_it_is_delivered() {
    let (app, sink, addr) = seeded_app().await;
    let mut client = RawClient::connect(addr).await;
    let reply = client.start_transaction("test@cloudmonkeys.xyz", "someone@gmail.example").await;
    assert_eq!(reply, "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain");
    assert!(client.command("QUIT").await.starts_with("221"));

    let changes = ReceiveConnectorChanges { accept_any_recipient: Some(true), ..Default::default() };
    app.admin.set_receive_connector("SMTP Relay Script", &changes, None).await.unwrap();
    // The change reaches the running engine through NOTIFY; poll the next connections.
    let mut accepted = false;
    for _ in 0..100 {
        let mut client = RawClient::connect(addr).await;
        if client.start_transaction("test@cloudmonkeys.xyz", "someone@gmail.example").await.starts_with("250") {
            assert!(client.command("DATA").await.starts_with("354"));
            client.send(b"Subject: external\r\n\r\nhello\r\n.\r\n").await;
            assert!(client.reply().await.starts_with("250 2.6.0"));
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(accepted, "relay right never took effect");
    assert_eq!(sink.wait_for(1).await[0].recipients, ["someone@gmail.example"]);
    app.stop().await;
}

#[tokio::test]
async fn limits_are_enforced_with_the_documented_replies() {
    let (app, _sink, addr) = seeded_app().await;
    let changes = ReceiveConnectorChanges {
        max_message_size: Some(2048),
        max_recipients: Some(2),
        connection_timeout_secs: Some(1),
        ..Default::default()
    };
    app.admin.set_receive_connector("SMTP Relay Script", &changes, None).await.unwrap();
    // The change reaches the engine through NOTIFY; the next sessions advertise it.
    let mut client = loop {
        let mut c = RawClient::connect(addr).await;
        c.reply().await;
        c.send(b"EHLO client.test\r\n").await;
        if c.reply_lines().await.iter().any(|l| l == "250-SIZE 2048") {
            break c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // SIZE= beyond the limit is refused at MAIL (RFC 1870).
    assert!(client.command("MAIL FROM:<a@cloudmonkeys.xyz> SIZE=4096").await.starts_with("552 5.3.4"));
    assert!(client.command("MAIL FROM:<a@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<b@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<c@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<d@cloudmonkeys.xyz>").await.starts_with("452 4.5.3"));
    // A streamed body beyond the limit is refused after its terminator.
    assert!(client.command("DATA").await.starts_with("354"));
    let body = [b"x".repeat(70), b"\r\n".to_vec()].concat().repeat(40);
    client.send(&[b"Subject: big\r\n\r\n".as_slice(), &body, b".\r\n"].concat()).await;
    assert!(client.reply().await.starts_with("552 5.3.4"));
    // Idle past the connection timeout: 451 4.7.0 and the connection closes.
    assert_eq!(client.reply().await, "451 4.7.0 Timeout waiting for client input");
    assert_eq!(client.reply().await, "EOF");
    assert_eq!(app.admin.store().queue_depth().await.unwrap(), 0);
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_per_source_limit_get_421() {
    let (app, _sink, addr) = seeded_app().await;
    let changes = ReceiveConnectorChanges { max_connections_per_source: Some(2), ..Default::default() };
    app.admin.set_receive_connector("SMTP Relay Script", &changes, None).await.unwrap();
    let mut refused = false;
    for _ in 0..100 {
        let mut first = RawClient::connect(addr).await;
        let mut second = RawClient::connect(addr).await;
        assert!(first.reply().await.starts_with("220"));
        assert!(second.reply().await.starts_with("220"));
        let mut third = RawClient::connect(addr).await;
        if third.reply().await == "421 4.3.2 Too many connections, try again later" {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused);
    app.stop().await;
}

#[tokio::test]
async fn smuggled_end_of_data_never_makes_a_second_message() {
    let (app, sink, addr) = seeded_app().await;
    let mut client = RawClient::connect(addr).await;
    assert!(client.start_transaction("a@cloudmonkeys.xyz", "b@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client
        .send(b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@cloudmonkeys.xyz>\r\nRCPT TO:<victim@cloudmonkeys.xyz>\r\nDATA\r\nSubject: smuggled\r\n\r\nsecond\r\n.\r\nNOOP\r\n")
        .await;
    assert!(client.reply().await.starts_with("550 5.5.2"), "the whole message is refused");
    assert_eq!(client.reply().await, "250 2.0.0 OK", "the NOOP after the real terminator is the next command");
    assert_eq!(app.admin.store().queue_depth().await.unwrap(), 0);
    assert!(sink.received().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn commands_sent_before_the_greeting_are_refused() {
    let sink = Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    seed_anonymous_relay(&db.store().await, port, sink.addr).await;
    let settings = postern::settings::Settings { pregreet_wait_ms: 300, ..test_settings(&db) };
    let app = TestApp::start(db, settings).await;
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    client.send(b"EHLO eager.test\r\nMAIL FROM:<a@cloudmonkeys.xyz>\r\n").await;
    assert!(client.reply().await.starts_with("554 5.5.1"));
    assert_eq!(client.reply().await, "EOF");
    app.stop().await;
}

#[tokio::test]
async fn deferred_recipients_are_retried_and_failed_ones_bounce_to_the_sender() {
    let (app, sink, addr) = seeded_app().await;
    sink.next_data_reply("451 4.3.0 try again later");
    sink.reject_rcpt("nobody@", "550 5.1.1 <nobody@cloudmonkeys.xyz>: Recipient address rejected");
    let mut client = RawClient::connect(addr).await;
    assert!(client.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("RCPT TO:<nobody@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: retry me\r\n\r\nbody\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));

    // First attempt: the shared transaction fails at RCPT for nobody@, so each recipient
    // is tried on its own: user@ meets the scripted 451 (deferred), nobody@ the 550.
    let deferred = app.wait_for_events("DEFER", 1).await;
    assert!(deferred[0].recipient_status[0].contains("451"), "{:?}", deferred[0].recipient_status);
    let failed = app.wait_for_events("FAIL", 1).await;
    assert_eq!(failed[0].recipients, ["nobody@cloudmonkeys.xyz"]);

    // The retry (1 s schedule in tests) delivers user@ once; the DSN goes to the sender.
    let messages = sink.wait_for(2).await;
    let original: Vec<_> = messages.iter().filter(|m| !m.sender.is_empty()).collect();
    let dsn: Vec<_> = messages.iter().filter(|m| m.sender.is_empty()).collect();
    assert_eq!(original.len(), 1);
    assert_eq!(original[0].recipients, ["user@cloudmonkeys.xyz"]);
    assert_eq!(dsn.len(), 1, "one DSN, sent with the null reverse-path");
    assert_eq!(dsn[0].recipients, ["app@cloudmonkeys.xyz"]);
    let report = String::from_utf8_lossy(&dsn[0].raw);
    assert!(report.contains("report-type=delivery-status"));
    assert!(report.contains("Final-Recipient: rfc822; nobody@cloudmonkeys.xyz"));
    assert!(report.contains("Status: 5.1.1"));
    assert_eq!(app.wait_for_events("DSN", 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_database_outage_mid_session_answers_451_and_queues_nothing() {
    let (app, sink, addr) = seeded_app().await;
    let mut client = RawClient::connect(addr).await;
    assert!(client.start_transaction("a@cloudmonkeys.xyz", "b@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    let admin_url = postern_tests::database_url("postgres");
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.unwrap();
    let db_name = app.db.name.clone();
    sqlx::query(sqlx::AssertSqlSafe(format!("alter database {db_name} allow_connections false")))
        .execute(&mut pg)
        .await
        .unwrap();
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
        .bind(&db_name)
        .execute(&mut pg)
        .await
        .unwrap();
    client.send(b"Subject: during outage\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(client.reply().await, "451 4.3.0 Temporary server error, please try again later");
    sqlx::query(sqlx::AssertSqlSafe(format!("alter database {db_name} allow_connections true")))
        .execute(&mut pg)
        .await
        .unwrap();
    // Nothing half-written; and the node recovers without a restart.
    let store = app.db.store().await;
    let count: i64 = sqlx::query_scalar("select count(*) from messages").fetch_one(store.pool()).await.unwrap();
    assert_eq!(count, 0);
    assert!(client.command("MAIL FROM:<a@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("RCPT TO:<b@cloudmonkeys.xyz>").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: after outage\r\n\r\nbody\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));
    assert_eq!(sink.wait_for(1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn the_message_rate_per_source_is_enforced_with_421_4_4_2() {
    let (app, sink, addr) = seeded_app().await;
    let changes = ReceiveConnectorChanges { max_messages_per_minute_per_source: Some(2), ..Default::default() };
    app.admin.set_receive_connector("SMTP Relay Script", &changes, None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await; // let the NOTIFY reload land
    let mut client = RawClient::connect(addr).await;
    assert!(client.reply().await.starts_with("220"));
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    for n in 0..3 {
        let reply = client.command("MAIL FROM:<a@cloudmonkeys.xyz>").await;
        if n == 2 {
            assert_eq!(reply, "421 4.4.2 Message submission rate for this client has exceeded the configured limit");
            assert_eq!(client.reply().await, "EOF");
            break;
        }
        assert!(reply.starts_with("250"), "{reply}");
        assert!(client.command("RCPT TO:<b@cloudmonkeys.xyz>").await.starts_with("250"));
        assert!(client.command("DATA").await.starts_with("354"));
        client.send(b"Subject: rate\r\n\r\nx\r\n.\r\n").await;
        assert!(client.reply().await.starts_with("250 2.6.0"));
    }
    assert_eq!(sink.wait_for(2).await.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_send_connector_without_smart_hosts_delivers_by_mx() {
    use postern::admin::SendConnectorChanges;
    use postern::app::Dependencies;
    use postern::delivery::mx::StaticResolver;
    use std::sync::Arc;

    let sink = Sink::start().await;
    let db = TestDb::new().await;
    let port = free_port();
    let store = db.store().await;
    seed_anonymous_relay(&store, port, sink.addr).await;
    let admin = postern::admin::Admin::new(store, "test", "relay.test");
    admin
        .new_send_connector(&SendConnectorChanges {
            name: Some("Partner by MX".into()),
            address_spaces: Some(vec!["partner.example".into()]),
            smart_hosts: Some(vec![]),
            port: Some(sink.addr.port()),
            tls_policy: Some("none".into()),
            // The test's MX is this host: loopback, allowed here explicitly.
            allow_private_destinations: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .set_receive_connector(
            "SMTP Relay Script",
            &ReceiveConnectorChanges { accept_any_recipient: Some(true), ..Default::default() },
            None,
        )
        .await
        .unwrap();
    let settings = test_settings(&db);
    let mut deps = Dependencies::production(&settings).unwrap();
    let mx = StaticResolver {
        hosts: [("partner.example".to_string(), vec!["127.0.0.1".to_string()])].into(),
        ..StaticResolver::default()
    };
    deps.resolver = Arc::new(mx);
    let app = TestApp::start_with(db, settings, deps).await;

    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert!(client.start_transaction("app@cloudmonkeys.xyz", "bob@partner.example").await.starts_with("250"));
    // A domain without a send connector of its own takes the '*' smart host.
    assert!(client.command("RCPT TO:<carol@unknown.example>").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: mx\r\n\r\nx\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));
    let delivered = sink.wait_for(2).await;
    let mut recipients: Vec<&str> = delivered.iter().flat_map(|m| m.recipients.iter().map(String::as_str)).collect();
    recipients.sort();
    assert_eq!(recipients, ["bob@partner.example", "carol@unknown.example"]);
    let sends = app.wait_for_events("SEND", 2).await;
    let routes: Vec<_> = sends.iter().map(|e| e.connector.clone().unwrap_or_default()).collect();
    assert!(routes.contains(&"Partner by MX".to_string()) && routes.contains(&"Smart host".to_string()), "{routes:?}");
    app.stop().await;
}

#[tokio::test]
async fn an_expired_message_fails_and_the_sender_gets_a_dsn_event() {
    let sink = Sink::start().await;
    let dead_port = free_port(); // nothing listens: every attempt is deferred
    let db = TestDb::new().await;
    let port = free_port();
    seed_anonymous_relay(&db.store().await, port, SocketAddr::from(([127, 0, 0, 1], dead_port))).await;
    let settings = postern::settings::Settings { message_expiry_secs: 2, ..test_settings(&db) };
    let app = TestApp::start(db, settings).await;
    let mut client = RawClient::connect(SocketAddr::from(([127, 0, 0, 1], port))).await;
    assert!(client.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(client.command("DATA").await.starts_with("354"));
    client.send(b"Subject: expire\r\n\r\nx\r\n.\r\n").await;
    assert!(client.reply().await.starts_with("250 2.6.0"));
    // Before it expires, the message is tried and deferred: a temporary failure for its
    // recipient, on the message that then fails.
    let deferred = app.wait_for_events("DEFER", 1).await;
    assert_eq!(deferred[0].recipients, ["user@cloudmonkeys.xyz"]);
    assert!(deferred[0].recipient_status[0].starts_with('4'), "{:?}", deferred[0].recipient_status);
    let failed = app.wait_for_events("FAIL", 1).await;
    assert!(failed[0].recipient_status[0].contains("5.4.7 Message expired"), "{:?}", failed[0].recipient_status);
    assert_eq!(deferred[0].queue_id, failed[0].queue_id, "the deferred message is the one that expired");
    assert!(deferred[0].id < failed[0].id, "deferred first, failed at expiry");
    let dsn = app.wait_for_events("DSN", 1).await;
    assert_eq!(dsn[0].recipients, ["app@cloudmonkeys.xyz"]);
    assert!(sink.received().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_bare_line_feed_never_splits_one_command_line_into_two() {
    let (app, _sink, addr) = seeded_app().await;
    let mut client = RawClient::connect(addr).await;
    assert!(client.reply().await.starts_with("220"));
    assert!(client.command("EHLO client.test").await.starts_with("250"));
    // Were LF a line end, MAIL would be accepted as a second command.
    let refused = client.command("RSET\nMAIL FROM:<a@cloudmonkeys.xyz>").await;
    assert_eq!(refused, "500 5.5.2 Line must end with CRLF");
    assert!(client.command("RCPT TO:<b@cloudmonkeys.xyz>").await.starts_with("503"), "no transaction was started");
    assert!(client.command("MAIL FROM:<a@cloudmonkeys.xyz>").await.starts_with("250"));
    app.stop().await;
}
