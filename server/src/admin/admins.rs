//! Console administrators: created with `postern admin new`, or once on the first start.

use super::{Admin, AdminError, Problems};
use crate::auth;
use crate::store::AdminUserRow;

/// What an administrator may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRole {
    /// Edits everything.
    Admin,
    /// Reads tracking, the queue and logs; changes nothing.
    Viewer,
}

impl AdminRole {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(AdminRole::Admin),
            "viewer" => Ok(AdminRole::Viewer),
            other => Err(format!("{other:?} is not a role (expected admin or viewer)")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Admin => "admin",
            AdminRole::Viewer => "viewer",
        }
    }
}

impl Admin {
    /// Creates an administrator; without a password one is generated and returned.
    pub async fn new_admin_user(
        &self,
        name: &str,
        role: &str,
        password: Option<String>,
    ) -> Result<Option<String>, AdminError> {
        let mut p = Problems::default();
        let name = name.trim();
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            p.add("name", "must be 1 to 64 characters: letters, digits, '.', '_', '-', '@'");
        }
        let role = p.check("role", AdminRole::parse(role));
        p.into_result()?;
        let role = role.ok_or_else(|| AdminError::Invalid(Vec::new()))?;
        let generated = match password {
            Some(_) => None,
            None => Some(auth::generate_password().map_err(|e| AdminError::Internal(e.to_string()))?),
        };
        let hash = super::hash_password(password.or_else(|| generated.clone()).unwrap_or_default()).await?;
        self.store.create_admin_user(name, &hash, role.as_str(), &self.actor).await?;
        Ok(generated)
    }

    pub async fn admin_users(&self) -> Result<Vec<AdminUserRow>, AdminError> {
        Ok(self.store.admin_users().await?)
    }

    /// On the first start (no administrator yet): creates `admin` with a generated
    /// password and returns it, to be shown once.
    pub async fn bootstrap_admin_user(&self) -> Result<Option<String>, AdminError> {
        if !self.store.admin_users().await?.is_empty() {
            return Ok(None);
        }
        let password = auth::generate_password().map_err(|e| AdminError::Internal(e.to_string()))?;
        let hash = super::hash_password(password.clone()).await?;
        Ok(self.store.bootstrap_admin_user("admin", &hash).await?.then_some(password))
    }
}
