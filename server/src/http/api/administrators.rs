//! `/api/v1/administrators`: the console's administrators (admin scope): create, change
//! role or enabled, reset a password (to be replaced at the next sign-in), sign out
//! everywhere, remove. Passwords and hashes are never returned, except a generated
//! password in the response that set it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::extract::{ApiJson, Page};
use crate::admin::AdminUserChanges;
use crate::http::AppState;
use crate::http::auth::AdminCaller;
use crate::http::problem::Problem;
use crate::store::AdminUserRow;

/// A console administrator.
#[derive(Debug, Serialize, ToSchema)]
pub struct Administrator {
    pub name: String,
    /// `admin` (changes everything) or `viewer` (reads).
    #[schema(example = "admin")]
    pub role: String,
    pub enabled: bool,
    /// Signs in through the identity provider (no password here).
    pub federated: bool,
    /// The password was set by someone else and must be replaced at the next sign-in.
    pub must_change_password: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_sign_in_at: Option<OffsetDateTime>,
    /// A generated password: only in the response that set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl Administrator {
    fn new(row: AdminUserRow, password: Option<String>) -> Self {
        Self {
            name: row.name,
            role: row.role,
            enabled: row.enabled,
            federated: row.federated,
            must_change_password: row.must_change_password,
            created_at: row.created_at,
            last_sign_in_at: row.last_sign_in_at,
            password,
        }
    }
}

/// A new console administrator.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdministratorInput {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    pub name: String,
    #[serde(default = "admin_role")]
    #[schema(example = "viewer")]
    pub role: String,
    /// Left out: generated and returned once. Either way it must be replaced at the
    /// first sign-in.
    #[schema(write_only, min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

fn admin_role() -> String {
    "admin".into()
}

impl std::fmt::Debug for AdministratorInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdministratorInput").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

/// The fields of an administrator a PATCH changes (absent fields stay as they are).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdministratorChanges {
    #[schema(example = "viewer")]
    pub role: Option<String>,
    /// `false`: the administrator can no longer sign in, and their sessions end.
    pub enabled: Option<bool>,
}

/// A new password for an administrator; absent: one is generated and returned once.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdministratorPassword {
    /// The new password; left out = generated and returned once. It must be replaced at
    /// the next sign-in.
    #[schema(write_only, min_length = 12, max_length = 1024)]
    pub password: Option<String>,
}

impl std::fmt::Debug for AdministratorPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdministratorPassword { .. }")
    }
}

/// How many sessions were ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsEnded {
    pub sessions_ended: u64,
}

async fn view(
    state: &AppState,
    caller: &AdminCaller,
    name: &str,
    password: Option<String>,
) -> Result<Administrator, Problem> {
    Ok(Administrator::new(state.admin(caller).admin_user(name).await?, password))
}

/// The console's administrators.
#[utoipa::path(get, path = "/api/v1/administrators", tag = "administrators", operation_id = "listAdministrators",
    responses((status = 200, description = "One page of administrators", body = Page<Administrator>), (status = 403, description = "The token lacks the admin scope")))]
pub async fn list(
    caller: AdminCaller,
    State(state): State<AppState>,
) -> Result<axum::Json<Page<Administrator>>, Problem> {
    let rows = state.admin(&caller).admin_users().await?;
    Ok(axum::Json(Page { items: rows.into_iter().map(|r| Administrator::new(r, None)).collect(), next: None }))
}

/// Create an administrator (the password, given or generated, must be replaced at the
/// first sign-in).
#[utoipa::path(post, path = "/api/v1/administrators", tag = "administrators", operation_id = "createAdministrator",
    request_body = AdministratorInput,
    responses((status = 201, description = "The administrator was created", body = Administrator), (status = 409, description = "An administrator of that name exists"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn create(
    caller: AdminCaller,
    State(state): State<AppState>,
    ApiJson(input): ApiJson<AdministratorInput>,
) -> Result<(StatusCode, axum::Json<Administrator>), Problem> {
    let admin = state.admin(&caller);
    let generated = admin.new_admin_user_with(&input.name, &input.role, input.password, true).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&state, &caller, input.name.trim(), generated).await?)))
}

/// Change an administrator's role or whether they may sign in (either ends their sessions).
#[utoipa::path(patch, path = "/api/v1/administrators/{name}", tag = "administrators", operation_id = "patchAdministrator",
    params(("name" = String, Path)), request_body = AdministratorChanges,
    responses((status = 200, description = "The administrator", body = Administrator), (status = 404, description = "Not found"),
        (status = 409, description = "The last enabled admin cannot be disabled or made a viewer"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn patch(
    caller: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<AdministratorChanges>,
) -> Result<axum::Json<Administrator>, Problem> {
    let changes = AdminUserChanges { role: input.role, enabled: input.enabled };
    state.admin(&caller).set_admin_user(&name, &changes).await?;
    Ok(axum::Json(view(&state, &caller, &name, None).await?))
}

/// Set an administrator's password (given, or generated and returned once); they must
/// replace it at their next sign-in, and their sessions end now.
#[utoipa::path(post, path = "/api/v1/administrators/{name}/password", tag = "administrators",
    operation_id = "resetAdministratorPassword", params(("name" = String, Path)), request_body = AdministratorPassword,
    responses((status = 200, description = "The administrator", body = Administrator), (status = 404, description = "Not found"),
        (status = 409, description = "The administrator signs in through the identity provider"),
        (status = 422, description = "Invalid fields (listed in errors)")))]
pub async fn reset_password(
    caller: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    ApiJson(input): ApiJson<AdministratorPassword>,
) -> Result<axum::Json<Administrator>, Problem> {
    let generated = state.admin(&caller).reset_admin_password(&name, input.password).await?;
    Ok(axum::Json(view(&state, &caller, &name, generated).await?))
}

/// Sign an administrator out of every browser.
#[utoipa::path(delete, path = "/api/v1/administrators/{name}/sessions", tag = "administrators",
    operation_id = "revokeAdministratorSessions", params(("name" = String, Path)),
    responses((status = 200, description = "The administrator's console sessions were ended", body = SessionsEnded), (status = 404, description = "Not found")))]
pub async fn revoke_sessions(
    caller: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<SessionsEnded>, Problem> {
    let sessions_ended = state.admin(&caller).end_admin_sessions(&name, None).await?;
    Ok(axum::Json(SessionsEnded { sessions_ended }))
}

/// Remove an administrator (not the last enabled admin).
#[utoipa::path(delete, path = "/api/v1/administrators/{name}", tag = "administrators", operation_id = "deleteAdministrator",
    params(("name" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 404, description = "Not found"),
        (status = 409, description = "The last enabled admin cannot be removed")))]
pub async fn delete(
    caller: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    state.admin(&caller).remove_admin_user(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
