//! The ports that touch the machine: time, randomness, password hashing, per-address limits.

use std::any::Any;
use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::credential::{Token, TokenLength};
use crate::error::{InfraError, RetryAfter, Saturated};
use crate::model::LimitedAction;
use crate::value::{ClientIp, Password, PasswordHash};

/// The current time. Implementations MUST return whole seconds (what storage keeps).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// Waiting, for rules that wait (R9's provisional locks). Implementations MUST NOT block a
/// thread.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Timer: Send + Sync {
    async fn sleep(&self, duration: std::time::Duration);
}

/// Fresh secret tokens (R1).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenSource: Send + Sync {
    /// MUST return `length` bytes from a CSPRNG, independent of time, ids and users.
    fn token(&self, length: TokenLength) -> Result<Token, InfraError>;
}

/// A place in the password-hashing queue (R15), held by one login, password change or
/// password set until it is done with hashing. Dropping it gives the place back.
pub struct HashTicket(#[allow(dead_code)] Box<dyn Any + Send + Sync>);

impl HashTicket {
    /// A ticket that holds `place` (whatever the adapter counts with) until dropped.
    pub fn new(place: impl Any + Send + Sync) -> Self {
        Self(Box::new(place))
    }
}

impl fmt::Debug for HashTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashTicket")
    }
}

/// Slow password hashing (argon2id), bounded (R15). Implementations MUST NOT run the hash
/// on the async workers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// A place in the hashing queue, without waiting.
    ///
    /// # Errors
    /// `Saturated` when `max_pending_hashes` operations are already waiting for a hashing
    /// thread.
    fn admit(&self) -> Result<HashTicket, Saturated>;

    /// # Errors
    /// `InfraError` when hashing fails (no randomness, no thread).
    async fn hash(
        &self,
        ticket: &HashTicket,
        password: Password,
    ) -> Result<PasswordHash, InfraError>;

    /// Whether `password` matches `hash`. With `hash == None` (unknown user) it MUST do the
    /// same work as a real verification and return `false`, so timing does not reveal which
    /// usernames exist (R5b).
    ///
    /// # Errors
    /// `InfraError` when a stored hash cannot be read or hashing fails.
    async fn verify(
        &self,
        ticket: &HashTicket,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, InfraError>;
}

/// R14's per-address token buckets.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait RateLimits: Send + Sync {
    /// Takes one token from `ip`'s bucket for `action`.
    ///
    /// # Errors
    /// How long until a token is available, when the bucket is empty (nothing is taken).
    fn admit(&self, action: LimitedAction, ip: ClientIp) -> Result<(), RetryAfter>;
}
