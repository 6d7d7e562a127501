//! Live configuration and the live tracking stream: SQL-only changes enforced on the next
//! connection, listeners following bindings, a busy port isolated, API tokens, and the
//! server-sent event stream resuming without gaps or duplicates.

use std::net::SocketAddr;
use std::time::Duration;

use postern::admin::ReceiveConnectorChanges;
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestApp, free_port, http_get};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use postern_tests::seeded_anonymous_app as seeded_app;

async fn greeting_from(ip: &str, addr: SocketAddr) -> String {
    RawClient::connect_from(ip, addr).await.reply().await
}

#[tokio::test]
async fn a_connector_changed_by_sql_alone_is_enforced_on_the_next_connection() {
    let (app, _sink, addr) = seeded_app().await;
    assert!(greeting_from("127.0.0.2", addr).await.starts_with("554 5.7.1"));
    let pool = app.admin.store().pool().clone();
    sqlx::query("update receive_connectors set remote_ip_ranges = '{127.0.0.0/8}' where name = 'SMTP Relay Script'")
        .execute(&pool)
        .await
        .unwrap();
    app.wait_for_current_config().await;
    assert!(greeting_from("127.0.0.2", addr).await.starts_with("220"), "widened without restart");
    sqlx::query("update receive_connectors set remote_ip_ranges = '{127.0.0.1/32}' where name = 'SMTP Relay Script'")
        .execute(&pool)
        .await
        .unwrap();
    app.wait_for_current_config().await;
    assert!(greeting_from("127.0.0.2", addr).await.starts_with("554 5.7.1"), "tightened without restart");
    let generation = app.status().await["config_generation"].as_i64().unwrap();
    let received = app.wait_for_events("REJECT", 2).await;
    assert_eq!(received.last().unwrap().config_generation, Some(generation), "events name the rules that applied");
    app.stop().await;
}

#[tokio::test]
async fn bindings_start_and_stop_listeners_and_a_busy_port_leaves_the_rest_running() {
    let (app, _sink, addr) = seeded_app().await;
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_port = busy.local_addr().unwrap().port();
    let new_port = free_port();
    for (name, port) in [("Busy", busy_port), ("Scanner", new_port)] {
        let changes = ReceiveConnectorChanges {
            name: Some(name.into()),
            bindings: Some(vec![format!("127.0.0.1:{port}")]),
            remote_ip_ranges: Some(vec!["127.0.0.1".into()]),
            permission_groups: Some(vec!["anonymous".into()]),
            ..Default::default()
        };
        app.admin.new_receive_connector(&changes).await.unwrap();
    }
    app.wait_for_current_config().await;
    let scanner = SocketAddr::from(([127, 0, 0, 1], new_port));
    assert!(RawClient::connect(scanner).await.reply().await.starts_with("220"), "new binding listens");
    assert!(RawClient::connect(addr).await.reply().await.starts_with("220"), "the others keep working");
    let status = app.status().await;
    let listeners = status["listeners"].as_array().unwrap();
    let failed = listeners.iter().find(|l| l["binding"] == format!("127.0.0.1:{busy_port}")).unwrap();
    assert!(failed["error"].as_str().is_some_and(|e| !e.is_empty()), "the failure is visible: {status}");

    app.admin.remove_receive_connector("Scanner", None).await.unwrap();
    app.wait_for_current_config().await;
    postern_tests::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(scanner).is_err()).await;
    drop(busy);
    app.stop().await;
}

#[tokio::test]
async fn the_api_needs_a_live_token() {
    let (app, _sink, _) = seeded_app().await;
    let (code, body) = http_get(app.http, "/api/v1/status", None).await;
    assert_eq!(code, 401);
    assert!(body.contains("\"status\":401") && body.contains("API token is required"), "{body}");
    assert_eq!(http_get(app.http, "/api/v1/status", Some("pst_not-a-token")).await.0, 401);
    let (_, token) = app.admin.new_api_token("monitoring", "read").await.unwrap();
    assert!(token.starts_with("pst_") && token.len() > 40);
    assert_eq!(http_get(app.http, "/api/v1/status", Some(&token)).await.0, 200);
    app.admin.revoke_api_token("monitoring").await.unwrap();
    assert_eq!(http_get(app.http, "/api/v1/status", Some(&token)).await.0, 401, "revoked at once");
    assert!(app.admin.new_api_token("x", "admin").await.is_err(), "unknown scope refused");
    assert_eq!(http_get(app.http, "/healthz", None).await.0, 200, "health checks need no token");
    app.stop().await;
}

