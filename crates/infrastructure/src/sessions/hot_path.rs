//! The hot path: recognition's statements (R2's read, R3's touch, and with `touch_interval = 0`
//! the touch-and-read), rendered once at start-up from `table`'s vocabulary, and run on
//! connections of the hot path's own.
//!
//! Rendering: each statement is built with SeaQuery from the same conditions every other
//! statement uses, with a distinct marker value in place of each request value; the rendered
//! statement's values then say which request value each placeholder takes (PostgreSQL numbers
//! its placeholders, MySQL and SQLite bind one used twice twice, and the markers cover both).
//!
//! Connections of its own: sqlx's pool answers every connection's return with a round trip
//! (its "ping on release": a `Sync` on PostgreSQL, `COM_PING` on MySQL, a hop to the
//! connection's thread on SQLite) from a task it spawns, which doubled the round trips and
//! wake-ups per request. These connections go back to the idle list synchronously, and a
//! checkout that did not finish cleanly (an error, or a request cancelled mid-statement)
//! closes its connection instead of returning it.
//!
//! Reads together: the reads of concurrent recognitions are sent as one statement
//! (`WHERE id IN (...)`, up to `MAX_BATCH` ids), each request waiting for its own row of it.
//! Every request still reads its row from the database while it runs, and nothing outlives
//! it; what is shared is the round trip, the wake-ups and the database's statement overhead,
//! which were most of a recognition's CPU (tests/bench/profile.md). Two readers send batches,
//! so a batch is never held back by the one before it. A batch is tried once: when the
//! database fails or hangs, each of its requests reads on its own, waiting for the database as
//! every other unit of work does (`patience`), and no request waits longer than the wait in
//! all, however many reads are queued.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sea_query::{
    Expr, MysqlQueryBuilder, PostgresQueryBuilder, Query, SqliteQueryBuilder,
};
use sea_orm::sqlx::error::BoxDynError;
use sea_orm::sqlx::mysql::{MySql, MySqlConnection};
use sea_orm::sqlx::postgres::{PgConnection, Postgres};
use sea_orm::sqlx::sqlite::{Sqlite, SqliteConnection};
use sea_orm::sqlx::{
    self, Arguments, AssertSqlSafe, ColumnIndex, Connection, Database, Decode, Encode, FromRow,
    Row, Type,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnectionType, DbBackend, EntityName, FromQueryResult,
    IdenStatic, QueryFilter, QueryTrait, Statement, Value,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore, SemaphorePermit, oneshot};
use tokio::time::Instant;
use websessions_domain::ports::Target;
use websessions_domain::{InfraError, SessionId};

use super::table::{Bound, RECORD_COLUMNS, SessionRow, hash_bytes, matching, select_records, unix};
use crate::db::Store;
use crate::entity::{sessions, users};
use crate::error::{retry, retry_sqlx};
use crate::patience::{Failure, Patience};

/// A request value a prebuilt statement takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Param {
    Now,
    Id,
    TokenHash,
    Idle,
    Absolute,
    Ip,
}

impl Param {
    const ALL: [Self; 6] = [
        Self::Now,
        Self::Id,
        Self::TokenHash,
        Self::Idle,
        Self::Absolute,
        Self::Ip,
    ];

    /// A value no request ever binds, standing for this parameter while a statement renders.
    fn marker(self) -> Value {
        const BASE: i64 = i64::MIN + 7;
        match self {
            Self::Now => Value::BigInt(Some(BASE)),
            Self::Id => Value::BigInt(Some(BASE + 1)),
            Self::Idle => Value::BigInt(Some(BASE + 2)),
            Self::Absolute => Value::BigInt(Some(BASE + 3)),
            Self::TokenHash => Value::Bytes(Some(b"\0token hash marker".to_vec())),
            Self::Ip => Value::String(Some("\0ip marker".to_owned())),
        }
    }
}

/// A statement rendered once, and the request value each of its placeholders takes, in order.
#[derive(Clone, Debug)]
struct Prepared {
    sql: Arc<str>,
    params: Vec<Param>,
}

