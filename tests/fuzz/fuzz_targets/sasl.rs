//! The AUTH decoder (PLAIN and LOGIN) on arbitrary responses: never panics, and every
//! credential it returns was really in the client's base64 (nothing invented, nothing
//! cut), with PLAIN identities within RFC 4616's limits.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use postern_protocol::sasl::{Exchange, Mechanism, Step};

// The input is the client's side of the exchange, one response per line; a first line
// starting with `AUTH LOGIN` or `AUTH PLAIN` picks the mechanism, and text after the
// mechanism is the initial response.
fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let mut all = text.split('\n');
    let first = all.next().unwrap_or_default();
    let (mechanism, rest) = match (first.strip_prefix("AUTH LOGIN"), first.strip_prefix("AUTH PLAIN")) {
        (Some(rest), _) => (Mechanism::Login, rest),
        (_, Some(rest)) => (Mechanism::Plain, rest),
        _ => return,
    };
    let initial = rest.strip_prefix(' ').map(str::to_string);
    let responses: Vec<String> = all.map(str::to_string).collect();
    let (mut exchange, mut step) = Exchange::start(mechanism, initial.as_deref());
    let mut lines = initial.iter().chain(responses.iter());
    let mut sent = Vec::new();
    if initial.is_some() {
        sent.extend(lines.next().cloned());
    }
    while let Step::Challenge(_) = step {
        let Some(line) = lines.next() else { return };
        sent.push(line.clone());
        step = exchange.respond(line);
    }
    let Step::Done(credentials) = step else { return };
    assert!(!credentials.login.is_empty());
    let decoded: Vec<Vec<u8>> = sent
        .iter()
        .map(|l| if l.trim_end() == "=" { Vec::new() } else { STANDARD.decode(l.trim_end()).expect("accepted base64") })
        .collect();
    match mechanism {
        Mechanism::Plain => {
            let last = decoded.last().expect("a PLAIN response");
            let mut expected = credentials.authzid.clone().unwrap_or_default().into_bytes();
            expected.push(0);
            expected.extend_from_slice(credentials.login.as_bytes());
            expected.push(0);
            expected.extend_from_slice(&credentials.password);
            assert_eq!(&expected, last);
            assert!(credentials.login.len() <= 255);
        }
        _ => {
            assert_eq!(decoded.len(), 2, "LOGIN takes a user name, then a password");
            assert_eq!(credentials.login.as_bytes(), decoded[0]);
            assert_eq!(credentials.password, decoded[1]);
        }
    }
});
