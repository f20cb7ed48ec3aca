//! Recognition's own connections (PostgreSQL, MySQL/MariaDB): the hot path's statements (R2's
//! read, R3's touch and touch-and-read) without sqlx's pool.
//!
//! sqlx's pool answers every connection's return with a round trip (its "ping on release": a
//! `Sync` on PostgreSQL, `COM_PING` on MySQL) from a task it spawns. On `GET /v1/session` that
//! doubled the round trips and wake-ups per request. These connections go back to the idle
//! list synchronously, and a checkout that did not finish cleanly (an error, or a request
//! cancelled mid-statement) closes its connection instead of returning it, so no connection is
//! reused in an unknown state. SQLite keeps the shared pool: its "round trip" is a hop to a
//! thread in the same process.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sqlx::error::BoxDynError;
use sea_orm::sqlx::mysql::{MySql, MySqlConnection};
use sea_orm::sqlx::postgres::{PgConnection, Postgres};
use sea_orm::sqlx::{
    self, Arguments, ColumnIndex, Connection, Database, Decode, Encode, FromRow, Row, Type,
};
use sea_orm::{DatabaseConnection, DatabaseConnectionType};
use tokio::sync::{Semaphore, SemaphorePermit};
use websessions_domain::{ClientIp, Cutoffs, InfraError, SessionId, TokenHash};

use crate::error::{infra_sqlx, is_connection_error};
use crate::sessions::{FIND_COLUMNS, FIND_POSITIONAL, SessionRow, hash_bytes, unix};

/// A session to touch: id, token hash, validity cutoffs and (with R2's IP check) the address.
pub(crate) type Target<'a> = (SessionId, &'a TokenHash, Cutoffs, Option<ClientIp>);

/// What recognition asks of storage, on connections of its own.
#[async_trait]
pub(crate) trait Recognition: Send + Sync + fmt::Debug {
    /// The session `id` and its user.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError>;
    /// Touches the session while it is still valid; whether it did (R3).
    async fn touch(&self, target: Target<'_>, now: i64) -> Result<bool, InfraError>;
    /// Touches the session while it is still valid and reads it back (R3, interval 0).
    async fn touch_and_find(
        &self,
        target: Target<'_>,
        now: i64,
    ) -> Result<Option<SessionRow>, InfraError>;
    /// Refuses further work and closes the idle connections politely, so the server logs no
    /// unexpected disconnects at shutdown.
    async fn close(&self);
}

/// Recognition on connections of its own for `db`, sized and timed like its pool; `None` on
/// SQLite (and for a disconnected handle).
pub(crate) fn for_database(db: &DatabaseConnection) -> Option<Arc<dyn Recognition>> {
    match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            Some(Arc::new(Connections::<PgConnection>::like(
                db.get_postgres_connection_pool(),
            )))
        }
        DatabaseConnectionType::SqlxMySqlPoolConnection(_) => {
            Some(Arc::new(Connections::<MySqlConnection>::like(
                db.get_mysql_connection_pool(),
            )))
        }
        _ => None,
    }
}

/// One backend's statements: the read, and the conditional touch by `Touch::variant`.
struct Statements {
    find: String,
    touch: [String; 4],
}

/// (absolute limit on, IP check on), in `Touch::variant` order.
const VARIANTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

static POSTGRES: LazyLock<Statements> = LazyLock::new(|| Statements {
    find: format!("{FIND_COLUMNS}$1"),
    touch: VARIANTS
        .map(|(absolute, ip)| touch_sql(Dialect::Postgres, absolute, ip) + " RETURNING id"),
});

/// PostgreSQL's touch-and-read in one statement, by `Touch::variant`. MySQL has no
/// `UPDATE ... RETURNING`: it touches, then reads, on the same connection.
static POSTGRES_TOUCH_AND_FIND: LazyLock<[String; 4]> = LazyLock::new(|| {
    VARIANTS.map(|(absolute, ip)| {
        format!(
            "WITH t AS ({} RETURNING id, token_hash, ip_address, kind, user_id, created_at, \
             authenticated_at, last_activity_at) \
             SELECT t.*, u.username, u.superuser FROM t LEFT JOIN users u ON u.id = t.user_id",
            touch_sql(Dialect::Postgres, absolute, ip)
        )
    })
});

static MYSQL: LazyLock<Statements> = LazyLock::new(|| Statements {
    find: FIND_POSITIONAL.clone(),
    touch: VARIANTS.map(|(absolute, ip)| touch_sql(Dialect::MySql, absolute, ip)),
});

#[derive(Clone, Copy, PartialEq)]
enum Dialect {
    /// Numbered parameters (`$1`), each bound once.
    Postgres,
    /// Positional parameters (`?`): one used twice is bound twice.
    MySql,
}