impl Prepared {
    fn render(sql: String, values: sea_orm::sea_query::Values) -> Result<Self, InfraError> {
        let params = values
            .0
            .iter()
            .map(|value| {
                Param::ALL
                    .into_iter()
                    .find(|param| param.marker() == *value)
                    .ok_or_else(|| {
                        InfraError::Unexpected(anyhow::anyhow!(
                            "a hot-path statement binds a value that is not a parameter"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sql: sql.into(),
            params,
        })
    }

    fn from_statement(statement: Statement) -> Result<Self, InfraError> {
        let values = statement
            .values
            .unwrap_or(sea_orm::sea_query::Values(Vec::new()));
        Self::render(statement.sql, values)
    }

    /// The SQL for sqlx, which wants it vouched for: it is rendered from constants only.
    fn sql(&self) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.sql.clone())
    }
}

/// (absolute limit on, address check on), in `Values::variant` order.
const VARIANTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// The target condition with markers for every value.
fn marked(absolute: bool, ip: bool) -> Bound {
    Bound {
        id: Param::Id.marker(),
        token_hash: Param::TokenHash.marker(),
        idle: Param::Idle.marker(),
        absolute: absolute.then(|| Param::Absolute.marker()),
        ip: ip.then(|| Param::Ip.marker()),
    }
}

/// One backend's recognition statements; touches by `Values::variant`.
#[derive(Clone, Debug)]
struct Statements {
    find: Prepared,
    /// The read of `BATCH_SIZES[i]` sessions by id, whose placeholders all take ids, in order.
    find_many: Vec<Arc<str>>,
    touch: Vec<Prepared>,
    /// PostgreSQL's touch-and-read in one statement (`UPDATE ... RETURNING` joined with the
    /// user). MySQL and SQLite touch, then read.
    touch_and_find: Option<Vec<Prepared>>,
}

impl Statements {
    fn render(backend: DbBackend) -> Result<Self, InfraError> {
        let find = select_records().filter(sessions::Column::Id.eq(Param::Id.marker()));
        let touch = |(absolute, ip)| {
            Query::update()
                .table(sessions::Entity)
                .value(
                    sessions::Column::LastActivityAt,
                    Expr::val(Param::Now.marker()),
                )
                .cond_where(matching(marked(absolute, ip)))
                .to_owned()
        };
        let render_touch = |variant| {
            let update = touch(variant);
            let (sql, values) = match backend {
                DbBackend::Postgres => update.build(PostgresQueryBuilder),
                DbBackend::MySql => update.build(MysqlQueryBuilder),
                _ => update.build(SqliteQueryBuilder),
            };
            Prepared::render(sql, values)
        };
        let touch_and_find = match backend {
            DbBackend::Postgres => Some(
                VARIANTS
                    .into_iter()
                    .map(|variant| {
                        let (update, values) = touch(variant)
                            .returning(Query::returning().columns(RECORD_COLUMNS))
                            .build(PostgresQueryBuilder);
                        let sql = format!(
                            "WITH t AS ({update}) SELECT t.*, u.{name}, u.{superuser} \
                             FROM t LEFT JOIN {users} u ON u.{id} = t.{user}",
                            name = users::Column::Username.as_str(),
                            superuser = users::Column::Superuser.as_str(),
                            users = users::Entity.table_name(),
                            id = users::Column::Id.as_str(),
                            user = sessions::Column::UserId.as_str(),
                        );
                        Prepared::render(sql, values)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => None,
        };
        Ok(Self {
            find: Prepared::from_statement(find.build(backend))?,
            find_many: BATCH_SIZES
                .into_iter()
                .map(|size| render_find_many(backend, size))
                .collect::<Result<_, _>>()?,
            touch: VARIANTS
                .into_iter()
                .map(render_touch)
                .collect::<Result<_, _>>()?,
            touch_and_find,
        })
    }
}

/// How many reads one statement carries at most.
const MAX_BATCH: usize = 32;

/// The batch sizes statements are rendered for; a batch is padded to the next one (with its
/// last id again), so each connection prepares at most this many reads.
const BATCH_SIZES: [usize; 6] = [1, 2, 4, 8, 16, MAX_BATCH];

/// The read of `size` sessions by id, checked to bind exactly `size` ids in order.
fn render_find_many(backend: DbBackend, size: usize) -> Result<Arc<str>, InfraError> {
    const BASE: i64 = i64::MIN + 1000;
    let markers: Vec<i64> = (0..size as i64).map(|i| BASE + i).collect();
    let statement = select_records()
        .filter(sessions::Column::Id.is_in(markers.clone()))
        .build(backend);
    let bound: Vec<Value> = statement.values.map(|v| v.0).unwrap_or_default();
    let expected: Vec<Value> = markers.into_iter().map(Value::from).collect();
    if bound != expected {
        return Err(InfraError::Unexpected(anyhow::anyhow!(
            "a batched read binds other values than its ids"
        )));
    }
    Ok(statement.sql.into())
}

/// A request's values for the prebuilt statements.
#[derive(Clone, Debug)]
struct Values {
    now: i64,
    id: i64,
    token_hash: Vec<u8>,
    idle: i64,
    absolute: Option<i64>,
    ip: Option<String>,
}

impl Values {
    fn find(id: SessionId) -> Self {
        Self {
            now: 0,
            id: id.get(),
            token_hash: Vec::new(),
            idle: 0,
            absolute: None,
            ip: None,
        }
    }

    fn touch(target: &Target, now: OffsetDateTime) -> Self {
        Self {
            now: unix(now),
            id: target.id.get(),
            token_hash: hash_bytes(&target.token_hash),
            idle: unix(target.cutoffs.idle),
            absolute: target.cutoffs.absolute.map(unix),
            ip: target.ip.map(|ip| ip.to_string()),
        }
    }

    /// Index into `VARIANTS` and the touches rendered from it.
    fn variant(&self) -> usize {
        usize::from(self.absolute.is_some()) * 2 + usize::from(self.ip.is_some())
    }

    fn value(&self, param: Param) -> Value {
        match param {
            Param::Now => self.now.into(),
            Param::Id => self.id.into(),
            Param::TokenHash => self.token_hash.clone().into(),
            Param::Idle => self.idle.into(),
            Param::Absolute => self.absolute.unwrap_or_default().into(),
            Param::Ip => self.ip.clone().unwrap_or_default().into(),
        }
    }

    /// The statement with these values, for SeaORM's connection.
    fn statement(&self, backend: DbBackend, prepared: &Prepared) -> Statement {
        let values = prepared.params.iter().map(|p| self.value(*p));
        Statement::from_sql_and_values(backend, prepared.sql.as_ref(), values)
    }

    /// The values in `prepared`'s order, for a sqlx connection.
    fn arguments<DB: Database>(&self, prepared: &Prepared) -> Result<DB::Arguments, sqlx::Error>
    where
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> Vec<u8>: Encode<'t, DB> + Type<DB>,
        for<'t> String: Encode<'t, DB> + Type<DB>,
    {
        let mut arguments = DB::Arguments::default();
        let add = |result: Result<(), BoxDynError>| result.map_err(sqlx::Error::Encode);
        for param in &prepared.params {
            match param {
                Param::Now => add(arguments.add(self.now))?,
                Param::Id => add(arguments.add(self.id))?,
                Param::TokenHash => add(arguments.add(self.token_hash.clone()))?,
                Param::Idle => add(arguments.add(self.idle))?,
                Param::Absolute => add(arguments.add(self.absolute.unwrap_or_default()))?,
                Param::Ip => add(arguments.add(self.ip.clone().unwrap_or_default()))?,
            }
        }
        Ok(arguments)
    }
}

/// Recognition's statements, on whichever connections suit the database.
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
/// for the database as the store does), with two readers sending the batched reads; on a
/// disconnected handle, which only renders the statements, the shared pool.
///
/// # Errors
/// When the statements cannot be rendered (a defect), or there is no runtime to read on.
pub(crate) fn for_database(store: &Store) -> Result<Arc<dyn HotPath>, InfraError> {
    let db = &store.conn;
    let patience = store.patience.clone();
    Ok(match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            Connections::<PgConnection>::start(
                db.get_postgres_connection_pool(),
                Statements::render(DbBackend::Postgres)?,
                patience,
            )?
        }
        DatabaseConnectionType::SqlxMySqlPoolConnection(_) => {
            Connections::<MySqlConnection>::start(
                db.get_mysql_connection_pool(),
                Statements::render(DbBackend::MySql)?,
                patience,
            )?
        }
        DatabaseConnectionType::SqlxSqlitePoolConnection(_) => {
            Connections::<SqliteConnection>::start(
                db.get_sqlite_connection_pool(),
                Statements::render(DbBackend::Sqlite)?,
                patience,
            )?
        }
        _ => Arc::new(SharedPool {
            store: store.clone(),
            backend: DbBackend::Sqlite,
            statements: Statements::render(DbBackend::Sqlite)?,
        }),
    })
}

/// The shared pool (a disconnected handle: nothing runs).
#[derive(Debug)]
struct SharedPool {
    store: Store,
    backend: DbBackend,
    statements: Statements,
}

#[async_trait]
impl HotPath for SharedPool {
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError> {
        let statement = &Values::find(id).statement(self.backend, &self.statements.find);
        self.store
            .run(|db| async move {
                SessionRow::find_by_statement(statement.clone())
                    .one(db)
                    .await
                    .map_err(retry)
            })
            .await
    }

    async fn touch(&self, target: &Target, now: OffsetDateTime) -> Result<bool, InfraError> {
        let values = Values::touch(target, now);
        let prepared = &self.statements.touch[values.variant()];
        let statement = &values.statement(self.backend, prepared);
        let done = self
            .store
            .run(|db| async move { db.execute_raw(statement.clone()).await.map_err(retry) })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn touch_and_find(
        &self,
        target: &Target,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRow>, InfraError> {
        if self.touch(target, now).await? {
            self.find(target.id).await
        } else {
            Ok(None)
        }
    }

    async fn close(&self) {}
}

type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// A recognition's read, waiting for a reader to send it.
struct Read {
    id: i64,
    answer: oneshot::Sender<Answer>,
}

/// What a reader answers a read.
enum Answer {
    /// The session's row, or none: read while the request waited.
    Row(Option<SessionRow>),
    Failed(InfraError),
    /// The batch's try met an unavailable database: the request reads on its own, waiting
    /// for the database as every other unit of work does (its own wait, its own place).
    Alone,
}

/// Reads waiting to be sent together.
#[derive(Default)]
struct Reads {
    waiting: Mutex<Vec<Read>>,
    arrived: Notify,
    closed: AtomicBool,
}

impl Reads {
    fn waiting(&self) -> MutexGuard<'_, Vec<Read>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers every waiting read that recognition has closed.
    fn refuse_all(&self) {
        for read in std::mem::take(&mut *self.waiting()) {
            let _ = read.answer.send(Answer::Failed(closed()));
        }
    }

    /// Up to `MAX_BATCH` of the waiting reads, oldest first; reads whose request has gone
    /// (cancelled, or past its wait) are dropped, not sent.
    fn take_batch(&self) -> Vec<Read> {
        let mut waiting = self.waiting();
        waiting.retain(|read| !read.answer.is_closed());
        let n = waiting.len().min(MAX_BATCH);
        let batch: Vec<Read> = waiting.drain(..n).collect();
        if !waiting.is_empty() {
            // The other reader takes what is left meanwhile.
            self.arrived.notify_one();
        }
        batch
    }
}

fn closed() -> InfraError {
    InfraError::Unavailable(anyhow::anyhow!("recognition closed"))
}

/// Readers sending batches at once.
const READERS: usize = 2;

/// Up to `size` connections, opened on first need and kept open.
struct Connections<C: Connection> {
    options: C::Options,
    idle: Mutex<Vec<C>>,
    permits: Semaphore,
    acquire_timeout: Duration,
    statements: Statements,
    patience: Arc<Patience>,
    reads: Reads,
}

impl<C: Connection> fmt::Debug for Connections<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl<C: Backend + 'static> Connections<C> {
    /// As many connections as `pool` may hold, to the same database, with its acquire timeout,
    /// and the readers that send the batched reads on them.
    fn start(
        pool: &sqlx::Pool<C::Database>,
        statements: Statements,
        patience: Arc<Patience>,
    ) -> Result<Arc<dyn HotPath>, InfraError>
    where
        C::Database: Database<Connection = C>,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            InfraError::Unexpected(anyhow::anyhow!("recognition needs a tokio runtime"))
        })?;
        let options = pool.options();
        let connections = Arc::new(Self {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.get_max_connections().max(1) as usize),
            acquire_timeout: options.get_acquire_timeout(),
            statements,
            patience,
            reads: Reads::default(),
        });
        for _ in 0..READERS {
            runtime.spawn(connections.clone().read_batches());
        }
        Ok(connections)
    }

