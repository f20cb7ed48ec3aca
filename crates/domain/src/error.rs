//! One error enum per operation (or per group of operations that answer alike). `Infra` is the
//! only home for failures of what the domain depends on; every other variant is a decision the
//! caller must map to an answer.

use thiserror::Error;
use time::OffsetDateTime;

use crate::value::{PasswordPolicyError, SessionDataTooLarge, UsernameError};

/// Whole seconds until something ends, rounded up, at least 1 (`Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(u64);

impl RetryAfter {
    pub fn between(now: OffsetDateTime, until: OffsetDateTime) -> Self {
        let left = until - now;
        let whole = left.whole_seconds() + i64::from(left.subsec_nanoseconds() > 0);
        Self(u64::try_from(whole).unwrap_or(0).max(1))
    }

    /// `wait`, rounded up to whole seconds, at least 1.
    pub fn after(wait: std::time::Duration) -> Self {
        let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Self(whole.max(1))
    }

    pub fn seconds(self) -> u64 {
        self.0
    }
}

/// A port failed.
#[derive(Debug, Error)]
pub enum InfraError {
    /// The database could not be reached, even after waiting for it; retrying later may
    /// succeed.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The connection broke in the middle of a transaction, before anything of it was
    /// committed: the whole transaction may run again.
    #[error("database connection interrupted")]
    Interrupted(#[source] anyhow::Error),
    /// Anything else that went wrong below the domain.
    #[error("unexpected infrastructure failure")]
    Unexpected(#[source] anyhow::Error),
}

/// The client address is over its limit for this action (R14); nothing was recorded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("too many requests from this address")]
pub struct RateLimited(pub RetryAfter);

/// Password hashing is saturated (R15); nothing was recorded.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
#[error("password hashing is saturated")]
pub struct Saturated;

/// Why a session could not be started (R4).
#[derive(Debug, Error)]
pub enum StartError {
    /// A new row would pass the client address's session-start limit (R14).
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a login was refused (R5).
#[derive(Debug, Error)]
pub enum LoginError {
    /// Password hashing is saturated (R15): nothing was recorded.
    #[error(transparent)]
    Saturated(#[from] Saturated),
    /// The username is locked until `until` (R9); the password was not checked.
    #[error("account locked")]
    Locked {
        until: OffsetDateTime,
        retry_after: RetryAfter,
    },
    /// Unknown user, wrong password, disabled user, malformed input, or an account changed by
    /// an operator while the login ran: one answer for all.
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a holder could not change their own password (R7).
#[derive(Debug, Error)]
pub enum ChangePasswordError {
    /// No valid session, or an anonymous one.
    #[error("not logged in")]
    NotLoggedIn,
    /// Password hashing is saturated (R15): nothing was recorded.
    #[error(transparent)]
    Saturated(#[from] Saturated),
    /// The user's username is locked (R9).
    #[error("account locked")]
    Locked {
        until: OffsetDateTime,
        retry_after: RetryAfter,
    },
    /// The current password was wrong; the attempt stays counted as a failure.
    #[error("current password is wrong")]
    WrongPassword,
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why client state could not be stored (R13).
#[derive(Debug, Error)]
pub enum SetDataError {
    /// No valid session was presented.
    #[error("no session")]
    NoSession,
    #[error(transparent)]
    TooLarge(#[from] SessionDataTooLarge),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a request may not act as a logged-in user.
#[derive(Debug, Error)]
pub enum LoginRequired {
    /// No valid session was presented.
    #[error("no valid session")]
    NoSession,
    /// The session is valid but anonymous.
    #[error("not logged in")]
    NotLoggedIn,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a request may not act as a superuser.
#[derive(Debug, Error)]
pub enum AccessError {
    /// No valid session was presented.
    #[error("no valid session")]
    NoSession,
    /// The session is valid but anonymous.
    #[error("not logged in")]
    NotLoggedIn,
    /// The session's user is not a superuser.
    #[error("a superuser is needed")]
    NotSuperuser,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

impl From<LoginRequired> for AccessError {
    fn from(error: LoginRequired) -> Self {
        match error {
            LoginRequired::NoSession => Self::NoSession,
            LoginRequired::NotLoggedIn => Self::NotLoggedIn,
            LoginRequired::Infra(e) => Self::Infra(e),
        }
    }
}

/// Why a session could not be ended by id.
#[derive(Debug, Error)]
pub enum EndSessionError {
    /// No valid session with that id (for self-service: none of the caller's own).
    #[error("no such session")]
    NotFound,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a user could not be created.
#[derive(Debug, Error)]
pub enum CreateUserError {
    #[error(transparent)]
    InvalidUsername(#[from] UsernameError),
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    /// A user of that name exists already.
    #[error("username taken")]
    Taken,
    /// Password hashing is saturated (R15).
    #[error(transparent)]
    Saturated(#[from] Saturated),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why a user's password could not be reset (R7).
#[derive(Debug, Error)]
pub enum ResetPasswordError {
    /// No user of that name.
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Policy(#[from] PasswordPolicyError),
    /// Password hashing is saturated (R15).
    #[error(transparent)]
    Saturated(#[from] Saturated),
    #[error(transparent)]
    Infra(#[from] InfraError),
}

/// Why an operation on a named user failed.
#[derive(Debug, Error)]
pub enum UserError {
    /// No user of that name.
    #[error("no such user")]
    NotFound,
    #[error(transparent)]
    Infra(#[from] InfraError),
}

#[cfg(test)]
mod tests {
    use super::RetryAfter;
    use time::Duration;
    use time::macros::datetime;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let between = |d| RetryAfter::between(now, now + d).seconds();
        assert_eq!(between(Duration::seconds(600)), 600);
        assert_eq!(between(Duration::milliseconds(1500)), 2);
        assert_eq!(between(Duration::ZERO), 1);
        assert_eq!(between(Duration::seconds(-5)), 1);
        let after = |ms| RetryAfter::after(std::time::Duration::from_millis(ms)).seconds();
        assert_eq!(after(0), 1);
        assert_eq!(after(100), 1);
        assert_eq!(after(1000), 1);
        assert_eq!(after(1001), 2);
    }
}
