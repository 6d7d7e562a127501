//! Send connectors: New-SendConnector / Set-SendConnector / Remove-SendConnector.

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::domain::{AddressSpace, SendConnector, SmartHost, SmartHostCredentials, TlsPolicy};
use crate::store::{IfMatch, SendConnectorRow, StoreError, entity_tag};

#[derive(Debug, Clone, Default)]
pub struct SendConnectorChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub address_spaces: Option<Vec<String>>,
    /// Empty list: deliver by DNS MX.
    pub smart_hosts: Option<Vec<String>>,
    pub port: Option<u16>,
    pub tls_policy: Option<String>,
    /// `Some(None)` removes the credentials.
    pub credentials: Option<Option<(String, String)>>,
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
        if let Some(credentials) = &self.credentials {
            c.credentials = credentials.clone().map(|(username, password)| SmartHostCredentials { username, password });
            if c.credentials.as_ref().is_some_and(|c| c.username.is_empty() || c.password.is_empty()) {
                p.add("credentials", "user name and password must both be given");
            }
        }
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
    /// the credentials, which cannot be read back and so are kept unless given).
    pub async fn put_send_connector(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<(SendConnector, bool), AdminError> {
        let changes = SendConnectorChanges { name: Some(name.to_string()), ..changes.clone() };
        let current = match self.store.send_connector(name).await {
            Ok(row) => Some(stored(&row)?),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut base = new_send_connector_base();
        if let Some(current) = &current {
            base.id = current.id;
            base.credentials = current.credentials.clone();
        }
        let connector = changes.apply_required(&base)?;
        self.save_send_connector(connector, current.as_ref(), if_match).await.map(|c| (c, current.is_none()))
    }

    /// Set-SendConnector (the API's PATCH).
    pub async fn set_send_connector(
        &self,
        name: &str,
        changes: &SendConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        let current = stored(&self.store.send_connector(name).await?)?;
        let connector = changes.apply(&current)?;
        self.save_send_connector(connector, Some(&current), if_match).await
    }

    /// Saves unless nothing changed; the precondition is checked either way.
    async fn save_send_connector(
        &self,
        connector: SendConnector,
        current: Option<&SendConnector>,
        if_match: Option<&IfMatch>,
    ) -> Result<SendConnector, AdminError> {
        if current.is_none() && if_match.is_some() {
            return Err(AdminError::PreconditionFailed(format!(
                "send connector {:?} does not exist (If-Match needs a current object)",
                connector.name
            )));
        }
        if current == Some(&connector) {
            let row = self.store.send_connector(&connector.name).await?;
            if if_match.is_some_and(|p| !p.holds(Some(&entity_tag(row.id, row.version)))) {
                return Err(StoreError::PreconditionFailed(format!("send connector {:?}", row.name)).into());
            }
            return Ok(connector);
        }
        self.store.save_send_connector(&connector, &self.actor, if_match).await?;
        Ok(connector)
    }

    pub async fn remove_send_connector(&self, name: &str, if_match: Option<&IfMatch>) -> Result<(), AdminError> {
        Ok(self.store.remove_send_connector(name, &self.actor, if_match).await?)
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
