//! Recognition's connections of its own, up to the pool's size, opened on first need and kept
//! open. sqlx's pool answers every connection's return with a round trip (its "ping on
//! release": a `Sync` on PostgreSQL, `COM_PING` on MySQL, a hop to the connection's thread on
//! SQLite) from a task it spawns, which doubled the round trips and wake-ups per request.
//! These connections go back to the idle list synchronously, and a checkout that did not
//! finish cleanly (an error, or a request cancelled mid-statement) closes its connection
//! instead of returning it. Every statement run here is safe to repeat, so a failed one runs
//! again on a new connection, waiting for the database as every unit of work does.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::sqlx::{self, Connection, Database};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, SemaphorePermit, oneshot};
use tokio::time::Instant;
use tracing::Instrument;
use websessions_domain::ports::Target;
use websessions_domain::{InfraError, SessionId};

use super::HotPath;
use super::backends::Backend;
use super::backends::BoxFuture;
use super::batcher::{Answer, READERS, Read, Reads, closed, copy};
use super::statements::{BATCH_SIZES, Statements, Values};
use crate::error::retry_sqlx;
use crate::patience::{Failure, Patience};
use crate::sessions::table::SessionRow;

/// Up to `size` connections, opened on first need and kept open, and the reads waiting to be
/// sent together on them.
pub(super) struct Connections<C: Connection> {
    options: C::Options,
    idle: Mutex<Vec<C>>,
    permits: Semaphore,
    acquire_timeout: Duration,
    statements: Statements,
    patience: Arc<Patience>,
    reads: Reads,
}

impl<C: Connection> fmt::Debug for Connections<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("available", &self.permits.available_permits())
            .finish_non_exhaustive()
    }
}

impl<C: Backend + 'static> Connections<C> {
    /// As many connections as `pool` may hold, to the same database, with its acquire timeout,
    /// and the readers that send the batched reads on them.
    pub(super) fn start(
        pool: &sqlx::Pool<C::Database>,
        statements: Statements,
        patience: Arc<Patience>,
    ) -> Result<Arc<dyn HotPath>, InfraError>
    where
        C::Database: Database<Connection = C>,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            InfraError::Unexpected(anyhow::anyhow!("recognition needs a tokio runtime"))
        })?;
        let options = pool.options();
        let connections = Arc::new(Self {
            options: (*pool.connect_options()).clone(),
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(options.get_max_connections().max(1) as usize),
            acquire_timeout: options.get_acquire_timeout(),
            statements,
            patience,
            reads: Reads::default(),
        });
        for _ in 0..READERS {
            runtime.spawn(connections.clone().read_batches());
        }
        Ok(connections)
    }
}

impl<C: Connection> Connections<C> {
    /// Runs `work` on a connection, waiting for the database. When a connection fails (the
    /// server restarted or ended it), the kept ones are presumed broken too and dropped, and
    /// the work runs again on a new connection.
    async fn run<I: ?Sized + Sync, T>(
        &self,
        input: &I,
        work: impl for<'c> Fn(&'c mut C, &'c Statements, &'c I) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, InfraError> {
        self.run_since(Instant::now(), input, work).await
    }

    /// `run` for a request that began waiting at `started`.
    async fn run_since<I: ?Sized + Sync, T>(
        &self,
        started: Instant,
        input: &I,
        work: impl for<'c> Fn(&'c mut C, &'c Statements, &'c I) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, InfraError> {
        let work = &work;
        self.patience
            .run_since(started, || self.try_once(input, work))
            .await
    }

    /// One try of `work` on a connection. When the connection failed, the kept ones are
    /// presumed broken too and dropped.
    async fn try_once<I: ?Sized + Sync, T>(
        &self,
        input: &I,
        work: impl for<'c> Fn(&'c mut C, &'c Statements, &'c I) -> BoxFuture<'c, Result<T, sqlx::Error>>,
    ) -> Result<T, Failure> {
        let mut checkout = self.checkout().await?;
        match work(&mut checkout.connection, &self.statements, input).await {
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

/// The longest a batch's one try may take when there is no longer wait: a hung database
/// must not hold the readers for ever.
const BATCH_TRY_BOUND: Duration = Duration::from_secs(1);

impl<C: Backend + 'static> Connections<C> {
    /// A reader: sends the waiting reads as one statement, answers each its row, and goes on
    /// while reads are waiting; then waits for more.
    async fn read_batches(self: Arc<Self>) {
        loop {
            if !self.reads.wait().await {
                return;
            }
            loop {
                // Requests that are ready to run queue their reads first: larger batches.
                tokio::task::yield_now().await;
                let batch = self.reads.take_batch();
                if batch.is_empty() {
                    break;
                }
                let span = tracing::debug_span!("batched read", reads = batch.len());
                for read in &batch {
                    span.follows_from(&read.span);
                }
                self.read(batch).instrument(span).await;
            }
        }
    }

    /// One batch: one statement for every read in it, tried once. A database that fails or
    /// hangs sends each request to read on its own, under its own wait.
    async fn read(&self, batch: Vec<Read>) {
        let mut ids: Vec<i64> = batch.iter().map(|read| read.id).collect();
        let size = BATCH_SIZES
            .into_iter()
            .position(|size| size >= ids.len())
            .unwrap_or(BATCH_SIZES.len() - 1);
        let last = ids.last().copied().unwrap_or_default();
        ids.resize(BATCH_SIZES[size], last);
        let bound = self.patience.wait().max(BATCH_TRY_BOUND);
        let rows = tokio::time::timeout(
            bound,
            self.try_once(&(size, ids), |c, s, (size, ids)| {
                c.find_many(&s.find_many[*size], ids)
            }),
        )
        .await;
        match rows {
            Ok(Ok(rows)) => {
                for read in batch {
                    let row = rows.iter().find(|row| row.id == read.id).cloned();
                    let _ = read.answer.send(Answer::Row(row));
                }
            }
            Ok(Err(Failure::Final(error))) => {
                for read in batch {
                    let _ = read.answer.send(Answer::Failed(copy(&error)));
                }
            }
            Ok(Err(Failure::Retry(_))) | Err(_) => {
                for read in batch {
                    let _ = read.answer.send(Answer::Alone);
                }
            }
        }
    }
}

#[async_trait]
impl<C: Backend> HotPath for Connections<C> {
    /// Waits for a reader to send this read with the others waiting, for at most the
    /// database wait in all.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRow>, InfraError> {
        let started = Instant::now();
        let (answer, answered) = oneshot::channel();
        self.reads.push(Read {
            id: id.get(),
            answer,
            span: tracing::Span::current(),
        });
        let answer = self
            .patience
            .within(started, async {
                answered.await.unwrap_or_else(|_| Answer::Failed(closed()))
            })
            .await?;
        match answer {
            Answer::Row(row) => Ok(row),
            Answer::Failed(error) => Err(error),
            Answer::Alone => {
                let values = Values::find(id);
                self.run_since(started, &values, |c, s, v| c.find(s, v))
                    .await
            }
        }
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
        self.reads.close();
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for connection in idle {
            connection.close().await.ok();
        }
    }
}
