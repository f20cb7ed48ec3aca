//! `LockoutRepository` on SeaORM: failure counting and lock creation in one transaction, so
//! concurrent wrong guesses each get their own count and no threshold is skipped (R9).

use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use time::OffsetDateTime;
use websessions_domain::ports::{LockoutRepository, Sweep};
use websessions_domain::{InfraError, LockoutPolicy, LockoutState, RecordedFailure, Username};

use crate::entity::{account_lockouts, login_failures};
use crate::error::{corrupt, infra};
use crate::sessions::{from_unix, unix};

/// Failures and lockouts stored with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaLockouts {
    db: DatabaseConnection,
}

impl SeaLockouts {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

fn count(stored: i64) -> Result<u32, InfraError> {
    u32::try_from(stored).map_err(|_| corrupt("failure count"))
}

#[async_trait]
impl LockoutRepository for SeaLockouts {
    async fn state(
        &self,
        username: &Username,
        now: OffsetDateTime,
    ) -> Result<LockoutState, InfraError> {
        let failures: Option<i64> = login_failures::Entity::find_by_id(username.as_str())
            .select_only()
            .column(login_failures::Column::FailureCount)
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(infra)?;
        let locked_until: Option<i64> = account_lockouts::Entity::find_by_id(username.as_str())
            .select_only()
            .column(account_lockouts::Column::LockedUntil)
            .filter(account_lockouts::Column::LockedUntil.gt(unix(now)))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(infra)?;
        Ok(LockoutState {
            failure_count: failures.map(count).transpose()?.unwrap_or(0),
            locked_until: locked_until.map(from_unix).transpose()?,
        })
    }

    async fn record_failure(
        &self,
        username: &Username,
        now: OffsetDateTime,
        policy: LockoutPolicy,
    ) -> Result<RecordedFailure, InfraError> {
        let name = username.as_str().to_owned();
        let txn = self.db.begin().await.map_err(infra)?;
        // A write first: on SQLite it takes the write lock before any read, so concurrent
        // transactions wait for each other instead of failing to upgrade.
        login_failures::Entity::insert(login_failures::ActiveModel {
            username: Set(name.clone()),
            failure_count: Set(0),
            last_failure_at: Set(unix(now)),
        })
        .on_conflict_do_nothing_on([login_failures::Column::Username])
        .exec_without_returning(&txn)
        .await
        .map_err(infra)?;
        // The increment holds the row lock until commit, so the count read next is this
        // transaction's own.
        login_failures::Entity::update_many()
            .col_expr(
                login_failures::Column::FailureCount,
                Expr::col(login_failures::Column::FailureCount).add(1),
            )
            .col_expr(
                login_failures::Column::LastFailureAt,
                Expr::value(unix(now)),
            )
            .filter(login_failures::Column::Username.eq(name.as_str()))
            .exec(&txn)
            .await
            .map_err(infra)?;
        let stored: Option<i64> = login_failures::Entity::find_by_id(name.as_str())
            .select_only()
            .column(login_failures::Column::FailureCount)
            .into_tuple()
            .one(&txn)
            .await
            .map_err(infra)?;
        let failure_count = count(stored.ok_or_else(|| corrupt("failure row"))?)?;
        let locked_until = policy.lock_after(failure_count, now);
        if let Some(until) = locked_until {
            account_lockouts::Entity::insert(account_lockouts::ActiveModel {
                username: Set(name),
                locked_until: Set(unix(until)),
            })
            .on_conflict(
                OnConflict::column(account_lockouts::Column::Username)
                    .update_column(account_lockouts::Column::LockedUntil)
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(infra)?;
        }
        txn.commit().await.map_err(infra)?;
        Ok(RecordedFailure {
            failure_count,
            locked_until,
        })
    }

    async fn clear(&self, username: &Username) -> Result<(), InfraError> {
        let txn = self.db.begin().await.map_err(infra)?;
        login_failures::Entity::delete_by_id(username.as_str())
            .exec(&txn)
            .await
            .map_err(infra)?;
        account_lockouts::Entity::delete_by_id(username.as_str())
            .exec(&txn)
            .await
            .map_err(infra)?;
        txn.commit().await.map_err(infra)
    }

    async fn purge(
        &self,
        now: OffsetDateTime,
        batch: u64,
        sweep: Sweep,
    ) -> Result<u64, InfraError> {
        let mut deleted = 0;
        loop {
            let names: Vec<String> = account_lockouts::Entity::find()
                .select_only()
                .column(account_lockouts::Column::Username)
                .filter(account_lockouts::Column::LockedUntil.lte(unix(now)))
                .order_by_asc(account_lockouts::Column::LockedUntil)
                .limit(batch)
                .into_tuple()
                .all(&self.db)
                .await
                .map_err(infra)?;
            let picked = names.len() as u64;
            if picked == 0 {
                return Ok(deleted);
            }
            deleted += account_lockouts::Entity::delete_many()
                .filter(account_lockouts::Column::Username.is_in(names))
                .filter(account_lockouts::Column::LockedUntil.lte(unix(now)))
                .exec(&self.db)
                .await
                .map_err(infra)?
                .rows_affected;
            if picked < batch || sweep == Sweep::OneBatch {
                return Ok(deleted);
            }
        }
    }
}
