//! The message tracking log and the protocol log against real Postgres: every search
//! filter returns exactly the matching events, and retention removes exactly the old.

use postern::store::{NewTrackingEvent, ProtocolEvent, ProtocolFilter, ProtocolLine, Store, TrackingFilter};
use postern_tests::TestDb;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// Events that differ in one field each, named by their `detail`.
fn events(session: Uuid, queue_id: Uuid, account_queue_id: Uuid) -> Vec<NewTrackingEvent> {
    let now = OffsetDateTime::now_utc();
    let base = |name: &str| NewTrackingEvent {
        at: Some(now),
        event_id: "RECEIVE",
        source: "SMTP",
        connector: Some("SMTP Relay Script".into()),
        client_ip: Some("192.168.1.13".parse().unwrap()),
        sender: Some("test@cloudmonkeys.xyz".into()),
        recipients: vec!["user@cloudmonkeys.xyz".into()],
        subject: Some("Anonymous Test".into()),
        detail: Some(name.into()),
        ..NewTrackingEvent::default()
    };
    vec![
        base("plain"),
        NewTrackingEvent { at: Some(now - Duration::hours(2)), ..base("two hours ago") },
        NewTrackingEvent { client_ip: Some("192.168.1.14".parse().unwrap()), ..base("other client") },
        NewTrackingEvent { sender: Some("Other@CloudMonkeys.xyz".into()), ..base("other sender") },
        NewTrackingEvent {
            recipients: vec!["Boss@cloudmonkeys.xyz".into(), "x@gmail.example".into()],
            ..base("two recipients")
        },
        NewTrackingEvent { event_id: "REJECT", ..base("rejected") },
        NewTrackingEvent { message_id: Some("<abc@app>".into()), ..base("with message id") },
        NewTrackingEvent { queue_id: Some(queue_id), ..base("with queue id") },
        NewTrackingEvent { connector: Some("SMTP Auth Relay Script".into()), ..base("auth connector") },
        NewTrackingEvent { account: Some("svc-mailer".into()), auth_as: Some("authenticated"), ..base("account") },
        NewTrackingEvent { subject: Some("Invoice 100% paid_now".into()), ..base("subject") },
        NewTrackingEvent { session_id: Some(session), ..base("session") },
        // What happened later to the message of "with queue id" (from 192.168.1.13): the
        // SEND carries the queue id, not the client.
        NewTrackingEvent {
            event_id: "SEND",
            client_ip: None,
            sender: Some("later@cloudmonkeys.xyz".into()),
            queue_id: Some(queue_id),
            ..base("delivered later")
        },
        // A message sent by the account, delivered later.
        NewTrackingEvent {
            queue_id: Some(account_queue_id),
            account: Some("svc-mailer".into()),
            ..base("account message")
        },
        NewTrackingEvent {
            event_id: "SEND",
            client_ip: None,
            queue_id: Some(account_queue_id),
            ..base("account message delivered")
        },
    ]
}

