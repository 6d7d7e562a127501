//! The SASL exchanges of AUTH PLAIN (RFC 4616) and AUTH LOGIN (the de facto mechanism
//! of draft-murchison-sasl-login), sans-IO: responses in, challenges or credentials out.
//! RFC 4954 §4: every response is base64; `*` cancels; `=` is an empty initial response.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The SASL mechanisms Postern offers (RFC 4954 §4). The server's configuration names
/// them too (`postern::domain::AuthMechanism`) and converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// draft-murchison-sasl-login.
    Login,
}

/// What a client proved it knows.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub login: String,
    pub password: Vec<u8>,
    /// PLAIN's authorization identity, when given; it must name the same account.
    pub authzid: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("login", &self.login).field("password", &"<redacted>").finish()
    }
}

/// The next step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send `334 <challenge>` (already base64) and feed the client's next line.
    Challenge(&'static str),
    Done(Credentials),
    /// The client sent `*` (RFC 4954 §4): 501.
    Cancelled,
    /// The response is not valid base64 or not a valid message of the mechanism: 501.
    Malformed,
}

/// An exchange in progress.
#[derive(Debug)]
pub struct Exchange {
    mechanism: Mechanism,
    /// LOGIN: the user name, once given.
    login: Option<String>,
}

/// `Username:` and `Password:` in base64, as every LOGIN client expects.
const LOGIN_USERNAME: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD: &str = "UGFzc3dvcmQ6";
/// Longest decoded response accepted: a login and a password, with room to spare.
const MAX_RESPONSE: usize = 2048;

impl Exchange {
    /// Starts an exchange; `initial` is the optional initial response of the AUTH command.
    pub fn start(mechanism: Mechanism, initial: Option<&str>) -> (Self, Step) {
        let mut exchange = Self { mechanism, login: None };
        let step = match (mechanism, initial) {
            (Mechanism::Plain, None) => Step::Challenge(""),
            (Mechanism::Login, None) => Step::Challenge(LOGIN_USERNAME),
            (_, Some(response)) => exchange.respond(response),
        };
        (exchange, step)
    }

    /// Feeds one response line (without CRLF).
    pub fn respond(&mut self, line: &str) -> Step {
        let line = line.trim_end();
        if line == "*" {
            return Step::Cancelled;
        }
        let Some(decoded) = decode(line) else { return Step::Malformed };
        match self.mechanism {
            Mechanism::Plain => plain(&decoded),
            Mechanism::Login => match self.login.take() {
                None => match String::from_utf8(decoded) {
                    Ok(login) if !login.is_empty() && !login.contains('\0') => {
                        self.login = Some(login);
                        Step::Challenge(LOGIN_PASSWORD)
                    }
                    _ => Step::Malformed,
                },
                Some(login) => Step::Done(Credentials { login, password: decoded, authzid: None }),
            },
        }
    }
}

/// `=` is an empty response (RFC 4954 §4); anything else must be strict base64.
fn decode(line: &str) -> Option<Vec<u8>> {
    if line == "=" {
        return Some(Vec::new());
    }
    if line.len() > MAX_RESPONSE * 4 / 3 + 4 {
        return None;
    }
    STANDARD.decode(line).ok()
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`, identities of 1 to 255 octets.
fn plain(message: &[u8]) -> Step {
    let parts: Vec<&[u8]> = message.split(|&b| b == 0).collect();
    let [authzid, authcid, password] = parts.as_slice() else { return Step::Malformed };
    let (Ok(authzid), Ok(login)) = (std::str::from_utf8(authzid), std::str::from_utf8(authcid)) else {
        return Step::Malformed;
    };
    if login.is_empty() || login.len() > 255 || authzid.len() > 255 {
        return Step::Malformed;
    }
    let authzid = (!authzid.is_empty()).then(|| authzid.to_string());
    Step::Done(Credentials { login: login.to_string(), password: password.to_vec(), authzid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        STANDARD.encode(s)
    }

    fn done(login: &str, password: &str) -> Step {
        Step::Done(Credentials { login: login.into(), password: password.as_bytes().to_vec(), authzid: None })
    }

    #[test]
    fn plain_with_and_without_initial_response() {
        let initial = b64(b"\0svc-mailer\0secret");
        assert_eq!(Exchange::start(Mechanism::Plain, Some(&initial)).1, done("svc-mailer", "secret"));
        let (mut ex, step) = Exchange::start(Mechanism::Plain, None);
        assert_eq!(step, Step::Challenge(""));
        let Step::Done(with_authzid) = ex.respond(&b64(b"svc-mailer@x.example\0svc-mailer\0secret")) else { panic!() };
        assert_eq!(with_authzid.authzid.as_deref(), Some("svc-mailer@x.example"));
    }

    #[test]
    fn login_asks_for_username_then_password() {
        let (mut ex, step) = Exchange::start(Mechanism::Login, None);
        assert_eq!(step, Step::Challenge(LOGIN_USERNAME));
        assert_eq!(ex.respond(&b64(b"svc-mailer")), Step::Challenge(LOGIN_PASSWORD));
        assert_eq!(ex.respond(&b64(b"secret")), done("svc-mailer", "secret"));
        let (mut ex, step) = Exchange::start(Mechanism::Login, Some(&b64(b"svc-mailer")));
        assert_eq!(step, Step::Challenge(LOGIN_PASSWORD));
        assert_eq!(ex.respond("="), done("svc-mailer", ""));
    }

    #[test]
    fn malformed_cancelled_and_impersonating_responses() {
        let plain = |line: &str| Exchange::start(Mechanism::Plain, Some(line)).1;
        assert_eq!(plain("*"), Step::Cancelled);
        assert_eq!(plain("not base64!"), Step::Malformed);
        assert_eq!(plain("AGZvbwBiYXI"), Step::Malformed, "missing padding is not strict base64");
        assert_eq!(plain(&b64(b"only-one-part")), Step::Malformed);
        assert_eq!(plain(&b64(b"a\0b\0c\0d")), Step::Malformed);
        assert_eq!(plain(&b64(b"\0\0secret")), Step::Malformed);
        assert_eq!(plain("="), Step::Malformed);
        assert_eq!(plain(&b64(&[b"\0".as_slice(), &[b'a'; 256], b"\0secret"].concat())), Step::Malformed);
        assert_eq!(plain(&"QUFB".repeat(1000)), Step::Malformed);
        let (mut ex, _) = Exchange::start(Mechanism::Login, None);
        assert_eq!(ex.respond("*"), Step::Cancelled);
    }
}
