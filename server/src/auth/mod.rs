//! Service-account authentication: argon2id password hashes, a short-lived cache of
//! successful verifications, and throttling of repeated failures. The SMTP session asks
//! `Authenticator::authenticate`; it never sees a hash.

mod password;
mod pool;
mod refusals;
mod throttle;
mod verifier;

pub use password::{
    MIN_PASSWORD_LEN, PasswordError, Verifier, generate_password, hash_password, random_text,
    verify as verify_password, verify_on_this_thread,
};
pub use pool::{BoundedPool, PoolError};
pub use refusals::{LeftOut, RefusalDigest};
pub use throttle::{Lockout, Throttle, ThrottlePolicy, ThrottleVerdict};
pub use verifier::{AuthFailure, Authenticator};

/// The node's argon2 threads, one per core, shared by SMTP AUTH and the console's
/// sign-in. A verification waiting for a thread holds only its request; 256 may wait.
pub fn hashing_pool() -> BoundedPool {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    BoundedPool::start("argon2", threads, 256)
}
