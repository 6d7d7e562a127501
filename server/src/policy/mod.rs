//! The live configuration snapshot and the pure decisions made from it: which receive
//! connector serves a client, who may relay, which send connector routes a domain.
//! No I/O here: the SMTP engine, the what-if tester and the tests call the same code.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use time::OffsetDateTime;

use crate::domain::{
    AcceptedDomain, Domain, DomainType, EmailAddress, PermissionGroup, ReceiveConnector, SendConnector, ServiceAccount,
    TlsMode,
};
use crate::store::Configuration;
use crate::tls::ConnectorTls;

/// An immutable view of the whole configuration at one generation. Swapped atomically
/// on reload; a session keeps the one it started with.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub generation: i64,
    pub loaded_at: Option<OffsetDateTime>,
    pub receive_connectors: Vec<Arc<ReceiveConnector>>,
    pub accepted_domains: Vec<AcceptedDomain>,
    pub send_connectors: Vec<Arc<SendConnector>>,
    pub service_accounts: Vec<Arc<ServiceAccount>>,
    /// TLS configurations of the connectors that use TLS, by connector id.
    pub tls: HashMap<uuid::Uuid, Arc<ConnectorTls>>,
}

/// Why the policy refused a step. The SMTP layer turns each into its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// MAIL without AUTH on a connector without the `anonymous` group (5.7.57).
    NotAuthenticated,
    /// External recipient without the relay right (5.7.54).
    UnableToRelay,
    /// A recipient at an address literal such as `[127.0.0.1]`.
    AddressLiteral,
    /// MAIL before STARTTLS on a connector that requires TLS (530 5.7.0).
    TlsRequired,
    /// TLS is required but could not be set up on this node (454 4.7.0).
    TlsUnavailable,
    /// An authenticated account used a sender it holds no Send-As right for (5.7.60).
    SendAsDenied,
}

/// How a client is known to the session when a decision is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthState {
    Anonymous,
    Authenticated,
}

impl Snapshot {
    pub fn new(config: Configuration) -> Self {
        Self {
            generation: config.generation,
            loaded_at: Some(OffsetDateTime::now_utc()),
            receive_connectors: config.receive_connectors.into_iter().map(Arc::new).collect(),
            accepted_domains: config.accepted_domains,
            send_connectors: config.send_connectors.into_iter().map(Arc::new).collect(),
            service_accounts: config.service_accounts.into_iter().map(Arc::new).collect(),
            tls: HashMap::new(),
        }
    }

    /// This configuration with one receive connector added or replaced (by id), for the
    /// what-if tester to evaluate an edit before it is saved. `tls` is the connector's
    /// TLS configuration, when it would have one.
    pub fn with_receive_connector(&self, candidate: ReceiveConnector, tls: Option<Arc<ConnectorTls>>) -> Snapshot {
        let mut receive_connectors: Vec<_> =
            self.receive_connectors.iter().filter(|c| c.id != candidate.id).cloned().collect();
        let mut tls_configs = self.tls.clone();
        tls_configs.remove(&candidate.id);
        if let Some(tls) = tls.filter(|_| candidate.enabled && candidate.tls_mode != TlsMode::None) {
            tls_configs.insert(candidate.id, tls);
        }
        receive_connectors.push(Arc::new(candidate));
        Snapshot {
            generation: self.generation,
            loaded_at: self.loaded_at,
            receive_connectors,
            accepted_domains: self.accepted_domains.clone(),
            send_connectors: self.send_connectors.clone(),
            service_accounts: self.service_accounts.clone(),
            tls: tls_configs,
        }
    }

    /// The service account a client signs in as, by name or address.
    /// A login that matches two accounts (possible only through hand-written SQL; the
    /// admin layer refuses it) signs in nobody.
    pub fn account(&self, login: &str) -> Option<Arc<ServiceAccount>> {
        let mut matching = self.service_accounts.iter().filter(|a| a.is_login(login));
        match (matching.next(), matching.next()) {
            (Some(account), None) => Some(Arc::clone(account)),
            _ => None,
        }
    }

    /// An account's current state, by id (to re-check a session signed in earlier).
    pub fn account_by_id(&self, id: uuid::Uuid) -> Option<Arc<ServiceAccount>> {
        self.service_accounts.iter().find(|a| a.id == id).cloned()
    }

