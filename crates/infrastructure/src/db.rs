//! Connecting to the database and applying the migrations.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use websessions_migrations::{Migrator, MigratorTrait};

/// Pool settings of the service.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a request waits for a connection before it fails as unavailable.
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool on `url` (`sqlite:`, `postgres:` or `mysql:`). SQLite runs in WAL mode so
/// readers never wait for the writer, and with foreign keys enforced (user deletion cascades).
pub async fn connect(url: &str, pool: &PoolOptions) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(pool.max_connections)
        .min_connections(0)
        .connect_timeout(pool.acquire_timeout)
        .acquire_timeout(pool.acquire_timeout)
        // sqlx logs every statement with its bound values at INFO: they include token hashes.
        .sqlx_logging(false)
        // On PostgreSQL and MySQL recognition has connections of its own (`recognition`), so
        // this pool serves logins, logouts and administration, which can afford a ping per
        // checkout that weeds out connections a server restart broke. SQLite's connections
        // are in-process and cannot be broken that way.
        .test_before_acquire(!url.starts_with("sqlite"))
        .map_sqlx_sqlite_opts(|opts: SqliteConnectOptions| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        });
    Database::connect(options).await
}

/// Applies every pending migration.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}
