//! `GET /api/v1/tracking/stream`: server-sent events of the message tracking log as it
//! is written, on every node, with the search filters, resumable with `Last-Event-ID`.
//! The subscription is taken before the catch-up read, so nothing written in between is
//! lost; events already sent (by id) are never sent twice.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast;

use super::AppState;
use super::api::ApiQuery;
use super::auth::{ApiCaller, Problem};
use crate::store::{TrackingFilter, TrackingRecord};

/// The filters of `Get-MessageTrackingLog`, as query parameters.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    pub event_id: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub connector: Option<String>,
    pub client_ip: Option<String>,
    pub account: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<uuid::Uuid>,
    pub session_id: Option<uuid::Uuid>,
    /// Resume after this event id (what `Last-Event-ID` says, for clients that cannot set it).
    pub after: Option<i64>,
}

/// How many missed events a reconnecting client is sent at most before live ones.
const CATCH_UP: i64 = 10_000;

fn bad_request(detail: String) -> Problem {
    Problem::bad_request(detail)
}

impl StreamQuery {
    fn filter(&self) -> Result<TrackingFilter, Problem> {
        let client_ip = match &self.client_ip {
            Some(ip) => Some(ip.parse().map_err(|_| bad_request(format!("client_ip {ip:?} is not an IP address")))?),
            None => None,
        };
        Ok(TrackingFilter {
            event_id: self.event_id.clone(),
            sender: self.sender.clone(),
            recipient: self.recipient.clone(),
            connector: self.connector.clone(),
            client_ip,
            account: self.account.clone(),
            subject: self.subject.clone(),
            message_id: self.message_id.clone(),
            queue_id: self.queue_id,
            session_id: self.session_id,
            ..TrackingFilter::default()
        })
    }
}

struct Feed {
    backlog: VecDeque<TrackingRecord>,
    live: broadcast::Receiver<Arc<TrackingRecord>>,
    filter: TrackingFilter,
    last_sent: i64,
    finished: bool,
    /// The catch-up was cut at `CATCH_UP` events: after sending them, the client is told
    /// to resume for the next page instead of going live (which would leave a gap).
    truncated: bool,
    /// The node is shutting down: streams end so the HTTP server can stop.
    shutdown: tokio_util::sync::CancellationToken,
    /// The credential is checked again this often; a revoked one ends the stream.
    recheck: tokio::time::Interval,
    credential: Credential,
    store: crate::store::Store,
}

/// What a stream was opened with, checked again while it runs.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token, by id: revoked, it ends the stream.
    ApiToken(uuid::Uuid),
    /// A console session, by token digest: signed out or expired, it ends the stream.
    ConsoleSession { token_sha256: Vec<u8>, idle_secs: i64 },
}

impl Credential {
    fn ended(&self) -> &'static str {
        match self {
            Credential::ApiToken(_) => "the API token was revoked",
            Credential::ConsoleSession { .. } => "the console session ended",
        }
    }

    async fn is_live(&self, store: &crate::store::Store) -> bool {
        match self {
            Credential::ApiToken(id) => store.api_token_is_live(*id).await.unwrap_or(false),
            Credential::ConsoleSession { token_sha256, idle_secs } => {
                store.admin_session_is_live(token_sha256, *idle_secs).await.unwrap_or(false)
            }
        }
    }
}

/// How often an open stream checks that its token has not been revoked.
const TOKEN_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

fn event(record: &TrackingRecord) -> Event {
    Event::default().id(record.id.to_string()).event("tracking").json_data(record).unwrap_or_default()
}

/// Tracking events as they are written, on every node, as server-sent events (`event:
/// tracking`, `id:` = the event id). Reconnect with `Last-Event-ID` (or `after`) to
/// resume without a gap.
#[utoipa::path(get, path = "/api/v1/tracking/stream", operation_id = "streamTrackingEvents", tag = "logs", params(StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses((status = 200, description = "An endless text/event-stream of tracking events", content_type = "text/event-stream", body = String)))]
pub async fn tracking_stream(
    caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    event_stream(&state, &query, &headers, Credential::ApiToken(caller.token_id)).await
}

/// The stream behind the API's endpoint and the console's live tail.
pub async fn event_stream(
    state: &AppState,
    query: &StreamQuery,
    headers: &HeaderMap,
    credential: Credential,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, Problem> {
    let filter = query.filter()?;
    let resume = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse().ok());
    // Subscribe first, then read what was missed: an event written in between is in one
    // or the other (and sent once, by id).
    let (live, position) = state.tracking_feed.subscribe();
    let (backlog, last_sent, truncated) = match resume.or(query.after) {
        Some(after) => {
            let catch_up = TrackingFilter { after_id: Some(after), limit: CATCH_UP, ..filter.clone() };
            let found = state.store.search_tracking(&catch_up).await.map_err(Problem::from)?;
            // Only up to the feed's position: beyond it the feed may be holding back at a
            // gap (an id still committing), and the live channel sends those in order.
            let truncated = found.len() as i64 == CATCH_UP && found.last().is_some_and(|e| e.id <= position);
            let missed: VecDeque<_> = found.into_iter().filter(|e| e.id <= position).collect();
            let last = missed.back().map_or(after, |e| e.id);
            // Up to the feed's position at least: nothing at or below it will come live.
            (missed, if truncated { last } else { last.max(position) }, truncated)
        }
        None => (VecDeque::new(), position, false),
    };
    let shutdown = state.shutdown.clone();
    let mut recheck = tokio::time::interval(TOKEN_RECHECK);
    recheck.reset(); // the first check is one period from now, not at once
    let store = state.store.clone();
    let feed =
        Feed { backlog, live, filter, last_sent, finished: false, truncated, shutdown, recheck, credential, store };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        if feed.finished {
            return None;
        }
        if let Some(record) = feed.backlog.pop_front() {
            return Some((Ok(event(&record)), feed));
        }
        if feed.truncated {
            feed.finished = true;
            let more = Event::default()
                .event("lagged")
                .data(format!("more events are waiting; reconnect with Last-Event-ID {}", feed.last_sent));
            return Some((Ok(more), feed));
        }
        loop {
            let received = tokio::select! {
                received = feed.live.recv() => received,
                () = feed.shutdown.cancelled() => return None,
                _ = feed.recheck.tick() => {
                    // A revoked credential (or one that cannot be checked) ends the stream.
                    if !feed.credential.is_live(&feed.store).await {
                        feed.finished = true;
                        let revoked = Event::default().event("revoked").data(feed.credential.ended());
                        return Some((Ok(revoked), feed));
                    }
                    continue;
                }
            };
            match received {
                Ok(record) if record.id > feed.last_sent && feed.filter.matches(&record) => {
                    feed.last_sent = record.id;
                    return Some((Ok(event(&record)), feed));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    // Too slow for the fan-out buffer: say so and end; the client resumes
                    // from the database with Last-Event-ID, without gaps.
                    feed.finished = true;
                    let lagged = Event::default().event("lagged").data(format!(
                        "{missed} events were not sent; reconnect with Last-Event-ID {}",
                        feed.last_sent
                    ));
                    return Some((Ok(lagged), feed));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
