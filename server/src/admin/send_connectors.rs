//! Send connectors: New-SendConnector / Set-SendConnector / Remove-SendConnector.

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::domain::{AddressSpace, SendConnector, SmartHost, SmartHostCredentials, TlsPolicy};
use crate::store::{IfMatch, SendConnectorRow, StoreError, entity_tag};

#[derive(Clone, Default)]
pub struct SendConnectorChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub address_spaces: Option<Vec<String>>,
    /// Empty list: deliver by DNS MX.
    pub smart_hosts: Option<Vec<String>>,
    pub port: Option<u16>,
    pub tls_policy: Option<String>,
    /// The smart-host user name; `Some(None)` removes the credentials.
    pub username: Option<Option<String>>,
    /// The smart-host password; left out, the current one is kept.
    pub password: Option<Option<String>>,
}

impl std::fmt::Debug for SendConnectorChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendConnectorChanges").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SendConnectorChanges {
    /// As `apply`, for a new object: the name and address spaces must be given.
    fn apply_required(&self, base: &SendConnector) -> Result<SendConnector, AdminError> {
        let mut p = Problems::default();
        if self.name.is_none() {
            p.add("name", "is required");
        }
        if self.address_spaces.is_none() {
            p.add("address_spaces", "is required ('*' for all domains)");
        }
        p.into_result()?;
        self.apply(base)
    }

    /// A user name and password go together; a new user name keeps the current password,
    /// a new password the current user name; a null user name removes both.
    fn apply_credentials(&self, c: &mut SendConnector, p: &mut Problems) {
        match (&self.username, &self.password, &mut c.credentials) {
            (None, None, _) => {}
            (Some(None), None | Some(None), credentials) => *credentials = None,
            (Some(Some(username)), Some(Some(password)), credentials) => {
                *credentials = Some(SmartHostCredentials { username: username.clone(), password: password.clone() });
            }
            (Some(Some(username)), None, Some(current)) => current.username = username.clone(),
            (None, Some(Some(password)), Some(current)) => current.password = password.clone(),
            (Some(Some(_)), None, None) => p.add("password", "is required with a user name"),
            (None, Some(Some(_)), None) => p.add("username", "is required with a password"),
            (_, Some(None), _) | (Some(None), Some(Some(_)), _) => {
                p.add("password", "cannot be removed alone: set username to null to remove the credentials");
            }
        }
        if c.credentials.as_ref().is_some_and(|c| c.username.trim().is_empty() || c.password.is_empty()) {
            p.add("username", "user name and password must not be empty");
        }
    }

    pub fn apply(&self, base: &SendConnector) -> Result<SendConnector, AdminError> {
        let mut p = Problems::default();
        let mut c = base.clone();
        if let Some(name) = &self.name {
            let name = name.trim();
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                p.add("name", "must be 1 to 64 printable characters");
            }
            c.name = name.to_string();
        }
        if let Some(v) = self.enabled {
            c.enabled = v;
        }
        if let Some(list) = &self.address_spaces {
            c.address_spaces =
                items(list).iter().filter_map(|s| p.check("address_spaces", AddressSpace::parse(s))).collect();
            if items(list).is_empty() {
                p.add("address_spaces", "at least one address space is required ('*' for all domains)");
            }
        }
        if let Some(list) = &self.smart_hosts {
            c.smart_hosts = items(list).iter().filter_map(|h| p.check("smart_hosts", SmartHost::parse(h))).collect();
        }
        if let Some(port) = self.port {
            if port == 0 {
                p.add("port", "must be between 1 and 65535");
            }
            c.port = port;
        }
        if let Some(policy) = &self.tls_policy {
            c.tls_policy = p.check("tls_policy", policy.parse::<TlsPolicy>()).unwrap_or(c.tls_policy);
        }
        self.apply_credentials(&mut c, &mut p);
        if c.credentials.is_some() && c.tls_policy != TlsPolicy::Required {
            p.add("tls_policy", "credentials are only sent over TLS: set the TLS policy to 'required'");
        }
        p.into_result()?;
        Ok(c)
    }
}

