//! What the rules read and return: sessions, users, lockout state, and the named outcomes of
//! the ports.

use time::OffsetDateTime;

use crate::value::{ClientIp, PasswordHash, SessionId, SessionKind, UserId, Username};

use crate::audit::{Client, OPERATOR};
use crate::credential::TokenHash;

/// A session row as recognition needs it, with its user's identity (one indexed read).
/// Ending a session deletes its row, so every stored session holds a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub token_hash: TokenHash,
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
    /// The lock is provisional: the attempt that started it is still being verified, within
    /// its lease.
    pub provisional: bool,
}

/// What R9's one atomic step did with an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// A lock is in force until `until`: nothing was counted. `lapsed`: it was provisional
    /// and its lease lapsed with no outcome (its verifier died or is slow), so it stands now
    /// though nothing has said so yet (`LockoutRepository::stood`).
    Locked { until: OffsetDateTime, lapsed: bool },
    /// A provisional lock is in force: the attempt that started it is still being verified,
    /// and its outcome decides whether the lock stands. Nothing was counted.
    Provisional,
    /// The attempt was counted (before its password is verified).
    Counted(Counted),
}

/// A counted attempt (R9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    /// The username's failure count including this attempt.
    pub failure_count: u32,
    /// Set when this attempt's count reached a multiple of the threshold and started a lock
    /// lasting until then; only this attempt's verified password may remove that lock.
    pub started_lock: Option<OffsetDateTime>,
}

/// What maintenance deleted (R8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Sessions past the idle or absolute timeout.
    pub expired_sessions: u64,
    /// Lockouts whose time had passed.
    pub expired_lockouts: u64,
    /// Recorded failures of usernames without an account and without a lock in force.
    pub orphan_failures: u64,
    /// Audit records past their retention (R19).
    pub audit_records: u64,
}

impl PurgeReport {
    pub fn total(&self) -> u64 {
        self.expired_sessions + self.expired_lockouts + self.orphan_failures + self.audit_records
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

/// How a login attempt ended, for the operators' metrics. Attempts refused by R14 or R15
/// are not login attempts: they record nothing.
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

/// What R14 limits per client address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitedAction {
    /// R4 starts that create a row.
    SessionStart,
    /// Login attempts.
    Login,
}

impl LimitedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionStart => "session_start",
            Self::Login => "login",
        }
    }
}

/// A session's user as a superuser: only the rules make one (`Superuser::of`), or the
/// operator at the machine (the command line, and the server's own housekeeping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Superuser {
    username: Option<Username>,
    /// Where the superuser's request came from (R19's records).
    client: Client,
}

impl Superuser {
    /// The session's user when it is a superuser.
    pub fn of(session: &SessionRecord) -> Option<Self> {
        session
            .user
            .as_ref()
            .filter(|user| user.superuser)
            .map(|user| Self {
                username: Some(user.username.clone()),
                client: Client::default(),
            })
    }

    /// The operator at the machine: `websessions user ...`, `websessions purge`, housekeeping.
    pub fn operator() -> Self {
        Self {
            username: None,
            client: Client::default(),
        }
    }

    /// The same superuser, acting from `client`.
    #[must_use]
    pub fn from_client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    /// Who acts: the superuser's name, or `None` for the operator.
    pub fn username(&self) -> Option<&Username> {
        self.username.as_ref()
    }

    /// Who acts, as an audit record names them: the superuser's name, or `cli`.
    pub fn actor(&self) -> &str {
        self.username.as_ref().map_or(OPERATOR, Username::as_str)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}
