//! Service accounts (the seed's `svc-mailer`) and their Send-As grants (the seed's
//! `Add-RecipientPermission ... -AccessRights SendAs`).

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::auth;
use crate::domain::{EmailAddress, IpRange, SenderPattern, ServiceAccount};
use crate::store::{IfMatch, SendAsGrantRow, ServiceAccountRow, StoreError, entity_tag};

/// Fields to set; `None` leaves a field as it is. `Debug` leaves out the password.
#[derive(Clone, Default)]
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

impl std::fmt::Debug for ServiceAccountChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountChanges")
            .field("name", &self.name)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
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

/// A new account before its fields are applied.
fn new_account_base() -> ServiceAccount {
    ServiceAccount {
        id: Uuid::now_v7(),
        name: String::new(),
        // Always replaced: the address is a required field of a new account.
        address: EmailAddress::placeholder(),
        password_hash: String::new(),
        enabled: true,
        remote_ip_ranges: Vec::new(),
        max_messages_per_minute: None,
        max_messages_per_day: None,
        send_as: Vec::new(),
    }
}

fn stored(row: &ServiceAccountRow, grants: &[String]) -> Result<ServiceAccount, AdminError> {
    row.to_domain(grants).map_err(|e| AdminError::Conflict(format!("stored account {:?} is invalid: {e}", row.name)))
}

/// Whether `password` is the one `phc` was made from (argon2 runs off the runtime).
async fn same_password(password: &str, phc: &str) -> bool {
    let (password, phc) = (password.to_string(), phc.to_string());
    tokio::task::spawn_blocking(move || auth::verify_password(password.as_bytes(), &phc)).await.unwrap_or(false)
}

