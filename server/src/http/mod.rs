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
pub mod tls;
use crate::smtp::Engine;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ArcSwap<Snapshot>>,
    /// Whether `config` is known to be current (a failing reload is being retried).
    pub freshness: Arc<crate::reload::Freshness>,
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
    /// The bearer token `/metrics` requires, if one is configured.
    pub metrics_token: Option<String>,
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
                .route("/static/console.js", get(console_script))
                .layer(axum::middleware::from_fn(console::same_origin_posts))
                .layer(axum::middleware::from_fn(refuse_nul))
                .layer(axum::middleware::from_fn(console_headers)),
        )
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers every response carries: no MIME sniffing, no framing by any site (against
/// clickjacking), no Referer leaking console URLs (RFC 9110 §10.1.3) to other sites.
/// (`same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null`
/// with the console's own form posts, which the same-origin check must then refuse.)
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("same-origin"));
    response
}

/// The console's pages also carry a Content-Security-Policy: scripts only from this
/// origin's files (the console has no inline script, so an injected one never runs),
/// no plugins, forms only back to the console; and are never cached (a page may show a
/// generated password once).
const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn console_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static(CONSOLE_CSP));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    }
    response
}

/// The console's script, embedded in the binary.
async fn console_script() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")];
    (headers, include_str!("../../../web/static/console.js")).into_response()
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
    // A node whose configuration may be stale may enforce old rules: not ready.
    let configuration = state.freshness.stale_for().is_none();
    let ready = database && migrations && listeners_up && configuration;
    let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        code,
        Json(serde_json::json!({
            "database": database, "migrations": migrations, "listeners": listeners_up,
            "configuration_current": configuration
        })),
    )
}

/// Prometheus text exposition. A scrape costs no query: the queue gauges are kept by the
/// back-pressure watcher, which reads them once a second (NaN while the database does not
/// answer). With `metrics_token` set, a scrape must present it as a bearer token.
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(expected) = &state.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        // Compared as SHA-256 digests: equal lengths, nothing to learn from timing.
        let digest = |t: &str| crate::admin::token_digest(t);
        if presented.map(digest) != Some(digest(expected)) {
            let challenge = [(header::WWW_AUTHENTICATE, "Bearer realm=\"metrics\"")];
            return (StatusCode::UNAUTHORIZED, challenge, "a bearer token is required for /metrics").into_response();
        }
    }
    metrics::gauge!("postern_config_generation").set(state.config.load().generation as f64);
    let down = state.engine.listener_status().iter().filter(|l| l.error.is_some()).count();
    metrics::gauge!("postern_listeners_down").set(down as f64);
    state.freshness.publish();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::handle().render())
        .into_response()
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
