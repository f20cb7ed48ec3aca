//! `AccountStore` on SeaORM: one transaction over a user's row and sessions. Its first
//! statement always writes the user's row (`lock_user`): on PostgreSQL and MySQL/MariaDB that
//! takes the row lock before any session row, so every change that ends several of a user's
//! sessions (logins, password changes and resets, disabling, deletion, ending all sessions)
//! locks in one order and none deadlocks; on SQLite it takes the database's write lock before
//! any read, so no transaction fails to upgrade. Its audit records (R19) are appended by
//! `commit`, just before COMMIT: the chain's head is the last lock it takes.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, TransactionTrait};
use time::OffsetDateTime;
use websessions_domain::audit::AuditEntry;
use websessions_domain::ports::{
    AccountChange, AccountStore, Expect, NewSession, Target, UserSessions,
};
use websessions_domain::{InfraError, PasswordHash, SessionId, TokenHash, UserId};

use crate::audit::append_in;
use crate::db::Store;
use crate::entity::{sessions, users};
use crate::error::{interrupted, lost, retry};
use crate::patience::Failure;
use crate::sessions::table::{hash_bytes, matches, unix, user_sessions};
use crate::sessions::{insert, inserted};

/// Account transactions on SeaORM.
#[derive(Clone, Debug)]
pub struct SeaAccounts {
    store: Store,
}

impl SeaAccounts {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AccountStore for SeaAccounts {
    /// Waits for the database to begin; a statement the connection then fails interrupts the
    /// transaction (`InfraError::Interrupted`: the domain runs it again), and a COMMIT whose
    /// answer was lost is unavailability (never replayed).
    #[tracing::instrument(level = "debug", skip_all)]
    async fn begin(&self) -> Result<Box<dyn AccountChange>, InfraError> {
        let txn = self
            .store
            .run(|db| async move { db.begin().await.map_err(retry) })
            .await?;
        Ok(Box::new(SeaAccountChange {
            txn,
            audit: Vec::new(),
        }))
    }
}

/// One account transaction; dropped without `commit`, it rolls back.
struct SeaAccountChange {
    txn: DatabaseTransaction,
    /// Records appended just before COMMIT.
    audit: Vec<AuditEntry>,
}

impl SeaAccountChange {
    async fn update_user(
        &self,
        user: UserId,
        update: sea_orm::UpdateMany<users::Entity>,
    ) -> Result<bool, InfraError> {
        let result = update
            .filter(users::Column::Id.eq(user.0))
            .exec(&self.txn)
            .await
            .map_err(interrupted)?;
        Ok(result.rows_affected == 1)
    }

    async fn update_session(
        &self,
        update: sea_orm::UpdateMany<sessions::Entity>,
    ) -> Result<bool, InfraError> {
        let result = update.exec(&self.txn).await.map_err(interrupted)?;
        Ok(result.rows_affected == 1)
    }
}

#[async_trait]
impl AccountChange for SeaAccountChange {
    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn lock_user(&mut self, user: UserId, expect: Expect) -> Result<bool, InfraError> {
        // A write of a column that is not a key: a row lock that inserts of the user's sessions
        // (which only share-lock the key) do not wait for.
        let mut update = users::Entity::update_many()
            .col_expr(users::Column::Disabled, Expr::col(users::Column::Disabled));
        if let Expect::Unchanged(hash) = expect {
            update = update
                .filter(users::Column::Disabled.eq(false))
                .filter(users::Column::PasswordHash.eq(hash.as_str()));
        }
        self.update_user(user, update).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn record_login(&mut self, user: UserId, now: OffsetDateTime) -> Result<(), InfraError> {
        let update = users::Entity::update_many()
            .col_expr(users::Column::LastLoginAt, Expr::value(unix(now)));
        self.update_user(user, update).await.map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn bind(
        &mut self,
        target: &Target,
        user: UserId,
        new_hash: TokenHash,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let now = unix(now);
        let update = sessions::Entity::update_many()
            .col_expr(sessions::Column::UserId, Expr::value(user.0))
            .col_expr(
                sessions::Column::TokenHash,
                Expr::value(hash_bytes(&new_hash)),
            )
            .col_expr(sessions::Column::AuthenticatedAt, Expr::value(now))
            .col_expr(sessions::Column::LastActivityAt, Expr::value(now))
            .filter(matches(target));
        self.update_session(update).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn rotate(
        &mut self,
        target: &Target,
        user: UserId,
        new_hash: TokenHash,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let update = sessions::Entity::update_many()
            .col_expr(
                sessions::Column::TokenHash,
                Expr::value(hash_bytes(&new_hash)),
            )
            .col_expr(sessions::Column::LastActivityAt, Expr::value(unix(now)))
            .filter(matches(target))
            .filter(sessions::Column::UserId.eq(user.0));
        self.update_session(update).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn create_session(&mut self, session: NewSession) -> Result<SessionId, InfraError> {
        let id = insert(&self.txn, &session).await.map_err(interrupted)?;
        inserted(id)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn end_sessions(&mut self, which: UserSessions) -> Result<u64, InfraError> {
        let result = sessions::Entity::delete_many()
            .filter(user_sessions(&which))
            .exec(&self.txn)
            .await
            .map_err(interrupted)?;
        Ok(result.rows_affected)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn set_password(
        &mut self,
        user: UserId,
        hash: PasswordHash,
        now: OffsetDateTime,
    ) -> Result<(), InfraError> {
        let update = users::Entity::update_many()
            .col_expr(users::Column::PasswordHash, Expr::value(hash.as_str()))
            .col_expr(users::Column::PasswordChangedAt, Expr::value(unix(now)));
        self.update_user(user, update).await.map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn set_disabled(&mut self, user: UserId, disabled: bool) -> Result<bool, InfraError> {
        let update = users::Entity::update_many()
            .col_expr(users::Column::Disabled, Expr::value(disabled))
            .filter(users::Column::Disabled.ne(disabled));
        self.update_user(user, update).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(user = user.0))]
    async fn delete_user(&mut self, user: UserId) -> Result<u64, InfraError> {
        // The session rows first (valid or not), though the foreign key would cascade: the
        // order of locks stays the user's row, then sessions.
        let sessions = sessions::Entity::delete_many()
            .filter(sessions::Column::UserId.eq(user.0))
            .exec(&self.txn)
            .await
            .map_err(interrupted)?
            .rows_affected;
        users::Entity::delete_by_id(user.0)
            .exec(&self.txn)
            .await
            .map_err(interrupted)?;
        Ok(sessions)
    }

    fn audit(&mut self, entry: AuditEntry) {
        self.audit.push(entry);
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn commit(self: Box<Self>) -> Result<(), InfraError> {
        append_in(&self.txn, &self.audit)
            .await
            .map_err(|failure| match failure {
                Failure::Retry(error) => InfraError::Interrupted(error),
                Failure::Final(error) => error,
            })?;
        self.txn.commit().await.map_err(lost)
    }
}
