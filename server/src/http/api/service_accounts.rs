//! `/api/v1/service-accounts` (the seed's `svc-mailer`), their Send-As grants, and
//! `/api/v1/api-tokens`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{
    ApiJson, ApiQuery, IfMatchHeader, ListQuery, Page, created_or_ok, page_by_name, path_segment, tagged,
};
use super::read_only;
use crate::admin::ServiceAccountChanges;
use crate::http::AppState;
use crate::http::auth::{AdminCaller, ApiCaller, WriteCaller};
use crate::http::problem::Problem;
use crate::store::{ApiTokenRow, ServiceAccountRow, entity_tag};

/// A service account as the API shows it. Its password is never shown, except once in
/// the response that generated it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ServiceAccount)]
pub struct ServiceAccountView {
    pub id: Uuid,
    /// The login (AUTH user name); the address is a login too.
    pub name: String,
    pub address: String,
    pub enabled: bool,
    /// Source ranges the account may sign in from; empty = any.
    pub remote_ip_ranges: Vec<String>,
    /// Messages per minute; null = unlimited.
    pub max_messages_per_minute: Option<i32>,
    pub max_messages_per_day: Option<i32>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Addresses (or `*@domain`) the account may send as.
    pub send_as: Vec<String>,
    pub version: i64,
    /// The password Postern generated: present only in the response that created or
    /// rotated it. Store it now; only its hash is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_password: Option<String>,
}

impl ServiceAccountView {
    fn new(r: ServiceAccountRow, send_as: Vec<String>, generated_password: Option<String>) -> Self {
        Self {
            id: r.id,
            name: r.name,
            address: r.address,
            enabled: r.enabled,
            remote_ip_ranges: r.remote_ip_ranges.iter().flatten().map(ToString::to_string).collect(),
            max_messages_per_minute: r.max_messages_per_minute,
            max_messages_per_day: r.max_messages_per_day,
            last_used_at: r.last_used_at,
            send_as,
            version: r.version,
            generated_password,
        }
    }
}

/// The fields a client sets (PUT: left out = default, password and grants kept;
/// PATCH: left out = unchanged). Limits: 0 = unlimited.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ServiceAccountInput, example = json!({ "address": "svc-mailer@cloudmonkeys.xyz", "password": "Sup3r-Secret-Passw0rd" }))]
pub struct ServiceAccountInput {
    /// Letters, digits, `.`, `_`, `-`, `@`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    pub name: Option<String>,
    pub address: Option<String>,
    /// At least 12 characters. Write-only. On creation, left out = generated and returned once.
    #[schema(write_only, min_length = 12, max_length = 256)]
    pub password: Option<String>,
    pub enabled: Option<bool>,
    /// Empty = from anywhere the connector admits.
    pub remote_ip_ranges: Option<Vec<String>>,
    /// 0 = unlimited.
    #[schema(minimum = 0, maximum = 10000000)]
    pub max_messages_per_minute: Option<u32>,
    #[schema(minimum = 0, maximum = 10000000)]
    pub max_messages_per_day: Option<u32>,
    #[schema(read_only)]
    pub id: Option<serde_json::Value>,
    #[schema(read_only)]
    pub version: Option<serde_json::Value>,
    #[schema(read_only)]
    pub last_used_at: Option<serde_json::Value>,
    /// Read-only here: grants are managed under `/send-as`.
    #[schema(read_only)]
    pub send_as: Option<serde_json::Value>,
}

impl std::fmt::Debug for ServiceAccountInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountInput").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ServiceAccountInput {
    fn changes(self) -> ServiceAccountChanges {
        read_only(&[&self.id, &self.version, &self.last_used_at, &self.send_as]);
        ServiceAccountChanges {
            name: self.name,
            address: self.address,
            password: self.password,
            enabled: self.enabled,
            remote_ip_ranges: self.remote_ip_ranges,
            max_messages_per_minute: self.max_messages_per_minute,
            max_messages_per_day: self.max_messages_per_day,
        }
    }
}

async fn respond(
    state: &AppState,
    status: StatusCode,
    name: &str,
    generated: Option<String>,
) -> Result<Response, Problem> {
    let (row, grants) = state.store.service_account(name).await?;
    let location =
        (status == StatusCode::CREATED).then(|| format!("/api/v1/service-accounts/{}", path_segment(&row.name)));
    let tag = entity_tag(row.id, row.version);
    Ok(tagged(status, &tag, location, &ServiceAccountView::new(row, grants, generated)))
}

/// List service accounts, by name.
#[utoipa::path(get, path = "/api/v1/service-accounts", operation_id = "listServiceAccounts", tag = "service accounts", params(ListQuery),
    responses((status = 200, description = "One page of service accounts", body = Page<ServiceAccountView>)))]
