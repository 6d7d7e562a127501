//! `/api/v1/send-connectors` (New-/Set-/Get-/Remove-SendConnector) and
//! `/api/v1/accepted-domains` (New-/Set-/Get-/Remove-AcceptedDomain).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{
    ApiJson, ApiQuery, IfMatchHeader, ListQuery, Page, PageQuery, created_or_ok, page_by_name, path_segment, tagged,
};
use super::{double_option, read_only};
use crate::admin::SendConnectorChanges;
use crate::http::AppState;
use crate::http::auth::{ApiCaller, WriteCaller};
use crate::http::problem::Problem;
use crate::store::{AcceptedDomainRow, SendConnectorRow, entity_tag};

/// A send connector as the API shows it. The smart-host password is never shown.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SendConnector)]
pub struct SendConnectorView {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    /// Recipient domains routed here: `example.com`, `*.example.com`, or `*`.
    pub address_spaces: Vec<String>,
    /// `host` or `host:port`, tried in order; empty = deliver by DNS MX.
    pub smart_hosts: Vec<String>,
    pub port: i32,
    #[schema(value_type = crate::domain::TlsPolicy)]
    pub tls_policy: String,
    /// The smart-host user name (or, with OAuth2, the mailbox), when credentials are set.
    pub username: Option<String>,
    /// `password` (AUTH PLAIN/LOGIN), `oauth2` (XOAUTH2) or `none`.
    #[schema(example = "password")]
    pub auth: String,
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_scope: Option<String>,
    /// The CAs trusted for these hosts besides the system store (PEM).
    pub tls_ca_pem: Option<String>,
    /// The same CAs, by subject and expiry.
    pub tls_ca: Vec<crate::delivery::tls::CaSummary>,
    /// `sha256:<base64>` of the next hop's public key.
    pub tls_pin: Option<String>,
    pub allow_private_destinations: bool,
    #[schema(value_type = crate::domain::IpPreference)]
    pub ip_preference: String,
    pub version: i64,
}

impl From<SendConnectorRow> for SendConnectorView {
    fn from(r: SendConnectorRow) -> Self {
        let tls_ca = r.ca_summaries();
        Self {
            id: r.id,
            name: r.name,
            enabled: r.enabled,
            address_spaces: r.address_spaces,
            smart_hosts: r.smart_hosts,
            port: r.port,
            tls_ca,
            auth: match (&r.oauth_token_url, &r.password) {
                (Some(_), _) => "oauth2",
                (None, Some(_)) => "password",
                (None, None) => "none",
            }
            .into(),
            tls_policy: r.tls_policy,
            username: r.username,
            oauth_token_url: r.oauth_token_url,
            oauth_client_id: r.oauth_client_id,
            oauth_scope: r.oauth_scope,
            tls_ca_pem: r.tls_ca_pem,
            tls_pin: r.tls_pin,
            allow_private_destinations: r.allow_private_destinations,
            ip_preference: r.ip_preference,
            version: r.version,
        }
    }
}

/// The fields a client sets (PUT: left out = default, credentials kept; PATCH: left
/// out = unchanged). `username` and `password` go together; both `null` removes them.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SendConnectorInput, example = json!({ "address_spaces": ["*"], "smart_hosts": ["smtp.example.net:587"], "tls_policy": "verify" }))]
pub struct SendConnectorInput {
    #[schema(min_length = 1, max_length = 64)]
    pub name: Option<String>,
    pub enabled: Option<bool>,
    /// `example.com`, `*.example.com` or `*`; at least one.
    #[schema(min_items = 1)]
    pub address_spaces: Option<Vec<String>>,
    pub smart_hosts: Option<Vec<String>>,
    #[schema(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// `verify` when credentials are set (they go only to a verified smart host; the
    /// default then). `required` is accepted for `verify`.
    #[schema(value_type = Option<crate::domain::TlsPolicy>)]
    pub tls_policy: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Write-only: never shown back.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, write_only)]
    pub password: Option<Option<String>>,
    /// `password`, `oauth2` or `none`; left out, as it is (or as the fields given say).
    pub auth: Option<String>,
    /// OAuth2 token endpoint (https).
    pub oauth_token_url: Option<String>,
    pub oauth_client_id: Option<String>,
    pub oauth_scope: Option<String>,
    /// Write-only: never shown back.
    #[schema(write_only)]
    pub oauth_client_secret: Option<String>,
    /// PEM CAs trusted for these hosts under `verify`; `null` removes them.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub tls_ca_pem: Option<Option<String>>,
    /// `sha256:<base64>`; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub tls_pin: Option<Option<String>>,
    pub allow_private_destinations: Option<bool>,
    #[schema(value_type = Option<crate::domain::IpPreference>)]
    pub ip_preference: Option<String>,
    #[schema(read_only)]
    pub id: Option<serde_json::Value>,
    #[schema(read_only)]
    pub version: Option<serde_json::Value>,
    #[schema(read_only)]
    pub tls_ca: Option<serde_json::Value>,
}