    /// A reader: sends the waiting reads as one statement, answers each its row, and goes on
    /// while reads are waiting; then waits for more.
    async fn read_batches(self: Arc<Self>) {
        loop {
            self.reads.arrived.notified().await;
            if self.reads.closed.load(Ordering::SeqCst) {
                self.reads.refuse_all();
                self.reads.arrived.notify_one();
                return;
            }
            loop {
                // Requests that are ready to run queue their reads first: larger batches.
                tokio::task::yield_now().await;
                let batch = self.reads.take_batch();
                if batch.is_empty() {
                    break;
                }
                self.read(batch).await;
            }
        }
    }

    /// One batch: one statement for every read in it, tried once. A database that fails or
    /// hangs sends each request to read on its own, under its own wait.
    async fn read(&self, batch: Vec<Read>) {
        let mut ids: Vec<i64> = batch.iter().map(|read| read.id).collect();
        let size = BATCH_SIZES
            .into_iter()
            .position(|size| size >= ids.len())
            .unwrap_or(BATCH_SIZES.len() - 1);
        let last = ids.last().copied().unwrap_or_default();
        ids.resize(BATCH_SIZES[size], last);
        let bound = self.patience.wait().max(BATCH_TRY_BOUND);
        let rows = tokio::time::timeout(
            bound,
            self.try_once(&(size, ids), |c, s, (size, ids)| {
                c.find_many(&s.find_many[*size], ids)
            }),
        )
        .await;
        match rows {
            Ok(Ok(rows)) => {
                for read in batch {
                    let row = rows.iter().find(|row| row.id == read.id).cloned();
                    let _ = read.answer.send(Answer::Row(row));
                }
            }
            Ok(Err(Failure::Final(error))) => {
                for read in batch {
                    let _ = read.answer.send(Answer::Failed(copy(&error)));
                }
            }
            Ok(Err(Failure::Retry(_))) | Err(_) => {
                for read in batch {
                    let _ = read.answer.send(Answer::Alone);
                }
            }
        }
    }
}

