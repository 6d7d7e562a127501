//! The durable queue against real Postgres: leases, claims and outcomes.

use std::time::Duration;

use postern::store::{MessageOutcome, NewMessage, NewTrackingEvent, RecipientOutcome, RecipientStatus, Store};
use postern_tests::TestDb;
use uuid::Uuid;

fn message(recipients: &[&str]) -> NewMessage {
    NewMessage {
        id: Uuid::now_v7(),
        sender: Some("app@cloudmonkeys.xyz".into()),
        recipients: recipients.iter().map(|r| r.to_string()).collect(),
        body: b"Subject: t\r\n\r\nbody\r\n".to_vec(),
        message_id: None,
        subject: Some("t".into()),
        expires_at: time::OffsetDateTime::now_utc() + time::Duration::days(2),
        receive_connector: "test".into(),
        client_ip: None,
        client_helo: None,
        auth_as: "anonymous",
        account: None,
        session_id: None,
        config_generation: None,
        dsn_for: None,
        spooled: None,
        tracking: Vec::new(),
    }
}

async fn status_of(store: &Store, id: Uuid) -> (String, Vec<String>) {
    let state: String =
        sqlx::query_scalar("select state from messages where id = $1").bind(id).fetch_one(store.pool()).await.unwrap();
    let statuses: Vec<String> = sqlx::query_scalar("select status from recipients where message_id = $1 order by idx")
        .bind(id)
        .fetch_all(store.pool())
        .await
        .unwrap();
    (state, statuses)
}

fn delivered(id: Uuid, lease: Uuid, idx: i32) -> MessageOutcome {
    MessageOutcome {
        message_id: id,
        lease,
        recipients: vec![RecipientOutcome {
            idx,
            status: RecipientStatus::Delivered,
            reply: "250 ok".into(),
            route: None,
        }],
        next_attempt_at: None,
        tracking: Vec::new(),
    }
}

#[tokio::test]
async fn an_attempt_that_outlived_its_lease_cannot_overwrite_the_next_claim() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let queued = message(&["user@cloudmonkeys.xyz"]);
    store.enqueue(&queued).await.unwrap();

    // A claim whose lease ends at once, then a second claim of the same message.
    let (stale, fresh) = (Uuid::new_v4(), Uuid::new_v4());
    assert_eq!(store.claim_due_messages(stale, Duration::ZERO, 10, 3).await.unwrap().len(), 1);
    let second = store.claim_due_messages(fresh, Duration::from_secs(300), 10, 3).await.unwrap();
    assert_eq!(second.len(), 1, "an expired lease makes the message due again");
    assert!(store.claim_due_messages(Uuid::new_v4(), Duration::from_secs(300), 10, 3).await.unwrap().is_empty());

    store.record_outcomes(&[delivered(queued.id, stale, 0)]).await.unwrap();
    assert_eq!(status_of(&store, queued.id).await, ("queued".into(), vec!["pending".into()]), "stale outcome ignored");
    store.record_outcomes(&[delivered(queued.id, fresh, 0)]).await.unwrap();
    assert_eq!(status_of(&store, queued.id).await, ("done".into(), vec!["delivered".into()]));
}

#[tokio::test]
async fn a_retry_claims_only_the_recipients_still_to_deliver() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let queued = message(&["a@x.example", "b@x.example"]);
    store.enqueue(&queued).await.unwrap();
    let lease = Uuid::new_v4();
    let claimed = store.claim_due_messages(lease, Duration::from_secs(300), 10, 3).await.unwrap();
    assert_eq!(claimed[0].recipients.len(), 2);
    let outcome = MessageOutcome {
        message_id: queued.id,
        lease,
        recipients: vec![
            RecipientOutcome { idx: 0, status: RecipientStatus::Delivered, reply: "250 ok".into(), route: None },
            RecipientOutcome { idx: 1, status: RecipientStatus::Deferred, reply: "451 later".into(), route: None },
        ],
        next_attempt_at: Some(time::OffsetDateTime::now_utc()),
        tracking: Vec::new(),
    };
    store.record_outcomes(&[outcome]).await.unwrap();
    let retry = store.claim_due_messages(Uuid::new_v4(), Duration::from_secs(300), 10, 3).await.unwrap();
    let addresses: Vec<&str> = retry[0].recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(addresses, ["b@x.example"], "the delivered recipient is never sent again");
    assert_eq!(retry[0].body.as_ref(), Some(&queued.body));
}

