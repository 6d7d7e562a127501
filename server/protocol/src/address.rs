//! Mail addresses and domains, parsed once at the edge (RFC 5321 §4.1.2, RFC 6531).
//!
//! Every layer after the SMTP parser takes an [`EmailAddress`] or a [`Domain`], so the
//! relay decision and the delivery route always see the same canonical domain.

use std::fmt;

/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2: a domain is at most 255 octets.
const MAX_DOMAIN: usize = 255;
/// RFC 5321 §4.5.3.1.3: a path (address plus angle brackets) is at most 256 octets.
const MAX_PATH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address has no @domain part")]
    MissingDomain,
    #[error("local part is longer than 64 octets")]
    LocalPartTooLong,
    #[error("address is longer than 254 octets")]
    TooLong,
    #[error("local part has invalid syntax")]
    InvalidLocalPart,
    #[error("domain {0:?} is not a valid domain name")]
    InvalidDomain(String),
    #[error("address contains non-ASCII characters but SMTPUTF8 was not requested")]
    NonAsciiWithoutSmtputf8,
}

/// A domain name, lower-cased, without a trailing dot; or an address literal `[1.2.3.4]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Parses a domain name (RFC 5321 §4.1.2 `Domain`) or an address literal. Labels are
    /// letters, digits and hyphens (or UTF-8 when `allow_utf8`), never starting or ending
    /// with a hyphen, 1–63 octets each.
    pub fn parse(input: &str, allow_utf8: bool) -> Result<Self, AddressError> {
        let invalid = || AddressError::InvalidDomain(input.to_string());
        if input.is_empty() || input.len() > MAX_DOMAIN {
            return Err(invalid());
        }
        if let Some(literal) = input.strip_prefix('[') {
            return Self::address_literal(literal.strip_suffix(']').ok_or_else(invalid)?).ok_or_else(invalid);
        }
        if !allow_utf8 && !input.is_ascii() {
            return Err(AddressError::NonAsciiWithoutSmtputf8);
        }
        for label in input.split('.') {
            let valid_chars =
                label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && !c.is_control()));
            if label.is_empty() || label.len() > 63 || !valid_chars || label.starts_with('-') || label.ends_with('-') {
                return Err(invalid());
            }
        }
        Ok(Self(input.to_lowercase()))
    }

    /// RFC 5321 §4.1.3 address literals, in one canonical spelling (`[192.0.2.1]`,
    /// `[IPv6:2001:db8::1]`) so that every spelling of one address is one domain. The
    /// `IPv6:` tag is case-insensitive (RFC 5234 §2.3); an IPv4 address needs no tag and
    /// an IPv6 address must have it.
    fn address_literal(inner: &str) -> Option<Self> {
        let tag = inner.get(..5).filter(|t| t.eq_ignore_ascii_case("IPv6:"));
        match tag {
            Some(_) => {
                let ip: std::net::Ipv6Addr = inner[5..].parse().ok()?;
                Some(Self(format!("[IPv6:{ip}]")))
            }
            None => {
                let ip: std::net::Ipv4Addr = inner.parse().ok()?;
                Some(Self(format!("[{ip}]")))
            }
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An address literal such as `[192.0.2.1]` rather than a name.
    pub fn is_literal(&self) -> bool {
        self.0.starts_with('[')
    }

    /// True when `self` is `parent` or a subdomain of it.
    pub fn is_within(&self, parent: &Domain) -> bool {
        self.0 == parent.0 || self.0.strip_suffix(parent.as_str()).is_some_and(|rest| rest.ends_with('.'))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `local@domain`. The local part keeps its case (RFC 5321 §2.4: it may be case
/// sensitive); the domain is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: Domain,
}

impl EmailAddress {
    /// A value for objects under construction, always replaced before use (the
    /// reserved `.invalid` TLD of RFC 2606 §2 never routes anywhere).
    pub fn placeholder() -> Self {
        Self { local: "unset".into(), domain: Domain("unset.invalid".into()) }
    }

    /// Parses `local@domain` as found inside `<...>` of MAIL/RCPT (RFC 5321 §4.1.2
    /// `Mailbox`). Source routes (`@a,@b:user@c`), which RFC 5321 §4.1.1.3 says to
    /// ignore, are refused here instead: no relay trick gets through a path we rewrite.
    pub fn parse(input: &str, allow_utf8: bool) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if input.len() + 2 > MAX_PATH {
            return Err(AddressError::TooLong);
        }
        if !allow_utf8 && !input.is_ascii() {
            return Err(AddressError::NonAsciiWithoutSmtputf8);
        }
        let at = local_part_end(input)?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        if local.len() > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        if domain.is_empty() {
            return Err(AddressError::MissingDomain);
        }
        Ok(Self { local: local.to_string(), domain: Domain::parse(domain, allow_utf8)? })
    }

    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The local part routes mail elsewhere: the "percent hack" (`user%host`), a UUCP
    /// bang path (`host!user`), or a quoted `@`.
    pub fn has_sender_routing(&self) -> bool {
        self.local.contains(['%', '!', '@'])
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Checks the local part (dot-string or quoted-string) and returns the index of the `@`
/// that separates it from the domain.
fn local_part_end(input: &str) -> Result<usize, AddressError> {
    let bytes = input.as_bytes();
    if bytes.first() == Some(&b'"') {
        // RFC 5321 §4.1.2 Quoted-string: printable ASCII except `"` and `\`, or a
        // backslash pair.
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if i + 1 < bytes.len() && (32..=126).contains(&bytes[i + 1]) => i += 2,
                b'"' => {
                    return match bytes.get(i + 1) {
                        Some(b'@') => Ok(i + 1),
                        None => Err(AddressError::MissingDomain),
                        Some(_) => Err(AddressError::InvalidLocalPart),
                    };
                }
                c if (32..=126).contains(&c) && c != b'\\' => i += 1,
                c if c >= 0x80 => i += 1,
                _ => return Err(AddressError::InvalidLocalPart),
            }
        }
        return Err(AddressError::InvalidLocalPart);
    }
    let at = input.rfind('@').ok_or(AddressError::MissingDomain)?;
    let local = &input[..at];
    // RFC 5321 §4.1.2 Dot-string: atoms of atext joined by single dots.
    let valid_atom = |atom: &str| {
        !atom.is_empty()
            && atom.chars().all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii())
    };
    if local.is_empty() || !local.split('.').all(valid_atom) {
        return Err(AddressError::InvalidLocalPart);
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `address` fuzz target: `[IPv6:::1]` was lowercased to `[ipv6:::1]`,
    /// which did not parse again.
    #[test]
    fn address_literals_have_one_canonical_spelling() {
        let domain = |s: &str| Domain::parse(s, false).map(|d| d.as_str().to_string());
        assert_eq!(domain("[IPv6:::1]").unwrap(), "[IPv6:::1]");
        assert_eq!(domain("[ipv6:0:0:0:0:0:0:0:1]").unwrap(), "[IPv6:::1]");
        assert_eq!(domain("[IPV6:2001:DB8::1]").unwrap(), "[IPv6:2001:db8::1]");
        assert_eq!(domain("[192.0.2.1]").unwrap(), "[192.0.2.1]");
        assert!(domain("[::1]").is_err(), "an IPv6 literal needs its tag (RFC 5321 4.1.3)");
        assert!(domain("[IPv6:192.0.2.1]").is_err());
        assert!(domain("[192.0.2.1").is_err());
        let address = EmailAddress::parse("a@[IPv6:::1]", false).unwrap();
        assert_eq!(EmailAddress::parse(&address.to_string(), false).unwrap(), address);
    }

    #[test]
    fn domain_is_lowercased_and_local_part_keeps_case() {
        let a = EmailAddress::parse("Test.User@CloudMonkeys.XYZ", false).unwrap();
        assert_eq!(a.to_string(), "Test.User@cloudmonkeys.xyz");
        assert_eq!(a.domain().as_str(), "cloudmonkeys.xyz");
    }

    #[test]
    fn relay_tricks_and_malformed_addresses_are_refused() {
        for bad in [
            "user%other.example@relay.example", // percent hack: '%' is atext, but see below
            "@a.example:user@b.example",
            "user@@example.com",
            "a!b!c",
            "user@example.com.",
            "user@-bad.example",
            "user",
            "user@",
            ".user@example.com",
            "us..er@example.com",
            "user@exa_mple.com",
            "user@[300.1.1.1]",
        ] {
            let parsed = EmailAddress::parse(bad, false);
            if bad.starts_with("user%") {
                // The percent hack is a valid address; it is routed by its real domain only.
                assert_eq!(parsed.unwrap().domain().as_str(), "relay.example");
            } else {
                assert!(parsed.is_err(), "{bad} should be refused");
            }
        }
    }

    #[test]
    fn quoted_local_parts_and_literals_parse() {
        let a = EmailAddress::parse("\"john doe\"@example.com", false).unwrap();
        assert_eq!(a.local_part(), "\"john doe\"");
        let b = EmailAddress::parse("postmaster@[192.0.2.1]", false).unwrap();
        assert!(b.domain().is_literal());
    }

    #[test]
    fn non_ascii_needs_smtputf8() {
        assert_eq!(EmailAddress::parse("jörg@example.com", false), Err(AddressError::NonAsciiWithoutSmtputf8));
        assert!(EmailAddress::parse("jörg@bücher.example", true).is_ok());
    }

    #[test]
    fn length_limits_follow_rfc_5321() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(EmailAddress::parse(&long_local, false), Err(AddressError::LocalPartTooLong));
        let long_path = format!("a@{}.com", "b".repeat(260));
        assert_eq!(EmailAddress::parse(&long_path, false), Err(AddressError::TooLong));
    }

    #[test]
    fn subdomain_containment() {
        let parent = Domain::parse("example.com", false).unwrap();
        assert!(Domain::parse("mail.example.com", false).unwrap().is_within(&parent));
        assert!(Domain::parse("example.com", false).unwrap().is_within(&parent));
        assert!(!Domain::parse("badexample.com", false).unwrap().is_within(&parent));
    }
}

/// Properties over generated input (proptest): an address that parses formats to text
/// that parses back to the same address.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parse_format_parse_is_stable(text in "[A-Za-z0-9.\"@%!+\\[\\]:_ -]{0,40}|[^\\x00]{0,30}", utf8 in any::<bool>()) {
            if let Ok(address) = EmailAddress::parse(&text, utf8) {
                prop_assert_eq!(EmailAddress::parse(&address.to_string(), utf8), Ok(address.clone()), "{}", text);
            }
        }
    }
}
