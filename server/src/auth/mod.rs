//! Service-account authentication: argon2id password hashes, a short-lived cache of
//! successful verifications, and throttling of repeated failures. The SMTP session asks
//! `Authenticator::authenticate`; it never sees a hash.

mod password;
mod throttle;
mod verifier;

pub use password::{MIN_PASSWORD_LEN, PasswordError, generate_password, hash_password, verify as verify_password};
pub use throttle::{Lockout, Throttle, ThrottlePolicy, ThrottleVerdict};
pub use verifier::{AuthFailure, Authenticator};
