//! The SMTP command grammar (RFC 5321 §4.1), sans-IO: one line in, one typed command out.
//! Addresses are parsed into domain types here, once.

use crate::address::{AddressError, EmailAddress};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including CRLF.
pub const MAX_COMMAND_LINE: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail(MailFrom),
    Rcpt(RcptTo),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    Help,
    StartTls,
    Auth { mechanism: String, initial_response: Option<String> },
}

/// Body types of RFC 6152 (8BITMIME).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyType {
    #[default]
    SevenBit,
    EightBitMime,
}

/// `MAIL FROM:<reverse-path> [params]`. `sender` is `None` for the null path `<>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom {
    pub sender: Option<EmailAddress>,
    /// RFC 1870 SIZE= declared by the client.
    pub size: Option<u64>,
    pub body: BodyType,
    /// RFC 6531: the client asked for SMTPUTF8.
    pub smtputf8: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptTo {
    pub recipient: EmailAddress,
}

/// The canonical wire form (without CRLF): what `parse` reads back as the same command.
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Ehlo(domain) => write!(f, "EHLO {domain}"),
            Command::Helo(domain) => write!(f, "HELO {domain}"),
            Command::Mail(mail) => {
                let sender = mail.sender.as_ref().map(ToString::to_string).unwrap_or_default();
                write!(f, "MAIL FROM:<{sender}>")?;
                if let Some(size) = mail.size {
                    write!(f, " SIZE={size}")?;
                }
                if mail.body == BodyType::EightBitMime {
                    f.write_str(" BODY=8BITMIME")?;
                }
                if mail.smtputf8 {
                    f.write_str(" SMTPUTF8")?;
                }
                Ok(())
            }
            Command::Rcpt(rcpt) => write!(f, "RCPT TO:<{}>", rcpt.recipient),
            Command::Data => f.write_str("DATA"),
            Command::Rset => f.write_str("RSET"),
            Command::Noop => f.write_str("NOOP"),
            Command::Quit => f.write_str("QUIT"),
            // The argument is not kept (VRFY is never answered); any one reads back the same.
            Command::Vrfy => f.write_str("VRFY postmaster"),
            Command::Help => f.write_str("HELP"),
            Command::StartTls => f.write_str("STARTTLS"),
            Command::Auth { mechanism, initial_response: Some(response) } => write!(f, "AUTH {mechanism} {response}"),
            Command::Auth { mechanism, initial_response: None } => write!(f, "AUTH {mechanism}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unrecognized command")]
    Unrecognized,
    #[error("syntax error")]
    Syntax,
    #[error("invalid sender address: {0}")]
    BadSender(AddressError),
    #[error("invalid recipient address: {0}")]
    BadRecipient(AddressError),
    #[error("unsupported parameter {0}")]
    UnknownParameter(String),
    #[error("command contains a NUL byte")]
    Nul,
}

impl Command {
    /// Parses one command line, without its CRLF.
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        if line.contains(&0) {
            return Err(ParseError::Nul);
        }
        // Commands are ASCII; addresses may be UTF-8 under SMTPUTF8 (RFC 6531 §3.3).
        let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax)?;
        // No control characters (a stray CR is how smuggled commands hide; tabs are
        // tolerated as spacing). Found by the `command` fuzz target: "AUTH LOGI\x01\rN"
        // was taken as a mechanism name.
        if line.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::Syntax);
        }
        let (verb, rest) = match line.find(' ') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, ""),
        };
        let no_argument = |cmd: Command| if rest.trim().is_empty() { Ok(cmd) } else { Err(ParseError::Syntax) };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => Ok(Command::Ehlo(client_name(rest)?)),
            "HELO" => Ok(Command::Helo(client_name(rest)?)),
            "MAIL" => parse_mail(rest).map(Command::Mail),
            "RCPT" => parse_rcpt(rest).map(Command::Rcpt),
            "DATA" => no_argument(Command::Data),
            "RSET" => no_argument(Command::Rset),
            "QUIT" => no_argument(Command::Quit),
            "STARTTLS" => no_argument(Command::StartTls),
            // RFC 5321 §4.1.1.9: NOOP may carry a string, which is ignored.
            "NOOP" => Ok(Command::Noop),
            "VRFY" if !rest.trim().is_empty() => Ok(Command::Vrfy),
            "HELP" => Ok(Command::Help),
            "AUTH" => parse_auth(rest),
            "VRFY" => Err(ParseError::Syntax),
            _ => Err(ParseError::Unrecognized),
        }
    }
}

