//! `LockoutRepository` on SeaORM (R9). Every attempt on a username first writes that name's
//! row in `login_failures` (created when missing): the row lock it takes (the database's write
//! lock on SQLite) serialises all attempts on the name, in any number of processes, until
//! commit. Only then does the attempt read the lock, so it sees every lock an earlier attempt
//! started, and a lock and the count that started it commit together.

use async_trait::async_trait;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseTransaction, EntityTrait, QueryFilter,
    QuerySelect, TransactionTrait,
};
use time::OffsetDateTime;
use websessions_domain::audit::{AuditEntry, AuditEvent};
use websessions_domain::ports::{LockoutPurge, LockoutRepository, Sweep};
use websessions_domain::{Attempt, Counted, InfraError, LockoutPolicy, LockoutState, Username};

use crate::audit::recorded;
use crate::batches::Batches;
use crate::db::Store;
use crate::entity::{account_lockouts, login_failures, users};
use crate::error::{corrupt, lost, retry};
use crate::patience::Failure;
use crate::sessions::table::{from_unix, unix};

/// Failures and lockouts stored with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaLockouts {
    store: Store,
}

impl SeaLockouts {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// A stored count; one past what a `u32` holds saturates rather than failing the request.
fn count(stored: i64) -> u32 {
    u32::try_from(Ord::max(stored, 0)).unwrap_or(u32::MAX)
}

/// The lock on `name` in force at `now`, read in `db`: until when, and whether it is still
/// provisional (its lease runs).
/// Where a lock's lease stands at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lease {
    /// No lease: the lock stands.
    None,
    /// The attempt that started the lock is still being verified.
    Running,
    /// The lease ran out with no outcome: the lock stands, though nothing said so yet.
    Lapsed,
}

impl Lease {
    fn at(lease: Option<i64>, now: i64) -> Self {
        match lease {
            None => Self::None,
            Some(lease) if lease > now => Self::Running,
            Some(_) => Self::Lapsed,
        }
    }
}

async fn lock_in_force<C: sea_orm::ConnectionTrait>(
    db: &C,
    name: &str,
    now: i64,
) -> Result<Option<(i64, Lease)>, Failure> {
    let lock: Option<(i64, Option<i64>)> = account_lockouts::Entity::find_by_id(name)
        .select_only()
        .column(account_lockouts::Column::LockedUntil)
        .column(account_lockouts::Column::LeaseUntil)
        .filter(account_lockouts::Column::LockedUntil.gt(now))
        .into_tuple()
        .one(db)
        .await
        .map_err(retry)?;
    Ok(lock.map(|(until, lease)| (until, Lease::at(lease, now))))
}

