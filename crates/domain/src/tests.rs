//! The rules of `Sessions`, each proved over mockall fakes with a fixed clock.

use std::sync::{Arc, Mutex};

use mockall::predicate::eq;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use crate::error::{ChangePasswordError, InfraError, LoginError, SetDataError, UserError};
use crate::model::{EndCause, LockoutState, LoginResult, PurgeReport, RecordedFailure};
use crate::ports::{
    Events, LoginOutcome, LoginTarget, MockClock, MockLockoutRepository, MockPasswordHasher,
    MockSessionRepository, MockTokenSource, MockUserRepository, Sweep,
};
use crate::service::{LoginAttempt, Ports, Presented, SessionService, Sessions};
use crate::{
    ClientIp, Credential, LockoutPolicy, Password, PasswordHash, SessionId, SessionKind,
    SessionPolicy, SessionRecord, SessionUser, Token, User, UserId, Username,
};

const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

fn ip(text: &str) -> ClientIp {
    ClientIp::new(text.parse().unwrap())
}

fn token(n: u8) -> Token {
    Token::from_bytes(vec![n; 16])
}

fn sid(id: i64) -> SessionId {
    SessionId::new(id).unwrap()
}

fn presented(id: i64, n: u8) -> Presented {
    Presented {
        credential: Some(Credential::new(sid(id), token(n))),
        ip: ip("192.0.2.1"),
    }
}

fn nobody() -> Presented {
    Presented {
        credential: None,
        ip: ip("192.0.2.1"),
    }
}

fn alice() -> User {
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

fn as_session_user(user: &User) -> SessionUser {
    SessionUser {
        id: user.id,
        username: user.username.clone(),
        superuser: user.superuser,
    }
}

/// A live session whose token is `token(n)`, last active `idle` ago.
fn session(id: i64, n: u8, idle: Duration) -> SessionRecord {
    SessionRecord {
        id: sid(id),
        token_hash: Some(token(n).hash()),
        ip_address: ip("192.0.2.1"),
        kind: SessionKind::Browser,
        user: None,
        created_at: NOW - Duration::hours(1),
        authenticated_at: None,
        last_activity_at: NOW - idle,
    }
}

/// Records every event, so tests can assert exactly what was reported.
#[derive(Default)]
struct Recorded(Mutex<Vec<String>>);

impl Recorded {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
    fn push(&self, event: String) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events for Recorded {
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
}

struct Harness {
    sessions: MockSessionRepository,
    users: MockUserRepository,
    lockouts: MockLockoutRepository,
    hasher: MockPasswordHasher,
    tokens: MockTokenSource,
    events: Arc<Recorded>,
    policy: SessionPolicy,
}

impl Harness {
    fn new() -> Self {
        let mut tokens = MockTokenSource::new();
        tokens.expect_token().returning(|_| Ok(token(99)));
        Self {
            sessions: MockSessionRepository::new(),
            users: MockUserRepository::new(),
            lockouts: MockLockoutRepository::new(),
            hasher: MockPasswordHasher::new(),
            tokens,
            events: Arc::new(Recorded::default()),
            policy: SessionPolicy::default(),
        }
    }

    fn with_session(mut self, record: SessionRecord) -> Self {
        let id = record.id;
        self.sessions
            .expect_find()
            .with(eq(id))
            .returning(move |_| Ok(Some(record.clone())));
        self
    }

    fn with_user(mut self, user: User) -> Self {
        let name = user.username.clone();
        self.users
            .expect_find_by_username()
            .withf(move |u| *u == name)
            .returning(move |_| Ok(Some(user.clone())));
        self
    }

    fn unlocked(mut self) -> Self {
        self.lockouts
            .expect_state()
            .returning(|_, _| Ok(LockoutState::default()));
        self
    }

    fn password_ok(mut self, ok: bool) -> Self {
        self.hasher.expect_verify().returning(move |_, _| Ok(ok));
        self
    }

    fn build(self) -> (Sessions, Arc<Recorded>) {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(NOW);
        let events = self.events.clone();
        let ports = Ports {
            sessions: Arc::new(self.sessions),
            users: Arc::new(self.users),
            lockouts: Arc::new(self.lockouts),
            hasher: Arc::new(self.hasher),
            tokens: Arc::new(self.tokens),
            clock: Arc::new(clock),
            events: events.clone(),
        };
        (
            Sessions::new(ports, self.policy, LockoutPolicy::default()),
            events,
        )
    }
}

fn attempt(username: &str, password: &str, kind: SessionKind) -> LoginAttempt {
    LoginAttempt {
        username: username.into(),
        password: Password::new(password),
        kind,
    }
}

// ---- R2 recognition and R3 touch ----

#[tokio::test]
async fn r2_session_exactly_at_the_idle_limit_is_valid() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::minutes(30)));
    h.sessions
        .expect_touch()
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let (service, _) = h.build();
    let record = service.recognise(&presented(1, 1)).await.unwrap().unwrap();
    assert_eq!(record.last_activity_at, NOW);
}