/// The longest a batch's one try may take when there is no longer wait: a hung database
/// must not hold the readers for ever.
const BATCH_TRY_BOUND: Duration = Duration::from_secs(1);

/// The same failure again, for each request of a batch.
fn copy(error: &InfraError) -> InfraError {
    let text = anyhow::anyhow!("{error:#}");
    match error {
        InfraError::Unavailable(_) => InfraError::Unavailable(text),
        InfraError::Interrupted(_) => InfraError::Interrupted(text),
        InfraError::Unexpected(_) => InfraError::Unexpected(text),
    }
}

impl<C: Connection> Connections<C> {
    /// Runs `work` on a connection, waiting for the database. Every statement here is safe to
    /// repeat, so when a connection fails (the server restarted or ended it), the kept ones
    /// are presumed broken too and dropped, and the work runs again on a new connection.
    async fn run<I: ?Sized + Sync, T>(
        &self,
        input: &I,
        work: impl for<'c> Fn(&'c mut C, &'c Statements, &'c I) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, InfraError> {
        self.run_since(Instant::now(), input, work).await
    }

    /// `run` for a request that began waiting at `started`.
    async fn run_since<I: ?Sized + Sync, T>(
        &self,
        started: Instant,
        input: &I,
        work: impl for<'c> Fn(&'c mut C, &'c Statements, &'c I) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, InfraError> {
        let work = &work;
        self.patience
            .run_since(started, || self.try_once(input, work))
            .await
    }

