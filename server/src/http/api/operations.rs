//! The node's status and the what-if tester.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::ApiJson;
use crate::auth::Lockout;
use crate::http::AppState;
use crate::http::auth::ApiCaller;
use crate::http::problem::Problem;
use crate::smtp::ListenerStatus;
use crate::smtp::what_if::{WhatIf, WhatIfOutcome};

/// This node's state: configuration generation, listeners, lockouts, sessions and queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStatus {
    pub node_id: Uuid,
    /// The configuration generation this node runs.
    pub config_generation: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub config_loaded_at: Option<OffsetDateTime>,
    pub listeners: Vec<ListenerStatus>,
    pub auth_lockouts: Vec<Lockout>,
    pub open_sessions: usize,
    /// Messages waiting for delivery (all nodes); null when the database is unreachable.
    pub queue_depth: Option<i64>,
    /// Tracking events per event id in the last minute (all nodes): the live counters.
    pub last_minute: BTreeMap<String, i64>,
}

/// This node: configuration generation, listeners, lockouts, sessions, queue depth.
#[utoipa::path(get, path = "/api/v1/status", operation_id = "getNodeStatus", tag = "node", responses((status = 200, description = "This node's state", body = NodeStatus)))]
pub async fn status(_caller: ApiCaller, State(state): State<AppState>) -> Json<NodeStatus> {
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

/// A hypothetical client and envelope.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "server": "192.168.1.10:2526", "client_ip": "192.168.1.13",
    "mail_from": "scanner@cloudmonkeys.xyz", "rcpt_to": ["smb1@cloudmonkeys.xyz"] }))]
pub struct WhatIfInput {
    /// The address the client connects to, `ip:port` (a connector binding), e.g. `192.168.1.10:2526`.
    pub server: String,
    pub client_ip: String,
    /// The client uses STARTTLS (or implicit TLS) where offered.
    #[serde(default)]
    pub tls: bool,
    /// A service account the client signs in as (its password assumed right).
    pub account: Option<String>,
    /// MAIL FROM; empty or left out = the null sender `<>`.
    pub mail_from: Option<String>,
    #[serde(default)]
    pub rcpt_to: Vec<String>,
    /// The message's `From:` header (for the Send-As check).
    pub header_from: Option<String>,
}

/// What would this client get? Runs the engine's own session state machine against the
/// configuration this node runs: the connector chosen, and each reply line.
#[utoipa::path(post, path = "/api/v1/what-if", operation_id = "testPolicy", tag = "node", request_body = WhatIfInput,
    responses((status = 200, description = "What the client would get, reply by reply", body = WhatIfOutcome)))]
pub async fn what_if(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<WhatIfInput>,
) -> Result<Json<WhatIfOutcome>, Problem> {
    let server = input
        .server
        .trim()
        .parse()
        .map_err(|_| Problem::invalid_field("server", format!("{:?} is not an ip:port", input.server)))?;
    let client = input
        .client_ip
        .trim()
        .parse()
        .map_err(|_| Problem::invalid_field("client_ip", format!("{:?} is not an IP address", input.client_ip)))?;
    if input.rcpt_to.len() > 1000 {
        return Err(Problem::invalid_field("rcpt_to", "at most 1000 recipients"));
    }
    let question = WhatIf {
        server,
        client,
        tls: input.tls,
        account: input.account,
        mail_from: input.mail_from.filter(|m| !m.trim().is_empty()),
        rcpt_to: input.rcpt_to,
        header_from: input.header_from,
    };
    Ok(Json(question.evaluate(state.config.load_full())))
}