    /// The TLS configuration of a connector, if it uses TLS and it could be set up.
    pub fn tls_for(&self, connector: &ReceiveConnector) -> Option<Arc<ConnectorTls>> {
        self.tls.get(&connector.id).cloned()
    }

    /// Exchange's rule: among the enabled connectors bound to the local address, the one
    /// whose remote IP ranges contain the client most specifically (longest prefix). On a
    /// tie, a connector bound to the exact local IP beats one bound to 0.0.0.0.
    pub fn select_connector(&self, local: SocketAddr, peer: IpAddr) -> Option<Arc<ReceiveConnector>> {
        self.receive_connectors
            .iter()
            .filter(|c| c.enabled)
            .filter_map(|c| {
                let binding = c.bindings.iter().filter(|b| b.accepts(local)).map(|b| !b.is_wildcard()).max()?;
                let prefix = c.remote_ip_ranges.iter().filter(|r| r.contains(peer)).map(|r| r.prefix_len()).max()?;
                Some(((prefix, binding), c))
            })
            // Ties beyond that are refused at save time; fall back to the name so the
            // choice is at least stable.
            .max_by(|(a, ca), (b, cb)| a.cmp(b).then_with(|| cb.name.cmp(&ca.name)))
            .map(|(_, c)| Arc::clone(c))
    }

    pub fn accepted_domain(&self, domain: &Domain) -> Option<DomainType> {
        self.accepted_domains.iter().find(|d| &d.domain == domain).map(|d| d.domain_type)
    }

    /// MAIL FROM: may this client start a transaction at all? TLS comes first: on a
    /// connector that requires it nothing else is considered until the client has it.
    pub fn may_send(&self, connector: &ReceiveConnector, auth: AuthState, tls: bool) -> Result<(), Denial> {
        if connector.tls_mode == TlsMode::StarttlsRequired && !tls {
            // Without a usable certificate the client cannot comply: a temporary refusal,
            // so that it retries instead of bouncing its mail.
            return Err(if self.tls.contains_key(&connector.id) {
                Denial::TlsRequired
            } else {
                Denial::TlsUnavailable
            });
        }
        match auth {
            AuthState::Authenticated if connector.allows(PermissionGroup::Authenticated) => Ok(()),
            AuthState::Authenticated => Err(Denial::NotAuthenticated),
            AuthState::Anonymous if connector.allows(PermissionGroup::Anonymous) => Ok(()),
            AuthState::Anonymous => Err(Denial::NotAuthenticated),
        }
    }

    /// Send-As, at MAIL FROM and again for the From/Sender headers at end of DATA: an
    /// authenticated account may use its own address or one its grants cover; the null
    /// sender is for bounces, which applications do not send. Anonymous clients are not
    /// asked (their connector's IP ranges are what admits them).
    pub fn may_send_as(&self, account: Option<&ServiceAccount>, sender: Option<&EmailAddress>) -> Result<(), Denial> {
        match (account, sender) {
            (None, _) => Ok(()),
            (Some(account), Some(sender)) if account.may_send_as(sender) => Ok(()),
            (Some(_), _) => Err(Denial::SendAsDenied),
        }
    }

    /// RCPT TO: never an open relay (invariant 2). Recipients in accepted domains are
    /// always internal; an external one needs an authenticated sender (the
    /// `authenticated` group carries the relay right, as ExchangeUsers does) or an
    /// anonymous client on a connector that holds `accept_any_recipient`.
    pub fn may_relay(
        &self,
        connector: &ReceiveConnector,
        auth: AuthState,
        recipient: &EmailAddress,
    ) -> Result<(), Denial> {
        let domain = recipient.domain();
        if domain.is_literal() {
            return Err(Denial::AddressLiteral);
        }
        // Sender-specified routing (`user%other@ours`, `other!user@ours`) would let the
        // next hop relay onwards: it needs the relay right, as Postfix's
        // allow_untrusted_routing = no has it.
        if self.accepted_domain(domain).is_some() && !recipient.has_sender_routing() {
            return Ok(());
        }
        match auth {
            AuthState::Authenticated if connector.allows(PermissionGroup::Authenticated) => Ok(()),
            AuthState::Anonymous if connector.allows(PermissionGroup::Anonymous) && connector.accept_any_recipient => {
                Ok(())
            }
            _ => Err(Denial::UnableToRelay),
        }
    }

