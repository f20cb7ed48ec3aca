//! Waiting for the database, bounded (a database restart fails no request). Every unit of
//! database work runs through `Patience::run`: when a try fails because the connection is gone
//! or the server is starting or stopping, and nothing of it can have been committed, the unit
//! runs again on a new connection, until `wait` has passed; then the request answers 503. A
//! transaction whose COMMIT was sent but whose answer was lost is never replayed: whether it
//! committed is unknown (503 with `Retry-After: 1`).
//!
//! Every try runs only for what is left of the wait, so a database that hangs rather than
//! refusing costs a request no more than the wait either. A failed try runs again at once on a
//! new connection (a server that ended its connections is back at once); a second failure
//! means the database is not answering, and the request waits for it, with a backoff from 25 ms
//! doubling to 500 ms, only if one of `waiting` places (4 times the pool's size) is free;
//! otherwise it answers 503 at once, so no unbounded queue builds up. Requests whose tries
//! succeed never take a place.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use websessions_domain::InfraError;

/// How one try of a unit of work failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The connection failed before anything was committed: the unit may run again.
    Retry(anyhow::Error),
    /// Anything else, answered as it is.
    Final(InfraError),
}

impl From<InfraError> for Failure {
    fn from(error: InfraError) -> Self {
        Self::Final(error)
    }
}

/// Reports how long requests waited for the database.
pub type WaitObserver = Arc<dyn Fn(Duration) + Send + Sync>;

/// The first wait between tries, doubled after each, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Tries before a request needs a place to wait: the first, and one at once on a new
/// connection.
const TRIES_WITHOUT_WAITING: usize = 2;

/// How requests wait for an unreachable database.
pub struct Patience {
    wait: Duration,
    waiting: Semaphore,
    observer: OnceLock<WaitObserver>,
}

impl fmt::Debug for Patience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patience")
            .field("wait", &self.wait)
            .field("free_places", &self.waiting.available_permits())
            .finish_non_exhaustive()
    }
}

/// Why a request stopped trying.
fn gave_up(why: &str) -> InfraError {
    InfraError::Unavailable(anyhow::anyhow!("{why}"))
}

impl Patience {
    /// Waits up to `wait` (zero: one try, as before), with at most `waiting` requests waiting.
    pub fn new(wait: Duration, waiting: usize) -> Self {
        Self {
            wait,
            waiting: Semaphore::new(waiting.max(1)),
            observer: OnceLock::new(),
        }
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Where to report how long requests waited (once; later calls are ignored).
    pub fn observe_with(&self, observer: WaitObserver) {
        let _ = self.observer.set(observer);
    }

    /// Runs `unit` until it succeeds, fails for good, or `wait` has passed. A try cut short
    /// by the end of the wait is unavailability: whatever it was doing, its outcome is
    /// unknown, and it is not run again.
    pub(crate) async fn run<T, F, Fut>(&self, unit: F) -> Result<T, InfraError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.run_since(Instant::now(), unit).await
    }

    /// Waits for `work` (which does not wait for the database itself) until the wait since
    /// `started` has passed; past it, the request is answered as unavailable. Without a
    /// wait, as long as it takes.
    pub(crate) async fn within<T>(
        &self,
        started: Instant,
        work: impl Future<Output = T>,
    ) -> Result<T, InfraError> {
        if self.wait.is_zero() {
            return Ok(work.await);
        }
        match tokio::time::timeout_at(started + self.wait, work).await {
            Ok(done) => Ok(done),
            Err(_) => {
                if let Some(observe) = self.observer.get() {
                    observe(started.elapsed());
                }
                Err(gave_up("the database did not answer within the wait"))
            }
        }
    }

