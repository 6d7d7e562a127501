//! The configuration objects an administrator edits, as typed values. The store reads
//! rows into these; the policy and the engine only ever see these.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::Domain;
use super::network::{Binding, IpRange};

/// A parse error for one of the enumerations below: the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what} (expected one of: {expected})")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// Declares a string-backed enum with `as_str`, `Display` and `FromStr`, so the names in
/// the database, the CLI and the API are the same text.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
                match wanted.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_string(), expected: concat!($($text, " "),+) }),
                }
            }
        }
    };
}

named_enum!(
    /// Who may use a receive connector (Exchange's AnonymousUsers / ExchangeUsers).
    PermissionGroup, "permission group" { Anonymous = "anonymous", Authenticated = "authenticated" }
);
named_enum!(
    /// SASL mechanisms for service accounts (RFC 4954).
    AuthMechanism, "auth mechanism" { Plain = "plain", Login = "login" }
);
impl From<AuthMechanism> for postern_protocol::sasl::Mechanism {
    fn from(mechanism: AuthMechanism) -> Self {
        match mechanism {
            AuthMechanism::Plain => Self::Plain,
            AuthMechanism::Login => Self::Login,
        }
    }
}
named_enum!(
    /// How a receive connector uses TLS.
    TlsMode, "TLS mode" {
        None = "none",
        StarttlsOffered = "starttls_offered",
        StarttlsRequired = "starttls_required",
        Implicit = "implicit",
    }
);
named_enum!(
    /// Whether a receive connector stores session transcripts.
    ProtocolLogging, "protocol logging level" { None = "none", Verbose = "verbose" }
);
named_enum!(
    /// Exchange's accepted domain types. Both make a recipient internal to Postern.
    DomainType, "accepted domain type" { Authoritative = "authoritative", InternalRelay = "internal_relay" }
);
named_enum!(
    /// What an API token may do: read; read and change the relay's configuration and
    /// queue; or that and manage administrators and API tokens.
    ApiScope, "API token scope" { Read = "read", Write = "write", Admin = "admin" }
);

/// TLS towards a smart host or MX, with Postfix's levels (`delivery::tls` has the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered, certificate not checked; a failed handshake is retried
    /// once in clear text (RFC 7435). Postfix's `may`.
    Opportunistic,
    /// TLS mandatory, certificate not checked.
    Encrypt,
    /// TLS mandatory, chain and host name verified (or the connector's pin). Postfix's
    /// `secure`; `required` is accepted for it.
    Verify,
}

impl TlsPolicy {
    pub const ALL: &'static [TlsPolicy] =
        &[TlsPolicy::None, TlsPolicy::Opportunistic, TlsPolicy::Encrypt, TlsPolicy::Verify];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsPolicy::None => "none",
            TlsPolicy::Opportunistic => "opportunistic",
            TlsPolicy::Encrypt => "encrypt",
            TlsPolicy::Verify => "verify",
        }
    }

    /// How much the policy protects what is sent (higher is safer).
    pub fn strength(self) -> u8 {
        match self {
            TlsPolicy::None => 0,
            TlsPolicy::Opportunistic => 1,
            TlsPolicy::Encrypt => 2,
            TlsPolicy::Verify => 3,
        }
    }

    /// Whether a session without TLS is refused.
    pub fn requires_tls(self) -> bool {
        matches!(self, TlsPolicy::Encrypt | TlsPolicy::Verify)
    }
}

impl fmt::Display for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsPolicy {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(TlsPolicy::None),
            "opportunistic" | "may" => Ok(TlsPolicy::Opportunistic),
            "encrypt" => Ok(TlsPolicy::Encrypt),
            "verify" | "required" | "secure" => Ok(TlsPolicy::Verify),
            _ => Err(UnknownValue {
                what: "TLS policy",
                value: s.to_string(),
                expected: "none opportunistic encrypt verify ",
            }),
        }
    }
}