/// The EHLO/HELO argument: a domain or an address literal. Kept as text (it is only ever
/// logged and put in Received), but it must be one printable token.
fn client_name(rest: &str) -> Result<String, ParseError> {
    let name = rest.trim();
    if name.is_empty() || name.contains(char::is_whitespace) || name.chars().any(|c| c.is_control()) {
        return Err(ParseError::Syntax);
    }
    Ok(name.to_string())
}

/// Splits `FROM:<path> params` (after `MAIL `) into the path and the parameter text.
/// RFC 5321 wants no space after the colon, but many clients send one; Postfix and
/// Exchange accept it, and so do we.
fn split_path<'a>(rest: &'a str, keyword: &str) -> Result<(&'a str, &'a str), ParseError> {
    let head = rest.get(..keyword.len()).ok_or(ParseError::Syntax)?;
    if !head.eq_ignore_ascii_case(keyword) {
        return Err(ParseError::Syntax);
    }
    let after = rest[keyword.len()..].trim_start_matches(' ');
    let inner = after.strip_prefix('<').ok_or(ParseError::Syntax)?;
    let close = inner.find('>').ok_or(ParseError::Syntax)?;
    Ok((without_source_route(&inner[..close])?, &inner[close + 1..]))
}

/// RFC 5321 §4.1.1.3 and Appendix C: a source route (`@relay1,@relay2:user@domain`) must
/// be accepted and should be ignored; the mail goes to the mailbox's own domain, which is
/// the one the relay decision then sees.
fn without_source_route(path: &str) -> Result<&str, ParseError> {
    if !path.starts_with('@') {
        return Ok(path);
    }
    let (route, mailbox) = path.split_once(':').ok_or(ParseError::Syntax)?;
    let hops_are_domains =
        route.split(',').all(|hop| hop.strip_prefix('@').is_some_and(|d| !d.is_empty() && !d.contains(['@', ' '])));
    if !hops_are_domains || mailbox.is_empty() {
        return Err(ParseError::Syntax);
    }
    Ok(mailbox)
}

/// Parameters as `KEY[=VALUE]` pairs separated by spaces (RFC 5321 §4.1.2 esmtp-param).
fn parameters(text: &str) -> Result<Vec<(String, Option<&str>)>, ParseError> {
    if !text.is_empty() && !text.starts_with(' ') {
        return Err(ParseError::Syntax);
    }
    Ok(text
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (p.to_ascii_uppercase(), None),
        })
        .collect())
}

fn parse_mail(rest: &str) -> Result<MailFrom, ParseError> {
    let (path, params) = split_path(rest, "FROM:")?;
    let mut mail = MailFrom { sender: None, size: None, body: BodyType::SevenBit, smtputf8: false };
    for (key, value) in parameters(params)? {
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => mail.size = Some(v.parse().map_err(|_| ParseError::Syntax)?),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => mail.body = BodyType::SevenBit,
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => mail.body = BodyType::EightBitMime,
            ("SMTPUTF8", None) => mail.smtputf8 = true,
            _ => return Err(ParseError::UnknownParameter(key)),
        }
    }
    if !path.is_empty() {
        mail.sender = Some(EmailAddress::parse(path, mail.smtputf8).map_err(ParseError::BadSender)?);
    }
    Ok(mail)
}

