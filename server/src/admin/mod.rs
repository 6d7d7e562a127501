//! The one service layer behind the CLI, the console and the API: it turns what an
//! administrator typed into validated configuration objects, refuses what would be
//! ambiguous or unsafe, and saves through the store with an audit record. Every error
//! leaves stored data unchanged (each save is one transaction).

mod api_tokens;
mod receive_connectors;
mod send_connectors;
mod service_accounts;

use crate::domain::{AcceptedDomain, Domain, DomainType};
use crate::store::{Store, StoreError};

pub use api_tokens::{TOKEN_PREFIX, token_digest};
pub use receive_connectors::{ReceiveConnectorChanges, receive_connector_warnings};
pub use send_connectors::SendConnectorChanges;
pub use service_accounts::ServiceAccountChanges;

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
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AdminError::NotFound(what),
            StoreError::Conflict(why) => AdminError::Conflict(why),
            other => AdminError::Store(other),
        }
    }
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
}

impl Admin {
    pub fn new(store: Store, actor: impl Into<String>, default_fqdn: impl Into<String>) -> Self {
        Self { store, actor: actor.into(), default_fqdn: default_fqdn.into() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Who performs the changes, as recorded in the audit log.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub async fn new_accepted_domain(
        &self,
        domain: &str,
        domain_type: Option<&str>,
    ) -> Result<AcceptedDomain, AdminError> {
        let mut problems = Problems::default();
        let parsed = problems.check("domain", Domain::parse(domain.trim(), true));
        let parsed_type = match domain_type {
            Some(t) => problems.check("type", t.parse::<DomainType>()),
            None => Some(DomainType::Authoritative),
        };
        if parsed.as_ref().is_some_and(Domain::is_literal) {
            problems.add("domain", "an address literal cannot be an accepted domain");
        }
        problems.into_result()?;
        let (Some(domain), Some(domain_type)) = (parsed, parsed_type) else {
            return Err(AdminError::Invalid(Vec::new()));
        };
        let accepted = AcceptedDomain { id: uuid::Uuid::now_v7(), domain, domain_type };
        self.store.add_accepted_domain(&accepted, &self.actor).await?;
        Ok(accepted)
    }

    pub async fn remove_accepted_domain(&self, domain: &str) -> Result<(), AdminError> {
        let mut problems = Problems::default();
        let parsed = problems.check("domain", Domain::parse(domain.trim(), true));
        problems.into_result()?;
        match parsed {
            Some(d) => Ok(self.store.remove_accepted_domain(&d, &self.actor).await?),
            None => Err(AdminError::Invalid(Vec::new())),
        }
    }
}
