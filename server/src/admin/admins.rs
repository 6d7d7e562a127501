//! Console administrators: created with `postern admin new`, or once on the first start;
//! changed (password, role, enabled), signed out everywhere, and removed. A password set
//! by someone else (generated at the first start, or reset by another admin) must be
//! replaced at the next sign-in; any change of password, role or enabled ends the
//! administrator's other sessions. The last enabled admin cannot be disabled, demoted or
//! removed, so the console can never be left without one.

use super::{Admin, AdminError, Problems};
use crate::auth;
use crate::store::{AdminUserChange, AdminUserRow};

/// A change to an administrator, as an operator asks for it.
#[derive(Debug, Default, Clone)]
pub struct AdminUserChanges {
    pub role: Option<String>,
    pub enabled: Option<bool>,
}

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
    /// Creates an administrator; without a password one is generated and returned (and
    /// must be replaced at the first sign-in, since it was shown).
    pub async fn new_admin_user(
        &self,
        name: &str,
        role: &str,
        password: Option<String>,
    ) -> Result<Option<String>, AdminError> {
        let must_change = password.is_none();
        self.new_admin_user_with(name, role, password, must_change).await
    }

    /// Creates an administrator who must (or need not) replace the password at the first
    /// sign-in; without a password one is generated and returned.
    pub async fn new_admin_user_with(
        &self,
        name: &str,
        role: &str,
        password: Option<String>,
        must_change_password: bool,
    ) -> Result<Option<String>, AdminError> {
        let mut p = Problems::default();
        let name = name.trim();
        if !valid_admin_name(name) {
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
        self.store.create_admin_user(name, &hash, role.as_str(), must_change_password, &self.actor).await?;
        Ok(generated)
    }

    pub async fn admin_users(&self) -> Result<Vec<AdminUserRow>, AdminError> {
        Ok(self.store.admin_users().await?)
    }

    pub async fn admin_user(&self, name: &str) -> Result<AdminUserRow, AdminError> {
        self.store.admin_user(name).await?.ok_or_else(|| AdminError::NotFound(format!("administrator {name:?}")))
    }

    /// Changes an administrator's role or whether they may sign in; either ends their
    /// sessions.
    pub async fn set_admin_user(&self, name: &str, changes: &AdminUserChanges) -> Result<(), AdminError> {
        let mut p = Problems::default();
        let role = changes.role.as_deref().and_then(|r| p.check("role", AdminRole::parse(r)));
        p.into_result()?;
        let change = AdminUserChange {
            role: role.map(AdminRole::as_str),
            enabled: changes.enabled,
            ..AdminUserChange::default()
        };
        Ok(self.store.change_admin_user(name, &change, &self.actor).await?)
    }

    /// Sets another administrator's password (generated when `None`, and returned), to be
    /// replaced at their next sign-in; their sessions end.
    pub async fn reset_admin_password(
        &self,
        name: &str,
        password: Option<String>,
    ) -> Result<Option<String>, AdminError> {
        let user = self.admin_user(name).await?;
        if user.federated {
            return Err(AdminError::Conflict(format!(
                "{:?} signs in through the identity provider and has no password here",
                user.name
            )));
        }
        let generated = match password {
            Some(_) => None,
            None => Some(auth::generate_password().map_err(|e| AdminError::Internal(e.to_string()))?),
        };
        let hash = super::hash_password(password.or_else(|| generated.clone()).unwrap_or_default()).await?;
        let change = AdminUserChange {
            password_hash: Some(&hash),
            must_change_password: Some(true),
            ..AdminUserChange::default()
        };
        self.store.change_admin_user(&user.name, &change, &self.actor).await?;
        Ok(generated)
    }

    /// An administrator's own new password (after checking the current one): the
    /// session `keep_session` stays signed in, every other one ends.
    pub async fn change_own_password(
        &self,
        name: &str,
        current: &str,
        new: &str,
        keep_session: &[u8],
    ) -> Result<(), AdminError> {
        let user = self.admin_user(name).await?;
        let (stored, typed) = (user.password_hash.clone(), current.to_string());
        let matches = tokio::task::spawn_blocking(move || auth::verify_password(typed.as_bytes(), &stored))
            .await
            .unwrap_or(false);
        let mut p = Problems::default();
        if !matches {
            p.add("current", "is not your current password");
        }
        if new == current {
            p.add("password", "must differ from the current password");
        }
        p.into_result()?;
        let hash = super::hash_password(new.to_string()).await?;
        let change = AdminUserChange {
            password_hash: Some(&hash),
            must_change_password: Some(false),
            keep_session: Some(keep_session),
            ..AdminUserChange::default()
        };
        Ok(self.store.change_admin_user(&user.name, &change, &self.actor).await?)
    }

    /// Removes an administrator; their sessions end with them.
    pub async fn remove_admin_user(&self, name: &str) -> Result<(), AdminError> {
        Ok(self.store.remove_admin_user(name, &self.actor).await?)
    }

    /// Signs an administrator out everywhere (but `keep`, the caller's own session).
    pub async fn end_admin_sessions(&self, name: &str, keep: Option<&[u8]>) -> Result<u64, AdminError> {
        Ok(self.store.end_admin_sessions(name, keep, &self.actor).await?)
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

/// An administrator's name: 1 to 64 characters, letters, digits, `.`, `_`, `-`, `@`.
pub fn valid_admin_name(name: &str) -> bool {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    !name.is_empty() && name.len() <= 64 && name.chars().all(valid)
}
