//! Service accounts (the seed's `svc-mailer`) and their Send-As grants (the seed's
//! `Add-RecipientPermission ... -AccessRights SendAs`).

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::auth;
use crate::domain::{EmailAddress, IpRange, SenderPattern, ServiceAccount};
use crate::store::{SendAsGrantRow, ServiceAccountRow};

/// Fields to set; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServiceAccountChanges {
    pub name: Option<String>,
    pub address: Option<String>,
    /// A new password (hashed here; never stored or logged as given).
    pub password: Option<String>,
    pub enabled: Option<bool>,
    /// Source ranges the account may be used from; an empty list means any.
    pub remote_ip_ranges: Option<Vec<String>>,
    /// 0 = unlimited.
    pub max_messages_per_minute: Option<u32>,
    pub max_messages_per_day: Option<u32>,
}

impl ServiceAccountChanges {
    /// Applies everything but the password (hashing is slow; it runs after validation).
    fn apply(&self, base: &ServiceAccount, p: &mut Problems) -> ServiceAccount {
        let mut a = base.clone();
        if let Some(name) = &self.name {
            let name = name.trim();
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
            if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
                p.add("name", "must be 1 to 64 characters: letters, digits, '.', '_', '-', '@'");
            }
            a.name = name.to_string();
        }
        if let Some(address) = &self.address
            && let Some(parsed) = p.check("address", EmailAddress::parse(address.trim(), true))
        {
            if parsed.domain().is_literal() {
                p.add("address", "an address literal cannot be an account's address");
            }
            a.address = parsed;
        }
        if let Some(password) = &self.password
            && let Err(e) = check_password(password)
        {
            p.add("password", e);
        }
        if let Some(v) = self.enabled {
            a.enabled = v;
        }
        if let Some(list) = &self.remote_ip_ranges {
            a.remote_ip_ranges =
                items(list).iter().filter_map(|r| p.check("remote_ip_ranges", IpRange::parse(r))).collect();
        }
        a.max_messages_per_minute =
            limit(p, "max_messages_per_minute", self.max_messages_per_minute).unwrap_or(a.max_messages_per_minute);
        a.max_messages_per_day =
            limit(p, "max_messages_per_day", self.max_messages_per_day).unwrap_or(a.max_messages_per_day);
        a
    }
}

/// The same checks `hash_password` makes, without paying for the hash.
fn check_password(password: &str) -> Result<(), auth::PasswordError> {
    if password.chars().count() < auth::MIN_PASSWORD_LEN {
        return Err(auth::PasswordError::TooShort);
    }
    if password.chars().any(char::is_control) {
        return Err(auth::PasswordError::ControlCharacters);
    }
    Ok(())
}

/// `Some(None)` for 0 (unlimited), `Some(Some(n))` for a limit, `None` when not given.
fn limit(p: &mut Problems, field: &'static str, value: Option<u32>) -> Option<Option<u32>> {
    let v = value?;
    if v > 10_000_000 {
        p.add(field, "must be between 0 (unlimited) and 10000000");
    }
    Some((v > 0).then_some(v))
}

/// Hashes off the async runtime: argon2id takes tens of milliseconds.
async fn hash(password: String) -> Result<String, AdminError> {
    let hashed = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| AdminError::Conflict(format!("password hashing failed: {e}")))?;
    hashed.map_err(|e| AdminError::Invalid(vec![super::FieldError { field: "password", message: e.to_string() }]))
}

impl Admin {
    pub async fn service_accounts(&self) -> Result<Vec<ServiceAccountRow>, AdminError> {
        Ok(self.store.service_accounts().await?)
    }

    /// The account and its grants.
    pub async fn service_account(&self, name: &str) -> Result<(ServiceAccountRow, Vec<String>), AdminError> {
        Ok(self.store.service_account(name).await?)
    }

