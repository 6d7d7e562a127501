//! Prometheus metrics, served at `/metrics`. Counters and histograms are recorded through
//! the `metrics` facade where things happen (most of them from the tracking events, so a
//! metric and the tracking log never disagree); gauges that describe shared state (the
//! queue) are read from the database when Prometheus scrapes. Every name starts with
//! `postern_`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::NewTrackingEvent;

/// Delivery latency buckets, in seconds: from a fast smart host to a day of retries.
const LATENCY_BUCKETS: [f64; 14] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86_400.0];

pub const DELIVERY_LATENCY: &str = "postern_delivery_latency_seconds";
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The process's recorder, installed on first use (inside the runtime: it starts its
/// upkeep task). Several nodes in one process (the tests) share it, as they share the
/// process.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(DELIVERY_LATENCY.into()), &LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!("another metrics recorder is installed; /metrics stays empty");
                    }
                    // Histogram samples are folded into their buckets only by a render or
                    // an upkeep: without this, a node nobody scrapes would keep every sample.
                    let upkeep = handle.clone();
                    tokio::spawn(async move {
                        let mut every = tokio::time::interval(UPKEEP_EVERY);
                        loop {
                            every.tick().await;
                            upkeep.run_upkeep();
                        }
                    });
                    handle
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Counts what a tracking event says happened: messages received and rejected per
/// receive connector, recipients sent, deferred and failed per send connector.
pub fn observe(event: &NewTrackingEvent) {
    let connector = event.connector.clone().unwrap_or_default();
    let recipients = event.recipients.len() as u64;
    match event.event_id {
        "RECEIVE" => metrics::counter!("postern_messages_received_total", "connector" => connector).increment(1),
        "REJECT" | "THROTTLE" => {
            let reason = if event.event_id == "REJECT" { "rejected" } else { "throttled" };
            metrics::counter!("postern_messages_rejected_total", "connector" => connector, "reason" => reason)
                .increment(1);
        }
        "SEND" => metrics::counter!("postern_recipients_sent_total", "connector" => connector).increment(recipients),
        "DEFER" => {
            metrics::counter!("postern_recipients_deferred_total", "connector" => connector).increment(recipients);
        }
        "FAIL" => metrics::counter!("postern_recipients_failed_total", "connector" => connector).increment(recipients),
        "DSN" => metrics::counter!("postern_dsns_total").increment(1),
        "POISONMESSAGE" => metrics::counter!("postern_messages_poisoned_total").increment(1),
        _ => {}
    }
}

/// Describes the metrics once, for the `# HELP` lines.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("postern_smtp_sessions_total", "SMTP sessions accepted, per receive connector");
    describe_gauge!("postern_smtp_sessions", "SMTP sessions open on this node");
    describe_counter!("postern_messages_received_total", "Messages queued (answered 250), per receive connector");
    describe_counter!(
        "postern_messages_rejected_total",
        "Connections, senders or recipients refused, per receive connector"
    );
    describe_counter!("postern_recipients_sent_total", "Recipients delivered, per send connector");
    describe_counter!("postern_recipients_deferred_total", "Recipients deferred for a retry, per send connector");
    describe_counter!("postern_recipients_failed_total", "Recipients failed for good, per send connector");
    describe_counter!("postern_dsns_total", "Delivery status notifications queued");
    describe_counter!("postern_messages_poisoned_total", "Messages set aside as poison");
    describe_counter!("postern_auth_failures_total", "Failed AUTH attempts (535, 454), per receive connector");
    describe_counter!("postern_back_pressure_refusals_total", "MAIL commands answered 452 4.3.1 under back-pressure");
    describe_histogram!(DELIVERY_LATENCY, metrics::Unit::Seconds, "From receipt to delivery, per recipient");
    describe_gauge!("postern_queue_depth", "Messages waiting for delivery (all nodes)");
    describe_gauge!("postern_queue_oldest_age_seconds", "Age of the oldest message waiting for delivery");
    describe_gauge!("postern_queue_poison", "Messages set aside as poison (all nodes)");
    describe_gauge!("postern_config_generation", "Configuration generation this node runs");
    describe_gauge!("postern_listeners_down", "Receive connector bindings this node could not open");
    describe_gauge!("postern_back_pressure", "1 while new mail is refused with 452 4.3.1");
}
