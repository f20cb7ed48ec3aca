//! Translation of `DbErr` at the edge: into the domain's `InfraError`, and, for a try of a unit
//! of work, into whether the unit may run again (`Failure`).

use sea_orm::{DbErr, RuntimeErr, sqlx};
use websessions_domain::InfraError;

use crate::patience::Failure;

/// Whether `error` is the connection's (gone, refused, the server starting or stopping) rather
/// than the statement's.
fn is_connection_level(error: &DbErr) -> bool {
    match error {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            is_connection_error(e)
        }
        _ => false,
    }
}

/// Whether the database rolled back the statement's transaction to break a deadlock or a
/// serialisation conflict (SQLSTATE 40001 and 40P01, MySQL's 1213): nothing of the
/// transaction took effect, so it may run again whole. MySQL/MariaDB meet these between
/// transactions that lock the same names' rows and gaps in different orders (R9's counting
/// and clearing under a burst).
fn is_rolled_back_conflict(error: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) =
        error
    else {
        return false;
    };
    let sqlx::Error::Database(db) = &**error else {
        return false;
    };
    db.code()
        .is_some_and(|code| matches!(&*code, "40001" | "40P01" | "1213"))
}

/// Whether the statement never reached the server (no connection could be had).
fn never_sent(error: &DbErr) -> bool {
    matches!(error, DbErr::ConnectionAcquire(_) | DbErr::Conn(_))
}

/// A failed statement that commits nothing on its own, or is safe to repeat (a read, a
/// conditional write, a statement inside a transaction not yet committed): a connection-level
/// failure lets the unit run again.
pub(crate) fn retry(error: DbErr) -> Failure {
    if is_connection_level(&error) || is_rolled_back_conflict(&error) {
        Failure::Retry(error.into())
    } else {
        Failure::Final(InfraError::Unexpected(error.into()))
    }
}

/// A failed statement that is not safe to repeat once sent (an insert): it runs again only if
/// it never reached the server; otherwise whether it took effect is unknown.
pub(crate) fn once(error: DbErr) -> Failure {
    if never_sent(&error) {
        Failure::Retry(error.into())
    } else {
        Failure::Final(lost(error))
    }
}

/// A failed COMMIT (or a statement that committed itself): when the connection went, whether
/// it committed is unknown, so it is never replayed.
pub(crate) fn lost(error: DbErr) -> InfraError {
    if is_connection_level(&error) {
        InfraError::Unavailable(
            anyhow::Error::from(error).context(
                "the database went away while committing; whether it committed is unknown",
            ),
        )
    } else {
        InfraError::Unexpected(error.into())
    }
}

/// A statement of a transaction the domain drives: a connection-level failure interrupts it
/// before anything committed, and the domain may run the transaction again.
pub(crate) fn interrupted(error: DbErr) -> InfraError {
    if is_connection_level(&error) || is_rolled_back_conflict(&error) {
        InfraError::Interrupted(error.into())
    } else {
        InfraError::Unexpected(error.into())
    }
}

/// A statement run on sqlx directly (the hot path's): a connection-level failure lets it run
/// again (every hot-path statement is safe to repeat).
pub(crate) fn retry_sqlx(error: sqlx::Error) -> Failure {
    if is_connection_error(&error) {
        Failure::Retry(error.into())
    } else {
        Failure::Final(InfraError::Unexpected(error.into()))
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
/// start-up in progress, too many connections, a statement cancelled by an administrator
/// (`pg_cancel_backend`, MySQL's `KILL QUERY`: it took no effect, and may run again).
fn is_unavailable_state(code: &str) -> bool {
    code.starts_with("08")
        || matches!(
            code,
            "57P01"
                | "57P02"
                | "57P03"
                | "57014"
                | "53300"
                | "70100"
                | "1040"
                | "1053"
                | "1317"
                | "1927"
                | "2006"
                | "2013"
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
        for code in [
            "08006", "08S01", "57P01", "57P03", "57014", "53300", "70100", "1040",
        ] {
            assert!(is_unavailable_state(code), "{code}");
        }
        for code in ["23505", "42P01", "22001", "1062"] {
            assert!(!is_unavailable_state(code), "{code}");
        }
    }
}
