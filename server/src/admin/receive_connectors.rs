//! Receive connectors: create (New-ReceiveConnector), change (Set-ReceiveConnector),
//! remove. New connectors are closed by default: no relay right, and they admit only
//! the remote IP ranges they are given.

use uuid::Uuid;

use super::{Admin, AdminError, Problems, items};
use crate::domain::{
    AuthMechanism, Binding, ConnectorLimits, IpRange, ObjectName, PermissionGroup, PrivateKeyPem, ProtocolLogging,
    ReceiveConnector, TlsMode,
};
use crate::store::{IfMatch, ReceiveConnectorRow, StoreError, entity_tag};

/// Fields to set; `None` leaves a field as it is (or at its default for a new one).
/// `Debug` leaves out the TLS key.
#[derive(Clone, Default)]
pub struct ReceiveConnectorChanges {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub bindings: Option<Vec<String>>,
    pub remote_ip_ranges: Option<Vec<String>>,
    pub permission_groups: Option<Vec<String>>,
    pub auth_mechanisms: Option<Vec<String>>,
    pub auth_requires_tls: Option<bool>,
    pub tls_mode: Option<String>,
    /// Exchange's `RequireTLS`: true = STARTTLS required, false = no longer required.
    pub require_tls: Option<bool>,
    /// `Some(Some((chain, key)))` sets a certificate; `Some(None)` returns to the one
    /// Postern generates.
    pub tls_certificate: Option<Option<(String, String)>>,
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
    /// The admin confirms that remote IP ranges this wide with the relay right are meant
    /// (`--i-mean-open-relay`); never stored: each such save must say it again.
    pub i_mean_open_relay: bool,
}

