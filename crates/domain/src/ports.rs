//! The ports: what the rules need from the outside world, as small role-named contracts.
//! Adapters live in the infrastructure crate; fakes come from mockall (feature `mocks`).

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{CreateUserError, InfraError};
use crate::model::{LockoutState, PurgeReport, RecordedFailure, SessionQuery, SessionRecord, User};
use crate::policy::{Cutoffs, LockoutPolicy};
use crate::value::{
    ClientIp, Password, PasswordHash, SessionData, SessionId, SessionKind, Token, TokenHash,
    TokenLength, UserId, Username,
};

/// The current time. Implementations MUST return whole seconds (what storage keeps).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// Fresh secret tokens (R1).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenSource: Send + Sync {
    /// MUST return `length` bytes from a CSPRNG, independent of time, ids and users.
    fn token(&self, length: TokenLength) -> Result<Token, InfraError>;
}

/// Slow password hashing (argon2id). Implementations MUST NOT run the hash on the async
/// workers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    async fn hash(&self, password: Password) -> Result<PasswordHash, InfraError>;

    /// Whether `password` matches `hash`. With `hash == None` (unknown user) it MUST do the
    /// same work as a real verification and return `false`, so timing does not reveal which
    /// usernames exist (R5b).
    async fn verify(
        &self,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, InfraError>;
}

/// How much of a backlog one maintenance run takes on (R8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Until nothing is left: housekeeping, `websessions purge`, the admin API.
    All,
    /// At most one batch of each kind: the maintenance a logout runs (R6), whose latency must
    /// not grow with the backlog.
    OneBatch,
}

/// A new session row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    pub token_hash: TokenHash,
    pub ip_address: ClientIp,
    pub kind: SessionKind,
    pub now: OffsetDateTime,
}

/// Which session a login binds the user to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginTarget {
    /// The presented session, as long as it still holds `token_hash` and is valid.
    Existing {
        id: SessionId,
        token_hash: TokenHash,
    },
    /// A new session.
    New,
}

/// The writes of one successful login (R5d, R5e).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginWrite {
    pub user: UserId,
    pub target: LoginTarget,
    /// Kind and address of a new session (also when the existing target ended meanwhile).
    pub kind: SessionKind,
    pub ip_address: ClientIp,
    /// The rotated token's hash.
    pub token_hash: TokenHash,
    pub now: OffsetDateTime,
    /// Validity at `now`: the reused session and the sessions ended must be valid under it.
    pub cutoffs: Cutoffs,
    /// End every other valid browser session of the user.
    pub end_other_browser_sessions: bool,
}

/// What a login wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginOutcome {
    pub session: SessionId,
    /// Whether a new row was created (also when the existing target had ended meanwhile).
    pub created: bool,
    /// How many other browser sessions were ended.
    pub replaced: u64,
}

/// A token rotation that must go with a password change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub session: SessionId,
    pub old_hash: TokenHash,
    pub new_hash: TokenHash,
    pub cutoffs: Cutoffs,
}

/// Session rows.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Inserts an anonymous session with `created_at = last_activity_at = now`, data `{}`.
    async fn create(&self, session: NewSession) -> Result<SessionId, InfraError>;

    /// The session with its user's identity, in one indexed read; `None` when there is none.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRecord>, InfraError>;

    /// Sets `last_activity_at = now` only while the row still holds `token_hash` and is valid
    /// under `cutoffs` (R3); returns whether it did. MUST NOT revive an ended session.
    async fn touch(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        cutoffs: Cutoffs,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError>;

    /// R2 and R3 at once, for `touch_interval = 0`: sets `last_activity_at = now` only while
    /// the row holds `token_hash`, is valid under `cutoffs` and, when `ip` is given, was
    /// created from `ip`; returns the touched session, or `None` when nothing matched. Where
    /// the backend allows (PostgreSQL) this MUST be one statement.
    async fn touch_and_find(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        cutoffs: Cutoffs,
        ip: Option<ClientIp>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, InfraError>;

    /// In one transaction (R5e): sets the user's `last_login_at` (serialising concurrent logins
    /// of one user), binds `user` and the new token to the target (creating a session when the
    /// target is `New` or no longer matches), sets `authenticated_at = last_activity_at = now`,
    /// and, when asked, ends the user's other browser sessions.
    async fn login(&self, write: LoginWrite) -> Result<LoginOutcome, InfraError>;

    /// Ends one session (wipes token, user and data) when it still holds `token_hash`, or
    /// unconditionally when `token_hash` is `None`; returns whether a live session ended.
    async fn end(&self, id: SessionId, token_hash: Option<TokenHash>) -> Result<bool, InfraError>;

    /// Ends every live session of `user` except `except`; returns how many ended.
    async fn end_for_user(
        &self,
        user: UserId,
        except: Option<SessionId>,
    ) -> Result<u64, InfraError>;

    /// The session's client state while it still holds `token_hash`.
    async fn data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
    ) -> Result<Option<SessionData>, InfraError>;

    /// Replaces the client state while the session still holds `token_hash` and is valid
    /// under `cutoffs`; returns whether it did.
    async fn set_data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        cutoffs: Cutoffs,
        data: SessionData,
    ) -> Result<bool, InfraError>;

    /// Valid sessions (R10: live and admitted by `cutoffs`) matching `query`, by id.
    async fn list(
        &self,
        query: SessionQuery,
        cutoffs: Cutoffs,
    ) -> Result<Vec<SessionRecord>, InfraError>;

    /// Sessions not logged out with `last_activity_at >= since` (R10).
    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError>;

    /// Deletes ended sessions and those not admitted by `cutoffs`, `batch` rows per statement
    /// (R8), as much as `sweep` says; returns (expired, ended) counts.
    async fn purge(
        &self,
        cutoffs: Cutoffs,
        batch: u64,
        sweep: Sweep,
    ) -> Result<(u64, u64), InfraError>;
}

