//! HTTP: health endpoints, the REST API with its OpenAPI document and reference page.
//! The console (askama) grows here; `http` never imports `smtp` internals beyond the
//! engine's status and the what-if tester.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use uuid::Uuid;

use crate::admin::Admin;
use crate::policy::Snapshot;
use crate::tracking::feed::TrackingFeed;
use auth::ApiCaller;
use problem::{PROBLEM_JSON, Problem};

pub mod api;
pub mod auth;
pub mod console;
pub mod problem;
pub mod stream;
use crate::smtp::Engine;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ArcSwap<Snapshot>>,
    pub engine: Arc<Engine>,
    pub node_id: Uuid,
    pub tracking_feed: TrackingFeed,
    pub token_use: auth::SharedTokenUse,
    /// Cancelled when the node shuts down (long-lived responses end then).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The FQDN new receive connectors get when none is given.
    pub default_fqdn: String,
    /// Where this HTTP server listens (no receive connector may bind it).
    pub http_addr: SocketAddr,
    pub console: console::ConsoleSettings,
}

impl AppState {
    /// The service layer, acting as the API token (recorded in the audit log).
    pub fn admin(&self, caller: &ApiCaller) -> Admin {
        Admin::new(self.store.clone(), format!("api:{}", caller.name), self.default_fqdn.clone())
            .with_reserved_addresses(vec![self.http_addr])
    }
}

pub fn router(state: AppState) -> Router {
    let (api, openapi) = api::router();
    let api = api
        .route("/api/v1/{*rest}", any(|| async { Problem::new(StatusCode::NOT_FOUND, "no such API resource") }))
        .layer(axum::middleware::from_fn(api_errors_as_problems))
        .layer(axum::middleware::from_fn(refuse_nul));
    // The API reference page (Swagger UI, embedded in the binary); it also serves the
    // document at /api/v1/openapi.json.
    let reference = utoipa_swagger_ui::SwaggerUi::new("/api/docs").url("/api/v1/openapi.json", openapi);
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(api)
        .merge(reference)
        .merge(
            console::router()
                .layer(axum::middleware::from_fn(console::same_origin_posts))
                .layer(axum::middleware::from_fn(refuse_nul)),
        )
        .with_state(state)
}

/// A database that takes longer than this to answer a probe counts as down.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the database answers, carries every migration of this binary, and every
/// listener is up. (`/healthz` only says the process is alive.)
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let migrations = tokio::time::timeout(PROBE_TIMEOUT, state.store.migrations_current()).await;
    let (database, migrations) = match migrations {
        Ok(Ok(current)) => (true, current),
        Ok(Err(_)) | Err(_) => (false, false),
    };
    let listeners_up = state.engine.listener_status().iter().all(|l| l.error.is_none());
    let ready = database && migrations && listeners_up;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({ "database": database, "migrations": migrations, "listeners": listeners_up })))
}

/// Prometheus text exposition. The queue gauges are read from the database now (they
/// describe every node's queue); without a database they are NaN (unknown), never the
/// last values seen, and the rest is still served.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let queue = match tokio::time::timeout(PROBE_TIMEOUT, state.store.queue_gauges()).await {
        Ok(Ok((depth, oldest, poison))) => (depth as f64, oldest, poison as f64),
        Ok(Err(_)) | Err(_) => (f64::NAN, f64::NAN, f64::NAN),
    };
    metrics::gauge!("postern_queue_depth").set(queue.0);
    metrics::gauge!("postern_queue_oldest_age_seconds").set(queue.1);
    metrics::gauge!("postern_queue_poison").set(queue.2);
    metrics::gauge!("postern_config_generation").set(state.config.load().generation as f64);
    let down = state.engine.listener_status().iter().filter(|l| l.error.is_some()).count();
    metrics::gauge!("postern_listeners_down").set(down as f64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::handle().render())
}

/// Errors made outside the handlers (axum's own: 404, 405, a bad path parameter, a body
/// too large) become problem documents too, with their headers (e.g. `Allow`) kept.
async fn api_errors_as_problems(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let is_problem =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if response.status().as_u16() < 400 || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let detail = match String::from_utf8_lossy(&text).trim() {
        "" => parts.status.canonical_reason().unwrap_or("error").to_ascii_lowercase(),
        text => text.to_string(),
    };
    let problem = Problem::new(parts.status, detail).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    let (problem_parts, problem_body) = problem.into_parts();
    parts.headers.extend(problem_parts.headers);
    Response::from_parts(parts, problem_body)
}

/// A `%00` anywhere in the path or query is refused before any handler: no name,
/// filter or address may hold a NUL (and Postgres text cannot store one).
async fn refuse_nul(request: Request<Body>, next: Next) -> Response {
    let uri = request.uri();
    let has_nul = |s: &str| s.as_bytes().windows(3).any(|w| w.eq_ignore_ascii_case(b"%00"));
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return Problem::bad_request("NUL characters (%00) are not allowed").into_response();
    }
    next.run(request).await
}
