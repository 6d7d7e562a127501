//! `/api/v1/receive-connectors`: New-/Set-/Get-/Remove-ReceiveConnector over HTTP.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{
    ApiJson, ApiQuery, IfMatchHeader, ListQuery, Page, created_or_ok, page_by_name, path_segment, tagged,
};
use super::{double_option, read_only};
use crate::admin::{ReceiveConnectorChanges, receive_connector_warnings};
use crate::http::AppState;
use crate::http::auth::{ApiCaller, WriteCaller};
use crate::http::problem::Problem;
use crate::store::{ReceiveConnectorRow, entity_tag};

/// A receive connector as the API shows it. The TLS private key is never shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ReceiveConnector)]
pub struct ReceiveConnectorView {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// `ip:port` addresses the connector listens on (`0.0.0.0:2526` = every IPv4 address).
    pub bindings: Vec<String>,
    /// Clients allowed to use the connector, as CIDR ranges.
    pub remote_ip_ranges: Vec<String>,
    /// `anonymous` and/or `authenticated`.
    #[schema(value_type = Vec<crate::domain::PermissionGroup>)]
    pub permission_groups: Vec<String>,
    #[schema(value_type = Vec<crate::domain::AuthMechanism>)]
    pub auth_mechanisms: Vec<String>,
    pub auth_requires_tls: bool,
    #[schema(value_type = crate::domain::TlsMode)]
    pub tls_mode: String,
    /// True when a certificate was installed; false when Postern's generated one is used.
    pub has_tls_certificate: bool,
    /// Anonymous clients may relay to any domain (Ms-Exch-SMTP-Accept-Any-Recipient).
    pub accept_any_recipient: bool,
    pub max_message_size: i64,
    pub max_recipients: i32,
    pub max_connections: i32,
    pub max_connections_per_source: i32,
    pub max_messages_per_minute_per_source: i32,
    pub connection_timeout_secs: i32,
    pub banner: Option<String>,
    pub fqdn: String,
    #[schema(value_type = crate::domain::ProtocolLogging)]
    pub protocol_logging: String,
    /// Grows with every change; the ETag is made from it.
    pub version: i64,
    /// What is allowed but probably not meant.
    pub warnings: Vec<String>,
}

impl From<ReceiveConnectorRow> for ReceiveConnectorView {
    fn from(r: ReceiveConnectorRow) -> Self {
        let warnings = r.to_domain().map(|c| receive_connector_warnings(&c)).unwrap_or_default();
        Self {
            id: r.id,
            has_tls_certificate: r.tls_certificate_pem.is_some(),
            remote_ip_ranges: r.remote_ip_ranges.iter().map(ToString::to_string).collect(),
            name: r.name,
            enabled: r.enabled,
            bindings: r.bindings,
            permission_groups: r.permission_groups,
            auth_mechanisms: r.auth_mechanisms,
            auth_requires_tls: r.auth_requires_tls,
            tls_mode: r.tls_mode,
            accept_any_recipient: r.accept_any_recipient,
            max_message_size: r.max_message_size,
            max_recipients: r.max_recipients,
            max_connections: r.max_connections,
            max_connections_per_source: r.max_connections_per_source,
            max_messages_per_minute_per_source: r.max_messages_per_minute_per_source,
            connection_timeout_secs: r.connection_timeout_secs,
            banner: r.banner,
            fqdn: r.fqdn,
            protocol_logging: r.protocol_logging,
            version: r.version,
            warnings,
        }
    }
}

