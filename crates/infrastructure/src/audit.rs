//! `AuditTrail` on SeaORM (R19). An append locks the chain's head row and reads it (SELECT
//! ... FOR UPDATE on PostgreSQL and MySQL/MariaDB; on SQLite a write first, which takes the
//! database's write lock), links its records after it, and moves it: the last statements
//! before COMMIT, so appends of any number of processes form one chain and hold the head only
//! briefly.

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use time::OffsetDateTime;
use websessions_domain::InfraError;
use websessions_domain::audit::{
    AuditEntry, AuditEvent, AuditFilter, AuditRecord, ChainEnds, ChainHash, ChainPoint, Stored,
};
use websessions_domain::ports::{AuditTrail, Sweep};

use crate::db::Store;
use crate::entity::{audit_chain, audit_records};
use crate::error::{corrupt, lost, retry};
use crate::patience::Failure;
use crate::sessions::table::{from_unix, unix};

/// The chain's one row.
const CHAIN: i32 = 1;

/// The audit trail stored with SeaORM.
#[derive(Clone, Debug)]
pub struct SeaAudit {
    store: Store,
}

impl SeaAudit {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn point(seq: i64, hash: &[u8]) -> Result<ChainPoint, InfraError> {
    Ok(ChainPoint {
        seq: u64::try_from(seq).map_err(|_| corrupt("audit sequence number"))?,
        hash: ChainHash::from_slice(hash).ok_or_else(|| corrupt("audit chain hash"))?,
    })
}

/// The first whole second at or after `at`, in Unix seconds.
fn whole_second_at_or_after(at: OffsetDateTime) -> i64 {
    unix(at).saturating_add(i64::from(at.nanosecond() > 0))
}

fn seq(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// Locks the chain's row in `txn` and reads it, with a locking read (FOR UPDATE). A plain
/// read would see the transaction's snapshot on MySQL/MariaDB (REPEATABLE READ), taken at its
/// first read, which may be older than the head it then locks: two appends would take one
/// sequence number. SQLite has no row locks (it ignores FOR UPDATE): there a write that
/// changes nothing takes the database's write lock first, so the read cannot go stale.
async fn lock_chain<C: ConnectionTrait>(txn: &C) -> Result<audit_chain::Model, Failure> {
    if txn.get_database_backend() == DbBackend::Sqlite {
        audit_chain::Entity::update_many()
            .col_expr(
                audit_chain::Column::HeadSeq,
                Expr::col(audit_chain::Column::HeadSeq),
            )
            .filter(audit_chain::Column::Id.eq(CHAIN))
            .exec(txn)
            .await
            .map_err(retry)?;
    }
    audit_chain::Entity::find_by_id(CHAIN)
        .lock_exclusive()
        .one(txn)
        .await
        .map_err(retry)?
        .ok_or_else(|| Failure::Final(corrupt("audit chain (its row is missing)")))
}

/// What a change in `recorded` answers: its value, and the records that go with it.
pub(crate) type Recording<'t, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<(T, Vec<AuditEntry>), Failure>> + Send + 't>>;

/// One transaction on `store`: `work` makes a change and says which records go with it, which
/// are appended last, just before COMMIT (R19: the change and its records commit together).
/// A connection that fails before the COMMIT runs it all again; once the COMMIT was sent it is
/// never replayed, since the records would be appended twice.
pub(crate) async fn recorded<T>(
    store: &Store,
    work: impl for<'t> Fn(&'t DatabaseTransaction) -> Recording<'t, T> + Sync,
) -> Result<T, InfraError> {
    let work = &work;
    store
        .run(|db| async move {
            let txn = db.begin().await.map_err(retry)?;
            let (value, records) = work(&txn).await?;
            append_in(&txn, &records).await?;
            txn.commit().await.map_err(|e| Failure::from(lost(e)))?;
            Ok(value)
        })
        .await
}

/// Appends `entries` after the chain's head in `txn`, locking the head first: call it last,
/// just before COMMIT.
pub(crate) async fn append_in<C: ConnectionTrait>(
    txn: &C,
    entries: &[AuditEntry],
) -> Result<(), Failure> {
    if entries.is_empty() {
        return Ok(());
    }
    let head = lock_chain(txn).await?;
    let mut last = point(head.head_seq, &head.head_hash).map_err(Failure::Final)?;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in entries {
        let record = AuditRecord::link(last.seq + 1, entry.clone(), last.hash);
        last = ChainPoint {
            seq: record.seq,
            hash: record.hash,
        };
        rows.push(row(&record));
    }
    audit_records::Entity::insert_many(rows)
        .exec(txn)
        .await
        .map_err(retry)?;
    audit_chain::Entity::update_many()
        .col_expr(audit_chain::Column::HeadSeq, Expr::value(seq(last.seq)))
        .col_expr(
            audit_chain::Column::HeadHash,
            Expr::value(last.hash.0.to_vec()),
        )
        .filter(audit_chain::Column::Id.eq(CHAIN))
        .exec(txn)
        .await
        .map_err(retry)?;
    Ok(())
}

fn row(record: &AuditRecord) -> audit_records::ActiveModel {
    let entry = &record.entry;
    audit_records::ActiveModel {
        seq: Set(seq(record.seq)),
        at: Set(unix(entry.at)),
        event: Set(entry.event.as_str().to_owned()),
        username: Set(entry.username.clone()),
        actor: Set(entry.actor.clone()),
        session_id: Set(entry.session_id),
        client_ip: Set(entry.client_ip.clone()),
        user_agent: Set(entry.user_agent.clone()),
        details: Set(entry.details_json()),
        prev_hash: Set(record.prev_hash.0.to_vec()),
        hash: Set(record.hash.0.to_vec()),
    }
}

/// A stored row as a record; unreadable when it could not have been written (it was changed).
fn stored(row: audit_records::Model) -> Stored {
    let read = || -> Option<AuditRecord> {
        let mut entry = AuditEntry::new(AuditEvent::parse(&row.event)?, from_unix(row.at).ok()?);
        entry.username = row.username.clone();
        entry.actor = row.actor.clone();
        entry.session_id = row.session_id;
        entry.client_ip = row.client_ip.clone();
        entry.user_agent = row.user_agent.clone();
        entry.details = AuditEntry::parse_details(&row.details)?;
        // Only the canonical text could have been written: any other spelling of the same
        // details (a duplicate key, spaces, escapes) was changed in the database.
        if entry.details_json() != row.details {
            return None;
        }
        Some(AuditRecord {
            seq: u64::try_from(row.seq).ok()?,
            entry,
            prev_hash: ChainHash::from_slice(&row.prev_hash)?,
            hash: ChainHash::from_slice(&row.hash)?,
        })
    };
    match read() {
        Some(record) => Stored::Record(Box::new(record)),
        None => Stored::Unreadable {
            seq: u64::try_from(row.seq).unwrap_or(0),
        },
    }
}

#[async_trait]
impl AuditTrail for SeaAudit {
    #[tracing::instrument(level = "debug", skip_all, fields(records = entries.len()))]
    async fn append(&self, entries: Vec<AuditEntry>) -> Result<(), InfraError> {
        recorded(&self.store, |_| {
            let entries = entries.clone();
            Box::pin(async move { Ok(((), entries)) })
        })
        .await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn ends(&self) -> Result<ChainEnds, InfraError> {
        let chain = self
            .store
            .run(|db| async move {
                audit_chain::Entity::find_by_id(CHAIN)
                    .one(db)
                    .await
                    .map_err(retry)
            })
            .await?
            .ok_or_else(|| corrupt("audit chain (its row is missing)"))?;
        Ok(ChainEnds {
            anchor: point(chain.anchor_seq, &chain.anchor_hash)?,
            head: point(chain.head_seq, &chain.head_hash)?,
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(after = after, limit = limit))]
    async fn after(&self, after: u64, limit: u64) -> Result<Vec<Stored>, InfraError> {
        let rows = self
            .store
            .run(|db| async move {
                audit_records::Entity::find()
                    .filter(audit_records::Column::Seq.gt(seq(after)))
                    .order_by_asc(audit_records::Column::Seq)
                    .limit(limit)
                    .all(db)
                    .await
                    .map_err(retry)
            })
            .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit = filter.limit))]
    async fn page(&self, filter: &AuditFilter) -> Result<Vec<Stored>, InfraError> {
        let mut find = audit_records::Entity::find();
        if let Some(name) = &filter.username {
            find = find.filter(audit_records::Column::Username.eq(name.as_str()));
        }
        if let Some(event) = filter.event {
            find = find.filter(audit_records::Column::Event.eq(event.as_str()));
        }
        // Records keep whole seconds: a bound between two seconds falls on the later one.
        if let Some(since) = filter.since {
            find = find.filter(audit_records::Column::At.gte(whole_second_at_or_after(since)));
        }
        if let Some(until) = filter.until {
            find = find.filter(audit_records::Column::At.lt(whole_second_at_or_after(until)));
        }
        if let Some(after) = filter.after {
            find = find.filter(audit_records::Column::Seq.gt(seq(after)));
        }
        let find = &find
            .order_by_asc(audit_records::Column::Seq)
            .limit(filter.limit);
        let rows = self
            .store
            .run(|db| async move { find.clone().all(db).await.map_err(retry) })
            .await?;
        Ok(rows.into_iter().map(stored).collect())
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn expire(
        &self,
        before: OffsetDateTime,
        batch: u64,
        sweep: Sweep,
    ) -> Result<u64, InfraError> {
        let before = unix(before);
        let mut deleted = 0;
        loop {
            let expired = self
                .store
                .run(|db| async move {
                    let txn = db.begin().await.map_err(retry)?;
                    let chain = lock_chain(&txn).await?;
                    // The chain's start, oldest first; only its unbroken run of old records
                    // goes (a record whose clock ran behind waits for the ones before it).
                    let start: Vec<(i64, i64, Vec<u8>)> = audit_records::Entity::find()
                        .select_only()
                        .column(audit_records::Column::Seq)
                        .column(audit_records::Column::At)
                        .column(audit_records::Column::Hash)
                        .filter(audit_records::Column::Seq.gt(chain.anchor_seq))
                        .order_by_asc(audit_records::Column::Seq)
                        .limit(batch)
                        .into_tuple()
                        .all(&txn)
                        .await
                        .map_err(retry)?;
                    let picked = start.len() as u64;
                    let Some((last, _, hash)) = start
                        .into_iter()
                        .take_while(|(_, at, _)| *at < before)
                        .last()
                    else {
                        return Ok((0, false));
                    };
                    let gone = audit_records::Entity::delete_many()
                        .filter(audit_records::Column::Seq.gt(chain.anchor_seq))
                        .filter(audit_records::Column::Seq.lte(last))
                        .exec(&txn)
                        .await
                        .map_err(retry)?
                        .rows_affected;
                    audit_chain::Entity::update_many()
                        .col_expr(audit_chain::Column::AnchorSeq, Expr::value(last))
                        .col_expr(audit_chain::Column::AnchorHash, Expr::value(hash))
                        .filter(audit_chain::Column::Id.eq(CHAIN))
                        .exec(&txn)
                        .await
                        .map_err(retry)?;
                    // Never replayed once its COMMIT was sent: the anchor moved with it.
                    txn.commit().await.map_err(|e| Failure::from(lost(e)))?;
                    Ok((gone, gone == picked && picked == batch))
                })
                .await?;
            deleted += expired.0;
            if !expired.1 || sweep == Sweep::OneBatch {
                return Ok(deleted);
            }
        }
    }
}
