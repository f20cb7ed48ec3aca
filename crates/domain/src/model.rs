//! What the rules read and return: sessions, users, lockout state.

use time::OffsetDateTime;

use crate::value::{ClientIp, PasswordHash, SessionId, SessionKind, TokenHash, UserId, Username};

/// A session row as recognition needs it, with its user's identity (one indexed read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    /// `None` once the session was logged out or ended: it can never be valid again.
    pub token_hash: Option<TokenHash>,
    pub ip_address: ClientIp,
    pub kind: SessionKind,
    pub user: Option<SessionUser>,
    pub created_at: OffsetDateTime,
    /// Last successful login into this session.
    pub authenticated_at: Option<OffsetDateTime>,
    pub last_activity_at: OffsetDateTime,
}

/// The identity of a session's user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUser {
    pub id: UserId,
    pub username: Username,
    pub superuser: bool,
}

/// A user account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub username: Username,
    pub password_hash: PasswordHash,
    pub superuser: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
}

/// A username's failed logins and lock (R9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockoutState {
    pub failure_count: u32,
    /// Set only while the lock is in force.
    pub locked_until: Option<OffsetDateTime>,
}

/// What recording one failed login did (R9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordedFailure {
    /// The username's failure count including this one.
    pub failure_count: u32,
    /// Set when this failure reached a multiple of the threshold and started a lock.
    pub locked_until: Option<OffsetDateTime>,
}

/// What maintenance deleted (R8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Sessions past the idle or absolute timeout.
    pub expired_sessions: u64,
    /// Sessions that had been logged out or ended.
    pub ended_sessions: u64,
    /// Lockouts whose time had passed.
    pub expired_lockouts: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.expired_sessions + self.ended_sessions + self.expired_lockouts
    }
}

/// Which valid sessions an operator or a user lists (R10), in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionQuery {
    pub user: Option<UserId>,
    pub active_since: Option<OffsetDateTime>,
    /// Only ids greater than this (keyset paging).
    pub after: Option<SessionId>,
    pub limit: u64,
}

/// Why a session ended, for the operators' metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndCause {
    Logout,
    Expired,
    Revoked,
    Replaced,
    PasswordChange,
}

impl EndCause {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Replaced => "replaced",
            Self::PasswordChange => "password_change",
        }
    }
}

/// How a login attempt ended, for the operators' metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LoginResult {
    Success,
    BadCredentials,
    Locked,
}

impl LoginResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::BadCredentials => "bad_credentials",
            Self::Locked => "locked",
        }
    }
}