async fn hash(password: String) -> Result<String, AdminError> {
    super::hash_password(password).await
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
        let (account, generated) = self.prepare_new_account(changes, new_account_base()).await?;
        self.store.save_service_account(&account, "create", &self.actor, None).await?;
        Ok((account, generated))
    }

    /// The API's PUT: creates the account (a password is generated when none is given)
    /// or replaces it; fields not given take their defaults, the password and the
    /// grants are kept unless given. Re-sending the current password changes nothing.
    /// Returns the account, a generated password, and whether it was created.
    pub async fn put_service_account(
        &self,
        name: &str,
        changes: &ServiceAccountChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<(ServiceAccount, Option<String>, bool), AdminError> {
        let name = name.trim();
        retry_unless_asked!(if_match, self.put_service_account_once(name, changes, if_match).await)
    }

    async fn put_service_account_once(
        &self,
        name: &str,
        changes: &ServiceAccountChanges,
        expected: Option<&IfMatch>,
    ) -> Result<(ServiceAccount, Option<String>, bool), AdminError> {
        let (row, grants) = match self.store.service_account(name).await {
            Ok(found) => found,
            Err(StoreError::NotFound(_)) if expected.is_some() => {
                return Err(AdminError::PreconditionFailed(format!(
                    "service account {name:?} does not exist (If-Match needs a current object)"
                )));
            }
            Err(StoreError::NotFound(_)) => {
                let changes = ServiceAccountChanges { name: Some(name.to_string()), ..changes.clone() };
                let (account, generated) = self.prepare_new_account(&changes, new_account_base()).await?;
                self.store.save_service_account(&account, "create", &self.actor, None).await?;
                return Ok((account, generated, true));
            }
            Err(e) => return Err(e.into()),
        };
        let changes = ServiceAccountChanges { name: Some(row.name.clone()), ..changes.clone() };
        // A stored row that no longer parses (hand-edited SQL) is simply replaced.
        let current = row.to_domain(&grants).ok();
        let base = ServiceAccount {
            id: row.id,
            password_hash: row.password_hash.clone(),
            send_as: current.as_ref().map(|c| c.send_as.clone()).unwrap_or_default(),
            ..new_account_base()
        };
        let account = self.changed_account(&row, current.as_ref(), &base, &changes, expected).await?;
        Ok((account, None, false))
    }

    /// Changes an account (Set-ServiceAccount, the API's PATCH); a new password takes
    /// effect with the next snapshot (a cached verification of the old one no longer
    /// matches).
    pub async fn set_service_account(
        &self,
        name: &str,
        changes: &ServiceAccountChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<ServiceAccount, AdminError> {
        retry_unless_asked!(if_match, self.set_service_account_once(name, changes, if_match).await)
    }

    async fn set_service_account_once(
        &self,
        name: &str,
        changes: &ServiceAccountChanges,
        expected: Option<&IfMatch>,
    ) -> Result<ServiceAccount, AdminError> {
        let (row, grants) = self.store.service_account(name.trim()).await?;
        let current = stored(&row, &grants)?;
        self.changed_account(&row, Some(&current), &current, changes, expected).await
    }

    /// Rotates the password: sets `password`, or a generated one that is returned.
    pub async fn rotate_service_account_password(
        &self,
        name: &str,
        password: Option<String>,
        if_match: Option<&IfMatch>,
    ) -> Result<(ServiceAccount, Option<String>), AdminError> {
        let generated = match &password {
            Some(_) => None,
            None => Some(auth::generate_password().map_err(|e| AdminError::Internal(e.to_string()))?),
        };
        let changes = ServiceAccountChanges { password: password.or_else(|| generated.clone()), ..Default::default() };
        let account = self.set_service_account(name, &changes, if_match).await?;
        Ok((account, generated))
    }

    /// Validates and hashes a new account's fields.
    async fn prepare_new_account(
        &self,
        changes: &ServiceAccountChanges,
        base: ServiceAccount,
    ) -> Result<(ServiceAccount, Option<String>), AdminError> {
        let mut p = Problems::default();
        for (field, missing) in [("name", changes.name.is_none()), ("address", changes.address.is_none())] {
            if missing {
                p.add(field, "is required");
            }
        }
        p.into_result()?;
        let mut p = Problems::default();
        let mut account = changes.apply(&base, &mut p);
        p.into_result()?;
        let generated = match &changes.password {
            Some(_) => None,
            None => Some(auth::generate_password().map_err(|e| AdminError::Internal(e.to_string()))?),
        };
        let password = changes.password.clone().or_else(|| generated.clone()).unwrap_or_default();
        account.password_hash = hash(password).await?;
        Ok((account, generated))
    }

    /// Applies `changes` to `base`, saves unless the result equals `current`, under the
    /// caller's precondition or else the version read. A password equal to the current
    /// one keeps the current hash, so that re-running a provisioning script changes
    /// nothing.
    async fn changed_account(
        &self,
        row: &ServiceAccountRow,
        current: Option<&ServiceAccount>,
        base: &ServiceAccount,
        changes: &ServiceAccountChanges,
        expected: Option<&IfMatch>,
    ) -> Result<ServiceAccount, AdminError> {
        let mut p = Problems::default();
        let mut account = changes.apply(base, &mut p);
        p.into_result()?;
        let mut action = "update";
        if let Some(password) = &changes.password
            && !same_password(password, &row.password_hash).await
        {
            account.password_hash = hash(password.clone()).await?;
            action = "set_password";
        }
        let tag = entity_tag(row.id, row.version);
        if current == Some(&account) {
            if expected.is_some_and(|m| !m.holds(Some(&tag))) {
                return Err(StoreError::PreconditionFailed(format!("service account {:?}", row.name)).into());
            }
            return Ok(account);
        }
        let read = IfMatch::Tags(vec![tag]);
        self.store.save_service_account(&account, action, &self.actor, Some(expected.unwrap_or(&read))).await?;
        Ok(account)
    }

    pub async fn remove_service_account(&self, name: &str, if_match: Option<&IfMatch>) -> Result<(), AdminError> {
        Ok(self.store.remove_service_account(name.trim(), &self.actor, if_match).await?)
    }

    /// Add-RecipientPermission -AccessRights SendAs: `sender` is an address or `*@domain`.
    /// Returns the grant and whether it is new (granting twice changes nothing).
    pub async fn add_send_as(&self, account: &str, sender: &str) -> Result<(SenderPattern, bool), AdminError> {
        let pattern = sender_pattern(sender)?;
        let added = self.store.add_send_as(account, &pattern, &self.actor).await?;
        Ok((pattern, added))
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
