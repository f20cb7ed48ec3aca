//! The rules of `Sessions`, each proved over fakes with a fixed clock: mockall fakes of the
//! repositories and hasher, and a scripted fake of the account transaction whose every call
//! is written to a log the tests read.

mod accounts;
mod holder;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use mockall::predicate::eq;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::audit::{AuditEntry, AuditEvent, AuditFilter, ChainEnds, Detail, Stored};
use crate::error::{InfraError, RetryAfter, Saturated};
use crate::model::{EndCause, LimitedAction, LockoutState, LoginResult, PurgeReport};
use crate::ports::{
    AccountChange, AuditTrail, Events, Expect, HashTicket, MockAccountStore, MockClock,
    MockLockoutRepository, MockPasswordHasher, MockRateLimits, MockSessionRepository,
    MockTokenSource, MockUserRepository, NewSession, Sweep, Target, Timer, UserSessions,
};
use crate::service::{Ports, Presented, Sessions};
use crate::{
    Counted, Credential, LockoutPolicy, PasswordHash, SessionId, SessionKind, SessionPolicy,
    SessionRecord, SessionUser, TokenHash, User, UserId, Username,
};

pub(crate) const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

pub(crate) use crate::fixtures::{ip, token};

pub(crate) fn sid(id: i64) -> SessionId {
    SessionId::new(id).unwrap()
}

pub(crate) fn presented(id: i64, n: u8) -> Presented {
    Presented {
        credential: Some(Credential::new(sid(id), token(n))),
        ip: ip("192.0.2.1"),
        user_agent: Some("test-agent".into()),
    }
}

pub(crate) fn nobody() -> Presented {
    Presented {
        credential: None,
        ip: ip("192.0.2.1"),
        user_agent: Some("test-agent".into()),
    }
}

/// An audit entry as the log writes it: its event, its username (or `-`), and its details.
pub(crate) fn describe(entry: &AuditEntry) -> String {
    let details: Vec<String> = entry
        .details
        .iter()
        .map(|(key, value)| match value {
            Detail::Text(text) => format!("{key}={text}"),
            Detail::Count(count) => format!("{key}={count}"),
        })
        .collect();
    format!(
        "{}:{}:{}",
        entry.event,
        entry.username.as_deref().unwrap_or("-"),
        details.join(",")
    )
}

/// An audit trail whose appends (outside any account transaction) go to the log as
/// `audit:...`.
pub(crate) struct LoggedAudit(pub(crate) Arc<Log>);

#[async_trait]
impl AuditTrail for LoggedAudit {
    async fn append(&self, entries: Vec<AuditEntry>) -> Result<(), InfraError> {
        for entry in &entries {
            assert_eq!(entry.at, NOW);
            self.0.push(format!("audit:{}", describe(entry)));
        }
        Ok(())
    }
    async fn ends(&self) -> Result<ChainEnds, InfraError> {
        unimplemented!("not a rule's port")
    }
    async fn after(&self, _: u64, _: u64) -> Result<Vec<Stored>, InfraError> {
        unimplemented!("not a rule's port")
    }
    async fn page(&self, _: &AuditFilter) -> Result<Vec<Stored>, InfraError> {
        Ok(Vec::new())
    }
    async fn expire(&self, _: OffsetDateTime, _: u64, _: Sweep) -> Result<u64, InfraError> {
        Ok(0)
    }
}

pub(crate) fn alice() -> User {
    User {
        id: UserId(7),
        username: Username::parse("alice").unwrap(),
        password_hash: PasswordHash::new("$argon2id$alice"),
        superuser: false,
        disabled: false,
        created_at: NOW - Duration::days(1),
        last_login_at: None,
        password_changed_at: NOW - Duration::days(1),
    }
}

pub(crate) fn as_session_user(user: &User) -> SessionUser {
    SessionUser {
        id: user.id,
        username: user.username.clone(),
        superuser: user.superuser,
    }
}