#[tokio::test]
async fn r2_session_one_second_past_the_idle_limit_is_no_session() {
    let idle = Duration::minutes(30) + Duration::seconds(1);
    let h = Harness::new().with_session(session(1, 1, idle));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);
}

#[tokio::test]
async fn r2_session_past_the_absolute_limit_is_no_session_even_when_active() {
    let mut record = session(1, 1, Duration::seconds(1));
    record.created_at = NOW - Duration::hours(12) - Duration::seconds(1);
    let h = Harness::new().with_session(record.clone());
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);

    // A login renews the absolute limit: it counts from the later of creation and login.
    record.authenticated_at = Some(NOW - Duration::hours(12));
    let h = Harness::new().with_session(record);
    let (service, _) = h.build();
    assert!(service.recognise(&presented(1, 1)).await.unwrap().is_some());
}

#[tokio::test]
async fn r2_wrong_token_logged_out_session_and_unknown_id_are_no_session() {
    let mut ended = session(2, 1, Duration::seconds(1));
    ended.token_hash = None;
    let mut h = Harness::new()
        .with_session(session(1, 1, Duration::seconds(1)))
        .with_session(ended);
    h.sessions.expect_find().returning(|_| Ok(None));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 2)).await.unwrap(), None);
    assert_eq!(service.recognise(&presented(2, 1)).await.unwrap(), None);
    assert_eq!(service.recognise(&presented(3, 1)).await.unwrap(), None);
    assert_eq!(service.recognise(&nobody()).await.unwrap(), None);
}

#[tokio::test]
async fn r2_another_client_ip_is_no_session_only_while_check_ip_is_on() {
    let mut from_elsewhere = presented(1, 1);
    from_elsewhere.ip = ip("198.51.100.9");
    let h = Harness::new().with_session(session(1, 1, Duration::seconds(1)));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&from_elsewhere).await.unwrap(), None);

    let mut h = Harness::new().with_session(session(1, 1, Duration::seconds(1)));
    h.policy.check_ip = false;
    let (service, _) = h.build();
    assert!(service.recognise(&from_elsewhere).await.unwrap().is_some());
}

#[tokio::test]
async fn r3_touch_is_skipped_inside_the_touch_interval() {
    // No expect_touch: a write would panic the mock.
    let h = Harness::new().with_session(session(1, 1, Duration::seconds(14)));
    let (service, _) = h.build();
    let record = service.recognise(&presented(1, 1)).await.unwrap().unwrap();
    assert_eq!(record.last_activity_at, NOW - Duration::seconds(14));
}

#[tokio::test]
async fn r3_touch_is_written_once_the_interval_has_passed_and_is_conditional() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::seconds(15)));
    let expected_cutoffs = h.policy.cutoffs(NOW);
    h.sessions
        .expect_touch()
        .withf(move |id, hash, cutoffs, now| {
            *id == sid(1) && *hash == token(1).hash() && *cutoffs == expected_cutoffs && *now == NOW
        })
        .times(1)
        .returning(|_, _, _, _| Ok(true));
    let (service, _) = h.build();
    let record = service.recognise(&presented(1, 1)).await.unwrap().unwrap();
    assert_eq!(record.last_activity_at, NOW);
}

