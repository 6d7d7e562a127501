//! Read side: message tracking (Get-MessageTrackingLog), protocol logs by session, the
//! audit log, and the queue (Get-Queue / Retry-Queue / Remove-Message).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiQuery, Page, page_limit};
use crate::http::AppState;
use crate::http::auth::{ApiCaller, WriteCaller};
use crate::http::problem::Problem;
use crate::store::{
    AuditEntry, AuditFilter, ProtocolFilter, ProtocolLine, QueueFilter, QueuedMessageSummary, TrackingFilter,
    TrackingRecord,
};

/// `Get-MessageTrackingLog`'s filters. Times are RFC 3339 or relative (`-10m`, `-2h`, `-1d`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrackingQuery {
    pub start: Option<String>,
    pub end: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    /// RECEIVE, SEND, DEFER, FAIL, DSN, REJECT, THROTTLE, DROP …
    pub event_id: Option<String>,
    pub message_id: Option<String>,
    pub queue_id: Option<Uuid>,
    pub connector: Option<String>,
    pub client_ip: Option<String>,
    /// A service account: its sessions and what became of their messages.
    pub account: Option<String>,
    /// Case-insensitive part of the subject (when subjects are logged).
    pub subject: Option<String>,
    pub session_id: Option<Uuid>,
    /// The `next` value of the previous page.
    pub after: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

fn time_param(name: &str, value: Option<&str>, now: OffsetDateTime) -> Result<Option<OffsetDateTime>, Problem> {
    value
        .map(|v| crate::tracking::parse_time(v, now).map_err(|e| Problem::bad_request(format!("{name}: {e}"))))
        .transpose()
}

fn id_cursor(after: Option<&str>) -> Result<Option<i64>, Problem> {
    after
        .map(|a| a.trim().parse::<i64>().map_err(|_| Problem::bad_request(format!("after {a:?} is not a page cursor"))))
        .transpose()
}

/// Search the message tracking log, oldest first, in pages.
#[utoipa::path(get, path = "/api/v1/tracking", operation_id = "searchTrackingLog", tag = "logs", params(TrackingQuery),
    responses((status = 200, description = "One page of tracking events, newest first", body = Page<TrackingRecord>)))]
pub async fn tracking(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TrackingQuery>,
) -> Result<axum::Json<Page<TrackingRecord>>, Problem> {
    let now = OffsetDateTime::now_utc();
    let limit = page_limit(q.limit)?;
    let client_ip = match &q.client_ip {
        Some(ip) => Some(
            ip.trim().parse().map_err(|_| Problem::bad_request(format!("client_ip {ip:?} is not an IP address")))?,
        ),
        None => None,
    };
    let filter = TrackingFilter {
        start: time_param("start", q.start.as_deref(), now)?,
        end: time_param("end", q.end.as_deref(), now)?,
        sender: q.sender,
        recipient: q.recipient,
        event_id: q.event_id,
        message_id: q.message_id,
        queue_id: q.queue_id,
        connector: q.connector,
        client_ip,
        account: q.account,
        subject: q.subject,
        session_id: q.session_id,
        // Paged by id: ids grow in the order events were written.
        after_id: Some(id_cursor(q.after.as_deref())?.unwrap_or(0)),
        limit: limit as i64 + 1,
    };
    let mut items = state.store.search_tracking(&filter).await?;
    let next = (items.len() > limit).then(|| items.get(limit - 1).map(|e| e.id.to_string())).flatten();
    items.truncate(limit);
    Ok(axum::Json(Page { items, next }))
}

/// The SMTP transcript of one session (its `session_id` is on its tracking events).
#[utoipa::path(get, path = "/api/v1/sessions/{session_id}/protocol-log", operation_id = "getProtocolLog", tag = "logs",
    params(("session_id" = Uuid, Path)),
    responses((status = 200, description = "One page of the session's protocol log lines", body = Page<ProtocolLine>), (status = 404, description = "Not found")))]
