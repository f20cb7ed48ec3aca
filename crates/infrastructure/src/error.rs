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

/// `infra` for a statement run on sqlx directly.
pub(crate) fn infra_sqlx(error: sqlx::Error) -> InfraError {
    if is_connection_error(&error) {
        InfraError::Unavailable(error.into())
    } else {
        InfraError::Unexpected(error.into())
    }
}

pub(crate) fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unavailable_state(&code)),
        _ => false,
    }
}

/// SQLSTATEs (and MySQL error numbers) that mean "the server cannot serve this connection
/// now": connection exceptions (class 08), an administrator's termination, a shutdown or
/// start-up in progress, too many connections.
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "53300" | "1040" | "1053" | "1927" | "2006" | "2013"
        )
}

/// A stored value that does not satisfy the domain's rules: the row is corrupt.
pub(crate) fn corrupt(what: &str) -> InfraError {
    InfraError::Unexpected(anyhow::anyhow!("stored {what} is invalid"))
}

#[cfg(test)]
mod tests {
    use super::is_unavailable_state;

    #[test]
    fn connection_states_are_unavailable_and_others_are_not() {
        for code in ["08006", "08S01", "57P01", "57P03", "53300", "1040"] {
            assert!(is_unavailable_state(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "1062"] {
            assert!(!is_unavailable_state(code), "{code}");
        }
    }
}
