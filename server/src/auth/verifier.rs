//! Checks service-account credentials. A full argon2id verification costs tens of
//! milliseconds and 19 MiB, so an application that authenticates for every message
//! would pay it every time; a successful verification is therefore remembered for a few
//! minutes. The cache entry is tied to the account's current password hash, so a
//! changed password or a disabled account takes effect with the next snapshot, and it
//! holds an HMAC of the password under a per-process key, never the password.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::hmac;
use uuid::Uuid;

use super::password;
use super::pool::BoundedPool;
use super::throttle::{Throttle, ThrottlePolicy, ThrottleVerdict};
use crate::domain::ServiceAccount;
use crate::policy::Snapshot;

/// The throttle's key for logins that name no account.
const UNKNOWN_ACCOUNT: &str = "(unknown account)";

/// Why a sign-in failed. The client is told only "invalid credentials" (or "try later"
/// when throttled); the reason goes to the tracking log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    UnknownAccount,
    WrongPassword,
    Disabled,
    /// The account may not be used from this source address.
    SourceNotAllowed,
    /// Too many recent failures from this source or for this login.
    Throttled,
    /// AUTH PLAIN with an authorization identity other than the login.
    AuthzidMismatch,
}

impl AuthFailure {
    pub fn describe(self) -> &'static str {
        match self {
            Self::UnknownAccount => "no such service account",
            Self::WrongPassword => "wrong password",
            Self::Disabled => "service account is disabled",
            Self::SourceNotAllowed => "service account may not be used from this address",
            Self::Throttled => "too many authentication failures",
            Self::AuthzidMismatch => "the authorization identity differs from the login",
        }
    }
}

#[derive(Debug)]
struct Verified {
    password_hash: String,
    tag: hmac::Tag,
    at: Instant,
}

#[derive(Debug)]
pub struct Authenticator {
    cache: Mutex<HashMap<Uuid, Verified>>,
    key: hmac::Key,
    /// Verified against when the login names no account, so that an unknown login
    /// takes as long as a wrong password.
    decoy_hash: String,
    /// Runs argon2 verifications: shared with the console's sign-in, so that memory
    /// stays at one 19 MiB job per thread whoever is signing in.
    hashing: BoundedPool,
    /// How long a successful verification is reused (zero: never).
    cache_ttl: Duration,
    pub throttle: Throttle,
}