#[tokio::test]
async fn r3_touch_interval_zero_writes_and_reads_in_one_conditional_call() {
    let mut h = Harness::new();
    h.policy.touch_interval = Duration::ZERO;
    let cutoffs = h.policy.cutoffs(NOW);
    let mut touched = session(1, 1, Duration::ZERO);
    touched.last_activity_at = NOW;
    let returned = touched.clone();
    // No expect_find: the write is the read.
    h.sessions
        .expect_touch_and_find()
        .withf(move |id, hash, c, ip, now| {
            *id == sid(1)
                && *hash == token(1).hash()
                && *c == cutoffs
                && *ip == Some(self::ip("192.0.2.1"))
                && *now == NOW
        })
        .times(1)
        .returning(move |_, _, _, _, _| Ok(Some(returned.clone())));
    let (service, _) = h.build();
    assert_eq!(
        service.recognise(&presented(1, 1)).await.unwrap(),
        Some(touched)
    );
}

#[tokio::test]
async fn r3_touch_interval_zero_leaves_the_ip_out_when_check_ip_is_off() {
    let mut h = Harness::new();
    h.policy.touch_interval = Duration::ZERO;
    h.policy.check_ip = false;
    h.sessions
        .expect_touch_and_find()
        .withf(|_, _, _, ip, _| ip.is_none())
        .returning(|_, _, _, _, _| Ok(None));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);
}

#[tokio::test]
async fn r3_a_touch_that_finds_the_session_ended_meanwhile_is_no_session() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::minutes(1)));
    h.sessions.expect_touch().returning(|_, _, _, _| Ok(false));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);
}

#[tokio::test]
async fn r2_a_database_failure_is_an_error_not_a_session() {
    let mut h = Harness::new();
    h.sessions
        .expect_find()
        .returning(|_| Err(InfraError::Unavailable(anyhow::anyhow!("down"))));
    let (service, _) = h.build();
    assert!(matches!(
        service.recognise(&presented(1, 1)).await,
        Err(InfraError::Unavailable(_))
    ));
}

// ---- R4 start ----

#[tokio::test]
async fn r4_start_returns_the_presented_valid_session_without_a_new_credential() {
    let h = Harness::new().with_session(session(1, 1, Duration::seconds(1)));
    let (service, events) = h.build();
    let issued = service.start(&presented(1, 1)).await.unwrap();
    assert_eq!(issued.session.id, sid(1));
    assert!(issued.credential.is_none());
    assert!(events.take().is_empty());
}

#[tokio::test]
async fn r4_start_creates_an_anonymous_browser_session_bound_to_the_client_ip() {
    let mut h = Harness::new();
    h.sessions.expect_find().returning(|_| Ok(None));
    h.sessions
        .expect_create()
        .withf(|new| {
            new.token_hash == token(99).hash()
                && new.ip_address == ip("192.0.2.1")
                && new.kind == SessionKind::Browser
                && new.now == NOW
        })
        .times(1)
        .returning(|_| Ok(sid(5)));
    let (service, events) = h.build();
    let issued = service.start(&presented(1, 1)).await.unwrap();
    assert_eq!(issued.session.id, sid(5));
    assert_eq!(issued.session.user, None);
    assert_eq!(issued.credential, Some(Credential::new(sid(5), token(99))));
    assert_eq!(events.take(), ["started:browser"]);
}

// ---- R5 login ----

#[tokio::test]
async fn r5a_a_locked_username_is_refused_before_the_password_is_checked() {
    let until = NOW + Duration::minutes(10);
    let mut h = Harness::new();
    h.lockouts.expect_state().returning(move |_, _| {
        Ok(LockoutState {
            failure_count: 10,
            locked_until: Some(until),
        })
    });
    // No hasher, user or record_failure expectations: touching them would panic.
    let (service, events) = h.build();
    let result = service
        .login(
            &nobody(),
            attempt("alice", "right password", SessionKind::Browser),
        )
        .await;
    assert!(
        matches!(result, Err(LoginError::Locked { until: u, retry_after })
        if u == until && retry_after.seconds() == 600)
    );
    assert_eq!(events.take(), ["login:locked"]);
}

