//! Receive connectors: create (New-ReceiveConnector), change (Set-ReceiveConnector),
//! remove. New connectors are closed by default: no relay right, and they admit only
//! the remote IP ranges they are given.

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::domain::{Binding, ConnectorLimits, IpRange, ProtocolLogging, ReceiveConnector, TlsMode};
use crate::store::ReceiveConnectorRow;

/// Fields to set; `None` leaves a field as it is (or at its default for a new one).
#[derive(Debug, Clone, Default)]
pub struct ReceiveConnectorChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub bindings: Option<Vec<String>>,
    pub remote_ip_ranges: Option<Vec<String>>,
    pub permission_groups: Option<Vec<String>>,
    pub auth_mechanisms: Option<Vec<String>>,
    pub auth_requires_tls: Option<bool>,
    pub tls_mode: Option<String>,
    pub accept_any_recipient: Option<bool>,
    pub max_message_size: Option<u64>,
    pub max_recipients: Option<u32>,
    pub max_connections: Option<u32>,
    pub max_connections_per_source: Option<u32>,
    pub max_messages_per_minute_per_source: Option<u32>,
    pub connection_timeout_secs: Option<u32>,
    pub banner: Option<String>,
    pub fqdn: Option<String>,
    pub protocol_logging: Option<String>,
}

impl ReceiveConnectorChanges {
    /// Applies the changes to `base`, checking every field; all problems are reported.
    pub fn apply(&self, base: &ReceiveConnector) -> Result<ReceiveConnector, AdminError> {
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
        if let Some(list) = &self.bindings {
            c.bindings = items(list).iter().filter_map(|b| p.check("bindings", Binding::parse(b))).collect();
            if items(list).is_empty() {
                p.add("bindings", "at least one IP:port binding is required");
            }
        }
        if let Some(list) = &self.remote_ip_ranges {
            c.remote_ip_ranges =
                items(list).iter().filter_map(|r| p.check("remote_ip_ranges", IpRange::parse(r))).collect();
            if items(list).is_empty() {
                p.add("remote_ip_ranges", "at least one remote IP range is required");
            }
        }
        if let Some(list) = &self.permission_groups {
            c.permission_groups = items(list).iter().filter_map(|g| p.check("permission_groups", g.parse())).collect();
        }
        if let Some(list) = &self.auth_mechanisms {
            c.auth_mechanisms = items(list).iter().filter_map(|m| p.check("auth_mechanisms", m.parse())).collect();
        }
        if let Some(v) = self.auth_requires_tls {
            c.auth_requires_tls = v;
        }
        if let Some(mode) = &self.tls_mode {
            c.tls_mode = p.check("tls_mode", mode.parse::<TlsMode>()).unwrap_or(c.tls_mode);
            // Until the engine speaks TLS, a connector must not look as if it required it.
            if c.tls_mode != TlsMode::None {
                p.add("tls_mode", "STARTTLS and implicit TLS are not available yet; use 'none'");
            }
        }
        if let Some(v) = self.accept_any_recipient {
            c.accept_any_recipient = v;
        }
        self.apply_limits(&mut c.limits, &mut p);
        if let Some(banner) = &self.banner {
            if banner.chars().any(char::is_control) || banner.len() > 200 {
                p.add("banner", "must be one line of at most 200 characters");
            }
            c.banner = Some(banner.trim().to_string()).filter(|b| !b.is_empty());
        }
        if let Some(fqdn) = &self.fqdn {
            if crate::domain::Domain::parse(fqdn.trim(), false).is_err() {
                p.add("fqdn", format!("{fqdn:?} is not a host name"));
            }
            c.fqdn = fqdn.trim().to_ascii_lowercase();
        }
        if let Some(level) = &self.protocol_logging {
            c.protocol_logging =
                p.check("protocol_logging", level.parse::<ProtocolLogging>()).unwrap_or(c.protocol_logging);
        }
        p.into_result()?;
        Ok(c)
    }

    fn apply_limits(&self, limits: &mut ConnectorLimits, p: &mut Problems) {
        if let Some(v) = self.max_message_size {
            // Stay well below Postgres' 1 GB limit for one bytea value.
            in_range(p, "max_message_size", v, 1024, 536_870_912);
            limits.max_message_size = v;
        }
        set_u32(p, "max_recipients", self.max_recipients, 1, 100_000, &mut limits.max_recipients);
        set_u32(p, "max_connections", self.max_connections, 1, 1_000_000, &mut limits.max_connections);
        let per_source = &mut limits.max_connections_per_source;
        set_u32(p, "max_connections_per_source", self.max_connections_per_source, 1, 1_000_000, per_source);
        let rate = &mut limits.max_messages_per_minute_per_source;
        set_u32(p, "max_messages_per_minute_per_source", self.max_messages_per_minute_per_source, 0, 1_000_000, rate);
        set_u32(
            p,
            "connection_timeout_secs",
            self.connection_timeout_secs,
            1,
            86_400,
            &mut limits.connection_timeout_secs,
        );
    }
}

