//! Password hashing with argon2id at OWASP's recommended parameters (19 MiB, 2 passes,
//! 1 lane: the `argon2` crate's defaults), stored as PHC strings.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine as _;

/// Shorter passwords are refused when an account is created or changed.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longer ones are refused too: argon2 would hash them, but nobody types 1 KiB.
const MAX_PASSWORD_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("must not contain control characters")]
    ControlCharacters,
    #[error("could not be hashed: {0}")]
    Hashing(String),
}

/// Hashes a new password after checking it is acceptable.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::ControlCharacters);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// True when `password` matches the PHC string. Argon2 compares in constant time; a
/// malformed stored hash simply matches nothing.
pub fn verify(password: &[u8], phc: &str) -> bool {
    Argon2::default().verify_password(password, phc).is_ok()
}

/// A random password for a new account: 24 bytes from the OS, URL-safe base64 (32
/// characters, 192 bits).
pub fn generate_password() -> Result<String, PasswordError> {
    let mut bytes = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| PasswordError::Hashing("the system random generator failed".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(verify(b"correct horse battery", &hash));
        assert!(!verify(b"correct horse battery!", &hash));
        assert!(!verify(b"anything", "not a phc string"));
    }

    #[test]
    fn weak_or_strange_passwords_are_refused() {
        assert_eq!(hash_password("short"), Err(PasswordError::TooShort));
        assert_eq!(hash_password("twelve chars\n"), Err(PasswordError::ControlCharacters));
        assert_eq!(hash_password(&"x".repeat(2000)), Err(PasswordError::TooLong));
        assert_eq!(generate_password().unwrap().len(), 32);
    }
}