#[tokio::test]
async fn r5a_a_malformed_username_or_overlong_password_records_no_failure() {
    let h = Harness::new().unlocked();
    let (service, events) = h.build();
    let result = service
        .login(
            &nobody(),
            attempt("no spaces", "whatever1234", SessionKind::Browser),
        )
        .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    let result = service
        .login(
            &nobody(),
            attempt("alice", &"x".repeat(1025), SessionKind::Browser),
        )
        .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    assert_eq!(
        events.take(),
        ["login:bad_credentials", "login:bad_credentials"]
    );
}

#[tokio::test]
async fn r5b_an_unknown_user_is_verified_against_a_dummy_hash_and_records_a_failure() {
    let mut h = Harness::new().unlocked();
    h.users.expect_find_by_username().returning(|_| Ok(None));
    h.hasher
        .expect_verify()
        .withf(|_, hash| hash.is_none())
        .times(1)
        .returning(|_, _| Ok(false));
    h.lockouts
        .expect_record_failure()
        .withf(|name, now, _| name.as_str() == "mallory" && *now == NOW)
        .times(1)
        .returning(|_, _, _| {
            Ok(RecordedFailure {
                failure_count: 1,
                locked_until: None,
            })
        });
    let (service, _) = h.build();
    let result = service
        .login(
            &nobody(),
            attempt("mallory", "guess123456", SessionKind::Browser),
        )
        .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
}

#[tokio::test]
async fn r5c_a_wrong_password_logs_out_the_presented_session_and_records_a_failure() {
    let mut h = Harness::new()
        .unlocked()
        .with_user(alice())
        .password_ok(false)
        .with_session(session(1, 1, Duration::seconds(1)));
    h.lockouts
        .expect_record_failure()
        .times(1)
        .returning(|_, _, _| {
            Ok(RecordedFailure {
                failure_count: 3,
                locked_until: None,
            })
        });
    h.sessions
        .expect_end()
        .with(eq(sid(1)), eq(Some(token(1).hash())))
        .times(1)
        .returning(|_, _| Ok(true));
    let (service, events) = h.build();
    let result = service
        .login(
            &presented(1, 1),
            attempt("alice", "wrong password", SessionKind::Browser),
        )
        .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    assert_eq!(events.take(), ["ended:logout:1", "login:bad_credentials"]);
}

#[tokio::test]
async fn r5c_the_failure_that_reaches_the_threshold_still_answers_401_and_starts_a_lock() {
    let mut h = Harness::new()
        .unlocked()
        .with_user(alice())
        .password_ok(false);
    h.lockouts
        .expect_record_failure()
        .withf(|_, _, policy| *policy == LockoutPolicy::default())
        .returning(|_, now, policy| {
            Ok(RecordedFailure {
                failure_count: 10,
                locked_until: policy.lock_after(10, now),
            })
        });
    let (service, events) = h.build();
    let result = service
        .login(
            &nobody(),
            attempt("alice", "wrong password", SessionKind::Browser),
        )
        .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    assert_eq!(events.take(), ["lockout", "login:bad_credentials"]);
}

#[tokio::test]
async fn r7_a_disabled_user_cannot_log_in_even_with_the_right_password() {
    let mut disabled = alice();
    disabled.disabled = true;
    let mut h = Harness::new()
        .unlocked()
        .with_user(disabled)
        .password_ok(true);
    h.lockouts
        .expect_record_failure()
        .times(1)
        .returning(|_, _, _| {
            Ok(RecordedFailure {
                failure_count: 1,
                locked_until: None,
            })
        });
    let (service, _) = h.build();
    let result = service
        .login(
            &nobody(),
            attempt("alice", "right password", SessionKind::Browser),
        )
        .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
}

