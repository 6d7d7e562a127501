//! Message tracking in the console: the search form with the CLI's filters, the results,
//! and a live tail that appends events as they are written (EventSource on
//! `/tracking/live`, the API's stream with the session as credential).

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use time::OffsetDateTime;

use super::ConsoleError;
use super::session::{self, Console};
use crate::admin::token_digest;
use crate::http::AppState;
use crate::http::stream::{Credential, StreamQuery, event_stream};
use crate::store::{TrackingFilter, TrackingRecord};

/// Most events a search shows.
const SHOWN: i64 = 1000;

#[derive(Debug, Default, Deserialize)]
pub struct Search {
    start: Option<String>,
    end: Option<String>,
    event_id: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    connector: Option<String>,
    client_ip: Option<String>,
    account: Option<String>,
    subject: Option<String>,
    message_id: Option<String>,
}

/// One event as a table row (formatting only).
pub struct Row {
    id: i64,
    at: String,
    event_id: String,
    sender: String,
    recipients: String,
    connector: String,
    client_ip: String,
    detail: String,
    /// The SMTP session the event belongs to (its transcript), if any.
    session_id: String,
    /// The message the event is about (its page), if any.
    queue_id: String,
}

impl From<TrackingRecord> for Row {
    fn from(e: TrackingRecord) -> Self {
        let detail = [e.recipient_status.join("; "), e.detail.unwrap_or_default()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" · ");
        Row {
            id: e.id,
            at: e.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            event_id: e.event_id,
            sender: e.sender.unwrap_or_default(),
            recipients: e.recipients.join(", "),
            connector: e.connector.unwrap_or_default(),
            client_ip: e.client_ip.map(|ip| ip.addr().to_string()).unwrap_or_default(),
            detail,
            session_id: e.session_id.map(|id| id.to_string()).unwrap_or_default(),
            queue_id: e.queue_id.map(|id| id.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "tracking.html")]
pub struct TrackingPage {
    console: Console,
    form: Search,
    rows: Vec<Row>,
    truncated: bool,
    error: Option<String>,
    /// The live tail resumes after this event id.
    after: i64,
    /// The filters again, as a query string for the live tail.
    live_query: String,
}

fn value(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

impl Search {
    fn text(&self, v: &Option<String>) -> String {
        value(v).unwrap_or_default()
    }

    fn filter(&self, now: OffsetDateTime) -> Result<TrackingFilter, String> {
        let time = |v: &Option<String>| {
            value(v).map(|t| crate::tracking::parse_time(&t, now).map_err(|e| e.to_string())).transpose()
        };
        let client_ip = value(&self.client_ip)
            .map(|ip| ip.parse().map_err(|_| format!("{ip:?} is not an IP address")))
            .transpose()?;
        Ok(TrackingFilter {
            // An hour back unless said otherwise: the newest events are what one looks for.
            start: Some(time(&self.start)?.unwrap_or(now - time::Duration::hours(1))),
            end: time(&self.end)?,
            event_id: value(&self.event_id),
            sender: value(&self.sender),
            recipient: value(&self.recipient),
            connector: value(&self.connector),
            client_ip,
            account: value(&self.account),
            subject: value(&self.subject),
            message_id: value(&self.message_id),
            limit: SHOWN + 1,
            ..TrackingFilter::default()
        })
    }

    /// The filters the live tail applies (times do not apply to what comes next).
    fn live_query(&self) -> String {
        let pairs: Vec<(&str, String)> = [
            ("event_id", &self.event_id),
            ("sender", &self.sender),
            ("recipient", &self.recipient),
            ("connector", &self.connector),
            ("client_ip", &self.client_ip),
            ("account", &self.account),
            ("subject", &self.subject),
            ("message_id", &self.message_id),
        ]
        .into_iter()
        .filter_map(|(k, v)| value(v).map(|v| (k, v)))
        .collect();
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

pub async fn page(
    State(state): State<AppState>,
    console: Console,
    Query(form): Query<Search>,
) -> Result<TrackingPage, ConsoleError> {
    let mut page = TrackingPage {
        console,
        live_query: form.live_query(),
        form,
        rows: Vec::new(),
        truncated: false,
        error: None,
        after: 0,
    };
    page.after = state.store.last_tracking_id().await?;
    match page.form.filter(OffsetDateTime::now_utc()) {
        Err(e) => page.error = Some(e),
        Ok(filter) => {
            let mut events = state.store.search_tracking(&filter).await?;
            page.truncated = events.len() as i64 > SHOWN;
            events.truncate(SHOWN as usize);
            page.rows = events.into_iter().map(Row::from).collect();
        }
    }
    Ok(page)
}

#[derive(Template, WebTemplate)]
#[template(path = "session.html")]
pub struct SessionPage {
    console: Console,
    session_id: uuid::Uuid,
    lines: Vec<TranscriptLine>,
    events: Vec<Row>,
}

/// One transcript line, formatted.
pub struct TranscriptLine {
    at: String,
    event: &'static str,
    data: String,
    context: String,
}

impl From<crate::store::ProtocolLine> for TranscriptLine {
    fn from(l: crate::store::ProtocolLine) -> Self {
        TranscriptLine {
            at: l.at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
            event: l.event.0,
            data: l.data,
            context: l.context,
        }
    }
}

/// One SMTP session: its tracking events and its transcript (when its connector logs).
pub async fn session(
    State(state): State<AppState>,
    console: Console,
    axum::extract::Path(session_id): axum::extract::Path<uuid::Uuid>,
) -> Result<SessionPage, ConsoleError> {
    let filter = crate::store::ProtocolFilter { session_id: Some(session_id), limit: 100_000, ..Default::default() };
    let events = TrackingFilter { session_id: Some(session_id), limit: 10_000, ..TrackingFilter::default() };
    let lines = state.store.protocol_log(&filter).await?.into_iter().map(TranscriptLine::from).collect();
    let events = state.store.search_tracking(&events).await?.into_iter().map(Row::from).collect();
    Ok(SessionPage { console, session_id, lines, events })
}

/// Who sent a message, as its RECEIVE event recorded it.
pub struct Origin {
    client_ip: String,
    connector: String,
    auth_as: String,
    account: String,
    tls: String,
    session_id: String,
    message_id: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
pub struct MessagePage {
    console: Console,
    queue_id: uuid::Uuid,
    subject: String,
    sender: String,
    /// The queue's view: state, attempts, each recipient's status and last reply.
    state: String,
    recipients: Vec<(String, String, String)>,
    origin: Option<Origin>,
    events: Vec<Row>,
    /// The message's header section while its content is kept.
    headers: Option<String>,
}

/// One message: who sent it (auth-as, account, TLS), its recipients' state in the queue
/// with the next hop's last reply, all its tracking events, and the link to the
/// transcript of the session that brought it.
/// How much of a stored message the header view reads (the header section is usually a
/// few KiB; a hostile one is cut here).
const HEADER_LIMIT: i32 = 64 * 1024;

pub async fn message(
    State(state): State<AppState>,
    console: Console,
    axum::extract::Path(queue_id): axum::extract::Path<uuid::Uuid>,
) -> Response {
    let filter = TrackingFilter { queue_id: Some(queue_id), limit: 10_000, ..TrackingFilter::default() };
    let events = match state.store.search_tracking(&filter).await {
        Ok(events) => events,
        Err(e) => return ConsoleError::from(e).into_response(),
    };
    let (queued, headers) =
        match (state.store.queue_message(queue_id).await, state.store.message_headers(queue_id, HEADER_LIMIT).await) {
            (Ok(queued), Ok(headers)) => (queued, headers),
            (Err(e), _) | (_, Err(e)) => return ConsoleError::from(e).into_response(),
        };
    if events.is_empty() && queued.is_none() {
        return (StatusCode::NOT_FOUND, format!("no message {queue_id} in the queue or the tracking log"))
            .into_response();
    }
    let received = events.iter().find(|e| e.event_id == "RECEIVE");
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let origin = received.map(|e| Origin {
        client_ip: e.client_ip.map(|ip| ip.addr().to_string()).unwrap_or_default(),
        connector: text(&e.connector),
        auth_as: text(&e.auth_as),
        account: text(&e.account),
        tls: text(&e.tls),
        session_id: e.session_id.map(|id| id.to_string()).unwrap_or_default(),
        message_id: text(&e.message_id),
    });
    let subject = received.and_then(|e| e.subject.clone()).or_else(|| queued.as_ref().and_then(|m| m.subject.clone()));
    let sender = received.and_then(|e| e.sender.clone()).or_else(|| queued.as_ref().map(|m| m.sender.clone()));
    let (state_text, recipients) = match queued {
        Some(m) => (
            format!("{} ({} attempt(s))", m.state, m.attempts),
            m.recipients
                .into_iter()
                .zip(m.statuses)
                .zip(m.last_replies)
                .map(|((r, s), reply)| (r, s, reply.unwrap_or_default()))
                .collect(),
        ),
        None => ("no longer in the queue".to_string(), Vec::new()),
    };
    MessagePage {
        console,
        queue_id,
        subject: subject.unwrap_or_default(),
        sender: sender.unwrap_or_default(),
        state: state_text,
        recipients,
        origin,
        events: events.into_iter().map(Row::from).collect(),
        headers: headers.map(|h| String::from_utf8_lossy(&h).into_owned()),
    }
    .into_response()
}

/// The live tail: the tracking stream, authorised by the console session.
pub async fn live(
    State(state): State<AppState>,
    _console: Console,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = session::cookie_token(&headers, state.console.secure_cookie) else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let credential =
        Credential::ConsoleSession { token_sha256: token_digest(&token), idle_secs: state.console.idle_secs };
    match event_stream(&state, &query, &headers, credential).await {
        Ok(stream) => stream.into_response(),
        Err(problem) => problem.into_response(),
    }
}