    /// Creates an account. Without a password one is generated and returned: it is
    /// shown once and never stored.
    pub async fn new_service_account(
        &self,
        changes: &ServiceAccountChanges,
    ) -> Result<(ServiceAccount, Option<String>), AdminError> {
        let mut p = Problems::default();
        for (field, missing) in [("name", changes.name.is_none()), ("address", changes.address.is_none())] {
            if missing {
                p.add(field, "is required");
            }
        }
        p.into_result()?;
        let placeholder = EmailAddress::parse("unset@invalid.example", false)
            .map_err(|e| AdminError::Conflict(format!("internal: {e}")))?;
        let base = ServiceAccount {
            id: Uuid::now_v7(),
            name: String::new(),
            address: placeholder,
            password_hash: String::new(),
            enabled: true,
            remote_ip_ranges: Vec::new(),
            max_messages_per_minute: None,
            max_messages_per_day: None,
            send_as: Vec::new(),
        };
        let mut p = Problems::default();
        let mut account = changes.apply(&base, &mut p);
        p.into_result()?;
        let generated = match &changes.password {
            Some(_) => None,
            None => Some(auth::generate_password().map_err(|e| AdminError::Conflict(e.to_string()))?),
        };
        let password = changes.password.clone().or_else(|| generated.clone()).unwrap_or_default();
        account.password_hash = hash(password).await?;
        self.store.save_service_account(&account, "create", &self.actor).await?;
        Ok((account, generated))
    }

    /// Changes an account; a new password takes effect with the next snapshot (a
    /// cached verification of the old one no longer matches).
    pub async fn set_service_account(
        &self,
        name: &str,
        changes: &ServiceAccountChanges,
    ) -> Result<ServiceAccount, AdminError> {
        let (row, grants) = self.store.service_account(name).await?;
        let current =
            row.to_domain(&grants).map_err(|e| AdminError::Conflict(format!("stored account is invalid: {e}")))?;
        let mut p = Problems::default();
        let mut account = changes.apply(&current, &mut p);
        p.into_result()?;
        let action = match &changes.password {
            Some(password) => {
                account.password_hash = hash(password.clone()).await?;
                "set_password"
            }
            None => "update",
        };
        self.store.save_service_account(&account, action, &self.actor).await?;
        Ok(account)
    }

    pub async fn remove_service_account(&self, name: &str) -> Result<(), AdminError> {
        Ok(self.store.remove_service_account(name, &self.actor).await?)
    }

    /// Add-RecipientPermission -AccessRights SendAs: `sender` is an address or `*@domain`.
    pub async fn add_send_as(&self, account: &str, sender: &str) -> Result<SenderPattern, AdminError> {
        let pattern = sender_pattern(sender)?;
        self.store.add_send_as(account, &pattern, &self.actor).await?;
        Ok(pattern)
    }

    pub async fn remove_send_as(&self, account: &str, sender: &str) -> Result<(), AdminError> {
        let pattern = sender_pattern(sender)?;
        Ok(self.store.remove_send_as(account, &pattern, &self.actor).await?)
    }

    pub async fn send_as_grants(&self, account: Option<&str>) -> Result<Vec<SendAsGrantRow>, AdminError> {
        if let Some(name) = account {
            // An unknown account is an error, not an empty list.
            self.store.service_account(name).await?;
        }
        Ok(self.store.send_as_grants(account).await?)
    }
}

fn sender_pattern(sender: &str) -> Result<SenderPattern, AdminError> {
    let mut p = Problems::default();
    let pattern = p.check("sender", SenderPattern::parse(sender));
    p.into_result()?;
    pattern.ok_or_else(|| AdminError::Invalid(Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported() {
        let changes = ServiceAccountChanges {
            name: Some("svc mailer".into()),
            address: Some("not-an-address".into()),
            password: Some("short".into()),
            remote_ip_ranges: Some(vec!["10.0.0.1/8".into()]),
            max_messages_per_day: Some(20_000_000),
            ..Default::default()
        };
        let base = ServiceAccount {
            id: Uuid::new_v4(),
            name: "x".into(),
            address: EmailAddress::parse("x@example.com", false).unwrap(),
            password_hash: String::new(),
            enabled: true,
            remote_ip_ranges: vec![],
            max_messages_per_minute: Some(5),
            max_messages_per_day: None,
            send_as: vec![],
        };
        let mut p = Problems::default();
        let a = changes.apply(&base, &mut p);
        let fields: Vec<&str> = p.0.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["name", "address", "password", "remote_ip_ranges", "max_messages_per_day"]);
        assert_eq!(a.max_messages_per_minute, Some(5), "fields not given stay as they were");
        let unlimited = ServiceAccountChanges { max_messages_per_minute: Some(0), ..Default::default() };
        assert_eq!(unlimited.apply(&base, &mut Problems::default()).max_messages_per_minute, None);
    }
}