pub async fn list(
    _caller: ApiCaller,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<Page<ServiceAccountView>>, Problem> {
    let rows = state.store.service_accounts().await?;
    let rows = rows.into_iter().filter(|r| query.enabled.is_none_or(|e| r.enabled == e)).collect();
    let page = page_by_name(rows, |r: &ServiceAccountRow| r.name.clone(), &query)?;
    let grants = state.store.send_as_grants(None).await?;
    let items = page
        .items
        .into_iter()
        .map(|row| {
            let mine = grants.iter().filter(|g| g.account == row.name).map(|g| g.sender.clone()).collect();
            ServiceAccountView::new(row, mine, None)
        })
        .collect();
    Ok(axum::Json(Page { items, next: page.next }))
}

/// One service account, with its grants and ETag.
#[utoipa::path(get, path = "/api/v1/service-accounts/{name}", operation_id = "getServiceAccount", tag = "service accounts", params(("name" = String, Path)),
    responses((status = 200, description = "The service account", body = ServiceAccountView, headers(("ETag" = String))), (status = 404, description = "Not found")))]
pub async fn get(
    _caller: ApiCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    respond(&state, StatusCode::OK, &name, None).await
}

/// Create or replace a service account (idempotent: re-sending the same fields and
/// password changes nothing).
#[utoipa::path(put, path = "/api/v1/service-accounts/{name}", operation_id = "putServiceAccount", tag = "service accounts",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)), request_body = ServiceAccountInput,
    responses((status = 200, description = "Replaced (or unchanged)", body = ServiceAccountView, headers(("ETag" = String))),
        (status = 201, description = "Created", body = ServiceAccountView, headers(("ETag" = String), ("Location" = String))),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn put(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<ServiceAccountInput>,
) -> Result<Response, Problem> {
    super::body_names_the_path("name", input.name.as_deref(), &name)?;
    let admin = state.admin(&caller);
    let (account, generated, created) = admin.put_service_account(&name, &input.changes(), if_match.as_ref()).await?;
    respond(&state, created_or_ok(created), &account.name, generated).await
}

/// Change some fields of a service account (disable it with `{"enabled": false}`).
#[utoipa::path(patch, path = "/api/v1/service-accounts/{name}", operation_id = "patchServiceAccount", tag = "service accounts",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)), request_body = ServiceAccountInput,
    responses((status = 200, description = "The service account", body = ServiceAccountView, headers(("ETag" = String))), (status = 404, description = "Not found"),
        (status = 409, description = "Conflicts with another object or with the current state"), (status = 412, description = "If-Match no longer matches: the object changed"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn patch(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<ServiceAccountInput>,
) -> Result<Response, Problem> {
    let account = state.admin(&caller).set_service_account(&name, &input.changes(), if_match.as_ref()).await?;
    respond(&state, StatusCode::OK, &account.name, None).await
}

/// Remove a service account and its grants.
#[utoipa::path(delete, path = "/api/v1/service-accounts/{name}", operation_id = "deleteServiceAccount", tag = "service accounts",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not found"),
        (status = 412, description = "If-Match no longer matches: the object changed")))]
pub async fn delete(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).remove_service_account(&name, if_match.as_ref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A service account's new password; absent: one is generated and returned once.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordInput {
    /// The new password; left out = generated and returned once.
    #[schema(write_only, min_length = 12, max_length = 256)]
    pub password: Option<String>,
}

impl std::fmt::Debug for PasswordInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordInput { .. }")
    }
}

/// Rotate the password: a generated one (returned once) or the one given.
#[utoipa::path(post, path = "/api/v1/service-accounts/{name}/password", operation_id = "rotateServiceAccountPassword", tag = "service accounts",
    params(("name" = String, Path), ("If-Match" = Option<String>, Header)), request_body = PasswordInput,
    responses((status = 200, description = "The service account", body = ServiceAccountView, headers(("ETag" = String))), (status = 404, description = "Not found"),
        (status = 412, description = "If-Match no longer matches: the object changed"), (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn rotate_password(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    IfMatchHeader(if_match): IfMatchHeader,
    ApiJson(input): ApiJson<PasswordInput>,
) -> Result<Response, Problem> {
    let admin = state.admin(&caller);
    let (account, generated) = admin.rotate_service_account_password(&name, input.password, if_match.as_ref()).await?;
    respond(&state, StatusCode::OK, &account.name, generated).await
}

/// A Send-As grant (Add-RecipientPermission -AccessRights SendAs).
#[derive(Debug, Serialize, ToSchema)]
pub struct SendAsGrant {
    pub account: String,
    /// An address, or `*@domain` for every address of a domain.
    pub sender: String,
}

/// The account's Send-As grants.
#[utoipa::path(get, path = "/api/v1/service-accounts/{name}/send-as", operation_id = "listSendAsGrants", tag = "service accounts",
    params(("name" = String, Path)),
    responses((status = 200, description = "One page of the account's Send-As grants", body = Page<SendAsGrant>), (status = 404, description = "Not found")))]