    /// One try of `work` on a connection. When the connection failed, the kept ones are
    /// presumed broken too and dropped.
    async fn try_once<I: ?Sized + Sync, T>(
        &self,
        input: &I,
        work: impl for<'c> Fn(&'c mut C, &'c Statements, &'c I) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, Failure> {
        let mut checkout = self.checkout().await?;
        match work(&mut checkout.connection, &self.statements, input).await {
            Ok(value) => {
                checkout.release();
                Ok(value)
            }
            Err(error) => {
                let failure = retry_sqlx(error);
                if matches!(failure, Failure::Retry(_)) {
                    drop(checkout);
                    // Taken out first, so they are closed outside the lock.
                    let stale = std::mem::take(&mut *self.idle());
                    drop(stale);
                }
                Err(failure)
            }
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<C>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection: an idle one, else a new one, waiting at most the acquire timeout in all.
    async fn checkout(&self) -> Result<Checkout<'_, C>, Failure> {
        tokio::time::timeout(self.acquire_timeout, async {
            let permit = self.permits.acquire().await.map_err(|_| {
                InfraError::Unavailable(anyhow::anyhow!("recognition connections closed"))
            })?;
            let idle = self.idle().pop();
            let connection = match idle {
                Some(connection) => connection,
                // Whatever the server answers (down, starting, refusing this database, too
                // many connections), a connection that cannot be opened is worth waiting for.
                None => C::connect_with(&self.options)
                    .await
                    .map_err(|error| Failure::Retry(error.into()))?,
            };
            Ok(Checkout {
                pool: self,
                connection,
                _permit: permit,
            })
        })
        .await
        .map_err(|_| {
            Failure::Retry(anyhow::anyhow!(
                "no database connection within the acquire timeout"
            ))
        })?
    }
}

/// A connection in use. Dropped without `release` (an error, or a request cancelled
/// mid-statement), its connection is closed rather than returned mid-conversation.
struct Checkout<'a, C: Connection> {
    pool: &'a Connections<C>,
    connection: C,
    _permit: SemaphorePermit<'a>,
}