/// The fields a client sets. In a PUT, fields left out take their defaults (the
/// certificate is kept); in a PATCH they stay as they are. Read-only members of the
/// representation (`id`, `version`, `has_tls_certificate`, `warnings`) are accepted and
/// ignored, so a representation read with GET can be sent back.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ReceiveConnectorInput, example = json!({
    "bindings": ["0.0.0.0:2526"], "remote_ip_ranges": ["192.168.1.13"], "permission_groups": ["anonymous"]
}))]
pub struct ReceiveConnectorInput {
    /// In a PUT, the name in the path (if given); in a PATCH, a new name.
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// `ip:port`, at least one.
    #[schema(min_items = 1)]
    pub bindings: Option<Vec<String>>,
    /// Addresses or CIDR ranges (`192.168.1.13`, `10.0.0.0/8`), at least one.
    #[schema(min_items = 1)]
    pub remote_ip_ranges: Option<Vec<String>>,
    #[schema(value_type = Option<Vec<crate::domain::PermissionGroup>>)]
    pub permission_groups: Option<Vec<String>>,
    /// Postern's names or Exchange's (`tls` = offer STARTTLS, `basic-auth` = PLAIN and LOGIN,
    /// `basic-auth-require-tls` = basic auth only after STARTTLS).
    #[schema(value_type = Option<Vec<AuthMechanismName>>)]
    pub auth_mechanisms: Option<Vec<String>>,
    pub auth_requires_tls: Option<bool>,
    #[schema(value_type = Option<crate::domain::TlsMode>)]
    pub tls_mode: Option<String>,
    /// Exchange's `RequireTLS`: true = STARTTLS required.
    pub require_tls: Option<bool>,
    /// PEM chain; with `tls_key_pem`. `null` (both) returns to the generated certificate.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub tls_certificate_pem: Option<Option<String>>,
    /// PEM private key matching `tls_certificate_pem`. Write-only.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, write_only)]
    pub tls_key_pem: Option<Option<String>>,
    pub accept_any_recipient: Option<bool>,
    #[schema(minimum = 1024, maximum = 536870912)]
    pub max_message_size: Option<u64>,
    #[schema(minimum = 1, maximum = 100000)]
    pub max_recipients: Option<u32>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_connections: Option<u32>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_connections_per_source: Option<u32>,
    /// 0 = unlimited.
    #[schema(minimum = 0, maximum = 1000000)]
    pub max_messages_per_minute_per_source: Option<u32>,
    #[schema(minimum = 1, maximum = 86400)]
    pub connection_timeout_secs: Option<u32>,
    /// Text after `220 <fqdn> ` in the greeting; empty for the default.
    #[schema(max_length = 200)]
    pub banner: Option<String>,
    /// The host name announced in the greeting, EHLO and Received headers.
    pub fqdn: Option<String>,
    #[schema(value_type = Option<crate::domain::ProtocolLogging>)]
    pub protocol_logging: Option<String>,
    /// Confirms remote IP ranges wider than a /8 of public IPv4 (or a /32 of IPv6) on a
    /// connector that relays anonymously to any domain (an open relay); not stored, so
    /// each such write must say it again.
    #[serde(default)]
    #[schema(write_only)]
    pub i_mean_open_relay: bool,
    #[schema(read_only)]
    pub id: Option<serde_json::Value>,
    #[schema(read_only)]
    pub version: Option<serde_json::Value>,
    #[schema(read_only)]
    pub has_tls_certificate: Option<serde_json::Value>,
    #[schema(read_only)]
    pub warnings: Option<serde_json::Value>,
}

impl std::fmt::Debug for ReceiveConnectorInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveConnectorInput").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ReceiveConnectorInput {
    fn changes(self) -> Result<ReceiveConnectorChanges, Problem> {
        read_only(&[&self.id, &self.version, &self.has_tls_certificate, &self.warnings]);
        let tls_certificate = match (self.tls_certificate_pem, self.tls_key_pem) {
            (None, None) => None,
            (Some(None), Some(None)) => Some(None),
            (Some(Some(chain)), Some(Some(key))) => Some(Some((chain, key))),
            _ => {
                return Err(Problem::invalid_field(
                    "tls_certificate_pem",
                    "give tls_certificate_pem and tls_key_pem together (both null to remove them)",
                ));
            }
        };
        Ok(ReceiveConnectorChanges {
            name: self.name,
            enabled: self.enabled,
            bindings: self.bindings,
            remote_ip_ranges: self.remote_ip_ranges,
            permission_groups: self.permission_groups,
            auth_mechanisms: self.auth_mechanisms,
            auth_requires_tls: self.auth_requires_tls,
            tls_mode: self.tls_mode,
            require_tls: self.require_tls,
            tls_certificate,
            accept_any_recipient: self.accept_any_recipient,
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_messages_per_minute_per_source: self.max_messages_per_minute_per_source,
            connection_timeout_secs: self.connection_timeout_secs,
            banner: self.banner,
            fqdn: self.fqdn,
            protocol_logging: self.protocol_logging,
            i_mean_open_relay: self.i_mean_open_relay,
        })
    }
}

/// The auth mechanism names a client may send (Postern's and Exchange's).
#[derive(Debug, ToSchema)]
#[allow(dead_code, non_camel_case_types)]
pub enum AuthMechanismName {
    plain,
    login,
    tls,
    #[schema(rename = "basic-auth")]
    basic_auth,
    #[schema(rename = "basic-auth-require-tls")]
    basic_auth_require_tls,
    none,
}

