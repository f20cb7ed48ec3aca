//! The system clock, tokio's timer, the OS CSPRNG and argon2id: the ports that touch the
//! machine.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_trait::async_trait;
use rand::TryRngCore;
use rand::rngs::OsRng;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use websessions_domain::ports::{Clock, HashTicket, PasswordHasher, Timer, TokenSource};
use websessions_domain::{InfraError, Password, PasswordHash, Saturated, Token, TokenLength};

/// Wall-clock time, in whole seconds (what storage keeps).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
    }
}

/// Waiting on tokio's timer.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioTimer;

#[async_trait]
impl Timer for TokioTimer {
    async fn sleep(&self, duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Tokens from the operating system's CSPRNG (R1).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsTokens;

impl TokenSource for OsTokens {
    fn token(&self, length: TokenLength) -> Result<Token, InfraError> {
        let mut bytes = vec![0; length.get()];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("OS randomness failed: {e}")))?;
        Ok(Token::from_bytes(bytes))
    }
}

/// argon2id with OWASP's parameters (19 MiB, 2 iterations, 1 lane). Hashing and verifying
/// run on threads of their own, never on the async workers, at most `permits` at a time (half
/// the cores, at least one), and at a lower CPU priority (nice +10 on Linux): under load
/// recognition, which every request needs, gets the CPU first, and logins take longer.
/// At most `max_pending` operations wait for a thread (R15): `admit` refuses the rest at once,
/// so the queue, and the time a login waits in it, stay bounded.
/// Verification reuses a small pool of 19 MiB work areas instead of allocating one per login:
/// allocations that size, freed on whichever blocking thread ran them, otherwise stay resident
/// in that thread's malloc arena (hundreds of MiB under continuous logins).
#[derive(Clone, Debug)]
pub struct Argon2Hasher {
    params: Params,
    /// A hash of a random password, verified against for unknown users (R5b).
    dummy: String,
    permits: Arc<Semaphore>,
    /// Places in the queue: the running operations and `max_pending` waiting ones.
    admitted: Arc<Semaphore>,
    memory: Arc<Mutex<Vec<Vec<Block>>>>,
}

/// How many operations may wait for a hashing thread by default (R15).
pub const DEFAULT_MAX_PENDING_HASHES: usize = 64;

impl Argon2Hasher {
    /// OWASP's recommended argon2id parameters.
    pub fn owasp() -> Result<Self, InfraError> {
        Self::with_params(Params::new(19 * 1024, 2, 1, None).map_err(unexpected)?)
    }

    /// Cheap parameters, for tests only: the same code path at a fraction of the cost.
    pub fn fast_for_tests() -> Result<Self, InfraError> {
        Self::with_params(Params::new(8, 1, 1, None).map_err(unexpected)?)
    }

    fn with_params(params: Params) -> Result<Self, InfraError> {
        let mut secret = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("OS randomness failed: {e}")))?;
        let dummy = hash_with(&params, &secret)?;
        let permits = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        Ok(Self {
            params,
            dummy,
            permits: Arc::new(Semaphore::new(permits)),
            admitted: Arc::new(Semaphore::new(permits + DEFAULT_MAX_PENDING_HASHES)),
            memory: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// At most `max_pending` (at least 1) operations wait for a hashing thread.
    pub fn with_max_pending(self, max_pending: usize) -> Self {
        let running = self.permits.available_permits();
        Self {
            admitted: Arc::new(Semaphore::new(running + max_pending.max(1))),
            ..self
        }
    }

    /// Runs `work` on a low-priority thread of its own once a permit is free.
    async fn limited<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, InfraError> + Send + 'static,
    ) -> Result<T, InfraError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("hashing closed: {e}")))?;
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("argon2".to_owned())
            .spawn(move || {
                lower_priority();
                // The receiver is gone only if the request was cancelled: nobody to tell.
                let _ = done.send(work());
                drop(permit);
            })
            .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("no hashing thread: {e}")))?;
        result
            .await
            .map_err(|_| InfraError::Unexpected(anyhow::anyhow!("hashing thread failed")))?
    }
}

/// How much less CPU priority hashing gets than the rest of the service (a nice increment).
const HASHING_NICENESS: i32 = 10;

/// Lowers the calling thread's CPU priority by `HASHING_NICENESS`. Best effort: a failure
/// only leaves the thread at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        // On Linux, PRIO_PROCESS with a thread id addresses that one thread.
        let thread = Some(rustix::thread::gettid());
        if let Ok(current) = getpriority_process(thread) {
            let _ = setpriority_process(thread, (current + HASHING_NICENESS).min(19));
        }
    }
}

/// Verifies `password` against a PHC string with a work area from `pool`, in constant time.
fn verify_pooled(
    pool: &Mutex<Vec<Vec<Block>>>,
    password: &[u8],
    phc: &str,
) -> Result<bool, InfraError> {
    let parsed = argon2::PasswordHash::new(phc).map_err(unexpected)?;
    let params = Params::try_from(&parsed).map_err(unexpected)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err(unexpected("stored hash lacks salt or output"));
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf).map_err(unexpected)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(unexpected)?;
    let version = parsed
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .map_err(unexpected)?;
    let mut memory = pool
        .lock()
        .map_err(|_| unexpected("argon2 memory pool poisoned"))?
        .pop()
        .unwrap_or_default();
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params.clone())
        .hash_password_into_with_memory(
            password,
            salt,
            &mut out,
            &mut memory[..params.block_count()],
        )
        .map_err(unexpected);
    if let Ok(mut pool) = pool.lock() {
        pool.push(memory);
    }
    computed?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

