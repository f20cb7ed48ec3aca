//! One error enum per operation. `Infra` is the only home for failures of what the domain
//! depends on; every other variant is a decision the caller must map to an answer.

use thiserror::Error;
use time::OffsetDateTime;

use crate::value::{PasswordPolicyError, SessionDataTooLarge, UsernameError};

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
    /// The username is locked until the given instant (R9); the password was not checked.
    #[error("account locked")]
    Locked { until: OffsetDateTime },
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
    Locked { until: OffsetDateTime },
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
