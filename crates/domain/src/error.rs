//! One error enum per operation. `Infra` is the only home for failures of what the domain
//! depends on; every other variant is a decision the caller must map to an answer.

use thiserror::Error;
use time::OffsetDateTime;

use crate::value::{PasswordPolicyError, SessionDataTooLarge, UsernameError};

/// Whole seconds until a lock ends, rounded up, at least 1 (R5a's `Retry-After`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(u64);

impl RetryAfter {
    pub fn between(now: OffsetDateTime, until: OffsetDateTime) -> Self {
        let left = until - now;
        let whole = left.whole_seconds() + i64::from(left.subsec_nanoseconds() > 0);
        Self(u64::try_from(whole).unwrap_or(0).max(1))
    }

    pub fn seconds(self) -> u64 {
        self.0
    }
}

/// A port failed.
#[derive(Debug, Error)]
pub enum InfraError {
    /// The database could not be reached; retrying later may succeed.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else that went wrong below the domain.
    #[error("unexpected infrastructure failure")]
    Unexpected(#[source] anyhow::Error),
}

/// Why a login was refused (R5).
#[derive(Debug, Error)]
pub enum LoginError {
    /// The username is locked until `until` (R9); the password was not checked.
    #[error("account locked")]
    Locked {
        until: OffsetDateTime,
        retry_after: RetryAfter,
    },
    /// Unknown user, wrong password, disabled user, or malformed input: one answer for all.
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
    /// The user's username is locked (R9).
    #[error("account locked")]
    Locked {
        until: OffsetDateTime,
        retry_after: RetryAfter,
    },
    /// The current password was wrong; a login failure was recorded.
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
    Policy(#[from] PasswordPolicyError),
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
        assert_eq!(
            RetryAfter::between(now, now + Duration::seconds(600)).seconds(),
            600
        );
        assert_eq!(
            RetryAfter::between(now, now + Duration::milliseconds(1500)).seconds(),
            2
        );
        assert_eq!(RetryAfter::between(now, now).seconds(), 1);
        assert_eq!(
            RetryAfter::between(now, now - Duration::seconds(5)).seconds(),
            1
        );
    }
}
