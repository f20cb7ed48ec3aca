//! Values tests build again and again (`cfg(test)`, and feature `mocks` for other crates'
//! tests): a token, a client address, a session record and its user. Each fixes what a test is
//! not about; a test sets the fields it is about.

// Test support: a fixture built from a bad literal is a defect of the test, which fails.
#![allow(clippy::expect_used)]

use time::OffsetDateTime;

use crate::credential::Token;
use crate::model::{SessionRecord, SessionUser};
use crate::value::{ClientIp, SessionId, SessionKind, UserId, Username};

/// A token of 16 bytes, each `n`: distinct tokens for distinct `n`.
pub fn token(n: u8) -> Token {
    Token::from_bytes(vec![n; 16])
}

/// A client address from its text.
///
/// # Panics
/// When `text` is not an IP address (a defect of the test).
pub fn ip(text: &str) -> ClientIp {
    ClientIp::new(text.parse().expect("an IP address"))
}

/// The session `id` as a browser holds it: anonymous, from 192.0.2.1, its token `token(n)`,
/// created and last active `at`.
///
/// # Panics
/// When `id` is not positive (a defect of the test).
pub fn session(id: i64, n: u8, at: OffsetDateTime) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(id).expect("a positive session id"),
        token_hash: token(n).hash(),
        ip_address: ip("192.0.2.1"),
        kind: SessionKind::Browser,
        user: None,
        created_at: at,
        authenticated_at: None,
        last_activity_at: at,
    }
}

/// A session's user.
///
/// # Panics
/// When `name` breaks the username rules (a defect of the test).
pub fn user(id: i64, name: &str, superuser: bool) -> SessionUser {
    SessionUser {
        id: UserId(id),
        username: Username::parse(name).expect("a valid username"),
        superuser,
    }
}
