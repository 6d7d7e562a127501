//! API authentication: `Authorization: Bearer pst_…` tokens (see `admin::api_tokens`).
//! Errors are RFC 9457 problem documents.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use uuid::Uuid;

use super::AppState;
pub use super::problem::Problem;
use crate::admin::{TOKEN_PREFIX, token_digest};
use crate::domain::ApiScope;

/// Who calls the API.
#[derive(Debug, Clone)]
pub struct ApiCaller {
    /// The token's id, to check later that it is still live (long-lived streams).
    pub token_id: Uuid,
    pub name: String,
    pub scope: ApiScope,
}

fn unauthorized(detail: &str) -> Problem {
    Problem::new(StatusCode::UNAUTHORIZED, detail)
}

/// When each token was last recorded as used; `last_used_at` is written at most once a
/// minute per token, not on every request.
#[derive(Debug, Default)]
pub struct TokenUse(Mutex<HashMap<Uuid, Instant>>);

impl TokenUse {
    fn due(&self, id: Uuid) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.get(&id) {
            Some(at) if at.elapsed() < Duration::from_secs(60) => false,
            _ => {
                seen.insert(id, Instant::now());
                true
            }
        }
    }
}

impl FromRequestParts<AppState> for ApiCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        // RFC 9110 §11.1: the scheme name is case-insensitive.
        let token = value
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| unauthorized("an API token is required: Authorization: Bearer <token>"))?;
        // Anything that cannot be a token is refused without a database lookup.
        if !token.starts_with(TOKEN_PREFIX) || token.len() > 100 {
            return Err(unauthorized("the API token is unknown, revoked or expired"));
        }
        let found = state.store.api_token_by_digest(&token_digest(token)).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot check an API token");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, "the token cannot be checked now; try again")
        })?;
        let (id, name, scope) = found.ok_or_else(|| unauthorized("the API token is unknown, revoked or expired"))?;
        if state.token_use.due(id) {
            let store = state.store.clone();
            tokio::spawn(async move { store.touch_api_token(id).await });
        }
        let scope = scope.parse().map_err(|_| unauthorized("the API token has an unknown scope"))?;
        Ok(ApiCaller { token_id: id, name, scope })
    }
}

impl ApiCaller {
    /// Refuses a read-only token where a change is asked for (403).
    pub fn require_write(&self) -> Result<(), Problem> {
        if self.scope.allows(ApiScope::Write) {
            return Ok(());
        }
        Err(Problem::new(StatusCode::FORBIDDEN, format!("the API token {:?} may only read", self.name)))
    }

    /// Refuses a token without the admin scope where administrators or tokens are
    /// managed (403).
    pub fn require_admin(&self) -> Result<(), Problem> {
        if self.scope.allows(ApiScope::Admin) {
            return Ok(());
        }
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!("the API token {:?} may not manage administrators or tokens (admin scope needed)", self.name),
        ))
    }
}

/// A caller whose token has the admin scope (administrators and API tokens).
#[derive(Debug, Clone)]
pub struct AdminCaller(pub ApiCaller);

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = ApiCaller::from_request_parts(parts, state).await?;
        caller.require_admin()?;
        Ok(AdminCaller(caller))
    }
}

impl std::ops::Deref for AdminCaller {
    type Target = ApiCaller;

    fn deref(&self) -> &ApiCaller {
        &self.0
    }
}

pub type SharedTokenUse = Arc<TokenUse>;

/// A caller whose token may write. As an extractor it runs before the body and other
/// headers are read, so a read-only token gets 403 whatever else is wrong.
#[derive(Debug, Clone)]
pub struct WriteCaller(pub ApiCaller);

impl FromRequestParts<AppState> for WriteCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = ApiCaller::from_request_parts(parts, state).await?;
        caller.require_write()?;
        Ok(WriteCaller(caller))
    }
}

impl std::ops::Deref for WriteCaller {
    type Target = ApiCaller;

    fn deref(&self) -> &ApiCaller {
        &self.0
    }
}
