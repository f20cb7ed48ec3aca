//! Maintenance's batch loop (R8), the one for every table: each batch picks up to `batch` keys
//! in the order of an indexed column, then deletes those keys while they still match, so no
//! statement holds long locks, none scans a table, and a row that changed meanwhile is kept.
//! After each full batch it pauses as long as the batch took, so a large backlog takes at most
//! about half of the database's time from recognition (measured: purging 1 million rows flat
//! out tripled recognition's p99); a single batch never waits. A batch whose deletions are
//! audited (R19: sessions that had a user) deletes and records in one transaction.

use std::time::{Duration, Instant};

use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TryGetable, Value,
};
use websessions_domain::InfraError;
use websessions_domain::audit::AuditEntry;
use websessions_domain::ports::Sweep;

use crate::audit::recorded;
use crate::db::Store;
use crate::error::retry;

/// Deletions that are recorded: rows whose `owner` column (a whole number) is set are counted
/// into `entry`'s `count`, one record per batch that deleted any, in the transaction that
/// deletes them; the others are deleted unrecorded, as unaudited batches are.
pub(crate) struct Audited<'a, C> {
    pub(crate) owner: C,
    pub(crate) entry: &'a AuditEntry,
}

/// Which rows of `E` maintenance deletes, and how it finds them.
pub(crate) struct Batches<E: EntityTrait> {
    /// The column rows are picked and deleted by (a key).
    pub(crate) key: E::Column,
    /// The indexed columns batches walk in order (an index's columns, in its order).
    pub(crate) order: Vec<E::Column>,
    /// What is deleted; checked again when deleting.
    pub(crate) condition: Condition,
}

impl<E: EntityTrait> Batches<E> {
    /// Deletes what matches, as much as `sweep` says; how many rows went. Every statement is
    /// safe to repeat (a read, or a delete of what still matches), so each waits for the
    /// database on its own; an audited batch's COMMIT is never replayed.
    pub(crate) async fn delete<K>(
        &self,
        store: &Store,
        batch: u64,
        sweep: Sweep,
        audited: Option<Audited<'_, E::Column>>,
    ) -> Result<u64, InfraError>
    where
        K: TryGetable + Into<Value> + Send,
    {
        let mut deleted = 0;
        let mut previous: Option<Duration> = None;
        loop {
            if let Some(took) = previous {
                tokio::time::sleep(took).await;
            }
            let started = Instant::now();
            let mut pick = E::find()
                .select_only()
                .column(self.key)
                .filter(self.condition.clone());
            if let Some(audited) = &audited {
                pick = pick.column(audited.owner);
            }
            for column in &self.order {
                pick = pick.order_by_asc(*column);
            }
            let pick = &pick.limit(batch);
            let rows: Vec<(K, Option<i64>)> = if audited.is_some() {
                store
                    .run(|db| async move { pick.clone().into_tuple().all(db).await.map_err(retry) })
                    .await?
            } else {
                let keys: Vec<K> = store
                    .run(|db| async move { pick.clone().into_tuple().all(db).await.map_err(retry) })
                    .await?;
                keys.into_iter().map(|key| (key, None)).collect()
            };
            let picked = rows.len() as u64;
            if picked == 0 {
                return Ok(deleted);
            }
            let (owned, unowned): (Vec<_>, Vec<_>) =
                rows.into_iter().partition(|(_, owner)| owner.is_some());
            let delete = |keys: Vec<(K, Option<i64>)>| {
                E::delete_many()
                    .filter(self.key.is_in(keys.into_iter().map(|(key, _)| key)))
                    .filter(self.condition.clone())
            };
            if !unowned.is_empty() {
                let unowned = &delete(unowned);
                deleted += store
                    .run(|db| async move { unowned.clone().exec(db).await.map_err(retry) })
                    .await?
                    .rows_affected;
            }
            if let (Some(audited), false) = (&audited, owned.is_empty()) {
                deleted += Self::delete_recorded(store, &delete(owned), audited).await?;
            }
            if picked < batch || sweep == Sweep::OneBatch {
                return Ok(deleted);
            }
            previous = Some(started.elapsed());
        }
    }

    /// Deletes the rows of a batch that have an owner, and records how many went in the same
    /// transaction. A row that matches the condition can no longer change owner (sessions:
    /// binding a user needs a valid session), so the owner the batch read is the row's.
    async fn delete_recorded(
        store: &Store,
        owned: &sea_orm::DeleteMany<E>,
        audited: &Audited<'_, E::Column>,
    ) -> Result<u64, InfraError> {
        recorded(store, |txn| {
            let (owned, entry) = (owned.clone(), audited.entry.clone());
            Box::pin(async move {
                let gone = owned.exec(txn).await.map_err(retry)?.rows_affected;
                Ok((
                    gone,
                    if gone > 0 {
                        vec![entry.count(gone)]
                    } else {
                        vec![]
                    },
                ))
            })
        })
        .await
    }
}
