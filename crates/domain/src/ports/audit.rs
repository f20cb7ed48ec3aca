//! The audit trail's storage (R19): records appended in sequence order after the chain's
//! head, across processes, and read back in that order.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditEntry, AuditFilter, ChainEnds, Stored};
use crate::error::InfraError;
use crate::ports::Sweep;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditTrail: Send + Sync {
    /// Appends `entries`, in order, in a transaction of their own: each is linked to the one
    /// before it, the first to the chain's head, which is locked last, just before COMMIT, so
    /// appends of any number of processes form one chain.
    async fn append(&self, entries: Vec<AuditEntry>) -> Result<(), InfraError>;

    /// The chain's anchor (where `verify` starts) and head (its newest record).
    async fn ends(&self) -> Result<ChainEnds, InfraError>;

    /// At most `limit` records after sequence number `seq`, in sequence order.
    async fn after(&self, seq: u64, limit: u64) -> Result<Vec<Stored>, InfraError>;

    /// The records `filter` selects, in sequence order, at most `filter.limit`.
    async fn page(&self, filter: &AuditFilter) -> Result<Vec<Stored>, InfraError>;

    /// Retention: deletes the records older than `before` from the chain's start, `batch`
    /// per transaction, each moving the anchor to the last record it deleted, as much as
    /// `sweep` says; how many it deleted. The head keeps its place even when its record goes
    /// (the anchor then equals it), so the next append links on.
    async fn expire(
        &self,
        before: OffsetDateTime,
        batch: u64,
        sweep: Sweep,
    ) -> Result<u64, InfraError>;
}
