//! Connecting to the database (a `Store`: the pool, and how requests wait for it) and applying
//! the migrations.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    TransactionTrait,
};
use websessions_migrations::{Migrator, MigratorTrait};

use websessions_domain::InfraError;

use crate::patience::{Failure, Patience};

/// Pool settings of the service.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    /// How long a request waits for an unreachable database before it answers 503
    /// (`WEBSESSIONS_DATABASE_WAIT`; zero: one try).
    pub wait: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            wait: Duration::from_secs(5),
        }
    }
}

impl PoolOptions {
    /// How long one try waits for a pooled connection (the pool's own connect attempts
    /// included): up to a second, so that a database that is down is met by `Patience`, which
    /// bounds how many wait, rather than by the pool's queue, which does not.
    fn acquire_timeout(&self) -> Duration {
        self.wait
            .clamp(Duration::from_millis(250), Duration::from_secs(1))
    }
}

/// The database: a pool of connections, and how requests wait for it (`Patience`).
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) conn: DatabaseConnection,
    pub(crate) patience: Arc<Patience>,
}

impl Store {
    /// The pool, for statements of one's own (tests, readiness).
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// How requests wait for the database; where the waits are reported.
    pub fn patience(&self) -> &Patience {
        &self.patience
    }

    /// Runs a unit of work on the pool, waiting for the database as `Patience` says.
    pub(crate) async fn run<'s, T, F, Fut>(&'s self, mut unit: F) -> Result<T, InfraError>
    where
        F: FnMut(&'s DatabaseConnection) -> Fut,
        Fut: Future<Output = Result<T, Failure>> + 's,
    {
        self.patience.run(|| unit(&self.conn)).await
    }

    /// Whether the database answers a ping now (no waiting).
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }

    /// Closes the pool politely.
    pub async fn close(self) {
        self.conn.close().await.ok();
    }
}

/// Opens a pool on `url` (`sqlite:`, `postgres:` or `mysql:`). SQLite runs in WAL mode so
/// readers never wait for the writer, and with foreign keys enforced (user deletion cascades).
/// At most four times the pool's size of requests wait for an unreachable database.
pub async fn connect(url: &str, pool: &PoolOptions) -> Result<Store, DbErr> {
    let mut options = ConnectOptions::new(url);
    options
        .max_connections(pool.max_connections)
        .min_connections(0)
        .connect_timeout(pool.acquire_timeout())
        .acquire_timeout(pool.acquire_timeout())
        // Every statement's text (never its bound values, which hold token and password
        // hashes) at DEBUG, in the span of the operation that ran it: `RUST_LOG=debug`
        // follows a request down to its statements.
        .sqlx_logging(true)
        .sqlx_logging_level(log::LevelFilter::Debug)
        // Recognition has connections of its own (`sessions::hot_path`), so this pool
        // serves logins, logouts and administration, which can afford a ping per
        // checkout that weeds out connections a server restart broke. SQLite's connections
        // are in-process and cannot be broken that way.
        .test_before_acquire(!url.starts_with("sqlite"))
        .map_sqlx_sqlite_opts(|opts: SqliteConnectOptions| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10))
        });
    let conn = Database::connect(options).await?;
    let waiting = 4 * pool.max_connections as usize;
    Ok(Store {
        conn,
        patience: Arc::new(Patience::new(pool.wait, waiting)),
    })
}

/// The name of the lock migrations take (SPEC section 7).
const MIGRATION_LOCK: &str = "websessions_migrations";

/// PostgreSQL advisory locks take a number: `websessions` in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x7765_6273_6573_7369;

/// How long a process waits for another's migrations, in seconds (MySQL's `GET_LOCK`).
const MIGRATION_WAIT_SECONDS: u32 = 600;

/// Applies every pending migration under a database lock, so that processes started together
/// on one database migrate once: the first applies them, the others wait and find nothing left
/// to do. On PostgreSQL an advisory lock held by one transaction that also runs the migrations
/// (transactional DDL); on MySQL/MariaDB `GET_LOCK` on the connection that runs them. SQLite
/// is one process's file.
pub async fn migrate(store: &Store) -> Result<(), DbErr> {
    let db = &store.conn;
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        DbBackend::MySql => {
            // GET_LOCK belongs to the connection, which the transaction keeps for itself (the
            // migrations' DDL commits implicitly, but the lock outlives commits).
            let txn = db.begin().await?;
            let locked = txn
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::MySql,
                    "SELECT GET_LOCK(?, ?) AS locked",
                    [MIGRATION_LOCK.into(), MIGRATION_WAIT_SECONDS.into()],
                ))
                .await?
                .and_then(|row| row.try_get::<Option<i64>>("", "locked").ok().flatten());
            if locked != Some(1) {
                return Err(DbErr::Custom(format!(
                    "another process held the migration lock for {MIGRATION_WAIT_SECONDS} s"
                )));
            }
            let migrated = Migrator::up(&txn, None).await;
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::MySql,
                "SELECT RELEASE_LOCK(?)",
                [MIGRATION_LOCK.into()],
            ))
            .await?;
            txn.commit().await?;
            migrated
        }
        _ => Migrator::up(db, None).await,
    }
}
