//! HTTP: health endpoints and the node status API. The console (askama) and the full
//! REST API grow here; `http` never imports `smtp` internals beyond the engine's status.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde::Serialize;
use uuid::Uuid;

use crate::policy::Snapshot;
use crate::tracking::feed::TrackingFeed;
use auth::ApiCaller;

pub mod auth;
pub mod stream;
use crate::smtp::{Engine, ListenerStatus};
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
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/v1/status", get(status))
        .route("/api/v1/tracking/stream", get(stream::tracking_stream))
        .with_state(state)
}

/// Ready when the database answers and every listener is up.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let database = state.store.is_healthy().await;
    let listeners_up = state.engine.listener_status().iter().all(|l| l.error.is_none());
    let code = if database && listeners_up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(serde_json::json!({ "database": database, "listeners": listeners_up })))
}

#[derive(Serialize)]
struct NodeStatus {
    node_id: Uuid,
    config_generation: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    config_loaded_at: Option<time::OffsetDateTime>,
    listeners: Vec<ListenerStatus>,
    auth_lockouts: Vec<crate::auth::Lockout>,
    open_sessions: usize,
    queue_depth: Option<i64>,
    /// Tracking events per event id in the last minute (all nodes): the live counters.
    last_minute: std::collections::BTreeMap<String, i64>,
}

async fn status(_caller: ApiCaller, State(state): State<AppState>) -> Json<NodeStatus> {
    let snapshot = state.config.load();
    Json(NodeStatus {
        node_id: state.node_id,
        config_generation: snapshot.generation,
        config_loaded_at: snapshot.loaded_at,
        listeners: state.engine.listener_status(),
        auth_lockouts: state.engine.auth_lockouts(),
        open_sessions: state.engine.open_sessions(),
        queue_depth: state.store.queue_depth().await.ok(),
        last_minute: state.store.tracking_counts_last_minute().await.unwrap_or_default(),
    })
}
