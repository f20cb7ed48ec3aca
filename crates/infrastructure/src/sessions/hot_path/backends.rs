//! Each database's way of running the prebuilt statements on one of its connections: one
//! `backend!` line per backend (PostgreSQL adds its one-statement touch-and-read), and how a
//! row is read back from any of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sea_orm::sqlx::mysql::{MySql, MySqlConnection};
use sea_orm::sqlx::postgres::{PgConnection, Postgres};
use sea_orm::sqlx::sqlite::{Sqlite, SqliteConnection};
use sea_orm::sqlx::{
    self, Arguments, AssertSqlSafe, ColumnIndex, Connection, Database, Decode, FromRow, Row, Type,
};

use super::statements::{Statements, Values};
use crate::sessions::table::SessionRow;

pub(super) type BoxFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// A backend's way of running the prebuilt statements on one of its connections.
pub(super) trait Backend: Connection + Sized {
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