impl std::fmt::Debug for SendConnectorInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendConnectorInput").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SendConnectorInput {
    fn changes(self) -> Result<SendConnectorChanges, Problem> {
        read_only(&[&self.id, &self.version, &self.tls_ca]);
        Ok(SendConnectorChanges {
            name: self.name,
            enabled: self.enabled,
            address_spaces: self.address_spaces,
            smart_hosts: self.smart_hosts,
            port: self.port,
            tls_policy: self.tls_policy,
            username: self.username,
            password: self.password,
            auth: self.auth,
            oauth_token_url: self.oauth_token_url,
            oauth_client_id: self.oauth_client_id,
            oauth_scope: self.oauth_scope,
            oauth_client_secret: self.oauth_client_secret,
            tls_ca_pem: self.tls_ca_pem,
            tls_pin: self.tls_pin,
            allow_private_destinations: self.allow_private_destinations,
            ip_preference: self.ip_preference,
        })
    }
}

fn respond(status: StatusCode, row: SendConnectorRow) -> Response {
    let location =
        (status == StatusCode::CREATED).then(|| format!("/api/v1/send-connectors/{}", path_segment(&row.name)));
    tagged(status, &entity_tag(row.id, row.version), location, &SendConnectorView::from(row))
}

/// List send connectors, by name.
#[utoipa::path(get, path = "/api/v1/send-connectors", operation_id = "listSendConnectors", tag = "send connectors", params(ListQuery),
    responses((status = 200, description = "One page of send connectors", body = Page<SendConnectorView>)))]
pub async fn list(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<SendConnectorView>>, Problem> {
    let rows = state.store.send_connectors().await?;
    let rows = rows.into_iter().filter(|r| query.enabled.is_none_or(|e| r.enabled == e)).collect();
    let page = page_by_name(rows, |r: &SendConnectorRow| r.name.clone(), &query)?;
    Ok(axum::Json(Page { items: page.items.into_iter().map(Into::into).collect(), next: page.next }))
}

/// One send connector, with its ETag.
#[utoipa::path(get, path = "/api/v1/send-connectors/{name}", operation_id = "getSendConnector", tag = "send connectors", params(("name" = String, Path)),
    responses((status = 200, description = "The send connector", body = SendConnectorView, headers(("ETag" = String))), (status = 404, description = "Not found")))]
pub async fn get(
    _caller: ApiCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    Ok(respond(StatusCode::OK, state.store.send_connector(&name).await?))
}

/// Create or replace a send connector (idempotent).
#[utoipa::path(put, path = "/api/v1/send-connectors/{name}", operation_id = "putSendConnector", tag = "send connectors",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)), request_body = SendConnectorInput,
    responses((status = 200, description = "Replaced (or unchanged)", body = SendConnectorView, headers(("ETag" = String))),
        (status = 201, description = "Created", body = SendConnectorView, headers(("ETag" = String), ("Location" = String))),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn put(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<SendConnectorInput>,
) -> Result<Response, Problem> {
    super::body_names_the_path("name", input.name.as_deref(), &name)?;
    let changes = input.changes()?;
    let (connector, created) = state.admin(&caller).put_send_connector(&name, &changes, if_match.as_ref()).await?;
    Ok(respond(created_or_ok(created), state.store.send_connector(&connector.name).await?))
}

/// Change some fields of a send connector.
#[utoipa::path(patch, path = "/api/v1/send-connectors/{name}", operation_id = "patchSendConnector", tag = "send connectors",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)), request_body = SendConnectorInput,
    responses((status = 200, description = "The send connector", body = SendConnectorView, headers(("ETag" = String))), (status = 404, description = "Not found"),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn patch(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<SendConnectorInput>,
) -> Result<Response, Problem> {
    let changes = input.changes()?;
    let connector = state.admin(&caller).set_send_connector(&name, &changes, if_match.as_ref()).await?;
    Ok(respond(StatusCode::OK, state.store.send_connector(&connector.name).await?))
}

/// Remove a send connector.
#[utoipa::path(delete, path = "/api/v1/send-connectors/{name}", operation_id = "deleteSendConnector", tag = "send connectors",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not found"),
        (status = 412, description = "If-Match no longer matches: the object changed")))]