async fn found(store: &Store, filter: TrackingFilter) -> Vec<String> {
    let filter = TrackingFilter { limit: 1000, ..filter };
    let mut names: Vec<String> =
        store.search_tracking(&filter).await.unwrap().into_iter().filter_map(|e| e.detail).collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_tracking_filter_returns_exactly_the_matching_events() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (session, queue_id, account_queue_id) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    store.insert_tracking_events(&events(session, queue_id, account_queue_id)).await.unwrap();
    let f = TrackingFilter::default;
    let now = OffsetDateTime::now_utc();
    assert_eq!(found(&store, TrackingFilter { start: Some(now - Duration::minutes(10)), ..f() }).await.len(), 14);
    assert_eq!(found(&store, TrackingFilter { end: Some(now - Duration::hours(1)), ..f() }).await, ["two hours ago"]);
    assert_eq!(
        found(&store, TrackingFilter { client_ip: Some("192.168.1.14".parse().unwrap()), ..f() }).await,
        ["other client"]
    );
    // A client's events include what happened later to its messages.
    let from_13 = found(&store, TrackingFilter { client_ip: Some("192.168.1.13".parse().unwrap()), ..f() }).await;
    assert!(from_13.contains(&"delivered later".to_string()) && from_13.len() == 14, "{from_13:?}");
    assert_eq!(
        found(&store, TrackingFilter { sender: Some("other@cloudmonkeys.xyz".into()), ..f() }).await,
        ["other sender"]
    );
    assert_eq!(
        found(&store, TrackingFilter { recipient: Some("Boss@CLOUDMONKEYS.xyz".into()), ..f() }).await,
        ["two recipients"]
    );
    assert_eq!(found(&store, TrackingFilter { event_id: Some("reject".into()), ..f() }).await, ["rejected"]);
    assert_eq!(
        found(&store, TrackingFilter { message_id: Some("<abc@app>".into()), ..f() }).await,
        ["with message id"]
    );
    assert_eq!(
        found(&store, TrackingFilter { queue_id: Some(queue_id), ..f() }).await,
        ["delivered later", "with queue id"]
    );
    assert_eq!(
        found(&store, TrackingFilter { connector: Some("smtp auth relay script".into()), ..f() }).await,
        ["auth connector"]
    );
    assert_eq!(
        found(&store, TrackingFilter { account: Some("SVC-MAILER".into()), ..f() }).await,
        ["account", "account message", "account message delivered"]
    );
    // LIKE wildcards in the search text are taken literally.
    assert_eq!(found(&store, TrackingFilter { subject: Some("100% PAID_".into()), ..f() }).await, ["subject"]);
    assert_eq!(found(&store, TrackingFilter { subject: Some("%".into()), ..f() }).await, ["subject"]);
    assert_eq!(found(&store, TrackingFilter { session_id: Some(session), ..f() }).await, ["session"]);
    let all = store.search_tracking(&TrackingFilter { limit: 100, ..f() }).await.unwrap();
    let first = all.iter().map(|e| e.id).min().unwrap();
    assert_eq!(found(&store, TrackingFilter { after_id: Some(first), ..f() }).await.len(), 14, "all but the first");
    // The live stream's in-memory test agrees with the search on the direct fields.
    for filter in [
        TrackingFilter { sender: Some("OTHER@cloudmonkeys.xyz".into()), ..f() },
        TrackingFilter { recipient: Some("Boss@CLOUDMONKEYS.xyz".into()), ..f() },
        TrackingFilter { event_id: Some("reject".into()), ..f() },
        TrackingFilter { subject: Some("100% PAID_".into()), ..f() },
        TrackingFilter { session_id: Some(session), ..f() },
        TrackingFilter { connector: Some("smtp auth relay script".into()), ..f() },
    ] {
        let in_memory: Vec<i64> = all.iter().filter(|e| filter.matches(e)).map(|e| e.id).collect();
        let searched: Vec<i64> = store
            .search_tracking(&TrackingFilter { limit: 100, ..filter.clone() })
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(in_memory, searched, "{filter:?}");
    }
    // Filters combine.
    let both =
        TrackingFilter { client_ip: Some("192.168.1.13".parse().unwrap()), event_id: Some("REJECT".into()), ..f() };
    assert_eq!(found(&store, both).await, ["rejected"]);
}

fn line(session: Uuid, seq: i32, at: OffsetDateTime) -> ProtocolLine {
    ProtocolLine {
        at,
        session_id: session,
        seq,
        connector: "SMTP Relay Script".into(),
        local_endpoint: "127.0.0.1:2526".into(),
        remote_endpoint: "192.168.1.13:40000".into(),
        event: ProtocolEvent(">"),
        data: format!("line {seq}"),
        context: String::new(),
    }
}

#[tokio::test]
async fn retention_removes_only_what_is_older_than_configured() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let now = OffsetDateTime::now_utc();
    let event = |days: i64, name: &str| NewTrackingEvent {
        at: Some(now - Duration::days(days)),
        event_id: "RECEIVE",
        source: "SMTP",
        detail: Some(name.into()),
        ..NewTrackingEvent::default()
    };
    store.insert_tracking_events(&[event(40, "old"), event(29, "recent"), event(0, "new")]).await.unwrap();
    let (old_session, new_session) = (Uuid::now_v7(), Uuid::now_v7());
    store
        .insert_protocol_lines(&[line(old_session, 0, now - Duration::days(8)), line(new_session, 0, now)])
        .await
        .unwrap();

    assert_eq!(store.prune_logs(30, 7).await.unwrap(), (1, 1));
    assert_eq!(found(&store, TrackingFilter::default()).await, ["new", "recent"]);
    let left = store.protocol_log(&ProtocolFilter { limit: 100, ..ProtocolFilter::default() }).await.unwrap();
    assert_eq!(left.iter().map(|l| l.session_id).collect::<Vec<_>>(), [new_session]);
    assert_eq!(store.prune_logs(30, 7).await.unwrap(), (0, 0), "nothing more to remove");
}

/// Inserts an event named `detail` through `executor` (a transaction left open by the
/// caller, to hold its id uncommitted) and announces it, as Postern's own inserts do
/// (the notification is delivered at commit).
async fn raw_event<'e>(executor: impl sqlx::PgExecutor<'e>, detail: &str) {
    sqlx::query(
        "with e as (insert into tracking_events (event_id, source, detail) values ('RECEIVE', 'SMTP', $1) returning 1) \
         select pg_notify('postern_tracking', count(*)::text) from e",
    )
    .bind(detail)
    .execute(executor)
    .await
    .unwrap();
}