fn in_range(p: &mut Problems, field: &'static str, value: u64, min: u64, max: u64) {
    if value < min || value > max {
        p.add(field, format!("must be between {min} and {max}"));
    }
}

fn set_u32(p: &mut Problems, field: &'static str, value: Option<u32>, min: u32, max: u32, target: &mut u32) {
    if let Some(v) = value {
        in_range(p, field, u64::from(v), u64::from(min), u64::from(max));
        *target = v;
    }
}

impl Admin {
    pub async fn receive_connectors(&self) -> Result<Vec<ReceiveConnectorRow>, AdminError> {
        Ok(self.store.receive_connectors().await?)
    }

    pub async fn receive_connector(&self, name: &str) -> Result<ReceiveConnectorRow, AdminError> {
        Ok(self.store.receive_connector(name).await?)
    }

    /// New-ReceiveConnector: name, bindings and remote IP ranges are required.
    pub async fn new_receive_connector(
        &self,
        changes: &ReceiveConnectorChanges,
    ) -> Result<ReceiveConnector, AdminError> {
        let mut p = Problems::default();
        for (field, missing) in [
            ("name", changes.name.is_none()),
            ("bindings", changes.bindings.is_none()),
            ("remote_ip_ranges", changes.remote_ip_ranges.is_none()),
        ] {
            if missing {
                p.add(field, "is required");
            }
        }
        p.into_result()?;
        let base = ReceiveConnector {
            id: Uuid::now_v7(),
            name: String::new(),
            enabled: true,
            bindings: Vec::new(),
            remote_ip_ranges: Vec::new(),
            permission_groups: Vec::new(),
            auth_mechanisms: Vec::new(),
            auth_requires_tls: true,
            tls_mode: TlsMode::None,
            tls_certificate_pem: None,
            tls_key_pem: None,
            accept_any_recipient: false,
            limits: ConnectorLimits::default(),
            banner: None,
            fqdn: self.default_fqdn.clone(),
            protocol_logging: ProtocolLogging::None,
        };
        let connector = changes.apply(&base)?;
        self.check_overlaps(&connector).await?;
        self.store.save_receive_connector(&connector, &self.actor).await?;
        Ok(connector)
    }

    /// Set-ReceiveConnector: changes the named connector.
    pub async fn set_receive_connector(
        &self,
        name: &str,
        changes: &ReceiveConnectorChanges,
    ) -> Result<ReceiveConnector, AdminError> {
        let row = self.store.receive_connector(name).await?;
        let current = row.to_domain().map_err(|e| AdminError::Conflict(format!("stored connector is invalid: {e}")))?;
        let connector = changes.apply(&current)?;
        self.check_overlaps(&connector).await?;
        self.store.save_receive_connector(&connector, &self.actor).await?;
        Ok(connector)
    }

    pub async fn remove_receive_connector(&self, name: &str) -> Result<(), AdminError> {
        Ok(self.store.remove_receive_connector(name, &self.actor).await?)
    }

    /// Two enabled connectors with a common binding and an identical remote range would
    /// make selection a coin toss (Exchange refuses this too).
    async fn check_overlaps(&self, connector: &ReceiveConnector) -> Result<(), AdminError> {
        if !connector.enabled {
            return Ok(());
        }
        for row in self.store.receive_connectors().await? {
            let Ok(other) = row.to_domain() else { continue };
            if other.id == connector.id || !other.enabled {
                continue;
            }
            let shared_binding = connector.bindings.iter().find(|b| other.bindings.contains(b));
            let shared_range = connector.remote_ip_ranges.iter().find(|r| other.remote_ip_ranges.contains(r));
            if let (Some(b), Some(r)) = (shared_binding, shared_range) {
                return Err(AdminError::Conflict(format!(
                    "receive connector {:?} already serves {r} on {b}; a client must match exactly one connector",
                    other.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ReceiveConnector {
        crate::policy::tests::connector("x", "0.0.0.0:2526", &["127.0.0.1"])
    }

    #[test]
    fn all_field_errors_are_reported_together() {
        let changes = ReceiveConnectorChanges {
            bindings: Some(vec!["0.0.0.0".into()]),
            remote_ip_ranges: Some(vec!["192.168.1.300".into(), "10.0.0.1/8".into()]),
            permission_groups: Some(vec!["everyone".into()]),
            max_recipients: Some(0),
            ..Default::default()
        };
        let Err(AdminError::Invalid(errors)) = changes.apply(&base()) else { panic!("expected invalid") };
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(fields, ["bindings", "remote_ip_ranges", "remote_ip_ranges", "permission_groups", "max_recipients"]);
    }

    #[test]
    fn lists_may_be_comma_or_space_separated() {
        let changes = ReceiveConnectorChanges {
            remote_ip_ranges: Some(vec!["192.168.1.13, 10.0.0.0/8".into(), "127.0.0.1".into()]),
            permission_groups: Some(vec!["anonymous".into()]),
            ..Default::default()
        };
        let c = changes.apply(&base()).unwrap();
        assert_eq!(c.remote_ip_ranges.len(), 3);
    }
}
