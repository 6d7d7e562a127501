//! Pure types: addresses, networks and configuration objects. Parse, don't validate:
//! every value here was checked once when it was made. No I/O, no SQL, no SMTP.

pub(crate) mod accounts;
mod config;
mod name;
mod network;

pub use accounts::{SenderPattern, ServiceAccount};
pub use config::{
    AcceptedDomain, AddressSpace, ApiScope, AuthMechanism, ConnectorLimits, DomainType, IpPreference, OAuth2Client,
    PermissionGroup, PrivateKeyPem, ProtocolLogging, ReceiveConnector, Secret, SendConnector, SmartHost,
    SmartHostCredentials, TlsMode, TlsPolicy, UnknownValue,
};
pub use name::{ObjectName, ObjectNameError};
pub use network::{Binding, IpRange, NetworkError, canonical_ip, is_public, public_span, source_key};
pub use postern_protocol::address::{AddressError, Domain, EmailAddress};