fn respond(status: StatusCode, row: ReceiveConnectorRow) -> Response {
    let location =
        (status == StatusCode::CREATED).then(|| format!("/api/v1/receive-connectors/{}", path_segment(&row.name)));
    tagged(status, &entity_tag(row.id, row.version), location, &ReceiveConnectorView::from(row))
}

/// List receive connectors (Get-ReceiveConnector), by name.
#[utoipa::path(get, path = "/api/v1/receive-connectors", operation_id = "listReceiveConnectors", tag = "receive connectors", params(ListQuery),
    responses((status = 200, description = "One page of receive connectors", body = Page<ReceiveConnectorView>)))]
pub async fn list(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<ReceiveConnectorView>>, Problem> {
    let rows = state.store.receive_connectors().await?;
    let rows = rows.into_iter().filter(|r| query.enabled.is_none_or(|e| r.enabled == e)).collect();
    let page = page_by_name(rows, |r: &ReceiveConnectorRow| r.name.clone(), &query)?;
    Ok(axum::Json(Page { items: page.items.into_iter().map(Into::into).collect(), next: page.next }))
}

/// One receive connector, with its ETag.
#[utoipa::path(get, path = "/api/v1/receive-connectors/{name}", operation_id = "getReceiveConnector", tag = "receive connectors",
    params(("name" = String, Path, description = "The connector's name (case-insensitive)", example = "SMTP Relay Script")),
    responses((status = 200, description = "The receive connector", body = ReceiveConnectorView, headers(("ETag" = String))), (status = 404, description = "Not found")))]
pub async fn get(
    _caller: ApiCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(respond(StatusCode::OK, state.store.receive_connector(&name).await?))
}

/// Create or replace a receive connector (idempotent). Fields left out take their
/// defaults; a replacement that changes nothing writes nothing.
#[utoipa::path(put, path = "/api/v1/receive-connectors/{name}", operation_id = "putReceiveConnector", tag = "receive connectors",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    request_body = ReceiveConnectorInput,
    responses((status = 200, description = "Replaced (or unchanged)", body = ReceiveConnectorView, headers(("ETag" = String))),
        (status = 201, description = "Created", body = ReceiveConnectorView, headers(("ETag" = String), ("Location" = String))),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn put(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<ReceiveConnectorInput>,
) -> Result<Response, Problem> {
    super::body_names_the_path("name", input.name.as_deref(), &name)?;
    let changes = input.changes()?;
    let (connector, created) = state.admin(&caller).put_receive_connector(&name, &changes, if_match.as_ref()).await?;
    Ok(respond(created_or_ok(created), state.store.receive_connector(&connector.name).await?))
}

/// Change some fields of a receive connector (Set-ReceiveConnector).
#[utoipa::path(patch, path = "/api/v1/receive-connectors/{name}", operation_id = "patchReceiveConnector", tag = "receive connectors",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag the change is based on")),
    request_body = ReceiveConnectorInput,
    responses((status = 200, description = "The receive connector", body = ReceiveConnectorView, headers(("ETag" = String))), (status = 404, description = "Not found"),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn patch(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<ReceiveConnectorInput>,
) -> Result<Response, Problem> {
    let changes = input.changes()?;
    let connector = state.admin(&caller).set_receive_connector(&name, &changes, if_match.as_ref()).await?;
    Ok(respond(StatusCode::OK, state.store.receive_connector(&connector.name).await?))
}

/// Remove a receive connector; its listeners close with the next snapshot.
#[utoipa::path(delete, path = "/api/v1/receive-connectors/{name}", operation_id = "deleteReceiveConnector", tag = "receive connectors",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag the removal is based on")),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not found"),
        (status = 412, description = "If-Match no longer matches: the object changed")))]
pub async fn delete(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).remove_receive_connector(&name, if_match.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The certificate chain the connector presents (its own, or the one Postern generated).
#[utoipa::path(get, path = "/api/v1/receive-connectors/{name}/certificate", operation_id = "getReceiveConnectorCertificate", tag = "receive connectors",
    params(("name" = String, Path)),
    responses((status = 200, description = "PEM certificate chain", body = String, content_type = "application/x-pem-file"),
        (status = 404, description = "Not found"), (status = 409, description = "Conflicts with another object or with the current state")))]
pub async fn certificate(
    caller: ApiCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    let pem = state.admin(&caller).receive_connector_certificate(&name, false).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}
