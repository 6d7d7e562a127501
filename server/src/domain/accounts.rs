//! Service accounts (the logins of authenticated relay) and their Send-As grants.

use std::fmt;

use uuid::Uuid;

use super::network::IpRange;
use super::{AddressError, Domain, EmailAddress};

/// A login for authenticated relay. `Debug` never shows the password hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub id: Uuid,
    pub name: String,
    /// The account's own address: it may always send as this.
    pub address: EmailAddress,
    /// argon2id PHC string.
    pub password_hash: String,
    pub enabled: bool,
    /// Empty: any source the connector admits.
    pub remote_ip_ranges: Vec<IpRange>,
    pub max_messages_per_minute: Option<u32>,
    pub max_messages_per_day: Option<u32>,
    pub send_as: Vec<SenderPattern>,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("enabled", &self.enabled)
            .field("send_as", &self.send_as)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Whether a client signs in as this account with `login`: its name or its address,
    /// either in any case (as Exchange accepts a UPN or an alias).
    pub fn is_login(&self, login: &str) -> bool {
        self.name.eq_ignore_ascii_case(login) || self.address.to_string().eq_ignore_ascii_case(login)
    }

    /// Send-As: the account's own address, or one its grants cover.
    pub fn may_send_as(&self, sender: &EmailAddress) -> bool {
        same_address(&self.address, sender) || self.send_as.iter().any(|grant| grant.covers(sender))
    }

    /// Whether the account may be used from `ip` at all.
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        self.remote_ip_ranges.is_empty() || self.remote_ip_ranges.iter().any(|r| r.contains(ip))
    }
}

/// Addresses are compared without regard to case: local parts are case-sensitive in
/// theory (RFC 5321 §2.4) but no mail system an admin grants rights on treats them so,
/// and a case trick must not open a grant nor dodge one.
fn same_address(a: &EmailAddress, b: &EmailAddress) -> bool {
    a.domain() == b.domain() && a.local_part().eq_ignore_ascii_case(b.local_part())
}

/// What a Send-As grant covers: one address, or every address of a domain (`*@domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderPattern {
    Address(EmailAddress),
    Domain(Domain),
}

impl SenderPattern {
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let text = input.trim();
        match text.strip_prefix("*@") {
            Some(domain) => {
                let domain = Domain::parse(domain, true)?;
                if domain.is_literal() {
                    return Err(AddressError::InvalidDomain(domain.to_string()));
                }
                Ok(Self::Domain(domain))
            }
            None => Ok(Self::Address(EmailAddress::parse(text, true)?)),
        }
    }

    pub fn covers(&self, sender: &EmailAddress) -> bool {
        match self {
            Self::Address(address) => same_address(address, sender),
            // Exactly the domain: a grant on example.com does not cover sub.example.com.
            Self::Domain(domain) => sender.domain() == domain,
        }
    }
}

/// The stored form is lower case (the table checks it), so one grant has one spelling.
impl fmt::Display for SenderPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Address(address) => write!(f, "{}", address.to_string().to_lowercase()),
            Self::Domain(domain) => write!(f, "*@{domain}"),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The seed's svc-mailer with these Send-As grants (a fixture for other modules too).
    pub(crate) fn account(grants: &[&str]) -> ServiceAccount {
        ServiceAccount {
            id: Uuid::new_v4(),
            name: "svc-mailer".into(),
            address: EmailAddress::parse("svc-mailer@cloudmonkeys.xyz", false).unwrap(),
            password_hash: String::new(),
            enabled: true,
            remote_ip_ranges: vec![],
            max_messages_per_minute: None,
            max_messages_per_day: None,
            send_as: grants.iter().map(|g| SenderPattern::parse(g).unwrap()).collect(),
        }
    }

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s, false).unwrap()
    }

    #[test]
    fn send_as_covers_own_address_exact_grants_and_whole_domains() {
        let a = account(&["smb1@cloudmonkeys.xyz", "*@apps.example"]);
        assert!(a.may_send_as(&addr("svc-mailer@cloudmonkeys.xyz")));
        assert!(a.may_send_as(&addr("SMB1@CloudMonkeys.xyz")));
        assert!(a.may_send_as(&addr("anyone@apps.example")));
        assert!(!a.may_send_as(&addr("smb2@cloudmonkeys.xyz")));
        assert!(!a.may_send_as(&addr("x@sub.apps.example")));
        assert!(!a.may_send_as(&addr("smb1@cloudmonkeys.xyz.evil.example")));
    }

    #[test]
    fn login_is_name_or_address_in_any_case() {
        let a = account(&[]);
        assert!(a.is_login("SVC-Mailer"));
        assert!(a.is_login("svc-mailer@CLOUDMONKEYS.xyz"));
        assert!(!a.is_login("svc-mailer@other.example"));
    }

    #[test]
    fn grant_patterns_parse_and_print_canonically() {
        assert_eq!(SenderPattern::parse("*@CloudMonkeys.XYZ").unwrap().to_string(), "*@cloudmonkeys.xyz");
        assert_eq!(SenderPattern::parse("Smb1@cloudmonkeys.xyz").unwrap().to_string(), "smb1@cloudmonkeys.xyz");
        assert!(SenderPattern::parse("*@[127.0.0.1]").is_err());
        assert!(SenderPattern::parse("*").is_err());
        assert!(SenderPattern::parse("smb1").is_err());
    }
}
