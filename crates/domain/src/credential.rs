//! Credentials (R1, SPEC section 2): the secret token, the hash the database keeps of it, and
//! `<id>.<token>` as a client presents it. Only the canonical form parses; the secrets print
//! `[redacted]` under `Debug` and have no `Display`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::value::SessionId;

/// How many random bytes a token has (R1: 16..=64, default 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenLength(usize);

impl TokenLength {
    pub const MIN: usize = 16;
    pub const MAX: usize = 64;

    pub fn new(bytes: usize) -> Result<Self, TokenLengthError> {
        if (Self::MIN..=Self::MAX).contains(&bytes) {
            Ok(Self(bytes))
        } else {
            Err(TokenLengthError(bytes))
        }
    }

    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for TokenLength {
    fn default() -> Self {
        Self(Self::MIN)
    }
}

/// A token length outside 16..=64.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("token length must be 16 to 64 bytes, not {0}")]
pub struct TokenLengthError(pub usize);

/// The secret half of a credential: raw bytes from the OS CSPRNG (R1).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl Token {
    /// Wraps bytes a `TokenSource` produced.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The only form of the token that is ever stored (R1).
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(&self.0).into())
    }

    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// SHA-256 of a token: what the database holds instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// `None` unless exactly 32 bytes (what a storage adapter read back).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison (R2), so timing does not reveal how much of a guess matched.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash([redacted])")
    }
}

/// `<id>.<token>` as a client presents it; only the canonical form parses.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    id: SessionId,
    token: Token,
}

/// Why a presented credential was not even looked up.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The text is not `<id>.<token>` with a canonical positive decimal id.
    #[error("malformed session id")]
    MalformedId,
    /// The token is not canonical unpadded base64url of the configured length.
    #[error("malformed session token")]
    MalformedToken,
}

impl Credential {
    pub fn new(id: SessionId, token: Token) -> Self {
        Self { id, token }
    }

    /// Parses the canonical form only: id digits without sign, leading zero or separators,
    /// fitting a positive i64; a token of unpadded base64url that decodes to exactly
    /// `length` bytes and re-encodes to the same text.
    pub fn parse(text: &str, length: TokenLength) -> Result<Self, CredentialError> {
        let (id, token) = text.split_once('.').ok_or(CredentialError::MalformedId)?;
        let canonical_digits =
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !id.starts_with('0');
        if !canonical_digits {
            return Err(CredentialError::MalformedId);
        }
        let id = id
            .parse::<i64>()
            .ok()
            .and_then(SessionId::new)
            .ok_or(CredentialError::MalformedId)?;
        // Bound the work before decoding: the canonical encoding has a known length.
        if token.len() != (4 * length.get()).div_ceil(3) {
            return Err(CredentialError::MalformedToken);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CredentialError::MalformedToken)?;
        if bytes.len() != length.get() || URL_SAFE_NO_PAD.encode(&bytes) != token {
            return Err(CredentialError::MalformedToken);
        }
        Ok(Self {
            id,
            token: Token(bytes),
        })
    }

    pub fn id(&self) -> SessionId {
        self.id
    }

    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The text a client holds. Deliberately not `Display`: writing it is always a decision.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.token.encode())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential({}.[redacted])", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token16() -> Token {
        Token::from_bytes((0u8..16).collect())
    }

    #[test]
    fn credential_round_trips_through_its_text() {
        let cred = Credential::new(SessionId::new(42).unwrap(), token16());
        let parsed = Credential::parse(&cred.expose(), TokenLength::default()).unwrap();
        assert_eq!(parsed, cred);
    }

    #[test]
    fn credential_rejects_every_non_canonical_id() {
        let token = token16().encode();
        for id in [
            "",
            "0",
            "00",
            "042",
            "+42",
            "-42",
            "4_2",
            " 42",
            "42 ",
            "9223372036854775808",
            "x",
        ] {
            assert_eq!(
                Credential::parse(&format!("{id}.{token}"), TokenLength::default()),
                Err(CredentialError::MalformedId),
                "id {id:?}"
            );
        }
        assert_eq!(
            Credential::parse(&token, TokenLength::default()),
            Err(CredentialError::MalformedId)
        );
    }

    #[test]
    fn credential_rejects_padded_short_long_and_non_canonical_tokens() {
        let good = token16().encode();
        let mut non_canonical = good.clone();
        // The last character of a 16-byte token carries 4 unused bits: flipping them gives text
        // that decodes to the same bytes but is not the canonical encoding.
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let last = non_canonical.pop().unwrap();
        let index = ALPHABET.find(last).unwrap();
        non_canonical.push(ALPHABET.as_bytes()[index ^ 1] as char);
        for token in [
            format!("{good}=="),
            good[..good.len() - 1].to_owned(),
            format!("{good}A"),
            good.replace(|c: char| c.is_ascii_alphabetic(), "+"),
            non_canonical,
            String::new(),
        ] {
            assert!(
                Credential::parse(&format!("7.{token}"), TokenLength::default()).is_err(),
                "token {token:?}"
            );
        }
    }

    #[test]
    fn credential_length_follows_the_configured_token_bytes() {
        let cred = Credential::new(SessionId::new(1).unwrap(), Token::from_bytes(vec![9; 32]));
        let text = cred.expose();
        assert!(Credential::parse(&text, TokenLength::new(32).unwrap()).is_ok());
        assert!(Credential::parse(&text, TokenLength::default()).is_err());
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let cred = Credential::new(SessionId::new(5).unwrap(), token16());
        let shown = format!("{cred:?} {:?} {:?}", token16(), token16().hash());
        assert!(!shown.contains(&token16().encode()));
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn token_hash_is_sha256_of_the_raw_bytes() {
        let expected: [u8; 32] = Sha256::digest((0u8..16).collect::<Vec<_>>()).into();
        assert_eq!(token16().hash().as_bytes(), &expected);
        assert!(token16().hash().matches(&token16().hash()));
        assert!(
            !token16()
                .hash()
                .matches(&Token::from_bytes(vec![0; 16]).hash())
        );
    }

    #[test]
    fn token_length_is_16_to_64() {
        assert!(TokenLength::new(15).is_err());
        assert!(TokenLength::new(16).is_ok());
        assert!(TokenLength::new(64).is_ok());
        assert!(TokenLength::new(65).is_err());
    }
}