/// What a user row is created from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub username: Username,
    pub password_hash: PasswordHash,
    pub superuser: bool,
    pub now: OffsetDateTime,
}

/// User rows, and the session endings that must share their transaction (R7).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// MUST return `CreateUserError::Taken` when the username exists.
    async fn create(&self, user: NewUser) -> Result<User, CreateUserError>;

    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, InfraError>;

    /// All users, by username.
    async fn list(&self) -> Result<Vec<User>, InfraError>;

    /// In one transaction: stores the hash and `password_changed_at = now`, applies `rotation`
    /// (when it no longer matches, nothing is written and `None` is returned), and ends every
    /// other live session of the user. Returns how many sessions ended.
    async fn set_password(
        &self,
        user: UserId,
        hash: PasswordHash,
        now: OffsetDateTime,
        rotation: Option<Rotation>,
    ) -> Result<Option<u64>, InfraError>;

    /// Sets the disabled flag; disabling ends all the user's sessions in the same transaction.
    /// Returns how many sessions ended.
    async fn set_disabled(&self, user: UserId, disabled: bool) -> Result<u64, InfraError>;

    /// Deletes the user and its sessions; returns how many live sessions that ended, or
    /// `None` when there was no such user.
    async fn delete(&self, user: UserId) -> Result<Option<u64>, InfraError>;
}

/// Failed logins and lockouts per username, existing or not (R9).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait LockoutRepository: Send + Sync {
    /// The failure count, and the lock while it is in force at `now`.
    async fn state(
        &self,
        username: &Username,
        now: OffsetDateTime,
    ) -> Result<LockoutState, InfraError>;

    /// Atomically adds one failure and, when `policy.lock_after(count, now)` says so, locks
    /// the username. Concurrent calls MUST each see a distinct count, so no threshold is
    /// skipped.
    async fn record_failure(
        &self,
        username: &Username,
        now: OffsetDateTime,
        policy: LockoutPolicy,
    ) -> Result<RecordedFailure, InfraError>;

    /// Clears the failures and any lock.
    async fn clear(&self, username: &Username) -> Result<(), InfraError>;

    /// Deletes lockouts that ended before `now`, `batch` rows per statement, as much as
    /// `sweep` says.
    async fn purge(&self, now: OffsetDateTime, batch: u64, sweep: Sweep)
    -> Result<u64, InfraError>;
}

/// Where the rules report what happened, for metrics. Implementations MUST be cheap and
/// MUST NOT fail.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Events: Send + Sync {
    fn login(&self, result: crate::model::LoginResult);
    fn lockout_started(&self);
    fn session_started(&self, kind: SessionKind);
    fn sessions_ended(&self, cause: crate::model::EndCause, count: u64);
    fn purged(&self, report: PurgeReport);
}

/// An `Events` that records nothing, for embedders without metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn login(&self, _: crate::model::LoginResult) {}
    fn lockout_started(&self) {}
    fn session_started(&self, _: SessionKind) {}
    fn sessions_ended(&self, _: crate::model::EndCause, _: u64) {}
    fn purged(&self, _: PurgeReport) {}
}
