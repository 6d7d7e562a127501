//! The address parser on arbitrary text: never panics; whatever it accepts prints back to
//! text that parses to the same address (the relay decision and the delivery route read
//! the same canonical domain), within RFC 5321's length limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_protocol::address::{Domain, EmailAddress};

// The input is the address as it stands between `<` and `>`; a leading `8` stands for
// a transaction with SMTPUTF8.
fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let (utf8, text) = match text.strip_prefix('8') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let Ok(address) = EmailAddress::parse(text, utf8) else { return };
    let printed = address.to_string();
    assert!(printed.len() <= 254, "RFC 5321 4.5.3.1.3: a path is at most 256 octets with its brackets");
    assert!(address.local_part().len() <= 64, "RFC 5321 4.5.3.1.1");
    assert_eq!(EmailAddress::parse(&printed, utf8).as_ref(), Ok(&address), "{printed:?} from {text:?}");
    let domain = address.domain();
    assert_eq!(Domain::parse(domain.as_str(), utf8).as_ref(), Ok(domain), "the domain is already canonical");
    assert!(domain.is_within(domain));
    if !utf8 {
        assert!(printed.is_ascii(), "non-ASCII only with SMTPUTF8");
    }
});