    /// `run` for a request that began waiting at `started`: what is left of its wait.
    pub(crate) async fn run_since<T, F, Fut>(
        &self,
        started: Instant,
        mut unit: F,
    ) -> Result<T, InfraError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        if self.wait.is_zero() {
            // No waiting: one try, as long as it takes.
            return unit().await.map_err(|failure| match failure {
                Failure::Retry(error) => InfraError::Unavailable(error),
                Failure::Final(error) => error,
            });
        }
        let deadline = started + self.wait;
        let mut place = None;
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        let mut failed = false;
        let outcome = loop {
            let Ok(tried) = tokio::time::timeout_at(deadline, unit()).await else {
                failed = true;
                break Err(gave_up("the database did not answer within the wait"));
            };
            tries += 1;
            let error = match tried {
                Ok(value) => break Ok(value),
                Err(Failure::Final(error)) => break Err(error),
                Err(Failure::Retry(error)) => error,
            };
            failed = true;
            if tries < TRIES_WITHOUT_WAITING {
                continue;
            }
            if place.is_none() {
                match self.waiting.try_acquire() {
                    Ok(taken) => place = Some(taken),
                    Err(_) => break Err(gave_up("too many requests are waiting for the database")),
                }
            }
            if Instant::now() + backoff >= deadline {
                break Err(InfraError::Unavailable(error));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        };
        // Every request that met the database's unavailability waited, whatever its end.
        if failed && let Some(observe) = self.observer.get() {
            observe(started.elapsed());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn gone() -> Failure {
        Failure::Retry(anyhow::anyhow!("connection refused"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_unit_runs_again_until_the_database_is_back_within_the_wait() {
        let patience = Patience::new(Duration::from_secs(5), 4);
        let tries = AtomicU32::new(0);
        let result = patience
            .run(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 4 {
                    Err(gone())
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(tries.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_wait_it_answers_unavailable_and_a_final_failure_is_not_retried() {
        let patience = Patience::new(Duration::from_secs(2), 4);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = patience.run(|| async { Err(gone()) }).await;
        assert!(matches!(result, Err(InfraError::Unavailable(_))));
        let waited = started.elapsed();
        assert!(waited <= Duration::from_secs(2), "{waited:?}");
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = patience
            .run(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(Failure::Final(InfraError::Unexpected(anyhow::anyhow!(
                    "no"
                ))))
            })
            .await;
        assert!(matches!(result, Err(InfraError::Unexpected(_))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_try_that_hangs_is_cut_at_the_wait_and_a_slow_first_try_uses_it_up() {
        let patience = Patience::new(Duration::from_secs(4), 4);
        let started = tokio::time::Instant::now();
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = patience
            .run(|| async {
                // The first try fails after 3 s (a pool's connect attempts); the next hangs.
                if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Err(gone())
                } else {
                    std::future::pending().await
                }
            })
            .await;
        assert!(matches!(result, Err(InfraError::Unavailable(_))));
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        assert_eq!(tries.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn work_queued_elsewhere_and_what_follows_it_share_one_wait() {
        let patience = Patience::new(Duration::from_secs(2), 4);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        patience.observe_with(Arc::new(move |waited| sink.lock().unwrap().push(waited)));
        let started = tokio::time::Instant::now();
        // Queued work that never answers is cut at the wait, and observed.
        let cut = patience.within(started, std::future::pending::<()>()).await;
        assert!(matches!(cut, Err(InfraError::Unavailable(_))));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Work that answered after 1.5 s leaves half a second to a unit that then fails.
        let started = tokio::time::Instant::now();
        patience
            .within(started, tokio::time::sleep(Duration::from_millis(1500)))
            .await
            .unwrap();
        let failed: Result<(), _> = patience.run_since(started, || async { Err(gone()) }).await;
        assert!(matches!(failed, Err(InfraError::Unavailable(_))));
        assert!(
            started.elapsed() <= Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_means_one_try_each_time_even_after_a_failure() {
        let patience = Patience::new(Duration::ZERO, 4);
        let tries = AtomicU32::new(0);
        let result: Result<(), _> = patience
            .run(|| async {
                tries.fetch_add(1, Ordering::SeqCst);
                Err(gone())
            })
            .await;
        assert!(matches!(result, Err(InfraError::Unavailable(_))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        // The database is back: the next request tries, and succeeds.
        assert_eq!(patience.run(|| async { Ok(3) }).await.unwrap(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_connection_is_replaced_at_once_without_taking_a_place_to_wait() {
        let patience = Arc::new(Patience::new(Duration::from_secs(5), 1));
        // The only place is taken by a request waiting for a database that stays away.
        let waiter = {
            let patience = patience.clone();
            tokio::spawn(async move { patience.run(|| async { Err::<(), _>(gone()) }).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // A request whose kept connection was broken succeeds on its new one.
        let tries = AtomicU32::new(0);
        let replaced = patience
            .run(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(gone())
                } else {
                    Ok(1)
                }
            })
            .await;
        assert_eq!(replaced.unwrap(), 1);
        // One that fails twice finds no place, and answers at once.
        let started = tokio::time::Instant::now();
        let refused: Result<(), _> = patience.run(|| async { Err(gone()) }).await;
        assert!(matches!(refused, Err(InfraError::Unavailable(_))));
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert!(waiter.await.unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn every_request_that_met_a_failure_is_observed_and_no_other() {
        let patience = Patience::new(Duration::from_secs(1), 4);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        patience.observe_with(Arc::new(move |waited| sink.lock().unwrap().push(waited)));
        patience.run(|| async { Ok(()) }).await.unwrap();
        let _: Result<(), _> = patience.run(|| async { Err(gone()) }).await;
        let tries = AtomicU32::new(0);
        patience
            .run(|| async {
                if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(gone())
                } else {
                    Ok(())
                }
            })
            .await
            .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(seen[0] >= Duration::from_millis(500), "{seen:?}");
        // Two tries at once, then 25 ms and 50 ms of backoff.
        assert_eq!(seen[1], Duration::from_millis(75));
    }

    #[tokio::test(start_paused = true)]
    async fn while_the_database_is_down_at_most_waiting_requests_wait() {
        let patience = Arc::new(Patience::new(Duration::from_secs(5), 2));
        let tasks: Vec<_> = (0..5)
            .map(|_| {
                let patience = patience.clone();
                tokio::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let result = patience.run(|| async { Err::<(), _>(gone()) }).await;
                    assert!(result.is_err());
                    started.elapsed()
                })
            })
            .collect();
        let mut waited = Vec::new();
        for task in tasks {
            waited.push(task.await.unwrap());
        }
        let at_once = waited
            .iter()
            .filter(|d| **d < Duration::from_millis(10))
            .count();
        let whole = waited
            .iter()
            .filter(|d| **d >= Duration::from_secs(4))
            .count();
        assert_eq!((at_once, whole), (3, 2), "{waited:?}");
    }
}
