//! Live configuration and the live tracking stream: SQL-only changes enforced on the next
//! connection, listeners following bindings, a busy port isolated, API tokens, and the
//! server-sent event stream resuming without gaps or duplicates.

use std::net::SocketAddr;
use std::time::Duration;

use postern::admin::ReceiveConnectorChanges;
use postern_tests::smtp_client::RawClient;
use postern_tests::{TestApp, eventually, free_port, http_get};
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
async fn a_failed_reload_is_retried_until_the_new_rules_are_enforced() {
    let (app, _sink, addr) = seeded_app().await;
    let pool = app.admin.store().pool().clone();
    assert!(greeting_from("127.0.0.1", addr).await.starts_with("220"));
    assert_eq!(http_get(app.http, "/readyz", None).await.0, 200);
    // The next reload fails (a table it reads is gone), triggered by a real change.
    sqlx::query("alter table accepted_domains rename to accepted_domains_away").execute(&pool).await.unwrap();
    sqlx::query("update receive_connectors set remote_ip_ranges = '{127.0.0.9/32}' where name = 'SMTP Relay Script'")
        .execute(&pool)
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "readyz reports the stale configuration", || async {
        let (code, body) = http_get(app.http, "/readyz", None).await;
        code == 503 && body.contains("\"configuration_current\":false")
    })
    .await;
    // The old rule is still in force: nothing has loaded the change.
    assert!(greeting_from("127.0.0.1", addr).await.starts_with("220"), "the failed reload swapped nothing in");
    let (_, metrics) = http_get(app.http, "/metrics", None).await;
    let stale = metrics.lines().find(|l| l.starts_with("postern_config_stale_seconds ")).unwrap_or_default();
    assert!(stale.split(' ').nth(1).and_then(|v| v.parse::<f64>().ok()).is_some_and(|v| v > 0.0), "{stale:?}");
    // The cause goes away without any NOTIFY (a rename fires no trigger): only the retry
    // can bring the change in.
    sqlx::query("alter table accepted_domains_away rename to accepted_domains").execute(&pool).await.unwrap();
    eventually(Duration::from_secs(15), "the retried reload enforces the new range", || async {
        greeting_from("127.0.0.1", addr).await.starts_with("554 5.7.1")
    })
    .await;
    eventually(Duration::from_secs(5), "readyz is green again", || async {
        http_get(app.http, "/readyz", None).await.0 == 200
    })
    .await;
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
    assert!(app.admin.new_api_token("x", "owner").await.is_err(), "unknown scope refused");
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
        let stream = tokio::net::TcpStream::connect(app.http).await.unwrap();
        Self::open_on(stream, token, query, last_event_id).await
    }

    /// Opens the stream on a connection already made (one with its own socket options).
    async fn open_on(mut stream: tokio::net::TcpStream, token: &str, query: &str, last_event_id: Option<i64>) -> Self {
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

    /// Reads to the end of the response (its last, empty chunk) and fails if another
    /// event comes first.
    async fn ends(&mut self) {
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(15), self.reader.read_line(&mut line)).await;
            let read = read.expect("the stream ends within 15 s").unwrap();
            if read == 0 || line.trim_end() == "0" {
                return;
            }
            assert!(!line.starts_with("data: "), "an event after the stream should have ended: {line}");
        }
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

/// Writes `count` events of `event_id` in one statement, each with a detail of at least
/// `detail_bytes`, and announces them as the node's own log writer does
/// (`pg_notify('postern_tracking', ..)` in the insert; see `raw_event` in tracking.rs).
/// Returns the first and the last id, which are consecutive.
async fn bulk_events(pool: &sqlx::PgPool, event_id: &str, count: i64, detail_bytes: i32) -> (i64, i64) {
    let (first, last): (i64, i64) = sqlx::query_as(
        "with e as (insert into tracking_events (event_id, source, detail) \
         select $1, 'SMTP', 'bulk ' || n || ' ' || repeat('x', $3) from generate_series(1, $2) n returning id), \
         announced as (select pg_notify('postern_tracking', count(*)::text) from e) \
         select min(id), max(id) from e, announced",
    )
    .bind(event_id)
    .bind(count)
    .bind(detail_bytes)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(last - first + 1, count, "ids of one insert are consecutive");
    (first, last)
}