/// Counts one attempt on `name` in `txn` with one upsert, which takes the name's row lock
/// whether the row existed or not; the count including it.
async fn count_attempt(txn: &DatabaseTransaction, name: &str, now: i64) -> Result<u32, Failure> {
    let incremented =
        Expr::col((login_failures::Entity, login_failures::Column::FailureCount)).add(1);
    login_failures::Entity::insert(login_failures::ActiveModel {
        username: Set(name.to_owned()),
        failure_count: Set(1),
        last_failure_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(login_failures::Column::Username)
            .value(login_failures::Column::FailureCount, incremented)
            .update_column(login_failures::Column::LastFailureAt)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await
    .map_err(retry)?;
    let stored: Option<i64> = login_failures::Entity::find_by_id(name)
        .select_only()
        .column(login_failures::Column::FailureCount)
        .into_tuple()
        .one(txn)
        .await
        .map_err(retry)?;
    Ok(count(stored.ok_or_else(|| corrupt("failure row"))?))
}

#[async_trait]
impl LockoutRepository for SeaLockouts {
    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn state(
        &self,
        username: &Username,
        now: OffsetDateTime,
    ) -> Result<LockoutState, InfraError> {
        let name = username.as_str();
        let (failures, locked_until) = self
            .store
            .run(|db| async move {
                let failures: Option<i64> = login_failures::Entity::find_by_id(name)
                    .select_only()
                    .column(login_failures::Column::FailureCount)
                    .into_tuple()
                    .one(db)
                    .await
                    .map_err(retry)?;
                Ok((failures, lock_in_force(db, name, unix(now)).await?))
            })
            .await?;
        Ok(LockoutState {
            failure_count: failures.map_or(0, count),
            locked_until: locked_until
                .map(|(until, _)| from_unix(until))
                .transpose()?,
            provisional: locked_until.is_some_and(|(_, lease)| lease == Lease::Running),
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn attempt(
        &self,
        username: &Username,
        now: OffsetDateTime,
        policy: LockoutPolicy,
    ) -> Result<Attempt, InfraError> {
        let name = username.as_str();
        // One transaction, run again whole if the connection fails before its COMMIT.
        let counted = self
            .store
            .run(|db| async move {
                let txn = db.begin().await.map_err(retry)?;
                let failure_count = count_attempt(&txn, name, unix(now)).await?;
                // Under the name's row lock: a lock committed by an earlier attempt is visible.
                if let Some(lock) = lock_in_force(&txn, name, unix(now)).await? {
                    // Dropping the transaction rolls the count back: a refused attempt counts
                    // nothing.
                    drop(txn);
                    return Ok(Err(lock));
                }
                let started_lock = policy.lock_after(failure_count, now);
                if let Some(until) = started_lock {
                    // Provisional while this attempt is verified (R9).
                    account_lockouts::Entity::insert(account_lockouts::ActiveModel {
                        username: Set(name.to_owned()),
                        locked_until: Set(unix(until)),
                        lease_until: Set(Some(unix(policy.lease_until(now)))),
                    })
                    .on_conflict(
                        OnConflict::column(account_lockouts::Column::Username)
                            .update_columns([
                                account_lockouts::Column::LockedUntil,
                                account_lockouts::Column::LeaseUntil,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(&txn)
                    .await
                    .map_err(retry)?;
                }
                txn.commit().await.map_err(|e| Failure::from(lost(e)))?;
                Ok(Ok(Counted {
                    failure_count,
                    started_lock,
                }))
            })
            .await?;
        match counted {
            Ok(counted) => Ok(Attempt::Counted(counted)),
            Err((_, Lease::Running)) => Ok(Attempt::Provisional),
            Err((until, lease)) => Ok(Attempt::Locked {
                until: from_unix(until)?,
                lapsed: lease == Lease::Lapsed,
            }),
        }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn verified(&self, username: &Username, counted: Counted) -> Result<(), InfraError> {
        // Only the lock this attempt started: a later one stands.
        let own = counted.started_lock.map(|until| {
            Condition::all().add(account_lockouts::Column::LockedUntil.eq(unix(until)))
        });
        self.forget(username.as_str(), own, &[]).await.map(drop)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn failed(
        &self,
        username: &Username,
        counted: Counted,
        audit: Vec<AuditEntry>,
    ) -> Result<(), InfraError> {
        let name = username.as_str().to_owned();
        recorded(&self.store, |txn| {
            let (name, audit) = (name.clone(), audit.clone());
            Box::pin(async move {
                let stands_now = match counted.started_lock {
                    Some(until) => stand(txn, &name, until).await?,
                    None => false,
                };
                // A lock its lapsed lease made stand was recorded then (`stood`).
                let records = audit
                    .into_iter()
                    .filter(|r| stands_now || r.event != AuditEvent::LockStarted)
                    .collect();
                Ok(((), records))
            })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(username = %username))]
    async fn stood(
        &self,
        username: &Username,
        until: OffsetDateTime,
        audit: AuditEntry,
    ) -> Result<bool, InfraError> {
        let name = username.as_str().to_owned();
        recorded(&self.store, |txn| {
            let (name, audit) = (name.clone(), audit.clone());
            Box::pin(async move {
                let stands_now = stand(txn, &name, until).await?;
                Ok((stands_now, if stands_now { vec![audit] } else { vec![] }))
            })
        })
        .await
    }

    async fn clear(&self, username: &Username, audit: AuditEntry) -> Result<bool, InfraError> {
        self.forget(username.as_str(), Some(Condition::all()), &[audit])
            .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(
        &self,
        now: OffsetDateTime,
        batch: u64,
        sweep: Sweep,
    ) -> Result<LockoutPurge, InfraError> {
        let now = unix(now);
        let expired = Batches::<account_lockouts::Entity> {
            key: account_lockouts::Column::Username,
            order: vec![account_lockouts::Column::LockedUntil],
            condition: Condition::all().add(account_lockouts::Column::LockedUntil.lte(now)),
        };
        let expired_locks = expired
            .delete::<String>(&self.store, batch, sweep, None)
            .await?;
        let orphans = Batches::<login_failures::Entity> {
            key: login_failures::Column::Username,
            order: vec![login_failures::Column::LastFailureAt],
            condition: orphan_failures(now),
        };
        let orphan_failures = orphans
            .delete::<String>(&self.store, batch, sweep, None)
            .await?;
        Ok(LockoutPurge {
            expired_locks,
            orphan_failures,
        })
    }
}

/// Makes `name`'s provisional lock until `until` stand (no lease); whether it was still
/// provisional.
async fn stand(
    txn: &DatabaseTransaction,
    name: &str,
    until: OffsetDateTime,
) -> Result<bool, Failure> {
    let result = account_lockouts::Entity::update_many()
        .col_expr(
            account_lockouts::Column::LeaseUntil,
            Expr::value(Option::<i64>::None),
        )
        .filter(account_lockouts::Column::Username.eq(name))
        .filter(account_lockouts::Column::LockedUntil.eq(unix(until)))
        .filter(account_lockouts::Column::LeaseUntil.is_not_null())
        .exec(txn)
        .await
        .map_err(retry)?;
    Ok(result.rows_affected == 1)
}

impl SeaLockouts {
    /// Deletes `name`'s failures and, when `lock` says which, its lock, in one transaction
    /// with `audit`'s records when anything went; whether anything did.
    async fn forget(
        &self,
        name: &str,
        lock: Option<Condition>,
        audit: &[AuditEntry],
    ) -> Result<bool, InfraError> {
        // Never replayed once its COMMIT was sent (R9): were the answer lost, running it again
        // would delete failures that other attempts counted since.
        recorded(&self.store, |txn| {
            let (name, lock, audit) = (name.to_owned(), lock.clone(), audit.to_vec());
            Box::pin(async move {
                // The failure row first: the same lock order as `attempt`.
                let mut gone = login_failures::Entity::delete_by_id(name.as_str())
                    .exec(txn)
                    .await
                    .map_err(retry)?
                    .rows_affected;
                if let Some(which) = lock {
                    gone += account_lockouts::Entity::delete_many()
                        .filter(account_lockouts::Column::Username.eq(name.as_str()))
                        .filter(which)
                        .exec(txn)
                        .await
                        .map_err(retry)?
                        .rows_affected;
                }
                Ok((gone > 0, if gone > 0 { audit } else { vec![] }))
            })
        })
        .await
    }
}

/// Failures of a name that has no account and no lock in force at `now` (R8). Batches walk
/// `last_failure_at`'s index; each candidate costs one lookup in the users' and the lockouts'
/// unique indexes.
fn orphan_failures(now: i64) -> Condition {
    let failure_name = || Expr::col((login_failures::Entity, login_failures::Column::Username));
    let account = Query::select()
        .expr(Expr::val(1))
        .from(users::Entity)
        .and_where(Expr::col((users::Entity, users::Column::Username)).eq(failure_name()))
        .to_owned();
    let lock = Query::select()
        .expr(Expr::val(1))
        .from(account_lockouts::Entity)
        .and_where(
            Expr::col((account_lockouts::Entity, account_lockouts::Column::Username))
                .eq(failure_name()),
        )
        .and_where(
            Expr::col((
                account_lockouts::Entity,
                account_lockouts::Column::LockedUntil,
            ))
            .gt(now),
        )
        .to_owned();
    Condition::all()
        .add(login_failures::Column::LastFailureAt.lte(now))
        .add(Expr::exists(account).not())
        .add(Expr::exists(lock).not())
}