impl Authenticator {
    pub fn new(
        policy: ThrottlePolicy,
        cache_ttl: Duration,
        hashing: BoundedPool,
    ) -> Result<Self, password::PasswordError> {
        let rng = ring::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| password::PasswordError::Hashing("the system random generator failed".into()))?;
        let decoy_hash = password::hash_password(&password::generate_password()?)?;
        Ok(Self { cache: Mutex::default(), key, decoy_hash, hashing, cache_ttl, throttle: Throttle::new(policy) })
    }

    /// Checks `login`/`password` from `ip` against the accounts in `snapshot`. On failure
    /// the answer is delayed as the throttle says.
    pub async fn authenticate(
        &self,
        snapshot: &Snapshot,
        login: &str,
        password: &[u8],
        ip: IpAddr,
    ) -> Result<Arc<ServiceAccount>, AuthFailure> {
        let account = snapshot.account(login);
        // Throttled per account, whichever of its logins was typed; unknown logins share
        // one budget (so a spray of invented names cannot grow the throttle's memory).
        let key = account.as_ref().map_or_else(|| UNKNOWN_ACCOUNT.to_string(), |a| a.name.clone());
        if self.throttle.check(ip, &key, Instant::now()) == ThrottleVerdict::Refuse {
            return Err(AuthFailure::Throttled);
        }
        if password.is_empty() {
            // RFC 4616: a password has at least one octet. Not worth an argon2 run.
            self.throttle.failed(ip, &key, Instant::now());
            return Err(if account.is_some() { AuthFailure::WrongPassword } else { AuthFailure::UnknownAccount });
        }
        let mut from_cache = false;
        let verdict = match &account {
            Some(a) if self.cached(a, password) => {
                from_cache = true;
                Ok(())
            }
            Some(a) => self.verify(password, &a.password_hash).await.then_some(()).ok_or(AuthFailure::WrongPassword),
            None => {
                self.verify(password, &self.decoy_hash).await;
                Err(AuthFailure::UnknownAccount)
            }
        };
        let outcome = verdict.and_then(|()| {
            let account = account.ok_or(AuthFailure::UnknownAccount)?;
            if !account.enabled {
                return Err(AuthFailure::Disabled);
            }
            if !account.admits(ip) {
                return Err(AuthFailure::SourceNotAllowed);
            }
            Ok(account)
        });
        match outcome {
            Ok(account) => {
                // A fixed lifetime from the last full verification, not renewed by use.
                if !from_cache {
                    self.remember(&account, password);
                }
                self.throttle.succeeded(ip, &key, Instant::now());
                Ok(account)
            }
            Err(failure) => {
                let (delay, lockouts) = self.throttle.failed(ip, &key, Instant::now());
                for lockout in lockouts {
                    tracing::warn!(kind = lockout.kind, key = %lockout.key, until = %lockout.until,
                        "authentication lockout after repeated failures");
                }
                tokio::time::sleep(delay).await;
                Err(failure)
            }
        }
    }

    async fn verify(&self, password: &[u8], phc: &str) -> bool {
        let (password, phc) = (password.to_vec(), phc.to_string());
        self.hashing.run(move || password::verify_on_this_thread(&password, &phc)).await.unwrap_or(false)
    }

    fn cached(&self, account: &ServiceAccount, password: &[u8]) -> bool {
        let cache = self.lock();
        cache.get(&account.id).is_some_and(|v| {
            v.password_hash == account.password_hash
                && v.at.elapsed() < self.cache_ttl
                && hmac::verify(&self.key, password, v.tag.as_ref()).is_ok()
        })
    }

    fn remember(&self, account: &ServiceAccount, password: &[u8]) {
        let tag = hmac::sign(&self.key, password);
        let entry = Verified { password_hash: account.password_hash.clone(), tag, at: Instant::now() };
        self.lock().insert(account.id, entry);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Verified>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EmailAddress, IpRange};

    fn snapshot_with(account: ServiceAccount) -> Snapshot {
        Snapshot { service_accounts: vec![Arc::new(account)], ..Snapshot::default() }
    }

    fn account(password: &str) -> ServiceAccount {
        ServiceAccount {
            id: Uuid::new_v4(),
            name: "svc-mailer".into(),
            address: EmailAddress::parse("svc-mailer@cloudmonkeys.xyz", false).unwrap(),
            password_hash: password::hash_password(password).unwrap(),
            enabled: true,
            remote_ip_ranges: vec![IpRange::parse("127.0.0.0/8").unwrap()],
            max_messages_per_minute: None,
            max_messages_per_day: None,
            send_as: vec![],
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn the_cache_follows_the_current_password_hash() {
        let auth =
            Authenticator::new(ThrottlePolicy::default(), Duration::from_secs(300), super::super::hashing_pool())
                .unwrap();
        let mut a = account("first password 1");
        let snap = snapshot_with(a.clone());
        assert!(auth.authenticate(&snap, "svc-mailer", b"first password 1", LOCAL).await.is_ok());
        assert!(auth.cached(&a, b"first password 1"));
        assert!(!auth.cached(&a, b"first password 2"));
        // A new password: the old one's cache entry no longer counts.
        a.password_hash = password::hash_password("second password 2").unwrap();
        let snap = snapshot_with(a.clone());
        assert!(!auth.cached(&a, b"first password 1"));
        let old = auth.authenticate(&snap, "svc-mailer", b"first password 1", LOCAL).await;
        assert_eq!(old.unwrap_err(), AuthFailure::WrongPassword);
        assert!(auth.authenticate(&snap, "svc-mailer@cloudmonkeys.xyz", b"second password 2", LOCAL).await.is_ok());
    }

    #[tokio::test]
    async fn disabled_unknown_and_foreign_sources_fail() {
        let auth =
            Authenticator::new(ThrottlePolicy::default(), Duration::from_secs(300), super::super::hashing_pool())
                .unwrap();
        let mut a = account("the password 123");
        let snap = snapshot_with(a.clone());
        let elsewhere: IpAddr = "192.0.2.1".parse().unwrap();
        let r = auth.authenticate(&snap, "svc-mailer", b"the password 123", elsewhere).await;
        assert_eq!(r.unwrap_err(), AuthFailure::SourceNotAllowed);
        let r = auth.authenticate(&snap, "nobody", b"the password 123", LOCAL).await;
        assert_eq!(r.unwrap_err(), AuthFailure::UnknownAccount);
        assert!(auth.authenticate(&snap, "svc-mailer", b"the password 123", LOCAL).await.is_ok());
        a.enabled = false;
        let r = auth.authenticate(&snapshot_with(a), "svc-mailer", b"the password 123", LOCAL).await;
        assert_eq!(r.unwrap_err(), AuthFailure::Disabled);
    }
}