impl Dialect {
    fn param(self, n: usize) -> String {
        match self {
            Self::Postgres => format!("${n}"),
            Self::MySql => "?".to_owned(),
        }
    }
}

/// The conditional touch: now, id, token hash, idle cutoff, then the absolute cutoff and the
/// client address when checked.
fn touch_sql(dialect: Dialect, absolute: bool, ip: bool) -> String {
    let p = |n| dialect.param(n);
    let mut sql = format!(
        "UPDATE sessions SET last_activity_at = {} WHERE id = {} AND token_hash = {} \
         AND last_activity_at >= {}",
        p(1),
        p(2),
        p(3),
        p(4)
    );
    let mut n = 4;
    if absolute {
        n += 1;
        sql.push_str(&format!(
            " AND (created_at >= {} OR authenticated_at >= {})",
            p(n),
            p(n)
        ));
    }
    if ip {
        n += 1;
        sql.push_str(&format!(" AND ip_address = {}", p(n)));
    }
    sql
}

/// The values `touch_sql` binds, in its order.
#[derive(Clone)]
struct Touch {
    now: i64,
    id: i64,
    hash: Vec<u8>,
    idle: i64,
    absolute: Option<i64>,
    ip: Option<String>,
}

impl Touch {
    fn new((id, token_hash, cutoffs, ip): Target<'_>, now: i64) -> Self {
        Self {
            now,
            id: id.get(),
            hash: hash_bytes(token_hash),
            idle: unix(cutoffs.idle),
            absolute: cutoffs.absolute.map(unix),
            ip: ip.map(|ip| ip.to_string()),
        }
    }

    /// Index into `VARIANTS` and the statements built from it.
    fn variant(&self) -> usize {
        usize::from(self.absolute.is_some()) * 2 + usize::from(self.ip.is_some())
    }

    fn arguments<DB: Database>(&self, dialect: Dialect) -> Result<DB::Arguments, sqlx::Error>
    where
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> Vec<u8>: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let mut arguments = DB::Arguments::default();
        let add = |result: Result<(), BoxDynError>| result.map_err(sqlx::Error::Encode);
        add(arguments.add(self.now))?;
        add(arguments.add(self.id))?;
        add(arguments.add(self.hash.clone()))?;
        add(arguments.add(self.idle))?;
        if let Some(absolute) = self.absolute {
            add(arguments.add(absolute))?;
            if dialect == Dialect::MySql {
                add(arguments.add(absolute))?;
            }
        }
        if let Some(ip) = &self.ip {
            add(arguments.add(ip.clone()))?;
        }
        Ok(arguments)
    }
}

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// Up to `size` connections, opened on first need and kept open.
struct Connections<C: Connection> {
    options: C::Options,
    idle: Mutex<Vec<C>>,
    permits: Semaphore,
    acquire_timeout: Duration,
}

impl<C: Connection> fmt::Debug for Connections<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl<C: Connection> Connections<C> {
    /// As many connections as `pool` may hold, to the same database, with its acquire timeout.
    fn like(pool: &sqlx::Pool<C::Database>) -> Self
    where
        C::Database: Database<Connection = C>,
    {
        let options = pool.options();
        Self {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.get_max_connections().max(1) as usize),
            acquire_timeout: options.get_acquire_timeout(),
        }
    }

    /// Runs `work` on a connection. Every statement here is safe to repeat, so when a kept
    /// connection turns out broken (the server restarted or ended it), the idle ones are
    /// presumed broken too and dropped, and the work runs once more on a new connection: a
    /// database restart costs no request an error.
    async fn run<T>(
        &self,
        work: impl for<'c> Fn(&'c mut C) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, InfraError> {
        let mut retried = false;
        loop {
            let mut checkout = self.checkout().await?;
            match work(&mut checkout.connection).await {
                Ok(value) => {
                    checkout.release();
                    return Ok(value);
                }
                Err(error) if checkout.reused && !retried && is_connection_error(&error) => {
                    retried = true;
                    drop(checkout);
                    // Taken out first, so they are closed outside the lock.
                    let stale = std::mem::take(&mut *self.idle());
                    drop(stale);
                }
                Err(error) => return Err(infra_sqlx(error)),
            }
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<C>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection: an idle one, else a new one, waiting at most the acquire timeout in all.
    async fn checkout(&self) -> Result<Checkout<'_, C>, InfraError> {
        tokio::time::timeout(self.acquire_timeout, async {
            let permit = self.permits.acquire().await.map_err(|_| {
                InfraError::Unavailable(anyhow::anyhow!("recognition connections closed"))
            })?;
            let idle = self.idle().pop();
            let reused = idle.is_some();
            let connection = match idle {
                Some(connection) => connection,
                // Whatever the server answers (down, refusing this database, too many
                // connections), a connection that cannot be opened is unavailability.
                None => C::connect_with(&self.options)
                    .await
                    .map_err(|error| InfraError::Unavailable(error.into()))?,
            };
            Ok(Checkout {
                pool: self,
                connection,
                reused,
                _permit: permit,
            })
        })
        .await
        .map_err(|_| {
            InfraError::Unavailable(anyhow::anyhow!(
                "no database connection within the acquire timeout"
            ))
        })?
    }

    async fn close_idle(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for connection in idle {
            connection.close().await.ok();
        }
    }
}