async fn next_detail(
    live: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<postern::store::TrackingRecord>>,
    within: std::time::Duration,
) -> Option<String> {
    tokio::time::timeout(within, live.recv()).await.ok().map(|e| e.unwrap().detail.clone().unwrap_or_default())
}

/// Several transactions insert events at once, so ids can commit out of order. The live
/// feed sends in id order and waits at an id still committing, so a subscriber resuming
/// by id never misses one; an id that never commits (a rolled-back insert) is passed
/// after a wait.
#[tokio::test]
async fn the_live_feed_waits_for_an_id_still_committing_and_passes_one_rolled_back() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let feed = postern::tracking::feed::TrackingFeed::start(store.clone(), shutdown.clone()).await.unwrap();
    let (mut live, _) = feed.subscribe();
    let short = std::time::Duration::from_millis(700);

    let mut slow = store.pool().begin().await.unwrap();
    raw_event(&mut *slow, "first id, committed second").await;
    raw_event(store.pool(), "second id, committed first").await;
    assert_eq!(next_detail(&mut live, short).await, None, "held back while the first id is committing");
    slow.commit().await.unwrap();
    let within = std::time::Duration::from_secs(3);
    assert_eq!(next_detail(&mut live, within).await.as_deref(), Some("first id, committed second"));
    assert_eq!(next_detail(&mut live, within).await.as_deref(), Some("second id, committed first"));

    let mut abandoned = store.pool().begin().await.unwrap();
    raw_event(&mut *abandoned, "never committed").await;
    abandoned.rollback().await.unwrap();
    raw_event(store.pool(), "after the rolled-back id").await;
    let started = std::time::Instant::now();
    let passed = next_detail(&mut live, std::time::Duration::from_secs(10)).await;
    assert_eq!(passed.as_deref(), Some("after the rolled-back id"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "the gap was waited for first");
    shutdown.cancel();
}

/// An entry the database refuses for its data (a NUL byte, which no Postgres text can
/// hold) is dropped alone: the entries batched with it are written, the writer goes on
/// with what comes next, and nothing is retried forever. Both logs share the writer.
#[tokio::test]
async fn an_entry_the_database_refuses_is_dropped_alone_and_the_writer_goes_on() {
    use postern::tracking::{ProtocolLogger, Tracker};
    let db = TestDb::new().await;
    let store = db.store().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (tracker, tracking_task) = Tracker::start(store.clone(), shutdown.clone());
    let (protocol, protocol_task) = ProtocolLogger::start(store.clone(), shutdown.clone());
    let event = |name: String| NewTrackingEvent {
        event_id: "REJECT",
        source: "SMTP",
        detail: Some(name),
        ..Default::default()
    };
    let session = Uuid::now_v7();
    let now = OffsetDateTime::now_utc();
    for i in 0..9 {
        let bad = i == 4;
        tracker.record(event(if bad { "bad\0event".into() } else { format!("good {i}") }));
        let mut protocol_line = line(session, i, now);
        if bad {
            protocol_line.data = "bad\0line".into();
        }
        protocol.record(protocol_line);
    }
    let lines = |store: Store| async move {
        let filter = ProtocolFilter { session_id: Some(session), limit: 100, ..ProtocolFilter::default() };
        store.protocol_log(&filter).await.unwrap().into_iter().map(|l| l.seq).collect::<Vec<_>>()
    };
    let within = std::time::Duration::from_secs(10);
    postern_tests::eventually(within, "the eight good events", || async {
        found(&store, TrackingFilter::default()).await.len() == 8
    })
    .await;
    postern_tests::eventually(within, "the eight good lines", || async { lines(store.clone()).await.len() == 8 }).await;
    let mut seqs = lines(store.clone()).await;
    seqs.sort();
    assert_eq!(seqs, [0, 1, 2, 3, 5, 6, 7, 8], "only the refused line is missing");
    let expected: Vec<String> = (0..9).filter(|i| *i != 4).map(|i| format!("good {i}")).collect();
    assert_eq!(found(&store, TrackingFilter::default()).await, expected, "only the refused event is missing");

    // The writer goes on: what comes next is written.
    tracker.record(event("after".into()));
    postern_tests::eventually(within, "the event after the refused one", || async {
        found(&store, TrackingFilter::default()).await.contains(&"after".to_string())
    })
    .await;
    shutdown.cancel();
    tracking_task.await.unwrap();
    protocol_task.await.unwrap();
}