/// A harness where alice logs in successfully; the login write is checked by `check`.
fn successful_login(
    presented_session: Option<SessionRecord>,
    check: impl Fn(&crate::ports::LoginWrite) -> bool + Send + 'static,
    outcome: LoginOutcome,
) -> Harness {
    let mut h = Harness::new()
        .unlocked()
        .with_user(alice())
        .password_ok(true);
    if let Some(record) = presented_session {
        h = h.with_session(record);
    }
    h.lockouts
        .expect_clear()
        .withf(|name| name.as_str() == "alice")
        .times(1)
        .returning(|_| Ok(()));
    h.sessions
        .expect_login()
        .withf(move |write| check(write))
        .times(1)
        .returning(move |_| Ok(outcome));
    h
}

#[tokio::test]
async fn r5d_login_rotates_the_token_and_keeps_the_session_id() {
    let h = successful_login(
        Some(session(1, 1, Duration::seconds(1))),
        |write| {
            write.user == UserId(7)
                && write.token_hash == token(99).hash()
                && write.now == NOW
                && write.cutoffs == SessionPolicy::default().cutoffs(NOW)
                && write.target
                    == LoginTarget::Existing {
                        id: sid(1),
                        token_hash: token(1).hash(),
                    }
        },
        LoginOutcome {
            session: sid(1),
            created: false,
            replaced: 0,
        },
    );
    let (service, events) = h.build();
    let issued = service
        .login(
            &presented(1, 1),
            attempt("alice", "right password", SessionKind::Browser),
        )
        .await
        .unwrap();
    assert_eq!(issued.credential, Some(Credential::new(sid(1), token(99))));
    assert_eq!(issued.session.user, Some(as_session_user(&alice())));
    assert_eq!(issued.session.authenticated_at, Some(NOW));
    assert_eq!(issued.session.created_at, NOW - Duration::hours(1));
    assert_eq!(events.take(), ["login:success"]);
}

#[tokio::test]
async fn r5d_login_into_another_users_session_logs_it_out_and_creates_a_new_one() {
    let mut bobs = session(1, 1, Duration::seconds(1));
    bobs.user = Some(SessionUser {
        id: UserId(8),
        username: Username::parse("bob").unwrap(),
        superuser: false,
    });
    let mut h = successful_login(
        Some(bobs),
        |write| {
            write.target == LoginTarget::New
                && write.kind == SessionKind::Browser
                && write.ip_address == ip("192.0.2.1")
        },
        LoginOutcome {
            session: sid(2),
            created: true,
            replaced: 0,
        },
    );
    h.sessions
        .expect_end()
        .with(eq(sid(1)), eq(Some(token(1).hash())))
        .times(1)
        .returning(|_, _| Ok(true));
    let (service, events) = h.build();
    let issued = service
        .login(
            &presented(1, 1),
            attempt("alice", "right password", SessionKind::Browser),
        )
        .await
        .unwrap();
    assert_eq!(issued.session.id, sid(2));
    assert_eq!(issued.session.created_at, NOW);
    assert_eq!(
        events.take(),
        ["ended:logout:1", "started:browser", "login:success"]
    );
}

#[tokio::test]
async fn r5e_a_browser_login_ends_the_users_other_browser_sessions() {
    let h = successful_login(
        None,
        |write| write.end_other_browser_sessions,
        LoginOutcome {
            session: sid(3),
            created: true,
            replaced: 2,
        },
    );
    let (service, events) = h.build();
    service
        .login(
            &nobody(),
            attempt("alice", "right password", SessionKind::Browser),
        )
        .await
        .unwrap();
    assert_eq!(
        events.take(),
        ["started:browser", "ended:replaced:2", "login:success"]
    );
}