pub async fn delete(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).remove_send_connector(&name, if_match.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An accepted domain: mail for it is internal.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AcceptedDomain)]
pub struct AcceptedDomainView {
    pub id: Uuid,
    pub domain: String,
    #[schema(value_type = crate::domain::DomainType)]
    pub domain_type: String,
    pub version: i64,
}

impl From<AcceptedDomainRow> for AcceptedDomainView {
    fn from(r: AcceptedDomainRow) -> Self {
        Self { id: r.id, domain: r.domain, domain_type: r.domain_type, version: r.version }
    }
}

/// What a PUT of an accepted domain may set: its type.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AcceptedDomainInput, example = json!({ "domain_type": "authoritative" }))]
pub struct AcceptedDomainInput {
    /// Default: `authoritative`.
    #[schema(value_type = Option<crate::domain::DomainType>)]
    pub domain_type: Option<String>,
    /// The domain in the path, if given.
    pub domain: Option<String>,
    #[schema(read_only)]
    pub id: Option<serde_json::Value>,
    #[schema(read_only)]
    pub version: Option<serde_json::Value>,
}

fn respond_domain(status: StatusCode, row: AcceptedDomainRow) -> Response {
    let location =
        (status == StatusCode::CREATED).then(|| format!("/api/v1/accepted-domains/{}", path_segment(&row.domain)));
    tagged(status, &entity_tag(row.id, row.version), location, &AcceptedDomainView::from(row))
}

/// List accepted domains.
#[utoipa::path(get, path = "/api/v1/accepted-domains", operation_id = "listAcceptedDomains", tag = "accepted domains", params(PageQuery),
    responses((status = 200, description = "One page of accepted domains", body = Page<AcceptedDomainView>)))]
pub async fn list_domains(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<axum::Json<Page<AcceptedDomainView>>, Problem> {
    let rows = state.store.accepted_domains().await?;
    let page = page_by_name(rows, |r: &AcceptedDomainRow| r.domain.clone(), &query.into())?;
    Ok(axum::Json(Page { items: page.items.into_iter().map(Into::into).collect(), next: page.next }))
}

/// One accepted domain.
#[utoipa::path(get, path = "/api/v1/accepted-domains/{domain}", operation_id = "getAcceptedDomain", tag = "accepted domains",
    params(("domain" = String, Path)),
    responses((status = 200, description = "The accepted domain", body = AcceptedDomainView, headers(("ETag" = String))), (status = 404, description = "Not found"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn get_domain(
    _caller: ApiCaller,
    State(state): State<AppState>,
    Path(domain): Path<String>,
) -> Result<Response, Problem> {
    let parsed = crate::domain::Domain::parse(domain.trim(), true)
        .map_err(|e| Problem::invalid_field("domain", e.to_string()))?;
    Ok(respond_domain(StatusCode::OK, state.store.accepted_domain(&parsed).await?))
}

/// Accept a domain, or change its type (idempotent).
#[utoipa::path(put, path = "/api/v1/accepted-domains/{domain}", operation_id = "putAcceptedDomain", tag = "accepted domains",
    params(("domain" = String, Path), ("If-Match" = Option<String>, Header)), request_body = AcceptedDomainInput,
    responses((status = 200, description = "Changed (or unchanged)", body = AcceptedDomainView, headers(("ETag" = String))),
        (status = 201, description = "Created", body = AcceptedDomainView, headers(("ETag" = String), ("Location" = String))),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn put_domain(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(domain): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<AcceptedDomainInput>,
) -> Result<Response, Problem> {
    read_only(&[&input.id, &input.version]);
    if input.domain.as_deref().is_some_and(|d| !d.trim().eq_ignore_ascii_case(domain.trim())) {
        return Err(Problem::invalid_field("domain", "must be the domain in the path"));
    }
    let admin = state.admin(&caller);
    let (row, created) = admin.put_accepted_domain(&domain, input.domain_type.as_deref(), if_match.as_ref()).await?;
    Ok(respond_domain(created_or_ok(created), row))
}

/// Stop accepting a domain.
#[utoipa::path(delete, path = "/api/v1/accepted-domains/{domain}", operation_id = "deleteAcceptedDomain", tag = "accepted domains",
    params(("domain" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not found"),
        (status = 412, description = "If-Match no longer matches: the object changed"), (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn delete_domain(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(domain): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).remove_accepted_domain(&domain, if_match.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}