pub async fn protocol_log(
    _caller: ApiCaller,
    State(state): State<AppState>,
    Path(session_id): Path<Uuid>,
) -> Result<axum::Json<Page<ProtocolLine>>, Problem> {
    let filter = ProtocolFilter { session_id: Some(session_id), limit: 100_000, ..Default::default() };
    let items = state.store.protocol_log(&filter).await?;
    if items.is_empty() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            format!("no protocol log for session {session_id} (its connector may not log, or it was pruned)"),
        ));
    }
    Ok(axum::Json(Page { items, next: None }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// receive_connector, send_connector, accepted_domain, service_account, send_as_grant, api_token, message
    pub object_type: Option<String>,
    pub object_name: Option<String>,
    /// Who made the change: `api:<token name>`, `cli:<user>`, …
    pub actor: Option<String>,
    pub after: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Who changed what, newest first, with the object before and after.
#[utoipa::path(get, path = "/api/v1/audit-log", operation_id = "searchAuditLog", tag = "logs", params(AuditQuery),
    responses((status = 200, description = "One page of audit entries, newest first", body = Page<AuditEntry>)))]
pub async fn audit_log(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Page<AuditEntry>>, Problem> {
    let limit = page_limit(q.limit)?;
    let filter = AuditFilter {
        object_type: q.object_type,
        object_name: q.object_name,
        actor: q.actor,
        before_id: id_cursor(q.after.as_deref())?,
        limit: limit as i64 + 1,
    };
    let mut items = state.store.audit_log(&filter).await?;
    let next = (items.len() > limit).then(|| items.get(limit - 1).map(|e| e.id.to_string())).flatten();
    items.truncate(limit);
    Ok(axum::Json(Page { items, next }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// Include delivered and failed messages still kept (default: only queued ones).
    pub all: Option<bool>,
    pub after: Option<Uuid>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Messages in the queue, newest first.
#[utoipa::path(get, path = "/api/v1/queue", operation_id = "listQueuedMessages", tag = "queue", params(QueueQuery),
    responses((status = 200, description = "One page of queued messages", body = Page<QueuedMessageSummary>)))]
pub async fn queue(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> Result<axum::Json<Page<QueuedMessageSummary>>, Problem> {
    let limit = page_limit(q.limit)?;
    let filter = QueueFilter { include_done: q.all.unwrap_or(false), after: q.after, limit: limit as i64 + 1 };
    let mut items = state.store.queue_messages(&filter).await?;
    let next = (items.len() > limit).then(|| items.get(limit - 1).map(|m| m.id.to_string())).flatten();
    items.truncate(limit);
    Ok(axum::Json(Page { items, next }))
}

/// Try a queued message again now.
#[utoipa::path(post, path = "/api/v1/queue/{id}/retry", operation_id = "retryQueuedMessage", tag = "queue", params(("id" = Uuid, Path)),
    responses((status = 204, description = "Due now"), (status = 404, description = "Not found")))]
pub async fn retry(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).retry_message(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A message removed from the queue: the recipients it dropped, and the DSN if one was queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovedMessage {
    pub id: Uuid,
    /// Recipients that had not been delivered (each gets a DROP tracking event).
    pub dropped_recipients: Vec<String>,
    /// The DSN queued for the sender (with `with_dsn=true`), if one was: none for the
    /// null sender or when every recipient was delivered.
    pub dsn_id: Option<Uuid>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    /// Tell the sender: queue a DSN listing the undelivered recipients (Exchange's
    /// `Remove-Message -WithNDR`). Default false.
    #[serde(default)]
    pub with_dsn: bool,
}

/// Remove a message from the queue, with or without a DSN to its sender.
#[utoipa::path(delete, path = "/api/v1/queue/{id}", operation_id = "removeQueuedMessage", tag = "queue", params(("id" = Uuid, Path), RemoveQuery),
    responses((status = 200, description = "The message was removed from the queue", body = RemovedMessage), (status = 404, description = "Not found"),
        (status = 409, description = "With a DSN: a node is delivering the message right now; try again")))]
pub async fn remove(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    ApiQuery(query): ApiQuery<RemoveQuery>,
) -> Result<axum::Json<RemovedMessage>, Problem> {
    let removed = state.admin(&caller).remove_message(id, query.with_dsn).await?;
    Ok(axum::Json(RemovedMessage { id, dropped_recipients: removed.undelivered, dsn_id: removed.dsn_id }))
}