#[tokio::test]
async fn r5e_single_browser_session_off_ends_nothing() {
    let mut h = successful_login(
        None,
        |write| !write.end_other_browser_sessions,
        LoginOutcome {
            session: sid(3),
            created: true,
            replaced: 0,
        },
    );
    h.policy.single_browser_session = false;
    let (service, _) = h.build();
    assert!(
        service
            .login(
                &nobody(),
                attempt("alice", "right password", SessionKind::Browser)
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn r5e_an_api_login_leaves_the_presented_browser_session_and_the_users_sessions_alone() {
    // The presented anonymous browser session is neither reused nor ended (no expect_end).
    let h = successful_login(
        Some(session(1, 1, Duration::seconds(1))),
        |write| {
            !write.end_other_browser_sessions
                && write.target == LoginTarget::New
                && write.kind == SessionKind::Api
        },
        LoginOutcome {
            session: sid(4),
            created: true,
            replaced: 0,
        },
    );
    let (service, events) = h.build();
    let issued = service
        .login(
            &presented(1, 1),
            attempt("alice", "right password", SessionKind::Api),
        )
        .await
        .unwrap();
    assert_eq!(issued.session.kind, SessionKind::Api);
    assert_eq!(issued.credential, Some(Credential::new(sid(4), token(99))));
    assert_eq!(events.take(), ["started:api", "login:success"]);
}

#[tokio::test]
async fn r5e_an_api_login_reuses_a_presented_api_session() {
    let mut api = session(1, 1, Duration::seconds(1));
    api.kind = SessionKind::Api;
    let h = successful_login(
        Some(api),
        |write| matches!(write.target, LoginTarget::Existing { id, .. } if id == sid(1)),
        LoginOutcome {
            session: sid(1),
            created: false,
            replaced: 0,
        },
    );
    let (service, _) = h.build();
    let issued = service
        .login(
            &presented(1, 1),
            attempt("alice", "right password", SessionKind::Api),
        )
        .await
        .unwrap();
    assert_eq!(issued.session.id, sid(1));
}

// ---- R6 logout, R8 maintenance ----

/// Expects one maintenance run of `sweep`, reporting the given deletions.
fn expect_purge(h: &mut Harness, sweep: Sweep, expired: u64, ended: u64, lockouts: u64) {
    let cutoffs = h.policy.cutoffs(NOW);
    h.sessions
        .expect_purge()
        .with(eq(cutoffs), eq(crate::service::PURGE_BATCH), eq(sweep))
        .times(1)
        .returning(move |_, _, _| Ok((expired, ended)));
    h.lockouts
        .expect_purge()
        .with(eq(NOW), eq(crate::service::PURGE_BATCH), eq(sweep))
        .times(1)
        .returning(move |_, _, _| Ok(lockouts));
}

#[tokio::test]
async fn r6_logout_ends_the_presented_session_then_runs_one_batch_of_maintenance() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::seconds(1)));
    h.sessions
        .expect_end()
        .with(eq(sid(1)), eq(Some(token(1).hash())))
        .times(1)
        .returning(|_, _| Ok(true));
    expect_purge(&mut h, Sweep::OneBatch, 2, 3, 1);
    let (service, events) = h.build();
    service.logout(&presented(1, 1)).await.unwrap();
    assert_eq!(
        events.take(),
        ["ended:logout:1", "ended:expired:2", "purged:6"]
    );
}

#[tokio::test]
async fn r6_logout_without_a_valid_session_still_succeeds_and_maintains() {
    let mut h = Harness::new();
    expect_purge(&mut h, Sweep::OneBatch, 0, 0, 0);
    let (service, events) = h.build();
    service.logout(&nobody()).await.unwrap();
    assert_eq!(events.take(), ["purged:0"]);
}

#[tokio::test]
async fn r8_maintenance_reports_what_it_deleted() {
    let mut h = Harness::new();
    expect_purge(&mut h, Sweep::All, 4, 5, 6);
    let (service, _) = h.build();
    let report = service.maintain().await.unwrap();
    assert_eq!(
        report,
        PurgeReport {
            expired_sessions: 4,
            ended_sessions: 5,
            expired_lockouts: 6
        }
    );
    assert_eq!(report.total(), 15);
}

// ---- R7 passwords ----

fn alices_session() -> SessionRecord {
    let mut record = session(1, 1, Duration::seconds(1));
    record.user = Some(as_session_user(&alice()));
    record.authenticated_at = Some(NOW - Duration::minutes(5));
    record
}