pub async fn list_send_as(
    caller: ApiCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Page<SendAsGrant>>, Problem> {
    let grants = state.admin(&caller).send_as_grants(Some(&name)).await?;
    let items = grants.into_iter().map(|g| SendAsGrant { account: g.account, sender: g.sender }).collect();
    Ok(axum::Json(Page { items, next: None }))
}

/// Let the account send as `sender` (idempotent: 201 when granted now, 200 when it was).
#[utoipa::path(put, path = "/api/v1/service-accounts/{name}/send-as/{sender}", operation_id = "putSendAsGrant", tag = "service accounts",
    params(("name" = String, Path), ("sender" = String, Path, description = "An address or *@domain")),
    responses((status = 200, description = "Already granted", body = SendAsGrant),
        (status = 201, description = "Granted", body = SendAsGrant),
        (status = 404, description = "Not found"), (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn put_send_as(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path((name, sender)): Path<(String, String)>,
) -> Result<(StatusCode, axum::Json<SendAsGrant>), Problem> {
    let admin = state.admin(&caller);
    let (pattern, added) = admin.add_send_as(&name, &sender).await?;
    let (row, _) = state.store.service_account(&name).await?;
    Ok((created_or_ok(added), axum::Json(SendAsGrant { account: row.name, sender: pattern.to_string() })))
}

/// Withdraw a Send-As grant.
#[utoipa::path(delete, path = "/api/v1/service-accounts/{name}/send-as/{sender}", operation_id = "deleteSendAsGrant", tag = "service accounts",
    params(("name" = String, Path), ("sender" = String, Path)),
    responses((status = 204, description = "Withdrawn"), (status = 404, description = "Not found"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn delete_send_as(
    caller: WriteCaller,
    State(state): State<AppState>,
    Path((name, sender)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).remove_send_as(&name, &sender).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An API token (its secret is shown once, when created).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    #[schema(value_type = crate::domain::ApiScope)]
    pub scope: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// When the token stops working; absent: never.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// The token that created this one (revoking it revokes this one too).
    pub created_by: Option<Uuid>,
    /// The token itself: only in the response that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl ApiToken {
    fn new(r: ApiTokenRow, token: Option<String>) -> Self {
        Self {
            id: r.id,
            name: r.name,
            scope: r.scope,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            expires_at: r.expires_at,
            created_by: r.created_by,
            token,
        }
    }
}

/// A new API token: its name, scope and lifetime.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenInput {
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    #[schema(value_type = crate::domain::ApiScope)]
    pub scope: String,
    /// Days until the token expires (default 365); 0: never.
    #[schema(maximum = 3650)]
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// API tokens, revoked and expired ones included (admin scope).
#[utoipa::path(get, path = "/api/v1/api-tokens", operation_id = "listApiTokens", tag = "api tokens",
    responses((status = 200, description = "One page of API tokens (never their secrets)", body = Page<ApiToken>), (status = 403, description = "The token lacks the admin scope")))]
pub async fn list_tokens(
    caller: AdminCaller,
    State(state): State<AppState>,
) -> Result<axum::Json<Page<ApiToken>>, Problem> {
    let items = state.admin(&caller).api_tokens().await?.into_iter().map(|r| ApiToken::new(r, None)).collect();
    Ok(axum::Json(Page { items, next: None }))
}

/// Create an API token (admin scope); the token is in this response only. It is revoked
/// together with the token that created it.
#[utoipa::path(post, path = "/api/v1/api-tokens", operation_id = "createApiToken", tag = "api tokens", request_body = ApiTokenInput,
    responses((status = 201, description = "The new token; its secret is shown this once", body = ApiToken), (status = 409, description = "Conflicts with another object or with the current state"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn create_token(
    caller: AdminCaller,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<ApiTokenInput>,
) -> Result<(StatusCode, axum::Json<ApiToken>), Problem> {
    let days = input.expires_in_days.unwrap_or(crate::admin::DEFAULT_TOKEN_DAYS);
    let (row, token) =
        state.admin(&caller).new_api_token_with(&input.name, &input.scope, days, Some(caller.token_id)).await?;
    Ok((StatusCode::CREATED, axum::Json(ApiToken::new(row, Some(token)))))
}

/// Revoke an API token and every token it created: they are refused from then on, and
/// their open streams end (admin scope).
#[utoipa::path(delete, path = "/api/v1/api-tokens/{name}", operation_id = "revokeApiToken", tag = "api tokens", params(("name" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, description = "Not found")))]
pub async fn revoke_token(
    caller: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).revoke_api_token(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
