//! Values with rules: once constructed, a value is valid, so callers never re-check it.
//!
//! Secrets (`Token`, `Credential`, `Password`) print `[redacted]` under `Debug` and have no
//! `Display`, so they cannot reach a log line by accident.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;

/// A session's id: a positive 64-bit integer assigned by the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(i64);

impl SessionId {
    /// `None` unless `id > 0`.
    pub fn new(id: i64) -> Option<Self> {
        (id > 0).then_some(Self(id))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A user's id, assigned by the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UserId(pub i64);

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

/// A username: 1..=191 characters of `[A-Za-z0-9,_\-{}.@]` (191 fits a MySQL utf8mb4 index).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Username(String);

/// A username that breaks the username rules.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a username is 1 to 191 characters of letters, digits and , _ - {{ }} . @")]
pub struct UsernameError;

impl Username {
    pub const MAX_LEN: usize = 191;

    pub fn parse(text: &str) -> Result<Self, UsernameError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || ",_-{}.@".contains(c);
        if text.is_empty() || text.len() > Self::MAX_LEN || !text.chars().all(allowed) {
            return Err(UsernameError);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password as typed: any text, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The upper bound keeps hashing cost bounded.
    pub const MAX_CHARS: usize = 1024;
    /// CamCOPS's minimum.
    pub const MIN_CHARS: usize = 10;

    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    fn chars(&self) -> usize {
        self.0.chars().count()
    }

    /// Longer than any password that can have been set; such a login attempt is refused
    /// without hashing (R5a).
    pub fn is_overlong(&self) -> bool {
        self.chars() > Self::MAX_CHARS
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A password that meets the policy wherever a password is set: 10 to 1024 characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPassword(Password);

/// A new password outside the policy.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a password is 10 to 1024 characters")]
pub struct PasswordPolicyError;

impl NewPassword {
    pub fn parse(password: Password) -> Result<Self, PasswordPolicyError> {
        if (Password::MIN_CHARS..=Password::MAX_CHARS).contains(&password.chars()) {
            Ok(Self(password))
        } else {
            Err(PasswordPolicyError)
        }
    }

    pub fn password(&self) -> &Password {
        &self.0
    }
}

/// An argon2id hash in PHC string form, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: impl Into<String>) -> Self {
        Self(phc.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// Who holds a session: a person's browser (cookie) or an API client (bearer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionKind {
    Browser,
    Api,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Browser => "browser",
            Self::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "browser" => Some(Self::Browser),
            "api" => Some(Self::Api),
            _ => None,
        }
    }
}

/// A client address in canonical form: IPv4-mapped IPv6 becomes IPv4 (R11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    pub fn new(ip: IpAddr) -> Self {
        Self(ip.to_canonical())
    }

    pub fn get(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A session's client state (CamCOPS's form_state, R13): a JSON object of at most 16 KiB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionData(serde_json::Map<String, serde_json::Value>);

/// Client state larger than the limit.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("session data is larger than {} bytes", SessionData::MAX_BYTES)]
pub struct SessionDataTooLarge;

impl SessionData {
    pub const MAX_BYTES: usize = 16 * 1024;

    pub fn new(
        object: serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, SessionDataTooLarge> {
        // Serialising a map of JSON values cannot fail; were it to, the data is refused.
        let size = serde_json::to_vec(&object).map_or(usize::MAX, |bytes| bytes.len());
        if size > Self::MAX_BYTES {
            return Err(SessionDataTooLarge);
        }
        Ok(Self(object))
    }

    pub fn into_object(self) -> serde_json::Map<String, serde_json::Value> {
        self.0
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
        let shown = format!(
            "{cred:?} {:?} {:?}",
            token16(),
            Password::new("hunter2hunter2")
        );
        assert!(!shown.contains(&token16().encode()));
        assert!(!shown.contains("hunter2"));
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
    fn usernames_follow_the_character_and_length_rules() {
        for ok in ["a", "alice", "a.b@c-d_e{f},g", &"x".repeat(191)] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "al ice", "ålice", "a/b", "a'b", &"x".repeat(192)] {
            assert_eq!(Username::parse(bad), Err(UsernameError), "{bad}");
        }
    }

    #[test]
    fn new_passwords_are_10_to_1024_characters() {
        assert!(NewPassword::parse(Password::new("x".repeat(9))).is_err());
        assert!(NewPassword::parse(Password::new("x".repeat(10))).is_ok());
        assert!(NewPassword::parse(Password::new("é".repeat(1024))).is_ok());
        assert!(NewPassword::parse(Password::new("x".repeat(1025))).is_err());
        assert!(Password::new("x".repeat(1025)).is_overlong());
        assert!(!Password::new("x".repeat(1024)).is_overlong());
    }

    #[test]
    fn token_length_is_16_to_64() {
        assert!(TokenLength::new(15).is_err());
        assert!(TokenLength::new(16).is_ok());
        assert!(TokenLength::new(64).is_ok());
        assert!(TokenLength::new(65).is_err());
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ClientIp::new(mapped).to_string(), "192.0.2.7");
    }

    #[test]
    fn session_data_is_limited_to_16_kib_serialized() {
        let mut object = serde_json::Map::new();
        // {"k":"..."} is 8 bytes of framing around the value.
        object.insert("k".into(), serde_json::Value::String("v".repeat(16384 - 8)));
        assert!(SessionData::new(object.clone()).is_ok());
        object.insert("k".into(), serde_json::Value::String("v".repeat(16384 - 7)));
        assert_eq!(SessionData::new(object), Err(SessionDataTooLarge));
    }
}
