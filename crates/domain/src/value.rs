//! Values with rules: once constructed, a value is valid, so callers never re-check it.
//!
//! Secrets (`Password`, `PasswordHash`, and the credentials of `credential`) print
//! `[redacted]` under `Debug` and have no `Display`, so they cannot reach a log line by
//! accident.

use std::fmt;
use std::net::IpAddr;

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

    #[test]
    fn passwords_and_their_hashes_are_redacted_in_debug_output() {
        let shown = format!(
            "{:?} {:?}",
            Password::new("hunter2hunter2"),
            PasswordHash::new("$argon2id$v=19$secret")
        );
        assert!(!shown.contains("hunter2") && !shown.contains("secret"));
        assert!(shown.contains("[redacted]"));
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