/// A live anonymous browser session whose token is `token(n)`, last active `idle` ago.
pub(crate) fn session(id: i64, n: u8, idle: Duration) -> SessionRecord {
    SessionRecord {
        last_activity_at: NOW - idle,
        ..crate::fixtures::session(id, n, NOW - Duration::hours(1))
    }
}

/// The target a presented `(id, n)` names at NOW from 192.0.2.1, with the default policy.
pub(crate) fn target(id: i64, n: u8) -> Target {
    Target {
        id: sid(id),
        token_hash: token(n).hash(),
        cutoffs: SessionPolicy::default().cutoffs(NOW),
        ip: Some(ip("192.0.2.1")),
    }
}

/// Records every event and every account-transaction call, in order, so tests can assert
/// exactly what happened.
#[derive(Default)]
pub(crate) struct Log(Mutex<Vec<String>>);

impl Log {
    pub(crate) fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
    pub(crate) fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
}

impl Events for Log {
    fn login(&self, result: LoginResult) {
        self.push(format!("login:{}", result.as_str()));
    }
    fn lockout_started(&self) {
        self.push("lockout".into());
    }
    fn session_started(&self, kind: SessionKind) {
        self.push(format!("started:{}", kind.as_str()));
    }
    fn sessions_ended(&self, cause: EndCause, count: u64) {
        self.push(format!("ended:{}:{count}", cause.as_str()));
    }
    fn purged(&self, report: PurgeReport) {
        self.push(format!("purged:{}", report.total()));
    }
    fn rate_limited(&self, action: LimitedAction) {
        self.push(format!("limited:{}", action.as_str()));
    }
    fn shed(&self) {
        self.push("shed".into());
    }
    fn audited(&self, event: AuditEvent) {
        self.push(format!("audited:{event}"));
    }
}

/// Waits no time at all, and writes each wait to the log (`sleep:50ms`).
pub(crate) struct LoggedTimer(pub(crate) Arc<Log>);

#[async_trait]
impl Timer for LoggedTimer {
    async fn sleep(&self, duration: std::time::Duration) {
        self.0.push(format!("sleep:{}ms", duration.as_millis()));
    }
}

/// How the scripted account transaction answers.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    /// What `lock_user` answers.
    pub(crate) account_unchanged: bool,
    /// What `bind` and `rotate` answer.
    pub(crate) target_matches: bool,
    /// The id `create_session` returns.
    pub(crate) new_id: i64,
    /// What `end_sessions` answers.
    pub(crate) ended: u64,
    /// Whether `set_disabled` changes the account.
    pub(crate) changes: bool,
    /// How many expired session rows `delete_user` deletes.
    pub(crate) expired: u64,
    /// The statement (`"end_sessions"`, `"record_login"`) the connection interrupts, and how
    /// many more times it does (a database restart during the transaction).
    pub(crate) interrupt: Option<(&'static str, Arc<AtomicUsize>)>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            account_unchanged: true,
            target_matches: true,
            new_id: 50,
            ended: 0,
            changes: true,
            expired: 0,
            interrupt: None,
        }
    }
}

impl Script {
    /// Interrupts `statement` the next `times` times it runs.
    pub(crate) fn interrupting(&mut self, statement: &'static str, times: usize) {
        self.interrupt = Some((statement, Arc::new(AtomicUsize::new(times))));
    }
}

/// An account transaction that writes its calls to the log and answers from its script.
struct Scripted {
    log: Arc<Log>,
    script: Script,
}

impl Scripted {
    /// Fails with `Interrupted` when the script says the connection breaks at `statement`.
    fn connection_at(&self, statement: &str) -> Result<(), InfraError> {
        let Some((at, left)) = &self.script.interrupt else {
            return Ok(());
        };
        let interrupted = *at == statement
            && left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if interrupted {
            self.log.push(format!("tx:{statement}:interrupted"));
            return Err(InfraError::Interrupted(anyhow::anyhow!("connection reset")));
        }
        Ok(())
    }
}

fn hash_name(hash: &TokenHash) -> String {
    (0..=255u8)
        .find(|n| token(*n).hash() == *hash)
        .map_or_else(|| "?".into(), |n| format!("t{n}"))
}

