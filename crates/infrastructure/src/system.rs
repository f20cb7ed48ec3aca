//! The system clock, the OS CSPRNG and argon2id: the ports that touch the machine.

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_trait::async_trait;
use rand::TryRngCore;
use rand::rngs::OsRng;
use time::OffsetDateTime;
use websessions_domain::ports::{Clock, PasswordHasher, TokenSource};
use websessions_domain::{InfraError, Password, PasswordHash, Token, TokenLength};

/// Wall-clock time, in whole seconds (what storage keeps).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(0).unwrap_or(now)
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
/// run on tokio's blocking pool, never on the async workers.
#[derive(Clone, Debug)]
pub struct Argon2Hasher {
    params: Params,
    /// A hash of a random password, verified against for unknown users (R5b).
    dummy: String,
}

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
        Ok(Self { params, dummy })
    }
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

fn verify_with(params: &Params, password: &[u8], phc: &str) -> Result<bool, InfraError> {
    let parsed = argon2::PasswordHash::new(phc).map_err(unexpected)?;
    match argon(params).verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(other) => Err(unexpected(other)),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, InfraError> + Send + 'static,
) -> Result<T, InfraError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| InfraError::Unexpected(anyhow::anyhow!("hashing task failed: {e}")))?
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: Password) -> Result<PasswordHash, InfraError> {
        let params = self.params.clone();
        let phc = blocking(move || hash_with(&params, password.expose().as_bytes())).await?;
        Ok(PasswordHash::new(phc))
    }

    async fn verify(
        &self,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, InfraError> {
        let params = self.params.clone();
        let known = hash.is_some();
        let phc = hash.map_or_else(|| self.dummy.clone(), |h| h.as_str().to_owned());
        // The stored hash carries its own parameters; verifying uses them, so hashes made
        // under older parameters keep working.
        let matched =
            blocking(move || verify_with(&params, password.expose().as_bytes(), &phc)).await?;
        Ok(known && matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn argon2id_hash_verifies_the_right_password_only() {
        let hasher = Argon2Hasher::fast_for_tests().unwrap();
        let hash = hasher.hash(Password::new("correct horse")).await.unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$"));
        assert!(
            hasher
                .verify(Password::new("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(Password::new("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify_even_with_the_dummy_secret() {
        let hasher = Argon2Hasher::fast_for_tests().unwrap();
        assert!(!hasher.verify(Password::new(""), None).await.unwrap());
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