/// A client resuming with more than 10,000 events missed (`CATCH_UP` in
/// http/stream.rs) gets the first 10,000 in order, then `event: lagged` naming the last
/// of them, and the stream ends instead of going live (which would skip the rest);
/// resuming from that id gets the rest without a gap or a repeat, then live events.
/// Fails if the catch-up is not cut, names the wrong id, or the resumed page overlaps
/// or skips.
#[tokio::test]
async fn a_catch_up_of_more_than_ten_thousand_events_says_lagged_and_resumes_where_it_stopped() {
    const MISSED: i64 = 10_050;
    const PAGE: i64 = 10_000;
    let db = postern_tests::TestDb::new().await;
    // Written before the node starts, so its feed starts after them: every one of them is
    // in the catch-up and none comes live.
    let (first, last) = bulk_events(db.store().await.pool(), "RECEIVE", MISSED, 0).await;
    let settings = postern_tests::test_settings(&db);
    let app = TestApp::start(db, settings).await;

    let mut stream = EventStream::open(&app, "event_id=RECEIVE", Some(first - 1)).await;
    for expected in first..first + PAGE {
        assert_eq!(stream.next().await.0, expected, "the catch-up in id order");
    }
    let (_, kind, data) = stream.next_any().await;
    let page_end = first + PAGE - 1;
    assert_eq!(kind, "lagged", "{data}");
    assert_eq!(data, format!("more events are waiting; reconnect with Last-Event-ID {page_end}"));
    stream.ends().await;

    let mut resumed = EventStream::open(&app, "event_id=RECEIVE", Some(page_end)).await;
    for expected in page_end + 1..=last {
        assert_eq!(resumed.next().await.0, expected, "the rest, from where the page ended");
    }
    let (live, _) = bulk_events(app.admin.store().pool(), "RECEIVE", 1, 0).await;
    let (id, event) = resumed.next().await;
    assert_eq!((id, event["detail"].as_str()), (live, Some("bulk 1 ")), "then live, nothing twice");
    app.stop().await;
}

/// A subscriber that stops reading while more events are published than the fan-out
/// holds for it (4096, `FAN_OUT` in tracking/feed.rs) is told `event: lagged` with the
/// last id it was sent, and its stream ends; resuming with that id goes on at the very
/// next event. Its connection has a small receive buffer and the events are large, so
/// the node's writes stall long before the 12,000 events are out. Fails if a stalled
/// reader is never told (no `lagged`: it would silently miss events), or is told to
/// resume from an id other than the last it got.
#[tokio::test]
async fn a_subscriber_that_stops_reading_is_told_it_lagged_and_resumes_without_a_gap() {
    const PUBLISHED: i64 = 12_000;
    const DETAIL_BYTES: i32 = 2_000;
    let (app, _sink, _addr) = seeded_app().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let connection = socket.connect(app.http).await.unwrap();
    let mut stalled = EventStream::open_on(connection, &app.token, "event_id=RECEIVE", None).await;

    let (first, _) = bulk_events(app.admin.store().pool(), "RECEIVE", PUBLISHED, DETAIL_BYTES).await;
    let (marker, _) = bulk_events(app.admin.store().pool(), "DSN", 1, 0).await;
    // A stream resuming just before the marker gets it only once the feed has published
    // it (from the catch-up, which stops at the feed's position, or live), and the feed
    // publishes in id order: then every bulk event has been offered to the stalled
    // stream. Such a watcher may itself be told it lagged while the burst is still being
    // published (it skips the bulk, but 12,000 events can outrun it), so ask again.
    postern_tests::wait_for(Duration::from_secs(30), "the feed has published the marker", || async {
        let mut watcher = EventStream::open(&app, "event_id=DSN", Some(marker - 1)).await;
        let (id, kind, _) = watcher.next_any().await;
        (kind == "tracking" && id == Some(marker)).then_some(())
    })
    .await;

    // What the stalled stream had written before it stalled, in order, then `lagged`.
    let mut next = first;
    let data = loop {
        let (id, kind, data) = stalled.next_any().await;
        if kind == "lagged" {
            break data;
        }
        assert_eq!((kind.as_str(), id), ("tracking", Some(next)), "in order, without a gap");
        next += 1;
    };
    let last_sent = next - 1;
    assert!(last_sent >= first, "some events went out before the writes stalled");
    let (missed, resume) = data
        .split_once(" events were not sent; reconnect with Last-Event-ID ")
        .unwrap_or_else(|| panic!("unexpected lagged text: {data}"));
    assert!(missed.parse::<u64>().unwrap() > 0, "{data}");
    assert_eq!(resume.parse::<i64>().unwrap(), last_sent, "resume from the last event sent: {data}");
    stalled.ends().await;

    let mut resumed = EventStream::open(&app, "event_id=RECEIVE", Some(last_sent)).await;
    assert_eq!(resumed.next().await.0, last_sent + 1, "the next event, from the database");
    app.stop().await;
}