impl Admin {
    pub async fn send_connectors(&self) -> Result<Vec<SendConnectorRow>, AdminError> {
        Ok(self.store.send_connectors().await?)
    }

    pub async fn send_connector(&self, name: &str) -> Result<SendConnectorRow, AdminError> {
        Ok(self.store.send_connector(name).await?)
    }

    pub async fn new_send_connector(&self, changes: &SendConnectorChanges) -> Result<SendConnector, AdminError> {
        let connector = changes.apply_required(&new_send_connector_base())?;
        self.store.save_send_connector(&connector, &self.actor, None).await?;
        Ok(connector)
    }

    /// The API's PUT: creates or replaces (fields not given take their defaults, except
    /// the credentials, which cannot be read back and so are kept unless given, with the
    /// TLS policy they need).
    pub async fn put_send_connector(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<(SendConnector, bool), AdminError> {
        let name = name.trim();
        retry_unless_asked!(if_match, self.put_send_connector_once(name, changes, if_match).await)
    }

    async fn put_send_connector_once(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        expected: Option<&IfMatch>,
    ) -> Result<(SendConnector, bool), AdminError> {
        let current = match self.store.send_connector(name).await {
            Ok(row) => Some(row),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut base = new_send_connector_base();
        let mut changes = changes.clone();
        changes.name = Some(current.as_ref().map_or(name, |r| r.name.as_str()).to_string());
        let parsed = current.as_ref().and_then(|r| r.to_domain().ok());
        if let Some(row) = &current {
            base.id = row.id;
        }
        if let Some(kept) = parsed.as_ref().and_then(|c| c.credentials.clone()) {
            base.credentials = Some(kept);
            base.tls_policy = TlsPolicy::Required;
        }
        let connector = changes.apply_required(&base)?;
        let created = current.is_none();
        self.save_send_connector(connector, current.map(|r| (r, parsed)), expected).await.map(|c| (c, created))
    }

    /// Set-SendConnector (the API's PATCH).
    pub async fn set_send_connector(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        retry_unless_asked!(if_match, self.set_send_connector_once(name, changes, if_match).await)
    }

    async fn set_send_connector_once(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        expected: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        let row = self.store.send_connector(name.trim()).await?;
        let current = stored(&row)?;
        let connector = changes.apply(&current)?;
        self.save_send_connector(connector, Some((row, Some(current))), expected).await
    }

    /// Saves unless nothing changed, under the caller's precondition or the version read.
    async fn save_send_connector(
        &self,
        connector: SendConnector,
        current: Option<(SendConnectorRow, Option<SendConnector>)>,
        expected: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        let read = current.as_ref().map(|(row, _)| IfMatch::Tags(vec![entity_tag(row.id, row.version)]));
        match (&current, expected) {
            (None, Some(_)) => {
                return Err(AdminError::PreconditionFailed(format!(
                    "send connector {:?} does not exist (If-Match needs a current object)",
                    connector.name
                )));
            }
            (Some((row, parsed)), _) if parsed.as_ref() == Some(&connector) => {
                if expected.is_some_and(|p| !p.holds(Some(&entity_tag(row.id, row.version)))) {
                    return Err(StoreError::PreconditionFailed(format!("send connector {:?}", row.name)).into());
                }
                return Ok(connector);
            }
            _ => {}
        }
        self.store.save_send_connector(&connector, &self.actor, expected.or(read.as_ref())).await?;
        Ok(connector)
    }

    pub async fn remove_send_connector(&self, name: &str, if_match: Option<&IfMatch>) -> Result<(), AdminError> {
        Ok(self.store.remove_send_connector(name.trim(), &self.actor, if_match).await?)
    }
}

fn new_send_connector_base() -> SendConnector {
    SendConnector {
        id: Uuid::now_v7(),
        name: String::new(),
        enabled: true,
        address_spaces: Vec::new(),
        smart_hosts: Vec::new(),
        port: 25,
        tls_policy: TlsPolicy::Opportunistic,
        credentials: None,
    }
}

fn stored(row: &SendConnectorRow) -> Result<SendConnector, AdminError> {
    row.to_domain().map_err(|e| AdminError::Conflict(format!("stored send connector {:?} is invalid: {e}", row.name)))
}
