//! The name of a connector or an API token, as admins type it in every front-end.

use std::fmt;

/// Most characters in a name (Exchange's connector names are limited to 64 too).
const MAX_CHARS: usize = 64;

/// A name of 1 to 64 characters, none a control character, without surrounding spaces
/// (they are trimmed). Counted in characters, not bytes: "Relais für Drucker" is 18.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_CHARS} printable characters")]
pub struct ObjectNameError;

impl ObjectName {
    pub fn parse(text: &str) -> Result<Self, ObjectNameError> {
        let name = text.trim();
        if name.is_empty() || name.chars().count() > MAX_CHARS || name.chars().any(char::is_control) {
            return Err(ObjectNameError);
        }
        Ok(ObjectName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_counted_in_characters_and_never_hold_control_characters() {
        assert_eq!(ObjectName::parse("  SMTP Relay Script ").unwrap().as_str(), "SMTP Relay Script");
        assert!(ObjectName::parse(&"ü".repeat(64)).is_ok(), "64 characters, 128 bytes");
        for refused in ["", "   ", "tab\there", "nul\0", "del\u{7f}", "c1\u{85}x"] {
            assert_eq!(ObjectName::parse(refused), Err(ObjectNameError), "{refused:?}");
        }
        assert!(ObjectName::parse(&"x".repeat(65)).is_err());
        assert_eq!(ObjectNameError.to_string(), "must be 1 to 64 printable characters");
    }
}