    /// The send connector whose address space matches the domain most specifically.
    pub fn route(&self, domain: &Domain) -> Option<Arc<SendConnector>> {
        self.send_connectors
            .iter()
            .filter(|c| c.enabled)
            .filter_map(|c| c.address_spaces.iter().filter_map(|s| s.specificity(domain)).max().map(|score| (score, c)))
            .max_by(|(a, ca), (b, cb)| a.cmp(b).then_with(|| cb.name.cmp(&ca.name)))
            .map(|(_, c)| Arc::clone(c))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{AddressSpace, Binding, ConnectorLimits, IpRange, ProtocolLogging, TlsMode, TlsPolicy};
    use uuid::Uuid;

    pub(crate) fn connector(name: &str, binding: &str, ranges: &[&str]) -> ReceiveConnector {
        ReceiveConnector {
            id: Uuid::new_v4(),
            name: name.into(),
            enabled: true,
            bindings: vec![Binding::parse(binding).unwrap()],
            remote_ip_ranges: ranges.iter().map(|r| IpRange::parse(r).unwrap()).collect(),
            permission_groups: vec![PermissionGroup::Anonymous],
            auth_mechanisms: vec![],
            auth_requires_tls: true,
            tls_mode: TlsMode::None,
            tls_certificate_pem: None,
            tls_key_pem: None,
            accept_any_recipient: false,
            limits: ConnectorLimits::default(),
            banner: None,
            fqdn: "relay.example".into(),
            protocol_logging: ProtocolLogging::None,
        }
    }

    fn snapshot(connectors: Vec<ReceiveConnector>) -> Snapshot {
        Snapshot {
            receive_connectors: connectors.into_iter().map(Arc::new).collect(),
            accepted_domains: vec![AcceptedDomain {
                id: Uuid::new_v4(),
                domain: Domain::parse("cloudmonkeys.xyz", false).unwrap(),
                domain_type: DomainType::Authoritative,
            }],
            ..Snapshot::default()
        }
    }

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s, false).unwrap()
    }

    #[test]
    fn the_most_specific_remote_range_wins() {
        let snap = snapshot(vec![
            connector("Default", "0.0.0.0:2526", &["0.0.0.0/0"]),
            connector("Script", "0.0.0.0:2526", &["192.168.1.13"]),
            connector("Office", "0.0.0.0:2526", &["192.168.1.0/24"]),
        ]);
        let local = "10.0.0.1:2526".parse().unwrap();
        assert_eq!(snap.select_connector(local, "192.168.1.13".parse().unwrap()).unwrap().name, "Script");
        assert_eq!(snap.select_connector(local, "192.168.1.14".parse().unwrap()).unwrap().name, "Office");
        assert_eq!(snap.select_connector(local, "8.8.8.8".parse().unwrap()).unwrap().name, "Default");
        assert!(snap.select_connector("10.0.0.1:25".parse().unwrap(), "192.168.1.13".parse().unwrap()).is_none());
    }

    #[test]
    fn disabled_and_unlisted_mean_no_connector() {
        let mut off = connector("Script", "0.0.0.0:2526", &["127.0.0.1"]);
        off.enabled = false;
        let snap = snapshot(vec![off, connector("Other", "0.0.0.0:2526", &["127.0.0.1"])]);
        let local = "127.0.0.1:2526".parse().unwrap();
        assert_eq!(snap.select_connector(local, "127.0.0.1".parse().unwrap()).unwrap().name, "Other");
        assert!(snap.select_connector(local, "127.0.0.2".parse().unwrap()).is_none());
    }

    #[test]
    fn a_specific_binding_beats_a_wildcard_on_equal_ranges() {
        let snap = snapshot(vec![
            connector("Any", "0.0.0.0:25", &["127.0.0.0/8"]),
            connector("Loop", "127.0.0.1:25", &["127.0.0.0/8"]),
        ]);
        let chosen = snap.select_connector("127.0.0.1:25".parse().unwrap(), "127.0.0.5".parse().unwrap());
        assert_eq!(chosen.unwrap().name, "Loop");
    }

    #[test]
    fn anonymous_relay_needs_the_relay_right_for_external_recipients() {
        let mut c = connector("Script", "0.0.0.0:2526", &["127.0.0.1"]);
        let snap = snapshot(vec![]);
        assert_eq!(snap.may_relay(&c, AuthState::Anonymous, &addr("user@cloudmonkeys.xyz")), Ok(()));
        assert_eq!(snap.may_relay(&c, AuthState::Anonymous, &addr("x@gmail.example")), Err(Denial::UnableToRelay));
        c.accept_any_recipient = true;
        assert_eq!(snap.may_relay(&c, AuthState::Anonymous, &addr("x@gmail.example")), Ok(()));
        assert_eq!(snap.may_relay(&c, AuthState::Anonymous, &addr("x@[127.0.0.1]")), Err(Denial::AddressLiteral));
    }

    #[test]
    fn sender_specified_routing_through_an_accepted_domain_needs_the_relay_right() {
        let mut c = connector("Script", "0.0.0.0:2526", &["127.0.0.1"]);
        let snap = snapshot(vec![]);
        for routed in [
            "x%gmail.example@cloudmonkeys.xyz",
            "gmail.example!x@cloudmonkeys.xyz",
            "\"x@gmail.example\"@cloudmonkeys.xyz",
        ] {
            assert_eq!(snap.may_relay(&c, AuthState::Anonymous, &addr(routed)), Err(Denial::UnableToRelay), "{routed}");
        }
        c.accept_any_recipient = true;
        assert_eq!(snap.may_relay(&c, AuthState::Anonymous, &addr("x%gmail.example@cloudmonkeys.xyz")), Ok(()));
    }

    #[test]
    fn authenticated_senders_relay_only_on_connectors_of_the_authenticated_group() {
        let mut c = connector("Auth", "0.0.0.0:587", &["127.0.0.1"]);
        c.permission_groups = vec![PermissionGroup::Authenticated];
        let snap = snapshot(vec![]);
        assert_eq!(snap.may_send(&c, AuthState::Anonymous, true), Err(Denial::NotAuthenticated));
        assert_eq!(snap.may_send(&c, AuthState::Authenticated, true), Ok(()));
        c.tls_mode = TlsMode::StarttlsRequired;
        // No certificate could be set up on this node: a temporary refusal, not 530.
        assert_eq!(snap.may_send(&c, AuthState::Authenticated, false), Err(Denial::TlsUnavailable));
        let anonymous_only = connector("Anon", "0.0.0.0:25", &["127.0.0.1"]);
        assert_eq!(snap.may_send(&anonymous_only, AuthState::Authenticated, false), Err(Denial::NotAuthenticated));
        assert_eq!(snap.may_relay(&c, AuthState::Authenticated, &addr("x@gmail.example")), Ok(()));
    }

    #[test]
    fn routing_picks_the_most_specific_address_space() {
        let send = |name: &str, spaces: &[&str]| {
            Arc::new(SendConnector {
                id: Uuid::new_v4(),
                name: name.into(),
                enabled: true,
                address_spaces: spaces.iter().map(|s| AddressSpace::parse(s).unwrap()).collect(),
                smart_hosts: vec![],
                port: 25,
                tls_policy: TlsPolicy::Opportunistic,
                tls_ca_pem: None,
                tls_pin: None,
                credentials: None,
                oauth2: None,
                allow_private_destinations: false,
                ip_preference: crate::domain::IpPreference::Any,
            })
        };
        let snap = Snapshot {
            send_connectors: vec![send("Internet", &["*"]), send("Partner", &["*.partner.example", "partner.example"])],
            ..Snapshot::default()
        };
        let d = |s: &str| Domain::parse(s, false).unwrap();
        assert_eq!(snap.route(&d("mx.partner.example")).unwrap().name, "Partner");
        assert_eq!(snap.route(&d("partner.example")).unwrap().name, "Partner");
        assert_eq!(snap.route(&d("gmail.example")).unwrap().name, "Internet");
        assert!(Snapshot::default().route(&d("gmail.example")).is_none());
    }
}