impl std::fmt::Debug for ReceiveConnectorChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiveConnectorChanges").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ReceiveConnectorChanges {
    /// As `apply`, for a new object: name, bindings and remote IP ranges must be given.
    fn apply_required(&self, base: &ReceiveConnector) -> Result<ReceiveConnector, AdminError> {
        let mut p = Problems::default();
        for (field, missing) in [
            ("name", self.name.is_none()),
            ("bindings", self.bindings.is_none()),
            ("remote_ip_ranges", self.remote_ip_ranges.is_none()),
        ] {
            if missing {
                p.add(field, "is required");
            }
        }
        p.into_result()?;
        self.apply(base)
    }

    /// Applies the changes to `base`, checking every field; all problems are reported.
    pub fn apply(&self, base: &ReceiveConnector) -> Result<ReceiveConnector, AdminError> {
        let mut p = Problems::default();
        let mut c = base.clone();
        if let Some(name) = &self.name
            && let Some(name) = p.check("name", ObjectName::parse(name))
        {
            c.name = name.into_string();
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
            apply_auth_mechanisms(&items(list), &mut c, &mut p);
        }
        if let Some(v) = self.auth_requires_tls {
            c.auth_requires_tls = v;
        }
        if let Some(mode) = &self.tls_mode {
            c.tls_mode = p.check("tls_mode", mode.parse::<TlsMode>()).unwrap_or(c.tls_mode);
        }
        match self.require_tls {
            Some(true) if c.tls_mode != TlsMode::Implicit => c.tls_mode = TlsMode::StarttlsRequired,
            Some(false) if c.tls_mode == TlsMode::StarttlsRequired => c.tls_mode = TlsMode::StarttlsOffered,
            _ => {}
        }
        match &self.tls_certificate {
            Some(Some((chain, key))) => {
                c.tls_certificate_pem = Some(chain.clone());
                c.tls_key_pem = Some(PrivateKeyPem(key.clone()));
            }
            Some(None) => (c.tls_certificate_pem, c.tls_key_pem) = (None, None),
            None => {}
        }
        if let Some(v) = self.accept_any_recipient {
            c.accept_any_recipient = v;
        }
        self.apply_limits(&mut c.limits, &mut p);
        if let Some(banner) = &self.banner {
            if banner.chars().any(char::is_control) || banner.chars().count() > 200 {
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
        check_security(&c, &mut p);
        if !self.i_mean_open_relay {
            check_open_relay(&c, &mut p);
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

/// Reads auth mechanisms as Postern names them (`plain`, `login`) or as Exchange's
/// `-AuthMechanism` does: `tls` (offer STARTTLS), `basic-auth` (PLAIN and LOGIN),
/// `basic-auth-require-tls` (basic auth only after STARTTLS), `none`.
fn apply_auth_mechanisms(tokens: &[String], c: &mut ReceiveConnector, p: &mut Problems) {
    let mut mechanisms = Vec::new();
    for token in tokens {
        match token.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "none" => {}
            "tls" if c.tls_mode == TlsMode::None => c.tls_mode = TlsMode::StarttlsOffered,
            "tls" => {}
            "basicauth" => mechanisms.extend([AuthMechanism::Plain, AuthMechanism::Login]),
            "basicauthrequiretls" => {
                mechanisms.extend([AuthMechanism::Plain, AuthMechanism::Login]);
                c.auth_requires_tls = true;
            }
            _ => {
                if let Some(m) = p.check("auth_mechanisms", token.parse::<AuthMechanism>()) {
                    mechanisms.push(m);
                }
            }
        }
    }
    mechanisms.sort_by_key(|m| m.as_str());
    mechanisms.dedup();
    c.auth_mechanisms = mechanisms;
}

/// Combinations that would not work or would leak passwords are refused, not saved.
fn check_security(c: &ReceiveConnector, p: &mut Problems) {
    if c.allows(PermissionGroup::Authenticated) && c.auth_mechanisms.is_empty() {
        p.add("auth_mechanisms", "the authenticated permission group needs an auth mechanism (e.g. basic-auth)");
    }
    if !c.auth_mechanisms.is_empty() && !c.allows(PermissionGroup::Authenticated) {
        p.add("permission_groups", "auth mechanisms need the authenticated group, or a sign-in would grant nothing");
    }
    if !c.auth_mechanisms.is_empty() && c.auth_requires_tls && c.tls_mode == TlsMode::None {
        p.add("tls_mode", "basic auth requires TLS here, but the connector has none (add tls to the auth mechanisms)");
    }
    match (&c.tls_certificate_pem, &c.tls_key_pem) {
        (Some(chain), Some(key)) => {
            if let Err(e) = crate::tls::server_config(chain, &key.0) {
                p.add("tls_certificate_pem", e);
            }
        }
        (None, None) => {}
        _ => p.add("tls_certificate_pem", crate::tls::TlsError::Incomplete),
    }
}

/// Public addresses an anonymous connector with the relay right may admit: a /8 of IPv4,
/// a /32 of IPv6 (an ISP's allocation). More is the Internet, or a good part of it.
const OPEN_RELAY_V4: u64 = 1 << 24;
const OPEN_RELAY_V6_SLASH64S: u128 = 1 << 32;

/// An open relay: anyone on a large part of the Internet could send anywhere through it.
/// Not only `0.0.0.0/0`: `0.0.0.0/1` and `128.0.0.0/1` together are the same thing.
fn check_open_relay(c: &ReceiveConnector, p: &mut Problems) {
    if !(c.accept_any_recipient && c.allows(PermissionGroup::Anonymous)) {
        return;
    }
    let (v4, v6) = crate::domain::public_span(&c.remote_ip_ranges);
    if v4 > OPEN_RELAY_V4 || v6 > OPEN_RELAY_V6_SLASH64S {
        p.add(
            "remote_ip_ranges",
            "these ranges admit more than a /8 of public IPv4 (or a /32 of IPv6) with the right to relay to any \
             domain: an open relay; list the clients' addresses (or confirm with --i-mean-open-relay)",
        );
    }
}

/// What is allowed but probably not meant: shown to the admin after a save.
pub fn receive_connector_warnings(c: &ReceiveConnector) -> Vec<String> {
    let mut warnings = Vec::new();
    if let (Some(chain), true) = (&c.tls_certificate_pem, c.tls_mode != TlsMode::None)
        && !crate::tls::certificate_names(chain, &c.fqdn).unwrap_or(false)
    {
        warnings.push(format!(
            "the certificate does not name the connector's FQDN {}; clients that verify names will refuse it",
            c.fqdn
        ));
    }
    if c.tls_mode != TlsMode::None && c.tls_certificate_pem.is_none() {
        warnings.push(format!(
            "no certificate configured: a self-signed certificate for {} is used; install one from a CA your clients trust",
            c.fqdn
        ));
    }
    if !c.auth_mechanisms.is_empty() && !c.auth_requires_tls {
        warnings.push("basic auth is allowed without TLS: passwords may cross the network in clear text".into());
    }
    warnings
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

/// A stored connector as a typed value; one that no longer parses (edited by hand in
/// SQL) is reported rather than trusted.
fn stored(row: &ReceiveConnectorRow) -> Result<ReceiveConnector, AdminError> {
    row.to_domain()
        .map_err(|e| AdminError::Conflict(format!("stored receive connector {:?} is invalid: {e}", row.name)))
}

impl Admin {
    pub async fn receive_connectors(&self) -> Result<Vec<ReceiveConnectorRow>, AdminError> {
        Ok(self.store.receive_connectors().await?)
    }

    pub async fn receive_connector(&self, name: &str) -> Result<ReceiveConnectorRow, AdminError> {
        Ok(self.store.receive_connector(name.trim()).await?)
    }

    /// New-ReceiveConnector: name, bindings and remote IP ranges are required.
    pub async fn new_receive_connector(
        &self,
        changes: &ReceiveConnectorChanges,
    ) -> Result<ReceiveConnector, AdminError> {
        let connector = changes.apply_required(&self.new_receive_connector_base())?;
        self.check_reserved(&connector)?;
        self.store.save_receive_connector(&connector, &self.actor, None, overlap).await?;
        Ok(connector)
    }

    /// The API's PUT: creates the connector, or replaces it (fields not given take their
    /// defaults, except the certificate, which a client cannot read back and so keeps
    /// unless given). The path names the object case-insensitively; its stored name is
    /// kept. Returns the connector and whether it was created; a replacement that changes
    /// nothing writes nothing.
    pub async fn put_receive_connector(
        &self,
        name: &str,
        changes: &ReceiveConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<(ReceiveConnector, bool), AdminError> {
        let name = name.trim();
        retry_unless_asked!(if_match, self.put_receive_connector_once(name, changes, if_match).await)
    }

    async fn put_receive_connector_once(
        &self,
        name: &str,
        changes: &ReceiveConnectorChanges,
        expected: Option<&IfMatch>,
    ) -> Result<(ReceiveConnector, bool), AdminError> {
        let current = match self.store.receive_connector(name).await {
            Ok(row) => Some(row),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut base = self.new_receive_connector_base();
        let mut changes = changes.clone();
        changes.name = Some(current.as_ref().map_or(name, |r| r.name.as_str()).to_string());
        if let Some(row) = &current {
            base.id = row.id;
            (base.tls_certificate_pem, base.tls_key_pem) =
                (row.tls_certificate_pem.clone(), row.tls_key_pem.clone().map(PrivateKeyPem));
        }
        let connector = changes.apply_required(&base)?;
        // A stored row that no longer parses (hand-edited SQL) is simply replaced.
        let parsed = current.as_ref().and_then(|r| r.to_domain().ok());
        let created = current.is_none();
        self.save_receive_connector(connector, current.map(|r| (r, parsed)), expected).await.map(|c| (c, created))
    }

    /// Set-ReceiveConnector (and the API's PATCH): changes the named connector.
    pub async fn set_receive_connector(
        &self,
        name: &str,
        changes: &ReceiveConnectorChanges,
        if_match: Option<&IfMatch>,
    ) -> Result<ReceiveConnector, AdminError> {
        retry_unless_asked!(if_match, self.set_receive_connector_once(name, changes, if_match).await)
    }

    async fn set_receive_connector_once(
        &self,
        name: &str,
        changes: &ReceiveConnectorChanges,
        expected: Option<&IfMatch>,
    ) -> Result<ReceiveConnector, AdminError> {
        let row = self.store.receive_connector(name.trim()).await?;
        let current = stored(&row)?;
        let connector = changes.apply(&current)?;
        self.save_receive_connector(connector, Some((row, Some(current))), expected).await
    }

    /// The connector a save would store, checked as a save checks it, without saving:
    /// for the what-if tester's "try before you save". `existing` names the connector
    /// being edited (None: a new one).
    pub async fn preview_receive_connector(
        &self,
        existing: Option<&str>,
        changes: &ReceiveConnectorChanges,
    ) -> Result<ReceiveConnector, AdminError> {
        let connector = match existing {
            Some(name) => changes.apply(&stored(&self.store.receive_connector(name.trim()).await?)?)?,
            None => changes.apply_required(&self.new_receive_connector_base())?,
        };
        self.check_reserved(&connector)?;
        Ok(connector)
    }

    /// Saves unless nothing changed, under the precondition: the caller's `If-Match`, or
    /// else the version just read (so a concurrent change is never silently undone).
    async fn save_receive_connector(
        &self,
        connector: ReceiveConnector,
        current: Option<(ReceiveConnectorRow, Option<ReceiveConnector>)>,
        expected: Option<&IfMatch>,
    ) -> Result<ReceiveConnector, AdminError> {
        let read = current.as_ref().map(|(row, _)| IfMatch::Tags(vec![entity_tag(row.id, row.version)]));
        match (&current, expected) {
            (None, Some(_)) => {
                return Err(AdminError::PreconditionFailed(format!(
                    "receive connector {:?} does not exist (If-Match needs a current object)",
                    connector.name
                )));
            }
            (Some((row, parsed)), _) if parsed.as_ref() == Some(&connector) => {
                if expected.is_some_and(|p| !p.holds(Some(&entity_tag(row.id, row.version)))) {
                    return Err(StoreError::PreconditionFailed(format!("receive connector {:?}", row.name)).into());
                }
                return Ok(connector);
            }
            _ => {}
        }
        self.check_reserved(&connector)?;
        self.store.save_receive_connector(&connector, &self.actor, expected.or(read.as_ref()), overlap).await?;
        Ok(connector)
    }

    /// A new connector: closed (no relay right) and without TLS until told otherwise.
    fn new_receive_connector_base(&self) -> ReceiveConnector {
        ReceiveConnector {
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
        }
    }

    /// The certificate (PEM chain) a TLS connector presents: its own, or the one Postern
    /// generates for its FQDN. With `generate`, one is made now if no node has made it
    /// yet (the CLI); without, that is a conflict (a read-only API caller changes nothing).
    pub async fn receive_connector_certificate(&self, name: &str, generate: bool) -> Result<String, AdminError> {
        let row = self.store.receive_connector(name.trim()).await?;
        if row.tls_mode == TlsMode::None.as_str() {
            return Err(AdminError::Conflict(format!("receive connector {:?} does not use TLS", row.name)));
        }
        if let Some(chain) = row.tls_certificate_pem {
            return Ok(chain);
        }
        let fqdn = row.fqdn.to_ascii_lowercase();
        if !generate {
            return match self.store.existing_generated_certificate(&fqdn).await? {
                Some(generated) => Ok(generated.certificate_pem),
                None => Err(AdminError::Conflict(format!(
                    "no certificate was generated for {fqdn} yet: a node makes it when it loads the connector"
                ))),
            };
        }
        let (generated, _) =
            self.store.generated_certificate(&fqdn, || crate::tls::generate_self_signed(&fqdn)).await?;
        Ok(generated.certificate_pem)
    }

    pub async fn remove_receive_connector(&self, name: &str, if_match: Option<&IfMatch>) -> Result<(), AdminError> {
        Ok(self.store.remove_receive_connector(name.trim(), &self.actor, if_match).await?)
    }

    /// A connector may not take the address the console and API listen on.
    fn check_reserved(&self, connector: &ReceiveConnector) -> Result<(), AdminError> {
        let mut p = Problems::default();
        for binding in &connector.bindings {
            let a = binding.socket_addr();
            let clash = self.reserved.iter().find(|r| {
                r.port() == a.port()
                    && (a.ip().is_unspecified() || r.ip().is_unspecified() || r.ip() == a.ip())
                    && r.is_ipv4() == a.is_ipv4()
            });
            if let Some(r) = clash {
                p.add("bindings", format!("{binding} collides with {r}, where Postern's console and API listen"));
            }
        }
        p.into_result()
    }
}

/// Two enabled connectors with a common binding and an identical remote range would
/// make selection a coin toss (Exchange refuses this too). Checked by the store inside
/// the saving transaction.
fn overlap(connector: &ReceiveConnector, others: &[ReceiveConnector]) -> Option<String> {
    if !connector.enabled {
        return None;
    }
    others.iter().filter(|o| o.enabled && o.id != connector.id).find_map(|other| {
        let shared_binding = connector.bindings.iter().find(|b| other.bindings.contains(b))?;
        let shared_range = connector.remote_ip_ranges.iter().find(|r| other.remote_ip_ranges.contains(r))?;
        Some(format!(
            "receive connector {:?} already serves {shared_range} on {shared_binding}; a client must match exactly one connector",
            other.name
        ))
    })
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
    fn exchange_auth_mechanism_names_map_to_tls_and_mechanisms() {
        let changes = ReceiveConnectorChanges {
            auth_mechanisms: Some(vec!["tls,basic-auth,basic-auth-require-tls".into()]),
            permission_groups: Some(vec!["authenticated".into()]),
            require_tls: Some(true),
            ..Default::default()
        };
        let c = changes.apply(&base()).unwrap();
        assert_eq!(c.auth_mechanisms, [AuthMechanism::Login, AuthMechanism::Plain]);
        assert_eq!(c.tls_mode, TlsMode::StarttlsRequired);
        assert!(c.auth_requires_tls);
        assert!(receive_connector_warnings(&c).iter().any(|w| w.contains("self-signed")));
    }

    #[test]
    fn unusable_tls_and_auth_combinations_are_refused() {
        let fields = |changes: ReceiveConnectorChanges| match changes.apply(&base()) {
            Err(AdminError::Invalid(errors)) => errors.iter().map(|e| e.field).collect::<Vec<_>>(),
            other => panic!("expected invalid, got {other:?}"),
        };
        let auth_without_tls = ReceiveConnectorChanges {
            auth_mechanisms: Some(vec!["basic-auth-require-tls".into()]),
            permission_groups: Some(vec!["authenticated".into()]),
            ..Default::default()
        };
        assert_eq!(fields(auth_without_tls), ["tls_mode"]);
        let auth_granting_nothing =
            ReceiveConnectorChanges { auth_mechanisms: Some(vec!["tls,basic-auth".into()]), ..Default::default() };
        assert_eq!(fields(auth_granting_nothing), ["permission_groups"]);
        let group_without_mechanism =
            ReceiveConnectorChanges { permission_groups: Some(vec!["authenticated".into()]), ..Default::default() };
        assert_eq!(fields(group_without_mechanism), ["auth_mechanisms"]);
        let (cert, _) = crate::tls::generate_self_signed("relay.example").unwrap();
        let (_, other_key) = crate::tls::generate_self_signed("relay.example").unwrap();
        let mismatched = ReceiveConnectorChanges {
            tls_mode: Some("starttls-offered".into()),
            tls_certificate: Some(Some((cert, other_key))),
            ..Default::default()
        };
        assert_eq!(fields(mismatched), ["tls_certificate_pem"]);
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