named_enum!(
    /// Which address family of a next hop is tried first (Postfix's
    /// `smtp_address_preference`): as the resolver orders them, or IPv4 or IPv6 first.
    IpPreference, "IP preference" { Any = "any", Ipv4 = "ipv4", Ipv6 = "ipv6" }
);

impl ApiScope {
    /// Whether a token of this scope may do what `needed` allows (admin ⊃ write ⊃ read).
    pub fn allows(self, needed: ApiScope) -> bool {
        let rank = |s: ApiScope| match s {
            ApiScope::Read => 0,
            ApiScope::Write => 1,
            ApiScope::Admin => 2,
        };
        rank(self) >= rank(needed)
    }
}

/// Limits a receive connector enforces on each session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorLimits {
    pub max_message_size: u64,
    pub max_recipients: u32,
    pub max_connections: u32,
    pub max_connections_per_source: u32,
    pub max_messages_per_minute_per_source: u32,
    pub connection_timeout_secs: u32,
}

impl Default for ConnectorLimits {
    fn default() -> Self {
        // Exchange 2019's defaults for a custom receive connector, where it has them.
        Self {
            max_message_size: 36_700_160,
            max_recipients: 200,
            max_connections: 5000,
            max_connections_per_source: 20,
            max_messages_per_minute_per_source: 0,
            connection_timeout_secs: 300,
        }
    }
}

/// A PEM private key. `Debug` never shows it, so no log line can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKeyPem(pub String);

impl fmt::Debug for PrivateKeyPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKeyPem(<redacted>)")
    }
}

/// A named inbound policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveConnector {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub bindings: Vec<Binding>,
    pub remote_ip_ranges: Vec<IpRange>,
    pub permission_groups: Vec<PermissionGroup>,
    pub auth_mechanisms: Vec<AuthMechanism>,
    pub auth_requires_tls: bool,
    pub tls_mode: TlsMode,
    pub tls_certificate_pem: Option<String>,
    pub tls_key_pem: Option<PrivateKeyPem>,
    pub accept_any_recipient: bool,
    pub limits: ConnectorLimits,
    pub banner: Option<String>,
    pub fqdn: String,
    pub protocol_logging: ProtocolLogging,
}

impl ReceiveConnector {
    pub fn allows(&self, group: PermissionGroup) -> bool {
        self.permission_groups.contains(&group)
    }
}

/// A domain Postern treats as internal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedDomain {
    pub id: Uuid,
    pub domain: Domain,
    pub domain_type: DomainType,
}

/// A domain pattern of a send connector: `example.com`, `*.example.com` or `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressSpace {
    Exact(Domain),
    /// `*.example.com`: the domain and every subdomain of it.
    Subdomains(Domain),
    Everything,
}

impl AddressSpace {
    pub fn parse(input: &str) -> Result<Self, crate::domain::AddressError> {
        let text = input.trim();
        if text == "*" {
            return Ok(Self::Everything);
        }
        match text.strip_prefix("*.") {
            Some(parent) => Ok(Self::Subdomains(Domain::parse(parent, true)?)),
            None => Ok(Self::Exact(Domain::parse(text, true)?)),
        }
    }

    /// How specifically this pattern matches `domain`: `None` if it does not, otherwise a
    /// score where an exact match beats any wildcard and a longer wildcard a shorter one.
    pub fn specificity(&self, domain: &Domain) -> Option<usize> {
        match self {
            Self::Exact(d) if d == domain => Some(usize::MAX),
            Self::Subdomains(d) if domain.is_within(d) => Some(d.as_str().len() + 1),
            Self::Everything => Some(0),
            _ => None,
        }
    }
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(d) => write!(f, "{d}"),
            Self::Subdomains(d) => write!(f, "*.{d}"),
            Self::Everything => f.write_str("*"),
        }
    }
}

/// `host:port` of a smart host; a missing port means the send connector's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartHost {
    pub host: String,
    pub port: Option<u16>,
}