#[async_trait]
impl AccountChange for Scripted {
    async fn lock_user(&mut self, user: UserId, expect: Expect) -> Result<bool, InfraError> {
        let expect = match expect {
            Expect::Exists => "exists".to_owned(),
            Expect::Unchanged(hash) => format!("unchanged:{}", hash.as_str()),
        };
        self.log.push(format!("tx:lock_user:{}:{expect}", user.0));
        Ok(self.script.account_unchanged)
    }
    async fn record_login(&mut self, user: UserId, now: OffsetDateTime) -> Result<(), InfraError> {
        assert_eq!(now, NOW);
        self.connection_at("record_login")?;
        self.log.push(format!("tx:record_login:{}", user.0));
        Ok(())
    }
    async fn bind(
        &mut self,
        target: &Target,
        user: UserId,
        new_hash: TokenHash,
        _: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let (id, old, new) = (
            target.id,
            hash_name(&target.token_hash),
            hash_name(&new_hash),
        );
        self.log
            .push(format!("tx:bind:{id}:{old}->{new}:user{}", user.0));
        Ok(self.script.target_matches)
    }
    async fn rotate(
        &mut self,
        target: &Target,
        user: UserId,
        new_hash: TokenHash,
        _: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        let (id, old, new) = (
            target.id,
            hash_name(&target.token_hash),
            hash_name(&new_hash),
        );
        self.log
            .push(format!("tx:rotate:{id}:{old}->{new}:user{}", user.0));
        Ok(self.script.target_matches)
    }
    async fn create_session(&mut self, session: NewSession) -> Result<SessionId, InfraError> {
        let user = session
            .user
            .map_or("anonymous".into(), |u| format!("user{}", u.0));
        let kind = session.kind.as_str();
        let hash = hash_name(&session.token_hash);
        self.log.push(format!(
            "tx:create:{kind}:{hash}:{user}:{}",
            session.ip_address
        ));
        Ok(sid(self.script.new_id))
    }
    async fn end_sessions(&mut self, which: UserSessions) -> Result<u64, InfraError> {
        assert_eq!(which.cutoffs, SessionPolicy::default().cutoffs(NOW));
        self.connection_at("end_sessions")?;
        let kind = which.kind.map_or("any", SessionKind::as_str);
        let except = which.except.map_or("none".into(), |id| id.to_string());
        self.log.push(format!(
            "tx:end_sessions:user{}:{kind}:except:{except}",
            which.user.0
        ));
        Ok(self.script.ended)
    }
    async fn set_password(
        &mut self,
        user: UserId,
        hash: PasswordHash,
        _: OffsetDateTime,
    ) -> Result<(), InfraError> {
        self.log
            .push(format!("tx:set_password:{}:{}", user.0, hash.as_str()));
        Ok(())
    }
    async fn set_disabled(&mut self, user: UserId, disabled: bool) -> Result<bool, InfraError> {
        self.log
            .push(format!("tx:set_disabled:{}:{disabled}", user.0));
        Ok(self.script.changes)
    }
    async fn delete_user(&mut self, user: UserId) -> Result<u64, InfraError> {
        self.log.push(format!("tx:delete_user:{}", user.0));
        Ok(self.script.expired)
    }
    fn audit(&mut self, entry: AuditEntry) {
        assert_eq!(entry.at, NOW);
        self.log.push(format!("tx:audit:{}", describe(&entry)));
    }
    async fn commit(self: Box<Self>) -> Result<(), InfraError> {
        self.log.push("tx:commit".into());
        Ok(())
    }
}

