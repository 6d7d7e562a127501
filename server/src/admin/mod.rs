//! The one service layer behind the CLI, the console and the API: it turns what an
//! administrator typed into validated configuration objects, refuses what would be
//! ambiguous or unsafe, and saves through the store with an audit record. Every error
//! leaves stored data unchanged (each save is one transaction).

/// Runs a read-modify-write (`$attempt`, re-evaluated each time). With the caller's
/// `If-Match`, once: a conflict is theirs to resolve (412). Without, the write is guarded
/// by the version it read, and a concurrent change makes it read again and re-apply, up
/// to three times, so no change is silently undone.
macro_rules! retry_unless_asked {
    ($if_match:expr, $attempt:expr) => {{
        let mut tries = 0;
        loop {
            match $attempt {
                Err($crate::admin::AdminError::PreconditionFailed(_)) if $if_match.is_none() && tries < 2 => tries += 1,
                result => break result,
            }
        }
    }};
}

mod admins;
mod api_tokens;
mod queue;
mod receive_connectors;
mod send_connectors;
mod service_accounts;
mod sso;

use crate::domain::{AcceptedDomain, Domain, DomainType};
use crate::store::{AcceptedDomainRow, IfMatch, Store, StoreError};

pub use admins::{AdminRole, AdminUserChanges, valid_admin_name};
pub use api_tokens::{DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS, TOKEN_PREFIX, token_digest};
pub use receive_connectors::{ReceiveConnectorChanges, receive_connector_warnings};
pub use send_connectors::SendConnectorChanges;
pub use service_accounts::ServiceAccountChanges;
pub use sso::SingleSignOnChanges;

/// One invalid field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid input: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// An `If-Match` precondition failed (the object changed since the caller read it).
    #[error("{0}")]
    PreconditionFailed(String),
    /// Something that should not fail did (not the caller's fault).
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AdminError::NotFound(what),
            StoreError::Conflict(why) => AdminError::Conflict(why),
            e @ StoreError::PreconditionFailed(_) => AdminError::PreconditionFailed(e.to_string()),
            other => AdminError::Store(other),
        }
    }
}

/// Hashes a password off the async runtime: argon2id takes tens of milliseconds.
pub(crate) async fn hash_password(password: String) -> Result<String, AdminError> {
    let hashed = tokio::task::spawn_blocking(move || crate::auth::hash_password(&password))
        .await
        .map_err(|e| AdminError::Internal(format!("password hashing failed: {e}")))?;
    hashed.map_err(|e| AdminError::Invalid(vec![FieldError { field: "password", message: e.to_string() }]))
}

/// Splits lists as typed on a command line or in a form: "a,b c" or one per line.
pub(crate) fn items(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split([',', ' ', '\n']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Collects field errors so the caller sees all of them at once.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<FieldError>);

impl Problems {
    pub(crate) fn add(&mut self, field: &'static str, message: impl std::fmt::Display) {
        self.0.push(FieldError { field, message: message.to_string() });
    }

    /// Parses `value` with `parse`, recording a failure against `field`.
    pub(crate) fn check<T, E: std::fmt::Display>(&mut self, field: &'static str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.add(field, e)).ok()
    }

    pub(crate) fn into_result(self) -> Result<(), AdminError> {
        if self.0.is_empty() { Ok(()) } else { Err(AdminError::Invalid(self.0)) }
    }
}

/// Administrative operations, performed as `actor` (recorded in the audit log).
#[derive(Debug, Clone)]
pub struct Admin {
    store: Store,
    actor: String,
    /// The FQDN given to new receive connectors that do not name one.
    default_fqdn: String,
    /// Addresses Postern itself listens on (HTTP), which no connector may bind.
    reserved: Vec<std::net::SocketAddr>,
}

impl Admin {
    pub fn new(store: Store, actor: impl Into<String>, default_fqdn: impl Into<String>) -> Self {
        Self { store, actor: actor.into(), default_fqdn: default_fqdn.into(), reserved: Vec::new() }
    }

    /// Refuses connector bindings that collide with these addresses (the HTTP listener).
    pub fn with_reserved_addresses(mut self, addresses: Vec<std::net::SocketAddr>) -> Self {
        self.reserved = addresses;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who performs the changes, as recorded in the audit log.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// New-AcceptedDomain: refuses a domain that is already accepted.
    pub async fn new_accepted_domain(
        &self,
        domain: &str,
        domain_type: Option<&str>,
    ) -> Result<AcceptedDomain, AdminError> {
        let accepted = accepted_domain(domain, domain_type)?;
        self.store.add_accepted_domain(&accepted, &self.actor).await?;
        Ok(accepted)
    }

    /// Creates the accepted domain or sets its type (idempotent: the API's PUT). Returns
    /// the stored row and whether it was created.
    pub async fn put_accepted_domain(
        &self,
        domain: &str,
        domain_type: Option<&str>,
        if_match: Option<&IfMatch>,
    ) -> Result<(AcceptedDomainRow, bool), AdminError> {
        let wanted = accepted_domain(domain, domain_type)?;
        let created = match self.store.accepted_domain(&wanted.domain).await {
            Err(StoreError::NotFound(_)) if if_match.is_some() => {
                return Err(AdminError::PreconditionFailed(format!(
                    "accepted domain {} does not exist (If-Match needs a current object)",
                    wanted.domain
                )));
            }
            Err(StoreError::NotFound(_)) => {
                self.store.add_accepted_domain(&wanted, &self.actor).await?;
                true
            }
            Err(e) => return Err(e.into()),
            Ok(row) if row.domain_type == wanted.domain_type.as_str() => {
                // Nothing to change; the precondition is still checked.
                if if_match.is_some_and(|p| !p.holds(Some(&crate::store::entity_tag(row.id, row.version)))) {
                    return Err(StoreError::PreconditionFailed(format!("accepted domain {}", row.domain)).into());
                }
                false
            }
            Ok(_) => {
                self.store.update_accepted_domain(&wanted, &self.actor, if_match).await?;
                false
            }
        };
        Ok((self.store.accepted_domain(&wanted.domain).await?, created))
    }

    pub async fn remove_accepted_domain(&self, domain: &str, if_match: Option<&IfMatch>) -> Result<(), AdminError> {
        let mut problems = Problems::default();
        let parsed = problems.check("domain", Domain::parse(domain.trim(), true));
        problems.into_result()?;
        match parsed {
            Some(d) => Ok(self.store.remove_accepted_domain(&d, &self.actor, if_match).await?),
            None => Err(AdminError::Invalid(Vec::new())),
        }
    }
}

/// Validates an accepted domain as typed.
fn accepted_domain(domain: &str, domain_type: Option<&str>) -> Result<AcceptedDomain, AdminError> {
    let mut problems = Problems::default();
    let parsed = problems.check("domain", Domain::parse(domain.trim(), true));
    let parsed_type = match domain_type {
        Some(t) => problems.check("domain_type", t.parse::<DomainType>()),
        None => Some(DomainType::Authoritative),
    };
    if parsed.as_ref().is_some_and(Domain::is_literal) {
        problems.add("domain", "an address literal cannot be an accepted domain");
    }
    problems.into_result()?;
    let (Some(domain), Some(domain_type)) = (parsed, parsed_type) else {
        return Err(AdminError::Invalid(Vec::new()));
    };
    Ok(AcceptedDomain { id: uuid::Uuid::now_v7(), domain, domain_type })
}