/// An open server-sent event stream, read line by line.
struct EventStream {
    reader: BufReader<tokio::net::TcpStream>,
}

impl EventStream {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<i64>) -> Self {
        Self::open_with(app, &app.token, query, last_event_id).await
    }

    async fn open_with(app: &TestApp, token: &str, query: &str, last_event_id: Option<i64>) -> Self {
        let mut stream = tokio::net::TcpStream::connect(app.http).await.unwrap();
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        let request = format!(
            "GET /api/v1/tracking/stream?{query} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n{resume}\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).await.unwrap();
        assert!(status.contains(" 200 "), "{status}");
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await.unwrap();
            if header.trim().is_empty() {
                break;
            }
        }
        Self { reader }
    }

    /// The next `tracking` event: (id, data). Skips keep-alives and chunk framing.
    async fn next(&mut self) -> (i64, serde_json::Value) {
        let (id, kind, data) = self.next_any().await;
        assert_eq!(kind, "tracking", "unexpected event {kind}: {data}");
        (id.expect("events carry an id"), serde_json::from_str(&data).unwrap())
    }

    /// The next event of any kind: (id, kind, data).
    async fn next_any(&mut self) -> (Option<i64>, String, String) {
        let (mut id, mut kind) = (None, None);
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(15), self.reader.read_line(&mut line)).await;
            assert!(read.expect("an event within 15 s").unwrap() > 0, "stream closed");
            let line = line.trim_end();
            if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("event: ") {
                kind = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                return (id, kind.unwrap_or_default(), v.to_string());
            }
        }
    }
}

async fn send(addr: SocketAddr, subject: &str) {
    let mut c = RawClient::connect(addr).await;
    assert!(c.start_transaction("app@cloudmonkeys.xyz", "user@cloudmonkeys.xyz").await.starts_with("250"));
    assert!(c.command("DATA").await.starts_with("354"));
    assert!(c.command(&format!("Subject: {subject}\r\n\r\nx\r\n.")).await.starts_with("250"));
}

#[tokio::test]
async fn the_tracking_stream_delivers_live_events_and_resumes_without_gaps_or_duplicates() {
    let (app, _sink, addr) = seeded_app().await;
    let mut stream = EventStream::open(&app, "event_id=RECEIVE", None).await;
    send(addr, "one").await;
    let (first, event) = stream.next().await;
    assert_eq!(event["subject"], "one");
    assert_eq!(event["event_id"], "RECEIVE");
    drop(stream);

    // Missed while disconnected.
    send(addr, "two").await;
    send(addr, "three").await;
    app.wait_for_events("RECEIVE", 3).await;
    let mut resumed = EventStream::open(&app, "event_id=RECEIVE", Some(first)).await;
    let (second, two) = resumed.next().await;
    let (third, three) = resumed.next().await;
    assert_eq!((two["subject"].as_str(), three["subject"].as_str()), (Some("two"), Some("three")));
    send(addr, "four").await;
    let (fourth, four) = resumed.next().await;
    assert_eq!(four["subject"], "four", "live again after the catch-up, nothing twice");
    assert!(first < second && second < third && third < fourth);
    app.stop().await;
}

#[tokio::test]
async fn revoking_a_token_ends_its_open_streams() {
    let (app, _sink, _addr) = seeded_app().await;
    let (_, token) = app.admin.new_api_token("dashboard", "read").await.unwrap();
    let mut stream = EventStream::open_with(&app, &token, "", None).await;
    app.admin.revoke_api_token("dashboard").await.unwrap();
    let (_, kind, data) = stream.next_any().await;
    assert_eq!((kind.as_str(), data.as_str()), ("revoked", "the API token was revoked"));
    app.stop().await;
}
