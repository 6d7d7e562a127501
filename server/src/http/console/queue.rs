//! The queue and the audit log in the console: messages by state with retry and remove
//! (admins), and who changed what, with the object before and after.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Path, Query, State};
use axum::response::Redirect;
use serde::Deserialize;
use uuid::Uuid;

use super::session::Console;
use super::{ConsoleChange, ConsoleError, admin};
use crate::http::AppState;
use crate::store::{AuditFilter, QueueFilter};

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

pub struct MessageLine {
    id: String,
    sender: String,
    state: String,
    subject: String,
    received_at: String,
    next_attempt_at: String,
    attempts: i32,
    /// Each recipient with its status and the last reply of its next hop.
    recipients: Vec<(String, String, String)>,
}

#[derive(Template, WebTemplate)]
#[template(path = "queue.html")]
pub struct QueuePage {
    console: Console,
    messages: Vec<MessageLine>,
    all: bool,
    queued: usize,
}

#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    all: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    console: Console,
    Query(q): Query<QueueQuery>,
) -> Result<QueuePage, ConsoleError> {
    let all = q.all.is_some();
    let filter = QueueFilter { include_done: all, after: None, limit: 500 };
    let rows = state.store.queue_messages(&filter).await?;
    let queued = rows.iter().filter(|m| m.state == "queued").count();
    let messages = rows
        .into_iter()
        .map(|m| MessageLine {
            id: m.id.to_string(),
            sender: if m.sender.is_empty() { "<>".into() } else { m.sender },
            state: m.state,
            subject: m.subject.unwrap_or_default(),
            received_at: rfc3339(m.received_at),
            next_attempt_at: rfc3339(m.next_attempt_at),
            attempts: m.attempts,
            recipients: m
                .recipients
                .into_iter()
                .zip(m.statuses)
                .zip(m.last_replies)
                .map(|((r, s), reply)| (r, s, reply.unwrap_or_default()))
                .collect(),
        })
        .collect();
    Ok(QueuePage { console, messages, all, queued })
}

/// Retry now, or remove with or without a DSN to the sender (`action` in the path).
pub async fn act(
    State(state): State<AppState>,
    Path((id, action)): Path<(Uuid, String)>,
    ConsoleChange { console, .. }: ConsoleChange,
) -> Result<Redirect, ConsoleError> {
    let admin = admin(&state, &console);
    match action.as_str() {
        "retry" => admin.retry_message(id).await?,
        "remove" => admin.remove_message(id, false).await.map(|_| ())?,
        "remove-with-dsn" => admin.remove_message(id, true).await.map(|_| ())?,
        _ => return Err(ConsoleError::NotFound("no such action".into())),
    }
    Ok(Redirect::to("/queue"))
}

pub struct AuditLine {
    at: String,
    actor: String,
    action: String,
    object: String,
    before: String,
    after: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "audit.html")]
pub struct AuditPage {
    console: Console,
    entries: Vec<AuditLine>,
}

pub async fn audit(State(state): State<AppState>, console: Console) -> Result<AuditPage, ConsoleError> {
    let filter = AuditFilter { limit: 500, ..AuditFilter::default() };
    let rows = state.store.audit_log(&filter).await?;
    let pretty = |v: Option<serde_json::Value>| {
        v.map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()).unwrap_or_default()
    };
    let entries = rows
        .into_iter()
        .map(|e| AuditLine {
            at: rfc3339(e.at),
            actor: e.actor,
            action: e.action,
            object: format!("{} {}", e.object_type.replace('_', " "), e.object_name),
            before: pretty(e.before),
            after: pretty(e.after),
        })
        .collect();
    Ok(AuditPage { console, entries })
}
