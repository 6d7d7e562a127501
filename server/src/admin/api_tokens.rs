//! API tokens (`postern api-token new --name .. --scope read|write`): 256 random bits,
//! shown once, stored as a SHA-256 digest (a token is not a password: it has full
//! entropy, so a fast digest is enough and lets each request be checked in microseconds).

use base64::Engine as _;

use super::{Admin, AdminError, Problems};
use crate::domain::ApiScope;
use crate::store::ApiTokenRow;

/// Every token starts with this, so a leaked one is easy to recognise in a scan.
pub const TOKEN_PREFIX: &str = "pst_";

/// The digest a token is stored and looked up by.
pub fn token_digest(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.trim().as_bytes()).as_ref().to_vec()
}

fn new_token() -> Result<String, AdminError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| AdminError::Conflict("the system random generator failed".into()))?;
    Ok(format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)))
}

impl Admin {
    /// Creates a token; the returned text is the only time it is ever shown.
    pub async fn new_api_token(&self, name: &str, scope: &str) -> Result<(ApiTokenRow, String), AdminError> {
        let mut p = Problems::default();
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            p.add("name", "must be 1 to 64 printable characters");
        }
        let scope = p.check("scope", scope.parse::<ApiScope>());
        p.into_result()?;
        let scope = scope.ok_or_else(|| AdminError::Invalid(Vec::new()))?;
        let token = new_token()?;
        let row = self.store.create_api_token(name, scope.as_str(), &token_digest(&token), &self.actor).await?;
        Ok((row, token))
    }

    pub async fn api_tokens(&self) -> Result<Vec<ApiTokenRow>, AdminError> {
        Ok(self.store.api_tokens().await?)
    }

    pub async fn revoke_api_token(&self, name: &str) -> Result<(), AdminError> {
        Ok(self.store.revoke_api_token(name, &self.actor).await?)
    }
}