/// A connection in use. Dropped without `release` (an error, or a request cancelled
/// mid-statement), its connection is closed rather than returned mid-conversation.
struct Checkout<'a, C: Connection> {
    pool: &'a Connections<C>,
    connection: C,
    /// Whether the connection was kept from an earlier use (rather than opened for this one).
    reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl<C: Connection> Checkout<'_, C> {
    fn release(self) {
        self.pool.idle().push(self.connection);
    }
}

/// A backend's recognition statements, run on one of its connections.
trait Backend: Connection {
    fn find(&mut self, id: i64) -> BoxFuture<'_, Result<Option<SessionRow>, sqlx::Error>>;
    fn touch(&mut self, touch: &Touch) -> BoxFuture<'_, Result<bool, sqlx::Error>>;
    fn touch_and_find(
        &mut self,
        touch: &Touch,
    ) -> BoxFuture<'_, Result<Option<SessionRow>, sqlx::Error>>;
}

#[async_trait]
impl<C: Backend> Recognition for Connections<C> {
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError> {
        self.run(|conn| conn.find(id.get())).await
    }

    async fn touch(&self, target: Target<'_>, now: i64) -> Result<bool, InfraError> {
        let touch = Touch::new(target, now);
        self.run(|conn| conn.touch(&touch)).await
    }

    async fn touch_and_find(
        &self,
        target: Target<'_>,
        now: i64,
    ) -> Result<Option<SessionRow>, InfraError> {
        let touch = Touch::new(target, now);
        self.run(|conn| conn.touch_and_find(&touch)).await
    }

    async fn close(&self) {
        self.close_idle().await;
    }
}

impl Backend for PgConnection {
    fn find(&mut self, id: i64) -> BoxFuture<'_, Result<Option<SessionRow>, sqlx::Error>> {
        let sql = POSTGRES.find.as_str();
        Box::pin(sqlx::query_as(sql).bind(id).fetch_optional(self))
    }

    fn touch(&mut self, touch: &Touch) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
        let sql = POSTGRES.touch[touch.variant()].as_str();
        let arguments = touch.arguments::<Postgres>(Dialect::Postgres);
        Box::pin(async move {
            let touched: Option<(i64,)> = sqlx::query_as_with(sql, arguments?)
                .fetch_optional(self)
                .await?;
            Ok(touched.is_some())
        })
    }

    fn touch_and_find(
        &mut self,
        touch: &Touch,
    ) -> BoxFuture<'_, Result<Option<SessionRow>, sqlx::Error>> {
        let sql = POSTGRES_TOUCH_AND_FIND[touch.variant()].as_str();
        let arguments = touch.arguments::<Postgres>(Dialect::Postgres);
        Box::pin(async move {
            sqlx::query_as_with(sql, arguments?)
                .fetch_optional(self)
                .await
        })
    }
}

impl Backend for MySqlConnection {
    fn find(&mut self, id: i64) -> BoxFuture<'_, Result<Option<SessionRow>, sqlx::Error>> {
        let sql = MYSQL.find.as_str();
        Box::pin(sqlx::query_as(sql).bind(id).fetch_optional(self))
    }

    fn touch(&mut self, touch: &Touch) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
        let sql = MYSQL.touch[touch.variant()].as_str();
        let arguments = touch.arguments::<MySql>(Dialect::MySql);
        Box::pin(async move {
            let done = sqlx::query_with(sql, arguments?).execute(self).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Two statements on one connection: the conditional touch, then the read.
    fn touch_and_find(
        &mut self,
        touch: &Touch,
    ) -> BoxFuture<'_, Result<Option<SessionRow>, sqlx::Error>> {
        let touch = touch.clone();
        Box::pin(async move {
            if !self.touch(&touch).await? {
                return Ok(None);
            }
            self.find(touch.id).await
        })
    }
}

impl<'r, R: Row> FromRow<'r, R> for SessionRow
where
    &'r str: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            token_hash: row.try_get("token_hash")?,
            ip_address: row.try_get("ip_address")?,
            kind: row.try_get("kind")?,
            user_id: row.try_get("user_id")?,
            created_at: row.try_get("created_at")?,
            authenticated_at: row.try_get("authenticated_at")?,
            last_activity_at: row.try_get("last_activity_at")?,
            username: row.try_get("username")?,
            superuser: row.try_get("superuser")?,
        })
    }
}
