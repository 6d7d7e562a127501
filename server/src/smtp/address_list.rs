//! A strict reader of RFC 5322 §3.4 address lists, for the author fields the Send-As
//! check reads. Mail parsers differ exactly where the grammar is broken (an unquoted
//! display name holding an `@`, a `;` between addresses, an unclosed bracket): one takes
//! the angle address, another the text before it. So the check reads a field only when
//! it follows the grammar without obsolete forms (RFC 6532 UTF-8 allowed), and it must
//! agree with mail-parser's reading too; anything else is refused, never guessed.
//!
//! ```text
//! address-list = address *("," address)
//! address      = mailbox / group
//! mailbox      = name-addr / addr-spec
//! name-addr    = [phrase] "<" addr-spec ">"
//! group        = phrase ":" [mailbox *("," mailbox)] ";"
//! addr-spec    = (dot-atom / quoted-string) "@" (dot-atom / domain-literal)
//! ```
//! with comments and folding white space allowed between tokens, and `.` allowed inside
//! a display name (`J. Smith <js@example.com>`, common though obsolete).

/// One lexical token of a structured header value (RFC 5322 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A run of atext (RFC 5322 §3.2.3), UTF-8 included (RFC 6532 §3.2).
    Atom(String),
    /// A quoted string's content, quoted-pairs resolved.
    Quoted(String),
    /// A domain literal, brackets included.
    Literal(String),
    /// One of the specials the grammar uses: `< > @ , : ; .`
    Special(char),
}

/// Splits a header value into tokens, dropping white space and (nested) comments.
fn tokens(value: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '(' => skip_comment(&mut chars)?,
            '"' => out.push(Token::Quoted(quoted(&mut chars)?)),
            '[' => {
                let mut literal = String::from("[");
                loop {
                    match chars.next()? {
                        ']' => break,
                        '[' | '\\' => return None,
                        c => literal.push(c),
                    }
                }
                literal.push(']');
                out.push(Token::Literal(literal));
            }
            '<' | '>' | '@' | ',' | ':' | ';' | '.' => out.push(Token::Special(c)),
            c if is_atext(c) => {
                let mut atom = String::from(c);
                while let Some(&next) = chars.peek() {
                    if !is_atext(next) {
                        break;
                    }
                    atom.push(next);
                    chars.next();
                }
                out.push(Token::Atom(atom));
            }
            // `)`, `]`, `\` or a control character where none may be.
            _ => return None,
        }
    }
    Some(out)
}

/// RFC 5322 §3.2.3 atext, and any non-ASCII character (RFC 6532 §3.2).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (!c.is_ascii() && !c.is_control())
}

fn skip_comment(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<()> {
    let mut depth = 1;
    while depth > 0 {
        match chars.next()? {
            '(' => depth += 1,
            ')' => depth -= 1,
            '\\' => {
                chars.next()?;
            }
            _ => {}
        }
    }
    Some(())
}

fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut text = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(text),
            '\\' => text.push(chars.next()?),
            // Folding inside a quoted string is white space (RFC 5322 §3.2.4).
            '\r' | '\n' => {}
            c if c.is_control() && c != '\t' => return None,
            c => text.push(c),
        }
    }
}

/// The addresses of an address list (`local@domain`, quotes of the local part removed),
/// or `None` when the value does not follow the grammar.
pub fn addresses(value: &str) -> Option<Vec<String>> {
    let tokens = tokens(value)?;
    let mut reader = Reader { tokens: &tokens, at: 0 };
    let mut found = Vec::new();
    loop {
        reader.address(&mut found)?;
        match reader.next() {
            None => return Some(found),
            Some(Token::Special(',')) => continue,
            Some(_) => return None,
        }
    }
}

