//! Translation of `DbErr` into the domain's `InfraError`, at the edge.

use sea_orm::{DbErr, RuntimeErr, sqlx};
use websessions_domain::InfraError;

/// Connection-level failures are `Unavailable` (the API answers 503 and the pool recovers by
/// itself); everything else is `Unexpected`.
pub(crate) fn infra(error: DbErr) -> InfraError {
    let unavailable = match &error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            is_connection_error(e)
        }
        _ => false,
    };
    if unavailable {
        InfraError::Unavailable(error.into())
    } else {
        InfraError::Unexpected(error.into())
    }
}

fn is_connection_error(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// A stored value that does not satisfy the domain's rules: the row is corrupt.
pub(crate) fn corrupt(what: &str) -> InfraError {
    InfraError::Unexpected(anyhow::anyhow!("stored {what} is invalid"))
}