impl<C: Connection> Checkout<'_, C> {
    fn release(self) {
        self.pool.idle().push(self.connection);
    }
}

/// A backend's way of running the prebuilt statements on one of its connections.
trait Backend: Connection + Sized {
    fn find_many<'c>(
        &'c mut self,
        sql: &'c Arc<str>,
        ids: &'c [i64],
    ) -> BoxFuture<'c, Result<Vec<SessionRow>, sqlx::Error>>;
    fn find<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>>;
    fn touch<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<bool, sqlx::Error>>;
    /// The conditional touch, then the read, on one connection (PostgreSQL does both in one
    /// statement).
    fn touch_and_find<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>> {
        Box::pin(async move {
            if !self.touch(statements, values).await? {
                return Ok(None);
            }
            self.find(statements, values).await
        })
    }
}

#[async_trait]
impl<C: Backend> HotPath for Connections<C> {
    /// Waits for a reader to send this read with the others waiting, for at most the
    /// database wait in all.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError> {
        let started = Instant::now();
        let (answer, answered) = oneshot::channel();
        self.reads.waiting().push(Read {
            id: id.get(),
            answer,
        });
        if self.reads.closed.load(Ordering::SeqCst) {
            // Closed meanwhile, perhaps after the readers' last look: nobody else answers.
            self.reads.refuse_all();
        } else {
            self.reads.arrived.notify_one();
        }
        let answer = self
            .patience
            .within(started, async {
                answered.await.unwrap_or_else(|_| Answer::Failed(closed()))
            })
            .await?;
        match answer {
            Answer::Row(row) => Ok(row),
            Answer::Failed(error) => Err(error),
            Answer::Alone => {
                let values = Values::find(id);
                self.run_since(started, &values, |c, s, v| c.find(s, v))
                    .await
            }
        }
    }

    async fn touch(&self, target: &Target, now: OffsetDateTime) -> Result<bool, InfraError> {
        let values = Values::touch(target, now);
        self.run(&values, |c, s, v| c.touch(s, v)).await
    }

    async fn touch_and_find(
        &self,
        target: &Target,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRow>, InfraError> {
        let values = Values::touch(target, now);
        self.run(&values, |c, s, v| c.touch_and_find(s, v)).await
    }

    async fn close(&self) {
        self.reads.closed.store(true, Ordering::SeqCst);
        self.reads.arrived.notify_one();
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for connection in idle {
            connection.close().await.ok();
        }
    }
}