#[tokio::test]
async fn retention_removes_finished_messages_past_their_age_and_keeps_the_queue() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (old_done, old_queued, old_poison, recent_done) =
        (message(&["a@x.example"]), message(&["b@x.example"]), message(&["c@x.example"]), message(&["d@x.example"]));
    for m in [&old_done, &old_queued, &old_poison, &recent_done] {
        store.enqueue(m).await.unwrap();
    }
    let set = |id: Uuid, state: &'static str, days_ago: i32| {
        let store = store.clone();
        async move {
            sqlx::query(
                "update messages set state = $2, received_at = now() - make_interval(days => $3) where id = $1",
            )
            .bind(id)
            .bind(state)
            .bind(days_ago)
            .execute(store.pool())
            .await
            .unwrap();
        }
    };
    set(old_done.id, "done", 8).await;
    set(old_queued.id, "queued", 8).await;
    set(old_poison.id, "poison", 8).await;
    set(recent_done.id, "done", 6).await;

    assert_eq!(store.prune_finished_messages(7).await.unwrap(), 1);
    let left: Vec<Uuid> =
        sqlx::query_scalar("select id from messages order by id").fetch_all(store.pool()).await.unwrap();
    let mut expected = vec![old_queued.id, old_poison.id, recent_done.id];
    expected.sort();
    assert_eq!(left, expected, "only the finished message older than 7 days is gone");
    let orphans: i64 = sqlx::query_scalar(
        "select (select count(*) from message_bodies where message_id = $1) + \
         (select count(*) from recipients where message_id = $1)",
    )
    .bind(old_done.id)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(orphans, 0, "its body and recipients went with it");
    assert_eq!(store.prune_finished_messages(7).await.unwrap(), 0, "a second run finds nothing");
}

/// A tracking event naming this queue id; `detail` is written as given.
fn event(event_id: &'static str, queue_id: Uuid, detail: &str) -> NewTrackingEvent {
    NewTrackingEvent {
        event_id,
        source: "SMTP",
        queue_id: Some(queue_id),
        recipients: vec!["user@cloudmonkeys.xyz".into()],
        detail: Some(detail.into()),
        ..NewTrackingEvent::default()
    }
}

async fn events_of(store: &Store, queue_id: Uuid) -> Vec<String> {
    sqlx::query_scalar("select event_id from tracking_events where queue_id = $1 order by id")
        .bind(queue_id)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

async fn stored(store: &Store, id: Uuid) -> bool {
    sqlx::query_scalar("select exists(select 1 from messages where id = $1)")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// The RECEIVE event commits in the message's transaction. Postgres refuses a NUL in
/// text, so an event carrying one fails after the message rows were inserted: the
/// failure lands mid-transaction, and the message must be gone with it.
#[tokio::test]
async fn a_message_and_its_receive_event_commit_together_or_not_at_all() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut good = message(&["user@cloudmonkeys.xyz"]);
    good.tracking.push(event("RECEIVE", good.id, "accepted"));
    store.enqueue(&good).await.unwrap();
    assert!(stored(&store, good.id).await);
    assert_eq!(events_of(&store, good.id).await, ["RECEIVE"]);

    let mut broken = message(&["user@cloudmonkeys.xyz"]);
    broken.tracking.push(event("RECEIVE", broken.id, "a NUL \0 here"));
    assert!(store.enqueue(&broken).await.is_err(), "the event's insert fails");
    assert!(!stored(&store, broken.id).await, "the message rolled back with its event");
    assert!(events_of(&store, broken.id).await.is_empty());

    // A batch is one transaction: one bad event keeps every message of it out.
    let mut first = message(&["a@cloudmonkeys.xyz"]);
    first.tracking.push(event("RECEIVE", first.id, "fine"));
    let mut second = message(&["b@cloudmonkeys.xyz"]);
    second.tracking.push(event("RECEIVE", second.id, "\0"));
    assert!(store.enqueue_batch(&[&first, &second]).await.is_err());
    assert!(!stored(&store, first.id).await && !stored(&store, second.id).await);
    assert!(events_of(&store, first.id).await.is_empty());
}

/// Delivery events commit with the recipients' new states: a failed write leaves both
/// the old state and no event; a good one leaves both.
#[tokio::test]
async fn delivery_events_commit_with_the_recipients_new_state() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let queued = message(&["user@cloudmonkeys.xyz"]);
    store.enqueue(&queued).await.unwrap();
    let lease = Uuid::new_v4();
    store.claim_due_messages(lease, Duration::from_secs(300), 10, 3).await.unwrap();

    let mut broken = delivered(queued.id, lease, 0);
    broken.tracking.push(event("SEND", queued.id, "\0"));
    assert!(store.record_outcomes(&[broken]).await.is_err());
    assert_eq!(status_of(&store, queued.id).await, ("queued".into(), vec!["pending".into()]), "state unchanged");
    assert!(events_of(&store, queued.id).await.is_empty(), "no SEND for an unrecorded delivery");

    let mut good = delivered(queued.id, lease, 0);
    good.tracking.push(event("SEND", queued.id, "250 ok"));
    store.record_outcomes(&[good]).await.unwrap();
    assert_eq!(status_of(&store, queued.id).await, ("done".into(), vec!["delivered".into()]));
    assert_eq!(events_of(&store, queued.id).await, ["SEND"]);
}
