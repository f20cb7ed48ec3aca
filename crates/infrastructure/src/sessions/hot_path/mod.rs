//! The hot path: recognition's statements (R2's read, R3's touch, and with `touch_interval = 0`
//! the touch-and-read), in four rooms:
//!
//! - `statements`: rendered once at start-up from `table`'s vocabulary, with the request's
//!   values bound in each statement's order;
//! - `batcher`: the reads of concurrent recognitions sent together, one statement a batch;
//! - `connections`: connections of the hot path's own, returned without a round trip, and
//!   the waiting for the database;
//! - `backends`: each database's way of running the statements on one of its connections.
//!
//! A new backend is one `backend!` line in `backends`, one arm here, and its dialect in
//! `statements::Statements::render`.

mod backends;
mod batcher;
mod connections;
mod statements;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::sqlx::mysql::MySqlConnection;
use sea_orm::sqlx::postgres::PgConnection;
use sea_orm::sqlx::sqlite::SqliteConnection;
use sea_orm::{DatabaseConnectionType, DbBackend};
use time::OffsetDateTime;
use websessions_domain::ports::Target;
use websessions_domain::{InfraError, SessionId};

use self::connections::Connections;
use self::statements::Statements;
use super::table::SessionRow;
use crate::db::Store;

/// Recognition's statements, on connections of their own.
#[async_trait]
pub(crate) trait HotPath: Send + Sync + fmt::Debug {
    /// The session `id` and its user.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError>;
    /// Touches the session while `target` matches; whether it did (R3).
    async fn touch(&self, target: &Target, now: OffsetDateTime) -> Result<bool, InfraError>;
    /// Touches the session while `target` matches and reads it back (R3, interval 0).
    async fn touch_and_find(
        &self,
        target: &Target,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRow>, InfraError>;
    /// Refuses further work and closes any connections of its own politely, so the server
    /// logs no unexpected disconnects at shutdown.
    async fn close(&self);
}

/// The hot path for `store`: connections of its own (sized and timed like the pool, waiting
/// for the database as the store does), with readers sending the batched reads.
///
/// # Errors
/// When the statements cannot be rendered (a defect), there is no runtime to read on, or the
/// store has no database behind it.
pub(crate) fn for_database(store: &Store) -> Result<Arc<dyn HotPath>, InfraError> {
    let db = &store.conn;
    let patience = store.patience.clone();
    match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            Connections::<PgConnection>::start(
                db.get_postgres_connection_pool(),
                Statements::render(DbBackend::Postgres)?,
                patience,
            )
        }
        DatabaseConnectionType::SqlxMySqlPoolConnection(_) => {
            Connections::<MySqlConnection>::start(
                db.get_mysql_connection_pool(),
                Statements::render(DbBackend::MySql)?,
                patience,
            )
        }
        DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
            Connections::<SqliteConnection>::start(
                db.get_sqlite_connection_pool(),
                Statements::render(DbBackend::Sqlite)?,
                patience,
            )
        }
        _ => Err(InfraError::Unexpected(anyhow::anyhow!(
            "recognition needs a connected database"
        ))),
    }
}
