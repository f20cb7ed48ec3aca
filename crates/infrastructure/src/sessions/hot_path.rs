//! The hot path: recognition's statements (R2's read, R3's touch, and with `touch_interval = 0`
//! the touch-and-read), rendered once at start-up from `table`'s vocabulary, and run by one of
//! two strategies chosen once per database.
//!
//! Rendering: each statement is built with SeaQuery from the same conditions every other
//! statement uses, with a distinct marker value in place of each request value; the rendered
//! statement's values then say which request value each placeholder takes (PostgreSQL numbers
//! its placeholders, MySQL and SQLite bind one used twice twice, and the markers cover both).
//!
//! Strategies: SQLite runs them on the shared pool (its "round trip" is a hop to a thread in
//! the same process). PostgreSQL and MySQL/MariaDB run them on connections of their own,
//! because sqlx's pool answers every connection's return with a round trip (its "ping on
//! release": a `Sync` on PostgreSQL, `COM_PING` on MySQL) from a task it spawns, which doubled
//! the round trips and wake-ups per request. These connections go back to the idle list
//! synchronously, and a checkout that did not finish cleanly (an error, or a request cancelled
//! mid-statement) closes its connection instead of returning it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sea_query::{
    Expr, MysqlQueryBuilder, PostgresQueryBuilder, Query, SqliteQueryBuilder,
};
use sea_orm::sqlx::error::BoxDynError;
use sea_orm::sqlx::mysql::{MySql, MySqlConnection};
use sea_orm::sqlx::postgres::{PgConnection, Postgres};
use sea_orm::sqlx::{
    self, Arguments, AssertSqlSafe, ColumnIndex, Connection, Database, Decode, Encode, FromRow,
    Row, Type,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnectionType, DbBackend, EntityName, FromQueryResult,
    IdenStatic, QueryFilter, QueryTrait, Statement, Value,
};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, SemaphorePermit};
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
            touch: VARIANTS
                .into_iter()
                .map(render_touch)
                .collect::<Result<_, _>>()?,
            touch_and_find,
        })
    }
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

/// The hot path for `store`: connections of its own on PostgreSQL and MySQL/MariaDB (sized
/// and timed like the pool, waiting for the database as the store does), the shared pool on
/// SQLite (and on a disconnected handle, which only renders the statements).
pub(crate) fn for_database(store: &Store) -> Result<Arc<dyn HotPath>, InfraError> {
    let db = &store.conn;
    let patience = store.patience.clone();
    Ok(match &db.inner {
        DatabaseConnectionType::SqlxPostgresPoolConnection(_) => {
            Arc::new(Connections::<PgConnection>::like(
                db.get_postgres_connection_pool(),
                Statements::render(DbBackend::Postgres)?,
                patience,
            ))
        }
        DatabaseConnectionType::SqlxMySqlPoolConnection(_) => {
            Arc::new(Connections::<MySqlConnection>::like(
                db.get_mysql_connection_pool(),
                Statements::render(DbBackend::MySql)?,
                patience,
            ))
        }
        _ => Arc::new(SharedPool {
            store: store.clone(),
            backend: DbBackend::Sqlite,
            statements: Statements::render(DbBackend::Sqlite)?,
        }),
    })
}

/// The shared pool (SQLite).
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

/// Up to `size` connections, opened on first need and kept open.
struct Connections<C: Connection> {
    options: C::Options,
    idle: Mutex<Vec<C>>,
    permits: Semaphore,
    acquire_timeout: Duration,
    statements: Statements,
    patience: Arc<Patience>,
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
    fn like(pool: &sqlx::Pool<C::Database>, statements: Statements, patience: Arc<Patience>) -> Self
    where
        C::Database: Database<Connection = C>,
    {
        let options = pool.options();
        Self {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.get_max_connections().max(1) as usize),
            acquire_timeout: options.get_acquire_timeout(),
            statements,
            patience,
        }
    }

    /// Runs `work` on a connection, waiting for the database. Every statement here is safe to
    /// repeat, so when a connection fails (the server restarted or ended it), the kept ones
    /// are presumed broken too and dropped, and the work runs again on a new connection.
    async fn run<T>(
        &self,
        values: &Values,
        work: impl for<'c> Fn(
            &'c mut C,
            &'c Statements,
            &'c Values,
        ) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, InfraError> {
        let work = &work;
        self.patience
            .run(|| async move {
                let mut checkout = self.checkout().await?;
                match work(&mut checkout.connection, &self.statements, values).await {
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
            })
            .await
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
trait Backend: Connection {
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
    fn touch_and_find<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>>;
}

#[async_trait]
impl<C: Backend> HotPath for Connections<C> {
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError> {
        self.run(&Values::find(id), |c, s, v| c.find(s, v)).await
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
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for connection in idle {
            connection.close().await.ok();
        }
    }
}

impl Backend for PgConnection {
    fn find<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>> {
        Box::pin(async move {
            let arguments = values.arguments::<Postgres>(&statements.find)?;
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
            let arguments = values.arguments::<Postgres>(prepared)?;
            let done = sqlx::query_with(prepared.sql(), arguments)
                .execute(self)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

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
}

impl Backend for MySqlConnection {
    fn find<'c>(
        &'c mut self,
        statements: &'c Statements,
        values: &'c Values,
    ) -> BoxFuture<'c, Result<Option<SessionRow>, sqlx::Error>> {
        Box::pin(async move {
            let arguments = values.arguments::<MySql>(&statements.find)?;
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
            let arguments = values.arguments::<MySql>(prepared)?;
            let done = sqlx::query_with(prepared.sql(), arguments)
                .execute(self)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Two statements on one connection: the conditional touch, then the read.
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
