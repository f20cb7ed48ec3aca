//! Reads together: the queue of reads waiting to be sent. The reads of concurrent
//! recognitions are sent as one statement
//! (`WHERE id IN (...)`, up to `MAX_BATCH` ids), each request waiting for its own row of it.
//! Every request still reads its row from the database while it runs, and nothing outlives
//! it; what is shared is the round trip, the wake-ups and the database's statement overhead,
//! which were most of a recognition's CPU (tests/bench/profile.md). `READERS` readers send
//! batches, so a batch is never held back by the one before it. A batch is tried once: when
//! the database fails or hangs, each of its requests reads on its own, waiting for the
//! database as every other unit of work does (`patience`), and no request waits longer than
//! the wait in all, however many reads are queued.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::{Notify, oneshot};
use websessions_domain::InfraError;

use super::statements::MAX_BATCH;
use crate::sessions::table::SessionRow;

/// Readers sending batches at once.
pub(super) const READERS: usize = 2;

/// A recognition's read, waiting for a reader to send it.
pub(super) struct Read {
    pub(super) id: i64,
    pub(super) answer: oneshot::Sender<Answer>,
    /// The request's span: the batch that sends the read follows from it.
    pub(super) span: tracing::Span,
}

/// What a reader answers a read.
pub(super) enum Answer {
    /// The session's row, or none: read while the request waited.
    Row(Option<SessionRow>),
    Failed(InfraError),
    /// The batch's try met an unavailable database: the request reads on its own, waiting
    /// for the database as every other unit of work does (its own wait, its own place).
    Alone,
}

/// Reads waiting to be sent together.
#[derive(Default)]
pub(super) struct Reads {
    waiting: Mutex<Vec<Read>>,
    arrived: Notify,
    closed: AtomicBool,
}

impl Reads {
    fn waiting(&self) -> MutexGuard<'_, Vec<Read>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `read` for the next batch, or refuses it when recognition has closed.
    pub(super) fn push(&self, read: Read) {
        self.waiting().push(read);
        if self.closed.load(Ordering::SeqCst) {
            // Closed meanwhile, perhaps after the readers' last look: nobody else answers.
            self.refuse_all();
        } else {
            self.arrived.notify_one();
        }
    }

    /// Refuses every read from now on and wakes the readers so they stop.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.arrived.notify_one();
    }

    /// Waits for reads to arrive; `false` once recognition has closed (every waiting read
    /// refused, and the other readers woken to stop too).
    pub(super) async fn wait(&self) -> bool {
        self.arrived.notified().await;
        if self.closed.load(Ordering::SeqCst) {
            self.refuse_all();
            self.arrived.notify_one();
            return false;
        }
        true
    }

    /// Answers every waiting read that recognition has closed.
    pub(super) fn refuse_all(&self) {
        for read in std::mem::take(&mut *self.waiting()) {
            let _ = read.answer.send(Answer::Failed(closed()));
        }
    }

    /// Up to `MAX_BATCH` of the waiting reads, oldest first; reads whose request has gone
    /// (cancelled, or past its wait) are dropped, not sent.
    pub(super) fn take_batch(&self) -> Vec<Read> {
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

/// A read refused because recognition closed.
pub(super) fn closed() -> InfraError {
    InfraError::Unavailable(anyhow::anyhow!("recognition closed"))
}

/// The same failure again, for each request of a batch.
pub(super) fn copy(error: &InfraError) -> InfraError {
    let text = anyhow::anyhow!("{error:#}");
    match error {
        InfraError::Unavailable(_) => InfraError::Unavailable(text),
        InfraError::Interrupted(_) => InfraError::Interrupted(text),
        InfraError::Unexpected(_) => InfraError::Unexpected(text),
    }
}
