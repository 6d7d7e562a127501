//! API tokens (`postern api-token new --name .. --scope read|write|admin`): 256 random
//! bits, shown once, stored as a SHA-256 digest (a token is not a password: it has full
//! entropy, so a fast digest is enough and lets each request be checked in microseconds).
//! Tokens expire (a year by default); one made through the API by another token is
//! revoked with it, so a leaked token cannot leave heirs behind.

use super::{Admin, AdminError, Problems};
use crate::domain::{ApiScope, ObjectName};
use crate::store::{ApiTokenRow, NewApiToken};

/// A new token's lifetime when none is asked for.
pub const DEFAULT_TOKEN_DAYS: u32 = 365;
/// The longest lifetime a token may be given (10 years); `0` days means it never expires.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// Every token starts with this, so a leaked one is easy to recognise in a scan.
pub const TOKEN_PREFIX: &str = "pst_";

/// The digest a token is stored and looked up by.
pub fn token_digest(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes()).as_ref().to_vec()
}

fn new_token() -> Result<String, AdminError> {
    let random = crate::auth::random_text(32)
        .ok_or_else(|| AdminError::Internal("the system random generator failed".into()))?;
    Ok(format!("{TOKEN_PREFIX}{random}"))
}

impl Admin {
    /// Creates a token valid for a year; the returned text is the only time it is ever shown.
    pub async fn new_api_token(&self, name: &str, scope: &str) -> Result<(ApiTokenRow, String), AdminError> {
        self.new_api_token_with(name, scope, DEFAULT_TOKEN_DAYS, None).await
    }

    /// Creates a token valid for `days` (0: it never expires), made by the token
    /// `created_by` when an API caller asks.
    pub async fn new_api_token_with(
        &self,
        name: &str,
        scope: &str,
        days: u32,
        created_by: Option<uuid::Uuid>,
    ) -> Result<(ApiTokenRow, String), AdminError> {
        let mut p = Problems::default();
        let name = p.check("name", ObjectName::parse(name)).map(ObjectName::into_string).unwrap_or_default();
        let scope = p.check("scope", scope.parse::<ApiScope>());
        if days > MAX_TOKEN_DAYS {
            p.add("expires_in_days", format!("at most {MAX_TOKEN_DAYS} days (0: never expires)"));
        }
        p.into_result()?;
        let scope = scope.ok_or_else(|| AdminError::Invalid(Vec::new()))?;
        let token = new_token()?;
        let expires_at = (days > 0).then(|| time::OffsetDateTime::now_utc() + time::Duration::days(i64::from(days)));
        let new =
            NewApiToken { name: &name, scope: scope.as_str(), sha256: &token_digest(&token), expires_at, created_by };
        let row = self.store.create_api_token(&new, &self.actor).await?;
        Ok((row, token))
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, AdminError> {
        Ok(self.store.api_tokens().await?)
    }

    /// Revokes a token and the tokens it created; returns their names.
    pub async fn revoke_api_token(&self, name: &str) -> Result<Vec<String>, AdminError> {
        Ok(self.store.revoke_api_token(name, &self.actor).await?)
    }
}
