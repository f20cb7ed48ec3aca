//! Storage contracts: session rows, user rows, one transaction over an account and its
//! sessions, and R9's failures and lockouts. The adapters translate; every decision a rule
//! makes is taken by the caller, in the domain.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditEntry;
use crate::credential::TokenHash;
use crate::error::InfraError;
use crate::model::{Attempt, Counted, LockoutState, SessionQuery, SessionRecord, User};
pub use crate::policy::Target;
use crate::policy::{Cutoffs, LockoutPolicy};
use crate::value::{ClientIp, PasswordHash, SessionData, SessionId, SessionKind, UserId, Username};

/// How much of a backlog one maintenance run takes on (R8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Until nothing is left: housekeeping, `websessions purge`, the admin API.
    All,
    /// At most one batch of each kind: the maintenance a logout runs (R6), whose latency must
    /// not grow with the backlog.
    OneBatch,
}

/// A new session row; `created_at = last_activity_at = now`, data `{}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    pub token_hash: TokenHash,
    pub ip_address: ClientIp,
    pub kind: SessionKind,
    /// The logged-in user (then `authenticated_at = now`), or `None` for an anonymous session.
    pub user: Option<UserId>,
    pub now: OffsetDateTime,
}

/// Whose session an ending by id may end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Only an anonymous session.
    Nobody,
    /// Only this user's session.
    User(UserId),
}

/// Session rows. Ending a session deletes its row (R6: its credential can never be valid
/// again), so every row holds a token. An ending given an audit record (R19) appends it in
/// the transaction that deletes the row, only when a row was deleted, and is never replayed
/// once its COMMIT was sent.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionRepository: Send + Sync {
    /// Inserts an anonymous session (R4); returns its id.
    async fn create(&self, session: NewSession) -> Result<SessionId, InfraError>;

    /// The session with its user's identity, in one indexed read; `None` when there is none.
    async fn find(&self, id: SessionId) -> Result<Option<SessionRecord>, InfraError>;

    /// Sets `last_activity_at = now` only while `target` matches (R3); whether it did. MUST
    /// NOT revive an ended or expired session.
    async fn touch(&self, target: &Target, now: OffsetDateTime) -> Result<bool, InfraError>;

    /// R2 and R3 at once, for `touch_interval = 0`: touches while `target` matches and
    /// returns the touched session, `None` when nothing matched. Where the backend allows
    /// (PostgreSQL) this MUST be one statement.
    async fn touch_and_find(
        &self,
        target: &Target,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, InfraError>;

    /// Ends the session while `target` matches (logout, R6; a refused login, R5c), recording
    /// `audit` with it; whether it did.
    async fn end(&self, target: &Target, audit: Option<AuditEntry>) -> Result<bool, InfraError>;

    /// Ends the session `id` while it is valid under `cutoffs` and belongs to `owner` (a
    /// revocation), recording `audit` with it; whether it did.
    async fn end_by_id(
        &self,
        id: SessionId,
        owner: Owner,
        cutoffs: Cutoffs,
        audit: Option<AuditEntry>,
    ) -> Result<bool, InfraError>;

    /// The session's client state while it still holds `token_hash`.
    async fn data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
    ) -> Result<Option<SessionData>, InfraError>;

    /// Replaces the client state while `target` matches; whether it did.
    async fn set_data(&self, target: &Target, data: SessionData) -> Result<bool, InfraError>;

    /// Sessions valid under `cutoffs` matching `query`, by id (R10).
    async fn list(
        &self,
        query: SessionQuery,
        cutoffs: Cutoffs,
    ) -> Result<Vec<SessionRecord>, InfraError>;

    /// Sessions with `last_activity_at >= since` (R10; ended sessions have no row).
    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError>;

    /// Deletes the sessions not valid under `cutoffs`, `batch` rows per statement and each
    /// batch found through an index (R8), as much as `sweep` says; how many it deleted. Each
    /// batch that deletes sessions that had a user appends `expired` with their `count` in
    /// the same transaction (R19: one record per batch, none for anonymous sessions).
    async fn purge(
        &self,
        cutoffs: Cutoffs,
        batch: u64,
        sweep: Sweep,
        expired: &AuditEntry,
    ) -> Result<u64, InfraError>;
}

/// What a user row is created from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewUser {
    pub username: Username,
    pub password_hash: PasswordHash,
    pub superuser: bool,
    pub now: OffsetDateTime,
}

/// What creating a user did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    User(User),
    /// A user of that name (compared byte for byte) exists already; nothing was written.
    Taken,
}

/// User rows, read and created.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Creates the user and appends `audit` in one transaction; nothing when the name is
    /// taken.
    async fn create(&self, user: NewUser, audit: AuditEntry) -> Result<Created, InfraError>;

    /// The user whose name equals `username` byte for byte.
    async fn find_by_username(&self, username: &Username) -> Result<Option<User>, InfraError>;

    /// All users, by username.
    async fn list(&self) -> Result<Vec<User>, InfraError>;
}

/// What the account must still be for a change to go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The user exists.
    Exists,
    /// The user exists, is enabled and still has this password hash (R5d, R7: an operator's
    /// reset, disabling or deletion wins against a login or password change in flight).
    Unchanged(PasswordHash),
}