#[tokio::test]
async fn r7_a_wrong_current_password_is_refused_and_records_a_failure() {
    let mut h = Harness::new()
        .unlocked()
        .with_user(alice())
        .password_ok(false)
        .with_session(alices_session());
    h.lockouts
        .expect_record_failure()
        .times(1)
        .returning(|_, _, _| {
            Ok(RecordedFailure {
                failure_count: 1,
                locked_until: None,
            })
        });
    let (service, _) = h.build();
    let result = service
        .change_password(
            &presented(1, 1),
            Password::new("wrong"),
            Password::new("new password 1"),
        )
        .await;
    assert!(matches!(result, Err(ChangePasswordError::WrongPassword)));
}

#[tokio::test]
async fn r7_a_locked_user_cannot_change_password_and_the_password_is_not_checked() {
    let mut h = Harness::new().with_session(alices_session());
    h.lockouts.expect_state().returning(|_, _| {
        Ok(LockoutState {
            failure_count: 10,
            locked_until: Some(NOW + Duration::minutes(1)),
        })
    });
    let (service, _) = h.build();
    let result = service
        .change_password(&presented(1, 1), Password::new("x"), Password::new("short"))
        .await;
    assert!(matches!(result, Err(ChangePasswordError::Locked { .. })));
}

#[tokio::test]
async fn r7_the_new_password_policy_is_checked_after_the_current_password() {
    let h = Harness::new()
        .unlocked()
        .with_user(alice())
        .password_ok(true)
        .with_session(alices_session());
    let (service, _) = h.build();
    let result = service
        .change_password(
            &presented(1, 1),
            Password::new("right"),
            Password::new("short"),
        )
        .await;
    assert!(matches!(result, Err(ChangePasswordError::Policy(_))));
}

#[tokio::test]
async fn r7_an_anonymous_session_cannot_change_a_password() {
    let h = Harness::new().with_session(session(1, 1, Duration::seconds(1)));
    let (service, _) = h.build();
    let result = service
        .change_password(&presented(1, 1), Password::new("a"), Password::new("b"))
        .await;
    assert!(matches!(result, Err(ChangePasswordError::NotLoggedIn)));
}

#[tokio::test]
async fn r7_a_password_change_rotates_the_token_and_ends_the_other_sessions() {
    let mut h = Harness::new()
        .unlocked()
        .with_user(alice())
        .password_ok(true)
        .with_session(alices_session());
    h.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$new")));
    h.users
        .expect_set_password()
        .withf(|user, hash, now, rotation| {
            *user == UserId(7)
                && hash.as_str() == "$argon2id$new"
                && *now == NOW
                && rotation.as_ref().is_some_and(|r| {
                    r.session == sid(1)
                        && r.old_hash == token(1).hash()
                        && r.new_hash == token(99).hash()
                })
        })
        .times(1)
        .returning(|_, _, _, _| Ok(Some(2)));
    let (service, events) = h.build();
    let issued = service
        .change_password(
            &presented(1, 1),
            Password::new("right"),
            Password::new("a new password"),
        )
        .await
        .unwrap();
    assert_eq!(issued.credential, Some(Credential::new(sid(1), token(99))));
    assert_eq!(events.take(), ["ended:password_change:2"]);
}

#[tokio::test]
async fn r7_an_operator_reset_ends_every_session_of_the_user() {
    let mut h = Harness::new().with_user(alice());
    h.hasher
        .expect_hash()
        .returning(|_| Ok(PasswordHash::new("$argon2id$reset")));
    h.users
        .expect_set_password()
        .withf(|user, _, _, rotation| *user == UserId(7) && rotation.is_none())
        .times(1)
        .returning(|_, _, _, _| Ok(Some(3)));
    let (service, events) = h.build();
    service
        .reset_password("alice", Password::new("a fresh password"))
        .await
        .unwrap();
    assert_eq!(events.take(), ["ended:revoked:3"]);
}