/// The statements every backend runs alike, on `$connection` of database `$database`; `$more`
/// are the backend's own.
macro_rules! backend {
    ($connection:ty, $database:ty $(, $more:item)*) => {
        impl Backend for $connection {
            fn find_many<'c>(
                &'c mut self,
                sql: &'c Arc<str>,
                ids: &'c [i64],
            ) -> BoxFuture<'c, Result<Vec<SessionRow>, sqlx::Error>> {
                Box::pin(async move {
                    let mut arguments = <$database as Database>::Arguments::default();
                    for id in ids {
                        arguments.add(*id).map_err(sqlx::Error::Encode)?;
                    }
                    sqlx::query_as_with(AssertSqlSafe(sql.clone()), arguments)
                        .fetch_all(self)
                        .await
                })
            }

            fn find<'c>(
                &'c mut self,
                statements: &'c Statements,
                values: &'c Values,
            ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>> {
                Box::pin(async move {
                    let arguments = values.arguments::<$database>(&statements.find)?;
                    sqlx::query_as_with(statements.find.sql(), arguments)
                        .fetch_optional(self)
                        .await
                })
            }

            fn touch<'c>(
                &'c mut self,
                statements: &'c Statements,
                values: &'c Values,
            ) -> BoxFuture<'c, Result<bool, sqlx::Error>> {
                Box::pin(async move {
                    let prepared = &statements.touch[values.variant()];
                    let arguments = values.arguments::<$database>(prepared)?;
                    let done = sqlx::query_with(prepared.sql(), arguments)
                        .execute(self)
                        .await?;
                    Ok(done.rows_affected() == 1)
                })
            }

            $($more)*
        }
    };
}

backend!(
    PgConnection,
    Postgres,
    /// `UPDATE ... RETURNING` joined with the user: one statement.
    fn touch_and_find<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>> {
        Box::pin(async move {
            let Some(prepared) = statements
                .touch_and_find
                .as_ref()
                .and_then(|all| all.get(values.variant()))
            else {
                return Err(sqlx::Error::Protocol(
                    "no touch-and-read statement was rendered".into(),
                ));
            };
            let arguments = values.arguments::<Postgres>(prepared)?;
            sqlx::query_as_with(prepared.sql(), arguments)
                .fetch_optional(self)
                .await
        })
    }
);
backend!(MySqlConnection, MySql);
backend!(SqliteConnection, Sqlite);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_backend_renders_every_statement_with_only_known_parameters() {
        for backend in [DbBackend::Postgres, DbBackend::MySql, DbBackend::Sqlite] {
            let statements = Statements::render(backend).unwrap();
            assert_eq!(statements.find.params, [Param::Id]);
            assert_eq!(statements.find_many.len(), BATCH_SIZES.len());
            assert_eq!(statements.touch.len(), 4);
            assert_eq!(
                statements.touch_and_find.is_some(),
                backend == DbBackend::Postgres
            );
        }
    }

    #[test]
    fn a_value_used_twice_is_bound_twice_and_every_placeholder_has_its_value() {
        let count = |backend, param| {
            let statements = Statements::render(backend).unwrap();
            let all = &statements.touch[3];
            all.params.iter().filter(|p| **p == param).count()
        };
        // The absolute cutoff compares two columns.
        assert_eq!(count(DbBackend::MySql, Param::Absolute), 2);
        assert_eq!(count(DbBackend::Sqlite, Param::Absolute), 2);
        let postgres = Statements::render(DbBackend::Postgres).unwrap();
        let touch = &postgres.touch[3];
        let placeholders = touch.sql.matches('$').count();
        assert_eq!(placeholders, touch.params.len());
    }

    #[test]
    fn variants_follow_the_absolute_limit_and_the_address_check() {
        let statements = Statements::render(DbBackend::Postgres).unwrap();
        for (variant, (absolute, ip)) in VARIANTS.into_iter().enumerate() {
            let params = &statements.touch[variant].params;
            assert_eq!(params.contains(&Param::Absolute), absolute, "{variant}");
            assert_eq!(params.contains(&Param::Ip), ip, "{variant}");
            assert!(params.contains(&Param::Now) && params.contains(&Param::TokenHash));
        }
    }
}