struct Reader<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn expect(&mut self, special: char) -> Option<()> {
        (self.next()? == &Token::Special(special)).then_some(())
    }

    /// A mailbox or a group, its addresses added to `found`.
    fn address(&mut self, found: &mut Vec<String>) -> Option<()> {
        let start = self.at;
        let phrase = self.phrase();
        match self.peek() {
            Some(Token::Special(':')) if phrase => {
                self.at += 1;
                if self.peek() != Some(&Token::Special(';')) {
                    loop {
                        found.push(self.mailbox()?);
                        if self.peek() != Some(&Token::Special(',')) {
                            break;
                        }
                        self.at += 1;
                    }
                }
                self.expect(';')
            }
            _ => {
                self.at = start;
                found.push(self.mailbox()?);
                Some(())
            }
        }
    }

    /// `[phrase] "<" addr-spec ">"` or a bare addr-spec.
    fn mailbox(&mut self) -> Option<String> {
        let start = self.at;
        if self.phrase() && self.peek() == Some(&Token::Special('<')) || self.peek() == Some(&Token::Special('<')) {
            self.expect('<')?;
            let address = self.addr_spec()?;
            self.expect('>')?;
            return Some(address);
        }
        self.at = start;
        self.addr_spec()
    }

    /// Skips a display name (words and dots, starting with a word); true if there was one.
    fn phrase(&mut self) -> bool {
        let start = self.at;
        while matches!(self.peek(), Some(Token::Atom(_) | Token::Quoted(_)))
            || self.at > start && self.peek() == Some(&Token::Special('.'))
        {
            self.at += 1;
        }
        self.at > start
    }

    fn addr_spec(&mut self) -> Option<String> {
        let local = match self.next()? {
            Token::Quoted(text) => text.clone(),
            Token::Atom(atom) => self.dotted(atom.clone())?,
            _ => return None,
        };
        self.expect('@')?;
        let domain = match self.next()? {
            Token::Literal(literal) => literal.clone(),
            Token::Atom(atom) => self.dotted(atom.clone())?,
            _ => return None,
        };
        Some(format!("{local}@{domain}"))
    }

    /// The rest of a dot-atom after its first atom.
    fn dotted(&mut self, mut text: String) -> Option<String> {
        while self.peek() == Some(&Token::Special('.')) {
            self.at += 1;
            let Some(Token::Atom(atom)) = self.next() else { return None };
            text.push('.');
            text.push_str(atom);
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(value: &str) -> Option<Vec<String>> {
        addresses(value)
    }

    #[test]
    fn well_formed_lists_are_read() {
        let one = |a: &str| Some(vec![a.to_string()]);
        assert_eq!(read("smb1@cloudmonkeys.xyz"), one("smb1@cloudmonkeys.xyz"));
        assert_eq!(read(" App <smb1@cloudmonkeys.xyz> "), one("smb1@cloudmonkeys.xyz"));
        assert_eq!(read("\"ceo@cloudmonkeys.xyz\" <smb1@cloudmonkeys.xyz>"), one("smb1@cloudmonkeys.xyz"));
        assert_eq!(read("J. Smith (the boss <ceo@x>) <js@example.com>"), one("js@example.com"));
        assert_eq!(read("=?utf-8?q?ceo=40x?= <smb1@x.example>"), one("smb1@x.example"));
        assert_eq!(read("smb1 @ cloudmonkeys . xyz"), one("smb1@cloudmonkeys.xyz"));
        assert_eq!(read("\"a\\\"b\"@example.com"), one("a\"b@example.com"));
        assert_eq!(read("a@[192.0.2.1]"), one("a@[192.0.2.1]"));
        assert_eq!(read("Sv\u{e9}n <sv\u{e9}n@b\u{fc}ro.example>"), one("sv\u{e9}n@b\u{fc}ro.example"));
        assert_eq!(
            read("Team: a@x.example, B <b@x.example>;, c@x.example"),
            Some(vec!["a@x.example".into(), "b@x.example".into(), "c@x.example".into()])
        );
        assert_eq!(read("undisclosed-recipients:;"), Some(vec![]));
    }

    #[test]
    fn what_parsers_read_differently_is_not_read() {
        for broken in [
            "ceo@cloudmonkeys.xyz <smb1@cloudmonkeys.xyz>",
            "smb1@cloudmonkeys.xyz <ceo@cloudmonkeys.xyz>",
            "smb1@cloudmonkeys.xyz;ceo@cloudmonkeys.xyz",
            "smb1@cloudmonkeys.xyz ceo@cloudmonkeys.xyz",
            "<smb1@x.example> <ceo@x.example>",
            "App <smb1@x.example",
            "\"App <smb1@x.example>",
            "App (unclosed <smb1@x.example>",
            "smb1@x.example)",
            "App <<smb1@x.example>>",
            "<@route.example:ceo@x.example>",
            "just a name",
            "",
            "smb1@x.example,",
            "a@b@c.example",
            ".a@x.example",
            "a.@x.example",
            "a@x..example",
            "a@x.example\u{1}",
        ] {
            assert_eq!(read(broken), None, "{broken:?}");
        }
    }
}