#[tokio::test]
async fn r7_disabling_and_deleting_a_user_end_its_sessions() {
    let mut h = Harness::new().with_user(alice());
    h.users
        .expect_set_disabled()
        .with(eq(UserId(7)), eq(true))
        .returning(|_, _| Ok(2));
    h.users
        .expect_delete()
        .with(eq(UserId(7)))
        .returning(|_| Ok(Some(1)));
    let (service, events) = h.build();
    service.set_disabled("alice", true).await.unwrap();
    service.delete_user("alice").await.unwrap();
    assert_eq!(events.take(), ["ended:revoked:2", "ended:revoked:1"]);
}

#[tokio::test]
async fn operations_on_an_unknown_user_are_not_found() {
    let mut h = Harness::new();
    h.users.expect_find_by_username().returning(|_| Ok(None));
    let (service, _) = h.build();
    assert!(matches!(
        service.delete_user("ghost").await,
        Err(UserError::NotFound)
    ));
    assert!(matches!(
        service.user("bad name").await,
        Err(UserError::NotFound)
    ));
    assert!(matches!(
        service
            .reset_password("ghost", Password::new("long enough pw"))
            .await,
        Err(UserError::NotFound)
    ));
}

#[tokio::test]
async fn creating_a_user_validates_username_and_password_before_hashing() {
    let (service, _) = Harness::new().build();
    assert!(matches!(
        service
            .create_user("bad name", Password::new("long enough pw"), false)
            .await,
        Err(crate::CreateUserError::InvalidUsername(_))
    ));
    assert!(matches!(
        service
            .create_user("carol", Password::new("short"), false)
            .await,
        Err(crate::CreateUserError::Policy(_))
    ));
}

// ---- R13 client state ----

#[tokio::test]
async fn r13_oversized_data_is_refused_before_any_read() {
    let (service, _) = Harness::new().build();
    let mut object = serde_json::Map::new();
    object.insert("k".into(), "v".repeat(20_000).into());
    assert!(matches!(
        service.set_data(&presented(1, 1), object).await,
        Err(SetDataError::TooLarge(_))
    ));
}

#[tokio::test]
async fn r13_data_is_written_only_while_the_session_still_holds_the_token() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::seconds(1)));
    h.sessions
        .expect_set_data()
        .withf(|id, hash, _, _| *id == sid(1) && *hash == token(1).hash())
        .returning(|_, _, _, _| Ok(false));
    let (service, _) = h.build();
    assert!(matches!(
        service
            .set_data(&presented(1, 1), serde_json::Map::new())
            .await,
        Err(SetDataError::NoSession)
    ));
}

#[tokio::test]
async fn r13_without_a_session_there_is_no_data() {
    let (service, _) = Harness::new().build();
    assert_eq!(service.data(&nobody()).await.unwrap(), None);
}

// ---- self-service ending ----

#[tokio::test]
async fn ending_an_own_session_ends_it_with_its_current_token() {
    let mut h = Harness::new().with_session(alices_session());
    h.sessions
        .expect_end()
        .with(eq(sid(1)), eq(Some(token(1).hash())))
        .times(1)
        .returning(|_, _| Ok(true));
    let (service, events) = h.build();
    assert!(service.end_own_session(UserId(7), sid(1)).await.unwrap());
    assert_eq!(events.take(), ["ended:revoked:1"]);
}

#[tokio::test]
async fn another_users_unknown_or_expired_session_is_not_ended_and_looks_the_same() {
    let mut expired = alices_session();
    expired.id = sid(2);
    expired.last_activity_at = NOW - Duration::hours(1);
    let mut h = Harness::new()
        .with_session(alices_session())
        .with_session(expired);
    h.sessions.expect_find().returning(|_| Ok(None));
    // No expect_end: ending anything would panic the mock.
    let (service, events) = h.build();
    assert!(!service.end_own_session(UserId(8), sid(1)).await.unwrap());
    assert!(!service.end_own_session(UserId(7), sid(2)).await.unwrap());
    assert!(!service.end_own_session(UserId(7), sid(3)).await.unwrap());
    assert!(events.take().is_empty());
}