fn argon(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn unexpected(error: impl std::fmt::Display) -> InfraError {
    InfraError::Unexpected(anyhow::anyhow!("argon2: {error}"))
}

fn hash_with(params: &Params, password: &[u8]) -> Result<String, InfraError> {
    let mut salt = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("OS randomness failed: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(unexpected)?;
    argon(params)
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(unexpected)
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    fn admit(&self) -> Result<HashTicket, Saturated> {
        let place = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| Saturated)?;
        Ok(HashTicket::new(place))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn hash(&self, _: &HashTicket, password: Password) -> Result<PasswordHash, InfraError> {
        let params = self.params.clone();
        let phc = self
            .limited(move || hash_with(&params, password.expose().as_bytes()))
            .await?;
        Ok(PasswordHash::new(phc))
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn verify(
        &self,
        _: &HashTicket,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, InfraError> {
        let known = hash.is_some();
        let phc = hash.map_or_else(|| self.dummy.clone(), |h| h.as_str().to_owned());
        let memory = self.memory.clone();
        // The stored hash carries its own parameters; verifying uses them, so hashes made
        // under older parameters keep working.
        let matched = self
            .limited(move || verify_pooled(&memory, password.expose().as_bytes(), &phc))
            .await?;
        Ok(known && matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2id_hash_verifies_the_right_password_only() {
        let hasher = Argon2Hasher::fast_for_tests().unwrap();
        let ticket = hasher.admit().unwrap();
        let hash = hasher
            .hash(&ticket, Password::new("correct horse"))
            .await
            .unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$"));
        assert!(
            hasher
                .verify(&ticket, Password::new("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&ticket, Password::new("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_runs_off_the_async_workers_at_a_lower_priority() {
        use rustix::process::getpriority_process;
        let hasher = Argon2Hasher::fast_for_tests().unwrap();
        let ours = getpriority_process(None).unwrap();
        let (name, niceness) = hasher
            .limited(|| {
                let niceness = getpriority_process(Some(rustix::thread::gettid())).unwrap();
                Ok((std::thread::current().name().map(str::to_owned), niceness))
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("argon2"));
        assert_eq!(niceness, (ours + HASHING_NICENESS).min(19));
        // The priority belongs to the hashing thread alone.
        assert_eq!(
            getpriority_process(Some(rustix::thread::gettid())).unwrap(),
            ours
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify_even_with_the_dummy_secret() {
        let hasher = Argon2Hasher::fast_for_tests().unwrap();
        let ticket = hasher.admit().unwrap();
        let unknown = hasher.verify(&ticket, Password::new(""), None).await;
        assert!(!unknown.unwrap());
    }

    #[tokio::test]
    async fn verification_reuses_its_work_area_and_accepts_other_parameters() {
        let hasher = Argon2Hasher::fast_for_tests().unwrap();
        let ticket = hasher.admit().unwrap();
        let hash = hasher.hash(&ticket, Password::new("pw one")).await.unwrap();
        for _ in 0..3 {
            assert!(
                hasher
                    .verify(&ticket, Password::new("pw one"), Some(hash.clone()))
                    .await
                    .unwrap()
            );
        }
        assert_eq!(hasher.memory.lock().unwrap().len(), 1, "one area, reused");
        // A hash made with other (here: larger) parameters still verifies.
        let other = hash_with(&Params::new(16, 2, 1, None).unwrap(), b"pw two").unwrap();
        let other = PasswordHash::new(other);
        assert!(
            hasher
                .verify(&ticket, Password::new("pw two"), Some(other.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&ticket, Password::new("pw one"), Some(other))
                .await
                .unwrap()
        );
    }

    #[test]
    fn r15_at_most_max_pending_operations_wait_beyond_the_running_ones() {
        let hasher = Argon2Hasher::fast_for_tests().unwrap().with_max_pending(3);
        let running = hasher.permits.available_permits();
        let held: Vec<_> = (0..running + 3).map(|_| hasher.admit().unwrap()).collect();
        assert!(hasher.admit().is_err(), "the queue is full");
        drop(held);
        assert!(hasher.admit().is_ok(), "places come back when dropped");
    }

    #[test]
    fn owasp_parameters_are_argon2id_19_mib_2_iterations_1_lane() {
        let hasher = Argon2Hasher::owasp().unwrap();
        assert!(hasher.dummy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    }

    #[test]
    fn tokens_are_fresh_and_of_the_requested_length() {
        let length = TokenLength::new(32).unwrap();
        let a = OsTokens.token(length).unwrap();
        let b = OsTokens.token(length).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.hash(), a.clone().hash());
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn the_clock_returns_whole_seconds() {
        assert_eq!(SystemClock.now().nanosecond(), 0);
    }
}