/// A user's sessions, as a multi-row ending names them: the valid ones (under `cutoffs`),
/// optionally of one kind, optionally sparing one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSessions {
    pub user: UserId,
    pub kind: Option<SessionKind>,
    pub except: Option<SessionId>,
    pub cutoffs: Cutoffs,
}

/// Opens account transactions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn begin(&self) -> Result<Box<dyn AccountChange>, InfraError>;
}

/// One transaction over a user's row and sessions. `lock_user` MUST be its first statement:
/// every change that ends several sessions of a user takes the user's row first, so all of
/// them share one lock order (no deadlock) and concurrent logins of a user run one after
/// another (R5e). Dropped without `commit`, nothing it wrote stays.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AccountChange: Send {
    /// Locks the user's row while the account is as `expect` says; whether it is.
    async fn lock_user(&mut self, user: UserId, expect: Expect) -> Result<bool, InfraError>;

    /// Sets the user's `last_login_at`.
    async fn record_login(&mut self, user: UserId, now: OffsetDateTime) -> Result<(), InfraError>;

    /// Binds `user` and the rotated token `new_hash` to the session while `target` matches,
    /// with `authenticated_at = last_activity_at = now` (R5d); whether it did.
    async fn bind(
        &mut self,
        target: &Target,
        user: UserId,
        new_hash: TokenHash,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError>;

    /// Rotates the token of `user`'s session to `new_hash` while `target` matches, with
    /// `last_activity_at = now` (R7); whether it did.
    async fn rotate(
        &mut self,
        target: &Target,
        user: UserId,
        new_hash: TokenHash,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError>;

    /// Inserts a session; returns its id.
    async fn create_session(&mut self, session: NewSession) -> Result<SessionId, InfraError>;

    /// Ends the sessions `which` names; how many ended.
    async fn end_sessions(&mut self, which: UserSessions) -> Result<u64, InfraError>;

    /// Stores the hash with `password_changed_at = now`.
    async fn set_password(
        &mut self,
        user: UserId,
        hash: PasswordHash,
        now: OffsetDateTime,
    ) -> Result<(), InfraError>;

    /// Whether it changed the account (it was not already so).
    async fn set_disabled(&mut self, user: UserId, disabled: bool) -> Result<bool, InfraError>;

    /// Deletes the user and every session row of theirs; how many session rows went.
    async fn delete_user(&mut self, user: UserId) -> Result<u64, InfraError>;

    /// Records `entry` with the change (R19): appended by `commit`, after the chain's head,
    /// which is locked last.
    fn audit(&mut self, entry: AuditEntry);

    /// Appends what `audit` recorded, then commits.
    async fn commit(self: Box<Self>) -> Result<(), InfraError>;
}

/// What lockout maintenance deleted (R8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockoutPurge {
    /// Locks whose time had passed.
    pub expired_locks: u64,
    /// Failures of usernames without an account and without a lock in force.
    pub orphan_failures: u64,
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

    /// R9's one atomic database step: refuses with `Attempt::Locked` (counting nothing) while
    /// a lock is in force at `now`, or with `Attempt::Provisional` while that lock's lease
    /// runs; otherwise counts the attempt and, when `policy.lock_after(count, now)` says so,
    /// starts the lock in the same step, provisional until `policy.lease_until(now)`.
    /// Concurrent calls, from any number of processes, MUST each see a distinct count and see
    /// every lock an earlier call started.
    async fn attempt(
        &self,
        username: &Username,
        now: OffsetDateTime,
        policy: LockoutPolicy,
    ) -> Result<Attempt, InfraError>;

    /// A verified password for `counted`: deletes the username's failures, and the lock only
    /// when `counted` started it (a lock other attempts started stands).
    async fn verified(&self, username: &Username, counted: Counted) -> Result<(), InfraError>;

    /// A password that did not verify for `counted`: the lock `counted` started, if it did,
    /// stands from now on, no longer provisional, and `audit` is appended, in one transaction
    /// (R19: the outcome and its record commit together); a `lock_started` among them only
    /// when this confirmation made the lock stand (not when its lapsed lease already had,
    /// `stood`). Never replayed once its COMMIT was sent.
    async fn failed(
        &self,
        username: &Username,
        counted: Counted,
        audit: Vec<AuditEntry>,
    ) -> Result<(), InfraError>;

    /// The provisional lock until `until` whose lease lapsed stands from now on, with `audit`
    /// (its `lock_started`) appended in the same transaction, once: whether this call made it
    /// stand (false when an outcome or another call already had). Never replayed once its
    /// COMMIT was sent.
    async fn stood(
        &self,
        username: &Username,
        until: OffsetDateTime,
        audit: AuditEntry,
    ) -> Result<bool, InfraError>;

    /// Clears the failures and any lock (an operator's unlock), appending `audit` in the same
    /// transaction when there was something to clear; whether there was.
    async fn clear(&self, username: &Username, audit: AuditEntry) -> Result<bool, InfraError>;

    /// Deletes locks that ended by `now`, and the failures of usernames without an account
    /// that have no lock in force, `batch` rows per statement, each batch found through an
    /// index, as much as `sweep` says.
    async fn purge(
        &self,
        now: OffsetDateTime,
        batch: u64,
        sweep: Sweep,
    ) -> Result<LockoutPurge, InfraError>;
}
