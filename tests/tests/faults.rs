//! Next-hop and database faults during delivery, against a real node: the smart host
//! cuts a transfer, never answers, offers no TLS where TLS is required, or is down; the
//! database goes away while a message is being delivered. The right recipients are
//! deferred, nothing goes out in clear text against policy, retries follow the
//! schedule, and the node recovers without a restart.

use std::net::SocketAddr;
use std::time::Duration;

use postern::admin::SendConnectorChanges;
use postern::store::TrackingRecord;
use postern_tests::sink::Sink;
use postern_tests::smtp_client::{RawClient, queue_id, send_one};
use postern_tests::{TestApp, TestDb, database_outage, free_port, seed_anonymous_relay, test_settings};
use uuid::Uuid;

/// A node with the seed's anonymous relay, relaying to `smart_host`, with settings
/// adjusted by `adjust`.
async fn node(smart_host: SocketAddr, adjust: impl FnOnce(&mut postern::settings::Settings)) -> (TestApp, SocketAddr) {
    let db = TestDb::new().await;
    let port = free_port();
    seed_anonymous_relay(&db.store().await, port, smart_host).await;
    let mut settings = test_settings(&db);
    adjust(&mut settings);
    let app = TestApp::start(db, settings).await;
    (app, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// The recipient statuses of a message, and its state.
async fn state_of(app: &TestApp, id: Uuid) -> (String, Vec<String>) {
    let message = app.admin.store().queue_message(id).await.unwrap().expect("message kept");
    (message.state, message.statuses)
}

/// The DEFER events of one message, oldest first.
async fn defers_of(app: &TestApp, id: Uuid) -> Vec<TrackingRecord> {
    let mut events: Vec<_> = app.tracking("DEFER").await.into_iter().filter(|e| e.queue_id == Some(id)).collect();
    events.sort_by_key(|e| e.id);
    events
}

async fn wait_for_defers(app: &TestApp, id: Uuid, n: usize, within: Duration) -> Vec<TrackingRecord> {
    let start = std::time::Instant::now();
    loop {
        let events = defers_of(app, id).await;
        if events.len() >= n {
            return events;
        }
        assert!(start.elapsed() < within, "{} DEFER events of {n} after {within:?}", events.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_transfer_cut_mid_data_is_deferred_then_delivered_exactly_once() {
    let sink = Sink::start().await;
    sink.drop_during_data(1);
    let (app, addr) = node(sink.addr, |_| {}).await;
    let id = queue_id(&send_one(addr, "cut short").await);

    let defer = wait_for_defers(&app, id, 1, Duration::from_secs(15)).await;
    assert!(defer[0].recipient_status[0].starts_with('4'), "a cut connection is temporary: {:?}", defer[0]);
    let delivered = sink.wait_for(1).await;
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains("body of cut short"));
    // Another copy could only come from another claim of the message, and once its
    // outcome is recorded as delivered nothing claims it again: the sink is counted after
    // that, not after a guess at how long a retry takes.
    postern_tests::eventually(Duration::from_secs(15), "the delivery recorded", || async {
        state_of(&app, id).await == ("done".into(), vec!["delivered".into()])
    })
    .await;
    assert_eq!(sink.received().len(), 1, "delivered once");
    assert_eq!(sink.interrupted(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_smart_host_that_never_answers_times_out_and_is_deferred_while_other_mail_flows() {
    let sink = Sink::start().await;
    sink.hang_on_data("body of stuck");
    let (app, addr) = node(sink.addr, |s| s.delivery_timeout_secs = 1).await;
    let stuck = queue_id(&send_one(addr, "stuck").await);
    let fine = queue_id(&send_one(addr, "fine").await);

    let defer = wait_for_defers(&app, stuck, 1, Duration::from_secs(15)).await;
    assert!(defer[0].recipient_status[0].starts_with('4'), "{:?}", defer[0].recipient_status);
    let delivered = sink.wait_for(1).await;
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains("body of fine"));
    assert_eq!(state_of(&app, fine).await.0, "done");
    assert_eq!(state_of(&app, stuck).await, ("queued".into(), vec!["deferred".into()]));
    app.stop().await;
}

#[tokio::test]
async fn tls_required_but_not_offered_sends_nothing_in_clear_text() {
    let sink = Sink::start().await; // offers no STARTTLS
    let (app, addr) = node(sink.addr, |_| {}).await;
    let required = SendConnectorChanges { tls_policy: Some("required".into()), ..Default::default() };
    app.admin.set_send_connector("Smart host", &required, None).await.unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(addr, "secret").await);

    let defer = wait_for_defers(&app, id, 1, Duration::from_secs(15)).await;
    assert!(defer[0].recipient_status[0].starts_with('4'), "deferred, not bounced: {:?}", defer[0].recipient_status);
    assert!(sink.received().is_empty());
    for wire in sink.wire() {
        let wire = String::from_utf8_lossy(&wire).to_ascii_uppercase();
        assert!(!wire.contains("MAIL FROM") && !wire.contains("BODY OF SECRET"), "sent in clear text: {wire}");
    }
    assert_eq!(state_of(&app, id).await, ("queued".into(), vec!["deferred".into()]));
    app.stop().await;
}

#[tokio::test]
async fn a_smart_host_that_is_down_is_retried_on_the_schedule_until_it_returns() {
    let smart_host = SocketAddr::from(([127, 0, 0, 1], free_port())); // nothing listens
    let (app, addr) = node(smart_host, |s| s.retry_schedule_secs = vec![1, 3]).await;
    let id = queue_id(&send_one(addr, "patience").await);

    let defers = wait_for_defers(&app, id, 3, Duration::from_secs(20)).await;
    let gap = |i: usize| (defers[i].at - defers[i - 1].at).as_seconds_f64();
    // Attempts are claimed by a worker that looks at least once a second, so an attempt
    // may come up to about a second after it is due, never before. The events' times
    // are taken when each attempt's outcome is tracked, a few milliseconds after the
    // time the schedule counts from: hence the 50 ms below the schedule.
    assert!((0.95..2.5).contains(&gap(1)), "first retry after {:.3} s, schedule says 1 s", gap(1));
    assert!((2.95..4.5).contains(&gap(2)), "second retry after {:.3} s, schedule says 3 s", gap(2));
    assert!(defers.iter().all(|d| d.recipient_status[0].starts_with('4')), "{defers:?}");

    let sink = Sink::start_on(smart_host).await;
    let delivered = sink.wait_for(1).await;
    assert_eq!(delivered[0].recipients, ["user@cloudmonkeys.xyz"]);
    assert_eq!(state_of(&app, id).await.0, "done");
    app.stop().await;
}

#[tokio::test]
async fn a_database_outage_during_delivery_loses_nothing_and_recovers_without_a_restart() {
    let sink = Sink::start().await;
    // The smart host takes 2 s to accept the message: the outage starts while it does,
    // so the attempt's outcome cannot be recorded.
    sink.slow_on_data("body of during", Duration::from_secs(2));
    let (app, addr) = node(sink.addr, |s| s.delivery_lease_secs = 4).await;
    let id = queue_id(&send_one(addr, "during").await);
    let started = std::time::Instant::now();
    while sink.wire().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "delivery never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    database_outage(&app.db.name, true).await;
    sink.wait_for(1).await; // the next hop has it; Postern cannot write that down
    tokio::time::sleep(Duration::from_secs(2)).await;
    database_outage(&app.db.name, false).await;

    // When the database returns, the lease runs out and the attempt is made again: the
    // outcome of the first was never recorded (the node retries that write only for a
    // tenth of the lease, and the outage lasts longer).
    let start = std::time::Instant::now();
    while state_of(&app, id).await.0 != "done" {
        assert!(start.elapsed() < Duration::from_secs(20), "not recorded as delivered after the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state_of(&app, id).await.1, ["delivered"]);
    let copies = sink.received().len();
    assert_eq!(copies, 2, "one copy per attempt: the fault hit the first attempt's outcome");
    // The log says what the queue says: one recorded delivery, one SEND (an outcome
    // that could not be recorded took its event with it).
    let sends: Vec<_> = app.tracking("SEND").await.into_iter().filter(|e| e.queue_id == Some(id)).collect();
    assert_eq!(sends.len(), 1, "{sends:?}");
    let receives: Vec<_> = app.tracking("RECEIVE").await.into_iter().filter(|e| e.queue_id == Some(id)).collect();
    assert_eq!(receives.len(), 1);
    // And new mail is taken and delivered again without restarting the node.
    let after = queue_id(&send_one(addr, "after").await);
    sink.wait_for(copies + 1).await;
    let start = std::time::Instant::now();
    while state_of(&app, after).await.0 != "done" {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// Refusals are logged off the hot path. Through an outage far longer than the writer's
/// first tries they are held, not dropped, and written with the time they happened.
#[tokio::test]
async fn refusals_during_a_database_outage_are_written_when_it_ends() {
    let sink = Sink::start().await;
    let (app, addr) = node(sink.addr, |_| {}).await;
    postern_tests::node::wait_for_listener(addr).await;
    let before = app.tracking("REJECT").await.len();
    database_outage(&app.db.name, true).await;
    let down = time::OffsetDateTime::now_utc();
    // 127.0.0.2 is outside the connector's range: refused from the snapshot in memory,
    // the REJECT event waits for the database.
    for _ in 0..5 {
        let mut client = RawClient::connect_from("127.0.0.2", addr).await;
        assert!(client.reply().await.starts_with("554"));
    }
    // Longer than the writer used to try (about 2 s) before it dropped a batch.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let up = time::OffsetDateTime::now_utc();
    database_outage(&app.db.name, false).await;
    let start = std::time::Instant::now();
    let rejects = loop {
        let rejects: Vec<_> = app.tracking("REJECT").await;
        if rejects.len() >= before + 5 {
            break rejects;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{} of 5 REJECT events written", rejects.len() - before);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let during: Vec<_> = rejects.iter().filter(|e| e.at >= down && e.at <= up).collect();
    assert_eq!(during.len(), 5, "dated when they happened, inside the outage: {rejects:?}");
    assert!(during.iter().all(|e| e.client_ip.map(|n| n.addr().to_string()) == Some("127.0.0.2".into())));
    app.stop().await;
}

#[tokio::test]
async fn a_smart_host_that_refuses_at_its_greeting_is_passed_over_for_the_next() {
    // The first smart host turns every connection away at the greeting (RFC 5321 §3.1).
    let refusing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refusing_addr = refusing.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = refusing.accept().await {
            let _ = stream.write_all(b"554 5.3.2 not accepting mail here\r\n").await;
        }
    });
    let sink = Sink::start().await;
    let (app, addr) = node(refusing_addr, |_| {}).await;
    let both = SendConnectorChanges {
        smart_hosts: Some(vec![refusing_addr.to_string(), sink.addr.to_string()]),
        ..Default::default()
    };
    app.admin.set_send_connector("Smart host", &both, None).await.unwrap();
    app.wait_for_current_config().await;
    let id = queue_id(&send_one(addr, "second host").await);

    let delivered = sink.wait_for(1).await;
    assert!(String::from_utf8_lossy(&delivered[0].raw).contains("body of second host"));
    let start = std::time::Instant::now();
    while state_of(&app, id).await.0 != "done" {
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state_of(&app, id).await.1, ["delivered"], "not bounced by the first host's 554");
    app.stop().await;
}
