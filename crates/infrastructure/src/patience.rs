//! Waiting for the database, bounded (a database restart fails no request). Every unit of
//! database work runs through `Patience::run`: when a try fails because the connection is gone
//! or the server is starting or stopping, and nothing of it can have been committed, the unit
//! runs again on a new connection after a short backoff, until `wait` has passed; then the
//! request answers 503. A transaction whose COMMIT was sent but whose answer was lost is never
//! replayed: whether it committed is unknown (503 with `Retry-After: 1`).
//!
//! While the database is known to be down, at most `waiting` requests wait (4 times the pool's
//! size); the rest answer 503 at once, so no unbounded queue builds up. Healthy requests never
//! touch that bound: it is taken only once a try has failed, or while the last try of any
//! request failed.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How requests wait for an unreachable database.
pub struct Patience {
    wait: Duration,
    down: AtomicBool,
    waiting: Semaphore,
    observer: OnceLock<WaitObserver>,
}

impl fmt::Debug for Patience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patience")
            .field("wait", &self.wait)
            .field("down", &self.down.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Patience {
    /// Waits up to `wait` (zero: one try, as before), with at most `waiting` requests waiting.
    pub fn new(wait: Duration, waiting: usize) -> Self {
        Self {
            wait,
            down: AtomicBool::new(false),
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

    /// Runs `unit` until it succeeds, fails for good, or `wait` has passed. The first try
    /// runs as it is (bounded by the pool's acquire timeout, which is the wait); every later
    /// one only for what is left of the wait. A try cut short is unavailability: whatever it
    /// was doing, its outcome is unknown and it is not run again.
    pub(crate) async fn run<T, F, Fut>(&self, mut unit: F) -> Result<T, InfraError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        if self.wait.is_zero() {
            // No waiting: one try, whatever happened before.
            return unit().await.map_err(|failure| match failure {
                Failure::Retry(error) => InfraError::Unavailable(error),
                Failure::Final(error) => error,
            });
        }
        let started = Instant::now();
        if !self.down.load(Ordering::Relaxed) {
            match unit().await {
                Ok(value) => return Ok(value),
                Err(Failure::Final(error)) => return Err(error),
                Err(Failure::Retry(error)) => {
                    self.down.store(true, Ordering::Relaxed);
                    if started.elapsed() >= self.wait {
                        return Err(InfraError::Unavailable(error));
                    }
                }
            }
        }
        let Ok(_place) = self.waiting.try_acquire() else {
            return Err(InfraError::Unavailable(anyhow::anyhow!(
                "too many requests are waiting for the database"
            )));
        };
        let deadline = started + self.wait;
        let mut backoff = FIRST_BACKOFF;
        let outcome = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(InfraError::Unavailable(anyhow::anyhow!(
                    "the database was unreachable for the whole wait"
                )));
            }
            let Ok(tried) = tokio::time::timeout(left, unit()).await else {
                break Err(InfraError::Unavailable(anyhow::anyhow!(
                    "the database did not answer within the wait"
                )));
            };
            match tried {
                Ok(value) => {
                    self.down.store(false, Ordering::Relaxed);
                    break Ok(value);
                }
                Err(Failure::Final(error)) => break Err(error),
                Err(Failure::Retry(error)) => {
                    if Instant::now() + backoff >= deadline {
                        break Err(InfraError::Unavailable(error));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        if let Some(observe) = self.observer.get() {
            observe(started.elapsed());
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

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
        assert!(!patience.down.load(Ordering::SeqCst), "up again");
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
    async fn a_request_arriving_while_the_database_is_down_still_tries() {
        let patience = Patience::new(Duration::from_secs(1), 4);
        let failed: Result<(), _> = patience.run(|| async { Err(gone()) }).await;
        assert!(failed.is_err());
        assert!(patience.down.load(Ordering::SeqCst));
        assert_eq!(patience.run(|| async { Ok(5) }).await.unwrap(), 5);
        assert!(!patience.down.load(Ordering::SeqCst));
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
