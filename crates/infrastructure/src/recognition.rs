//! Recognition's own PostgreSQL connections: the hot path's statements (R2's read, R3's
//! touch and touch-and-read) without sqlx's pool.
//!
//! sqlx's pool answers every connection's return with a `Sync` round trip (its "ping on
//! release") from a task it spawns. On `GET /v1/session` that doubled the round trips and
//! wake-ups per request. These connections go back to the idle list synchronously, and a
//! checkout that did not finish cleanly (an error, or a request cancelled mid-query) closes
//! its connection instead of returning it, so no connection is reused in an unknown state.

use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sea_orm::sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgRow};
use sea_orm::sqlx::{self, Connection, FromRow, Postgres, Row};
use tokio::sync::{Semaphore, SemaphorePermit};
use websessions_domain::{ClientIp, Cutoffs, InfraError, SessionId, TokenHash};

use crate::error::{infra_sqlx, is_connection_error};
use crate::sessions::{FIND_COLUMNS, SessionRow, hash_bytes, unix};

/// The recognition statement; then touch-and-read (R3 with touch_interval=0) and the touch
/// alone (R3, past the touch interval), each by `Touch::variant`.
static FIND: LazyLock<String> = LazyLock::new(|| format!("{FIND_COLUMNS}$1"));
static TOUCH_AND_FIND: LazyLock<[String; 4]> = LazyLock::new(|| {
    VARIANTS.map(|(absolute, ip)| {
        format!(
            "WITH t AS ({}) \
             SELECT t.*, u.username, u.superuser FROM t LEFT JOIN users u ON u.id = t.user_id",
            touch_sql(
                absolute,
                ip,
                "id, token_hash, ip_address, kind, user_id, created_at, authenticated_at, \
                 last_activity_at"
            )
        )
    })
});
static TOUCH: LazyLock<[String; 4]> =
    LazyLock::new(|| VARIANTS.map(|(absolute, ip)| touch_sql(absolute, ip, "id")));

/// (absolute limit on, IP check on), in `Touch::variant` order.
const VARIANTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

type Query<O> = sqlx::query::QueryAs<'static, Postgres, O, PgArguments>;

/// Up to `size` connections, opened on first need and kept open.
pub(crate) struct PgRecognition {
    options: PgConnectOptions,
    idle: Mutex<Vec<PgConnection>>,
    permits: Semaphore,
    acquire_timeout: Duration,
}

impl std::fmt::Debug for PgRecognition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRecognition")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl PgRecognition {
    pub(crate) fn new(options: PgConnectOptions, size: u32, acquire_timeout: Duration) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(size.max(1) as usize),
            acquire_timeout,
        }
    }

    /// The session `id` and its user: one statement, one round trip.
    pub(crate) async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError> {
        self.fetch(|| sqlx::query_as(FIND.as_str()).bind(id.get()))
            .await
    }

    /// Touches the session while it is still valid and reads it back, in one statement (R3).
    pub(crate) async fn touch_and_find(
        &self,
        target: (SessionId, &TokenHash, Cutoffs, Option<ClientIp>),
        now: i64,
    ) -> Result<Option<SessionRow>, InfraError> {
        let touch = Touch::new(target, now);
        let sql = &TOUCH_AND_FIND[touch.variant()];
        self.fetch(|| touch.bind(sql)).await
    }

    /// Touches the session while it still holds `token_hash` and is valid; whether it did.
    pub(crate) async fn touch(
        &self,
        (id, token_hash, cutoffs): (SessionId, &TokenHash, Cutoffs),
        now: i64,
    ) -> Result<bool, InfraError> {
        let touch = Touch::new((id, token_hash, cutoffs, None), now);
        let sql = &TOUCH[touch.variant()];
        let touched: Option<(i64,)> = self.fetch(|| touch.bind(sql)).await?;
        Ok(touched.is_some())
    }

    /// Runs `query` on a connection. Every statement here is safe to repeat, so when a kept
    /// connection turns out broken (the server restarted or ended it), the idle ones are
    /// presumed broken too and dropped, and the statement runs once more on a new connection:
    /// a database restart costs no request an error.
    async fn fetch<O>(&self, query: impl Fn() -> Query<O>) -> Result<Option<O>, InfraError>
    where
        O: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let mut retried = false;
        loop {
            let mut checkout = self.checkout().await?;
            match query().fetch_optional(&mut checkout.connection).await {
                Ok(row) => {
                    checkout.release();
                    return Ok(row);
                }
                Err(error) if checkout.reused && !retried && is_connection_error(&error) => {
                    retried = true;
                    drop(checkout);
                    let stale = std::mem::take(&mut *self.idle());
                    drop(stale);
                }
                Err(error) => return Err(infra_sqlx(error)),
            }
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<PgConnection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection: an idle one, else a new one, waiting at most the acquire timeout in all.
    async fn checkout(&self) -> Result<Checkout<'_>, InfraError> {
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
                None => PgConnection::connect_with(&self.options)
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

    /// Refuses further checkouts and closes the idle connections politely, so the server
    /// logs no unexpected disconnects at shutdown.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for connection in idle {
            connection.close().await.ok();
        }
    }
}

/// A connection in use. Dropped without `release` (an error, or a request cancelled
/// mid-query), its connection is closed rather than returned mid-conversation.
struct Checkout<'a> {
    pool: &'a PgRecognition,
    connection: PgConnection,
    /// Whether the connection was kept from an earlier use (rather than opened for this one).
    reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl Checkout<'_> {
    fn release(self) {
        self.pool.idle().push(self.connection);
    }
}

/// The conditional touch: $1 now, $2 id, $3 token hash, $4 idle cutoff, then the absolute
/// cutoff and the client address when checked.
fn touch_sql(absolute: bool, ip: bool, returning: &str) -> String {
    let mut conditions = String::new();
    let mut n = 4;
    if absolute {
        n += 1;
        conditions.push_str(&format!(
            " AND (created_at >= ${n} OR authenticated_at >= ${n})"
        ));
    }
    if ip {
        n += 1;
        conditions.push_str(&format!(" AND ip_address = ${n}"));
    }
    format!(
        "UPDATE sessions SET last_activity_at = $1 \
         WHERE id = $2 AND token_hash = $3 AND last_activity_at >= $4{conditions} \
         RETURNING {returning}"
    )
}

/// The values `touch_sql` binds, in its order.
struct Touch {
    now: i64,
    id: i64,
    hash: Vec<u8>,
    idle: i64,
    absolute: Option<i64>,
    ip: Option<String>,
}

impl Touch {
    fn new(
        (id, token_hash, cutoffs, ip): (SessionId, &TokenHash, Cutoffs, Option<ClientIp>),
        now: i64,
    ) -> Self {
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

    fn bind<O>(&self, sql: &'static str) -> Query<O>
    where
        O: for<'r> FromRow<'r, PgRow>,
    {
        let mut query = sqlx::query_as(sql)
            .bind(self.now)
            .bind(self.id)
            .bind(self.hash.clone())
            .bind(self.idle);
        if let Some(absolute) = self.absolute {
            query = query.bind(absolute);
        }
        if let Some(ip) = &self.ip {
            query = query.bind(ip.clone());
        }
        query
    }
}

impl<'r> FromRow<'r, PgRow> for SessionRow {
    fn from_row(row: &'r PgRow) -> Result<Self, sqlx::Error> {
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