impl SmartHost {
    pub fn parse(input: &str) -> Result<Self, String> {
        let text = input.trim();
        let invalid = || format!("{input:?} is not a smart host (expected host or host:port)");
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.starts_with('[') => {
                (h, Some(p.parse::<u16>().map_err(|_| invalid())?))
            }
            _ => (text, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == Some(0) {
            return Err(invalid());
        }
        if host.parse::<std::net::IpAddr>().is_err() {
            Domain::parse(host, false).map_err(|_| invalid())?;
        }
        Ok(Self { host: host.to_ascii_lowercase(), port })
    }
}

impl fmt::Display for SmartHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => f.write_str(&host),
        }
    }
}

/// A secret from configuration or a form (a password, a token, a URL with a password
/// in it): `Debug` never shows it, so no log line or panic message can.
#[derive(Clone, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Credentials for a smart host. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SmartHostCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for SmartHostCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmartHostCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// An outbound route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConnector {
    pub id: Uuid,
    pub name: String,
    pub enabled: bool,
    pub address_spaces: Vec<AddressSpace>,
    /// Empty: deliver by DNS MX.
    pub smart_hosts: Vec<SmartHost>,
    pub port: u16,
    pub tls_policy: TlsPolicy,
    /// Extra CAs (PEM) trusted for this connector's hosts under `verify`, beside the
    /// system store: an internal relay's private CA.
    pub tls_ca_pem: Option<String>,
    /// SHA-256 of the next hop's public key: under `verify`, the certificate is accepted
    /// when its key matches, whatever signed it.
    pub tls_pin: Option<[u8; 32]>,
    /// AUTH PLAIN/LOGIN with a stored password.
    pub credentials: Option<SmartHostCredentials>,
    /// Or XOAUTH2 with a token from an OAuth2 token endpoint.
    pub oauth2: Option<OAuth2Client>,
    /// MX (and their A/AAAA) answers may point at private, loopback or link-local
    /// addresses, or at this node itself (refused otherwise).
    pub allow_private_destinations: bool,
    pub ip_preference: IpPreference,
}

/// An OAuth2 client (client-credentials grant) whose tokens sign in to the smart host
/// with XOAUTH2 as `mailbox`. `Debug` never shows the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Client {
    pub mailbox: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub scope: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_accept_cli_spellings() {
        assert_eq!("StartTLS-Required".parse::<TlsMode>().unwrap(), TlsMode::StarttlsRequired);
        assert_eq!("anonymous".parse::<PermissionGroup>().unwrap(), PermissionGroup::Anonymous);
        let err = "everyone".parse::<PermissionGroup>().unwrap_err();
        assert!(err.to_string().contains("anonymous authenticated"));
    }

    #[test]
    fn address_space_specificity_prefers_exact_then_longest_wildcard() {
        let d = Domain::parse("mail.example.com", false).unwrap();
        let exact = AddressSpace::parse("mail.example.com").unwrap();
        let wild = AddressSpace::parse("*.example.com").unwrap();
        let all = AddressSpace::parse("*").unwrap();
        let other = AddressSpace::parse("example.org").unwrap();
        assert!(exact.specificity(&d) > wild.specificity(&d));
        assert!(wild.specificity(&d) > all.specificity(&d));
        assert_eq!(other.specificity(&d), None);
    }

    #[test]
    fn smart_hosts_parse_with_and_without_port() {
        assert_eq!(
            SmartHost::parse("mail.example:25").unwrap(),
            SmartHost { host: "mail.example".into(), port: Some(25) }
        );
        assert_eq!(SmartHost::parse("127.0.0.1").unwrap().port, None);
        assert_eq!(SmartHost::parse("[::1]:2525").unwrap().to_string(), "[::1]:2525");
        assert!(SmartHost::parse("mail.example:0").is_err());
        assert!(SmartHost::parse("bad host:25").is_err());
    }
}