pub(crate) struct Harness {
    pub(crate) sessions: MockSessionRepository,
    pub(crate) users: MockUserRepository,
    pub(crate) lockouts: MockLockoutRepository,
    pub(crate) hasher: MockPasswordHasher,
    pub(crate) limits: MockRateLimits,
    pub(crate) script: Script,
    pub(crate) policy: SessionPolicy,
    pub(crate) lockout: LockoutPolicy,
    log: Arc<Log>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        let mut hasher = MockPasswordHasher::new();
        hasher.expect_admit().returning(|| Ok(HashTicket::new(())));
        Self {
            sessions: MockSessionRepository::new(),
            users: MockUserRepository::new(),
            lockouts: MockLockoutRepository::new(),
            hasher,
            limits: MockRateLimits::new(),
            script: Script::default(),
            policy: SessionPolicy::default(),
            lockout: LockoutPolicy::default(),
            log: Arc::new(Log::default()),
        }
    }

    /// The presented session `(id, n)` ends (or not, `ended`) once; the record it ends with,
    /// if any, goes to the log as `end:...`.
    pub(crate) fn expect_end(&mut self, id: i64, n: u8, ended: bool) {
        let log = self.log.clone();
        self.sessions
            .expect_end()
            .withf(move |t, _| *t == target(id, n))
            .times(1)
            .returning(move |_, record| {
                if let Some(record) = &record {
                    assert_eq!(record.at, NOW);
                    log.push(format!("end:{}", describe(record)));
                }
                Ok(ended)
            });
    }

    /// A failed guess at alice's password, counted as `expected`, is confirmed once; its
    /// records go to the log as `failed:...`.
    pub(crate) fn expect_failed(&mut self, expected: Counted) {
        let log = self.log.clone();
        self.lockouts
            .expect_failed()
            .withf(move |name, c, _| name.as_str() == "alice" && *c == expected)
            .times(1)
            .returning(move |_, _, records| {
                for record in &records {
                    assert_eq!(record.at, NOW);
                    log.push(format!("failed:{}", describe(record)));
                }
                Ok(())
            });
    }

    pub(crate) fn with_session(mut self, record: SessionRecord) -> Self {
        let id = record.id;
        self.sessions
            .expect_find()
            .with(eq(id))
            .returning(move |_| Ok(Some(record.clone())));
        self
    }

    pub(crate) fn with_user(mut self, user: User) -> Self {
        let name = user.username.clone();
        self.users
            .expect_find_by_username()
            .withf(move |u| *u == name)
            .returning(move |_| Ok(Some(user.clone())));
        self
    }

    pub(crate) fn unlocked(mut self) -> Self {
        self.lockouts
            .expect_state()
            .returning(|_, _| Ok(LockoutState::default()));
        self
    }

    pub(crate) fn password_ok(mut self, ok: bool) -> Self {
        self.hasher.expect_verify().returning(move |_, _, _| Ok(ok));
        self
    }

    /// Hashing refuses every new operation (R15).
    pub(crate) fn saturated(mut self) -> Self {
        self.hasher = MockPasswordHasher::new();
        self.hasher.expect_admit().returning(|| Err(Saturated));
        self
    }

    /// The address is over its limit for every action (R14).
    pub(crate) fn over_the_limit(mut self, retry_after_ms: u64) -> Self {
        self.limits.expect_admit().returning(move |_, _| {
            Err(RetryAfter::after(std::time::Duration::from_millis(
                retry_after_ms,
            )))
        });
        self
    }

    pub(crate) fn build(self) -> (Sessions, Arc<Log>) {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let mut tokens = MockTokenSource::new();
        tokens.expect_token().returning(|_| Ok(token(99)));
        let mut accounts = MockAccountStore::new();
        let (log, script) = (self.log.clone(), self.script.clone());
        accounts.expect_begin().returning(move || {
            Ok(Box::new(Scripted {
                log: log.clone(),
                script: script.clone(),
            }))
        });
        let ports = Ports {
            sessions: Arc::new(self.sessions),
            accounts: Arc::new(accounts),
            users: Arc::new(self.users),
            lockouts: Arc::new(self.lockouts),
            hasher: Arc::new(self.hasher),
            tokens: Arc::new(tokens),
            clock: Arc::new(clock),
            timer: Arc::new(LoggedTimer(self.log.clone())),
            limits: Arc::new(self.limits),
            events: self.log.clone(),
            audit: Arc::new(LoggedAudit(self.log.clone())),
        };
        (Sessions::new(ports, self.policy, self.lockout), self.log)
    }
}