fn parse_rcpt(rest: &str) -> Result<RcptTo, ParseError> {
    let (path, params) = split_path(rest, "TO:")?;
    if let Some((key, _)) = parameters(params)?.into_iter().next() {
        return Err(ParseError::UnknownParameter(key));
    }
    // Whether non-ASCII is allowed depends on MAIL's SMTPUTF8; the session checks that.
    let recipient = EmailAddress::parse(path, true).map_err(ParseError::BadRecipient)?;
    Ok(RcptTo { recipient })
}

fn parse_auth(rest: &str) -> Result<Command, ParseError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let mechanism = words.next().ok_or(ParseError::Syntax)?.to_ascii_uppercase();
    let initial_response = words.next().map(str::to_string);
    if words.next().is_some() {
        return Err(ParseError::Syntax);
    }
    Ok(Command::Auth { mechanism, initial_response })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> EmailAddress {
        EmailAddress::parse(s, true).unwrap()
    }

    #[test]
    fn parses_the_basic_verbs_case_insensitively() {
        assert_eq!(Command::parse(b"ehlo client.example"), Ok(Command::Ehlo("client.example".into())));
        assert_eq!(Command::parse(b"HELO [192.0.2.1]"), Ok(Command::Helo("[192.0.2.1]".into())));
        assert_eq!(Command::parse(b"DATA"), Ok(Command::Data));
        assert_eq!(Command::parse(b"noop anything"), Ok(Command::Noop));
        assert_eq!(Command::parse(b"VRFY someone"), Ok(Command::Vrfy));
        assert_eq!(Command::parse(b"QUIT"), Ok(Command::Quit));
        assert_eq!(Command::parse(b"FOO"), Err(ParseError::Unrecognized));
        assert_eq!(Command::parse(b"DATA now"), Err(ParseError::Syntax));
        assert_eq!(Command::parse(b"EHLO"), Err(ParseError::Syntax));
    }

    #[test]
    fn a_source_route_is_accepted_and_ignored() {
        let parsed = Command::parse(b"RCPT TO:<@relay.example,@b.example:user@cloudmonkeys.xyz>").unwrap();
        assert_eq!(parsed, Command::Rcpt(RcptTo { recipient: addr("user@cloudmonkeys.xyz") }));
        for bad in [
            &b"RCPT TO:<@:user@cloudmonkeys.xyz>"[..],
            b"RCPT TO:<@relay.example>",
            b"RCPT TO:<@a.example,b.example:u@c.example>",
        ] {
            assert!(Command::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn mail_from_with_parameters() {
        let parsed = Command::parse(b"MAIL FROM:<app@cloudmonkeys.xyz> SIZE=10240 BODY=8BITMIME").unwrap();
        assert_eq!(
            parsed,
            Command::Mail(MailFrom {
                sender: Some(addr("app@cloudmonkeys.xyz")),
                size: Some(10240),
                body: BodyType::EightBitMime,
                smtputf8: false
            })
        );
        let null = Command::parse(b"MAIL FROM:<>").unwrap();
        assert!(matches!(null, Command::Mail(MailFrom { sender: None, .. })));
        assert!(Command::parse(b"mail from: <a@b.example>").is_ok(), "space after colon is tolerated");
    }

    #[test]
    fn mail_from_refuses_bad_syntax_and_unknown_parameters() {
        assert_eq!(Command::parse(b"MAIL FROM:a@b.example"), Err(ParseError::Syntax));
        assert_eq!(Command::parse(b"MAIL TO:<a@b.example>"), Err(ParseError::Syntax));
        assert_eq!(Command::parse(b"MAIL FROM:<a@b.example> SIZE=abc"), Err(ParseError::Syntax));
        assert_eq!(
            Command::parse(b"MAIL FROM:<a@b.example> RET=FULL"),
            Err(ParseError::UnknownParameter("RET".into()))
        );
        assert!(matches!(Command::parse(b"MAIL FROM:<a@@b.example>"), Err(ParseError::BadSender(_))));
        assert_eq!(
            Command::parse("MAIL FROM:<jörg@b.example>".as_bytes()),
            Err(ParseError::BadSender(AddressError::NonAsciiWithoutSmtputf8))
        );
        assert!(Command::parse("MAIL FROM:<jörg@b.example> SMTPUTF8".as_bytes()).is_ok());
    }

    #[test]
    fn rcpt_to_parses_and_refuses_parameters_we_do_not_offer() {
        assert_eq!(
            Command::parse(b"RCPT TO:<user@cloudmonkeys.xyz>"),
            Ok(Command::Rcpt(RcptTo { recipient: addr("user@cloudmonkeys.xyz") }))
        );
        assert_eq!(
            Command::parse(b"RCPT TO:<u@x.example> NOTIFY=NEVER"),
            Err(ParseError::UnknownParameter("NOTIFY".into()))
        );
        assert_eq!(
            Command::parse(b"RCPT TO:<@a.example:u@x.example>"),
            Ok(Command::Rcpt(RcptTo { recipient: addr("u@x.example") })),
            "a source route is ignored (RFC 5321 4.1.1.3)"
        );
        assert!(matches!(Command::parse(b"RCPT TO:<>"), Err(ParseError::BadRecipient(_))));
    }

    #[test]
    fn nul_and_invalid_utf8_are_refused() {
        assert_eq!(Command::parse(b"NOOP\0"), Err(ParseError::Nul));
        assert_eq!(Command::parse(b"NOOP \xff"), Err(ParseError::Syntax));
        assert_eq!(Command::parse(b"AUTH LOGI\x01\rNLOG"), Err(ParseError::Syntax));
        assert_eq!(Command::parse(b"RCPT TO:<a@b.example>\r"), Err(ParseError::Syntax));
        assert_eq!(Command::parse(b"NOOP x\ty"), Ok(Command::Noop));
    }

    #[test]
    fn auth_takes_a_mechanism_and_an_optional_initial_response() {
        assert_eq!(
            Command::parse(b"AUTH PLAIN AGFiYwBkZWY="),
            Ok(Command::Auth { mechanism: "PLAIN".into(), initial_response: Some("AGFiYwBkZWY=".into()) })
        );
        assert_eq!(Command::parse(b"AUTH"), Err(ParseError::Syntax));
    }
}

/// Properties over generated input (proptest): whatever parses, formats to a line that
/// parses back to the same command.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn stable(line: &[u8]) -> Result<(), TestCaseError> {
        if let Ok(command) = Command::parse(line) {
            let again = Command::parse(command.to_string().as_bytes());
            prop_assert_eq!(again, Ok(command.clone()), "{} from {:?}", command, String::from_utf8_lossy(line));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_line_that_parses_formats_back_to_itself(line in proptest::collection::vec(any::<u8>(), 0..120)) {
            stable(&line)?;
        }

        #[test]
        fn mail_and_rcpt_lines_format_back_to_themselves(
            verb in prop::sample::select(vec!["MAIL FROM:", "RCPT TO:", "mail from: ", "Rcpt To:"]),
            route in prop::option::of("@[a-z]{1,8}\\.example(,@[a-z]{1,6}\\.example)?:"),
            local in "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\\.[A-Za-z0-9_-]{1,6}){0,2}|\"[A-Za-z0-9 .@]{0,12}\"",
            domain in "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]{2,6}){1,2}\\.?|\\[(25[0-5]|1?[0-9]{1,2})(\\.(25[0-5]|1?[0-9]{1,2})){3}\\]",
            params in prop::sample::select(vec!["", " SIZE=10240", " BODY=8BITMIME", " SMTPUTF8", " SIZE=1 BODY=7BIT"]),
        ) {
            // Parameters are MAIL's (RCPT takes none here).
            let params = if verb.to_ascii_uppercase().starts_with("MAIL") { params } else { "" };
            let line = format!("{verb}<{}{local}@{domain}>{params}", route.unwrap_or_default());
            stable(line.as_bytes())?;
        }
    }
}
