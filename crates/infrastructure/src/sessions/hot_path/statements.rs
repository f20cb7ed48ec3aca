//! Recognition's statements, rendered once at start-up from `table`'s vocabulary: each is
//! built with SeaQuery from the same conditions every other statement on the table uses, with
//! a distinct marker value in place of each request value; the rendered statement's values
//! then say which request value each placeholder takes (PostgreSQL numbers its placeholders,
//! MySQL and SQLite bind one used twice twice, and the markers cover both). No SQL is written
//! here by hand. Also the request's values, bound in each statement's order.

use std::sync::Arc;

use sea_orm::sea_query::{
    Alias, Asterisk, CommonTableExpression, Expr, ExprTrait, JoinType, MysqlQueryBuilder,
    PostgresQueryBuilder, Query, SqliteQueryBuilder, WithClause,
};
use sea_orm::sqlx::error::BoxDynError;
use sea_orm::sqlx::{self, Arguments, AssertSqlSafe, Database, Encode, Type};
use sea_orm::{ColumnTrait, DbBackend, QueryFilter, QueryTrait, Statement, Value};
use time::OffsetDateTime;
use websessions_domain::ports::Target;
use websessions_domain::{InfraError, SessionId};

use crate::entity::{sessions, users};
use crate::sessions::table::{Bound, RECORD_COLUMNS, hash_bytes, matching, select_records, unix};

/// A request value a prebuilt statement takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Param {
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
pub(super) struct Prepared {
    pub(super) sql: Arc<str>,
    pub(super) params: Vec<Param>,
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
    pub(super) fn sql(&self) -> AssertSqlSafe<Arc<str>> {
        AssertSqlSafe(self.sql.clone())
    }
}

/// (absolute limit on, address check on), in `Values::variant` order.
pub(super) const VARIANTS: [(bool, bool); 4] =
    [(false, false), (false, true), (true, false), (true, true)];

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
pub(super) struct Statements {
    pub(super) find: Prepared,
    /// The read of `BATCH_SIZES[i]` sessions by id, whose placeholders all take ids, in order.
    pub(super) find_many: Vec<Arc<str>>,
    pub(super) touch: Vec<Prepared>,
    /// PostgreSQL's touch-and-read in one statement (`UPDATE ... RETURNING` joined with the
    /// user). MySQL and SQLite touch, then read.
    pub(super) touch_and_find: Option<Vec<Prepared>>,
}

impl Statements {
    pub(super) fn render(backend: DbBackend) -> Result<Self, InfraError> {
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
                        let touched = Alias::new("touched");
                        let mut update = touch(variant);
                        update.returning(Query::returning().columns(RECORD_COLUMNS));
                        let cte = CommonTableExpression::new()
                            .query(update)
                            .table_name(touched.clone())
                            .to_owned();
                        let (sql, values) = Query::select()
                            .column((touched.clone(), Asterisk))
                            .column((users::Entity, users::Column::Username))
                            .column((users::Entity, users::Column::Superuser))
                            .from(touched.clone())
                            .join(
                                JoinType::LeftJoin,
                                users::Entity,
                                Expr::col((users::Entity, users::Column::Id))
                                    .equals((touched, sessions::Column::UserId)),
                            )
                            .to_owned()
                            .with(WithClause::new().cte(cte).to_owned())
                            .build(PostgresQueryBuilder);
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
pub(super) const MAX_BATCH: usize = 32;

/// The batch sizes statements are rendered for; a batch is padded to the next one (with its
/// last id again), so each connection prepares at most this many reads.
pub(super) const BATCH_SIZES: [usize; 6] = [1, 2, 4, 8, 16, MAX_BATCH];

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
pub(super) struct Values {
    now: i64,
    id: i64,
    token_hash: Vec<u8>,
    idle: i64,
    absolute: Option<i64>,
    ip: Option<String>,
}

impl Values {
    pub(super) fn find(id: SessionId) -> Self {
        Self {
            now: 0,
            id: id.get(),
            token_hash: Vec::new(),
            idle: 0,
            absolute: None,
            ip: None,
        }
    }

    pub(super) fn touch(target: &Target, now: OffsetDateTime) -> Self {
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
    pub(super) fn variant(&self) -> usize {
        usize::from(self.absolute.is_some()) * 2 + usize::from(self.ip.is_some())
    }

    /// The values in `prepared`'s order, for a sqlx connection.
    pub(super) fn arguments<DB: Database>(
        &self,
        prepared: &Prepared,
    ) -> Result<DB::Arguments, sqlx::Error>
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
