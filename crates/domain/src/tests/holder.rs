//! The session holder's rules: R2-R7, R13, R14 and R15.

use mockall::Sequence;
use mockall::predicate::eq;
use time::Duration;

use super::*;
use crate::error::{ChangePasswordError, LoginError, SetDataError, StartError};
use crate::holder::{LoginAttempt, LoginPass, SessionHolder};
use crate::model::{Attempt, Counted};
use crate::ports::{LockoutPurge, Sweep};
use crate::{Password, SessionSettings};

fn attempt(username: &str, password: &str, kind: SessionKind) -> LoginAttempt {
    LoginAttempt {
        username: username.into(),
        password: Password::new(password),
        kind,
    }
}

fn counted(failure_count: u32) -> Counted {
    Counted {
        failure_count,
        started_lock: None,
    }
}

impl Harness {
    /// Every attempt is counted (as the `n`-th) with no lock started.
    fn counts(mut self, n: u32) -> Self {
        self.lockouts
            .expect_attempt()
            .returning(move |_, _, _| Ok(Attempt::Counted(counted(n))));
        // A failed guess is confirmed with its records, which go to the log.
        let log = self.log.clone();
        self.lockouts
            .expect_failed()
            .withf(move |_, c, _| *c == counted(n))
            .returning(move |_, _, records| {
                for record in &records {
                    log.push(format!("failed:{}", describe(record)));
                }
                Ok(())
            });
        self
    }

    /// A verified password clears exactly `expected`'s count, once.
    fn clears(mut self, expected: Counted) -> Self {
        self.lockouts
            .expect_verified()
            .withf(move |name, c| name.as_str() == "alice" && *c == expected)
            .times(1)
            .returning(|_, _| Ok(()));
        self
    }

    fn with_policy(mut self, change: impl FnOnce(&mut SessionSettings)) -> Self {
        let mut settings = SessionSettings::default();
        change(&mut settings);
        self.policy = SessionPolicy::new(settings).unwrap();
        self
    }
}

async fn login(
    service: &Sessions,
    presented: &Presented,
    attempt: LoginAttempt,
) -> Result<crate::Issued, LoginError> {
    service
        .login(presented, LoginPass::granted(), attempt)
        .await
}

// ---- R2 recognition and R3 touch ----

#[tokio::test]
async fn r2_session_exactly_at_the_idle_limit_is_valid() {
    let at_limit = session(1, 1, Duration::minutes(30));
    let mut h = Harness::new().with_session(at_limit);
    h.sessions.expect_touch().returning(|_, _| Ok(true));
    let (service, _) = h.build();
    assert!(service.recognise(&presented(1, 1)).await.unwrap().is_some());
}

#[tokio::test]
async fn r2_session_one_second_past_the_idle_limit_is_no_session() {
    let past = session(1, 1, Duration::minutes(30) + Duration::seconds(1));
    let (service, _) = Harness::new().with_session(past).build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);
}

#[tokio::test]
async fn r2_session_past_the_absolute_limit_is_no_session_even_when_active() {
    let mut old = session(1, 1, Duration::ZERO);
    old.created_at = NOW - Duration::hours(12) - Duration::seconds(1);
    let (service, _) = Harness::new().with_session(old.clone()).build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);
    old.authenticated_at = Some(NOW - Duration::hours(12));
    let (service, _) = Harness::new().with_session(old).build();
    assert!(service.recognise(&presented(1, 1)).await.unwrap().is_some());
}

#[tokio::test]
async fn r2_wrong_token_and_unknown_id_are_no_session() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::ZERO));
    h.sessions
        .expect_find()
        .with(eq(sid(2)))
        .returning(|_| Ok(None));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 2)).await.unwrap(), None);
    assert_eq!(service.recognise(&presented(2, 1)).await.unwrap(), None);
    assert_eq!(service.recognise(&nobody()).await.unwrap(), None);
}

#[tokio::test]
async fn r2_another_client_ip_is_no_session_only_while_check_ip_is_on() {
    let mut from_elsewhere = presented(1, 1);
    from_elsewhere.ip = ip("198.51.100.9");
    let h = Harness::new().with_session(session(1, 1, Duration::ZERO));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&from_elsewhere).await.unwrap(), None);
    let h = Harness::new()
        .with_session(session(1, 1, Duration::ZERO))
        .with_policy(|s| s.check_ip = false);
    let (service, _) = h.build();
    assert!(service.recognise(&from_elsewhere).await.unwrap().is_some());
}

#[tokio::test]
async fn r3_touch_is_skipped_inside_the_touch_interval() {
    // No touch expectation: a touch would panic.
    let fresh = session(1, 1, Duration::seconds(14));
    let (service, _) = Harness::new().with_session(fresh).build();
    assert!(service.recognise(&presented(1, 1)).await.unwrap().is_some());
}

#[tokio::test]
async fn r3_touch_is_written_once_the_interval_has_passed_and_is_conditional() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::seconds(15)));
    h.sessions
        .expect_touch()
        .withf(|t, now| *t == target(1, 1) && *now == NOW)
        .times(1)
        .returning(|_, _| Ok(true));
    let (service, _) = h.build();
    let found = service.recognise(&presented(1, 1)).await.unwrap().unwrap();
    assert_eq!(found.last_activity_at, NOW);
}

#[tokio::test]
async fn r3_a_touch_that_finds_the_session_ended_meanwhile_is_no_session() {
    let mut h = Harness::new().with_session(session(1, 1, Duration::minutes(1)));
    h.sessions.expect_touch().returning(|_, _| Ok(false));
    let (service, _) = h.build();
    assert_eq!(service.recognise(&presented(1, 1)).await.unwrap(), None);
}

#[tokio::test]
async fn r3_touch_interval_zero_writes_and_reads_in_one_conditional_call() {
    for check_ip in [true, false] {
        let mut h = Harness::new().with_policy(|s| {
            s.touch_interval = Duration::ZERO;
            s.check_ip = check_ip;
        });
        let expected_ip = check_ip.then(|| ip("192.0.2.1"));
        h.sessions
            .expect_touch_and_find()
            .withf(move |t, now| {
                t.id == sid(1)
                    && t.token_hash == token(1).hash()
                    && t.ip == expected_ip
                    && *now == NOW
            })
            .times(1)
            .returning(|_, _| {
                let mut touched = session(1, 1, Duration::ZERO);
                touched.last_activity_at = NOW;
                Ok(Some(touched))
            });
        let (service, _) = h.build();
        let found = service.recognise(&presented(1, 1)).await.unwrap().unwrap();
        assert_eq!(found.last_activity_at, NOW);
    }
}

#[tokio::test]
async fn r2_a_database_failure_is_an_error_not_a_session() {
    let mut h = Harness::new();
    h.sessions.expect_find().returning(|_| {
        Err(InfraError::Unavailable(anyhow::anyhow!(
            "connection refused"
        )))
    });
    let (service, _) = h.build();
    assert!(matches!(
        service.recognise(&presented(1, 1)).await,
        Err(InfraError::Unavailable(_))
    ));
}

// ---- R4 start, R14 ----

#[tokio::test]
async fn r4_start_returns_the_presented_valid_session_without_a_credential_or_a_token() {
    // No limits expectation: taking a token would panic.
    let (service, events) = Harness::new()
        .with_session(session(1, 1, Duration::ZERO))
        .build();
    let issued = service.start(&presented(1, 1)).await.unwrap();
    assert_eq!(issued.session.id, sid(1));
    assert!(issued.credential.is_none());
    assert!(events.take().is_empty());
}

#[tokio::test]
async fn r4_start_creates_an_anonymous_browser_session_bound_to_the_client_ip() {
    let mut h = Harness::new();
    h.limits
        .expect_admit()
        .with(eq(LimitedAction::SessionStart), eq(ip("192.0.2.1")))
        .times(1)
        .returning(|_, _| Ok(()));
    h.sessions
        .expect_create()
        .withf(|new| {
            new.token_hash == token(99).hash()
                && new.ip_address == ip("192.0.2.1")
                && new.kind == SessionKind::Browser
                && new.user.is_none()
                && new.now == NOW
        })
        .times(1)
        .returning(|_| Ok(sid(5)));
    let (service, events) = h.build();
    let issued = service.start(&nobody()).await.unwrap();
    assert_eq!(issued.credential, Some(Credential::new(sid(5), token(99))));
    assert_eq!(issued.session.user, None);
    assert_eq!(events.take(), ["started:browser"]);
}

#[tokio::test]
async fn r14_a_start_over_the_address_limit_creates_no_row() {
    // No create expectation: a row would panic.
    let (service, events) = Harness::new().over_the_limit(1500).build();
    let result = service.start(&nobody()).await;
    assert!(matches!(result, Err(StartError::RateLimited(limited)) if limited.0.seconds() == 2));
    assert_eq!(events.take(), ["limited:session_start"]);
}

#[tokio::test]
async fn r14_a_login_over_the_address_limit_is_refused_before_anything_is_read() {
    let (service, events) = Harness::new().over_the_limit(10).build();
    let refused = service.admit_login(ip("192.0.2.1"));
    assert!(matches!(refused, Err(limited) if limited.0.seconds() == 1));
    assert_eq!(events.take(), ["limited:login"]);
    let mut h = Harness::new();
    h.limits
        .expect_admit()
        .with(eq(LimitedAction::Login), eq(ip("192.0.2.1")))
        .times(1)
        .returning(|_, _| Ok(()));
    let (service, events) = h.build();
    assert!(service.admit_login(ip("192.0.2.1")).is_ok());
    assert!(events.take().is_empty());
}

// ---- R5 login, R9 counting, R15 ----

#[tokio::test]
async fn r15_a_saturated_login_records_nothing() {
    // No lockouts, users or sessions expectations: touching any of them would panic.
    let (service, events) = Harness::new().saturated().build();
    let result = login(
        &service,
        &presented(1, 1),
        attempt("alice", "pw", SessionKind::Browser),
    )
    .await;
    assert!(matches!(result, Err(LoginError::Saturated(_))));
    assert_eq!(events.take(), ["shed"]);
}

#[tokio::test]
async fn r5f_a_locked_username_is_refused_before_the_password_is_checked() {
    let until = NOW + Duration::minutes(10);
    let mut h = Harness::new();
    h.lockouts
        .expect_attempt()
        .withf(|name, now, policy| {
            name.as_str() == "alice" && *now == NOW && *policy == LockoutPolicy::default()
        })
        .returning(move |_, _, _| {
            Ok(Attempt::Locked {
                until,
                lapsed: false,
            })
        });
    // No hasher verify or user expectations: touching them would panic.
    let (service, events) = h.build();
    let result = login(
        &service,
        &nobody(),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await;
    assert!(
        matches!(result, Err(LoginError::Locked { until: u, retry_after })
        if u == until && retry_after.seconds() == 600)
    );
    assert_eq!(events.take(), ["login:locked"]);
}

#[tokio::test]
async fn r19_the_first_attempt_to_meet_a_lapsed_lease_records_the_lock_that_now_stands() {
    // The attempt that started the lock died before its outcome; the lease ran out.
    let until = NOW + Duration::minutes(10);
    for first in [true, false] {
        let mut h = Harness::new();
        h.lockouts.expect_attempt().returning(move |_, _, _| {
            Ok(Attempt::Locked {
                until,
                lapsed: true,
            })
        });
        let log = h.log.clone();
        h.lockouts
            .expect_stood()
            .withf(move |name, u, record| {
                name.as_str() == "alice"
                    && *u == until
                    && describe(record)
                        == "lock_started:alice:lease=lapsed,until=2026-01-01T12:10:00Z"
            })
            .times(1)
            .returning(move |_, _, _| {
                log.push("stood".into());
                Ok(first)
            });
        let (service, events) = h.build();
        let result = login(
            &service,
            &nobody(),
            attempt("alice", "right", SessionKind::Browser),
        )
        .await;
        assert!(matches!(result, Err(LoginError::Locked { .. })));
        // Only the call that made it stand reports it; the refusal itself records nothing.
        let expected: &[&str] = if first {
            &["stood", "lockout", "audited:lock_started", "login:locked"]
        } else {
            &["stood", "login:locked"]
        };
        assert_eq!(events.take(), expected);
    }
}

#[tokio::test]
async fn r5a_a_malformed_username_counts_nothing_and_an_overlong_password_sees_the_lock_first() {
    let h = Harness::new().unlocked();
    let (service, events) = h.build();
    let malformed = attempt("no spaces", "whatever1234", SessionKind::Browser);
    assert!(matches!(
        login(&service, &nobody(), malformed).await,
        Err(LoginError::InvalidCredentials)
    ));
    let overlong = attempt("alice", &"x".repeat(1025), SessionKind::Browser);
    assert!(matches!(
        login(&service, &nobody(), overlong).await,
        Err(LoginError::InvalidCredentials)
    ));
    assert_eq!(
        events.take(),
        [
            "audit:login_failed:no spaces:reason=bad_credentials",
            "audited:login_failed",
            "login:bad_credentials",
            "audit:login_failed:alice:reason=bad_credentials",
            "audited:login_failed",
            "login:bad_credentials",
        ]
    );

    let until = NOW + Duration::minutes(3);
    let mut h = Harness::new();
    h.lockouts.expect_state().returning(move |_, _| {
        Ok(LockoutState {
            failure_count: 10,
            locked_until: Some(until),
            provisional: false,
        })
    });
    let (service, _) = h.build();
    let overlong = attempt("alice", &"x".repeat(1025), SessionKind::Browser);
    assert!(matches!(
        login(&service, &nobody(), overlong).await,
        Err(LoginError::Locked { .. })
    ));
}

#[tokio::test]
async fn r9_the_attempt_is_counted_before_its_password_is_verified() {
    let mut seq = Sequence::new();
    let mut h = Harness::new().with_user(alice());
    h.lockouts
        .expect_attempt()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(Attempt::Counted(counted(4))));
    h.hasher
        .expect_verify()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Ok(false));
    h.expect_failed(counted(4));
    let (service, events) = h.build();
    let result = login(
        &service,
        &nobody(),
        attempt("alice", "wrong", SessionKind::Browser),
    )
    .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    // No `verified` expectation: a failed attempt stays counted, and is recorded (R19).
    assert_eq!(
        events.take(),
        [
            "failed:login_failed:alice:reason=bad_credentials",
            "audited:login_failed",
            "login:bad_credentials"
        ]
    );
}

#[tokio::test]
async fn r5b_an_unknown_user_is_verified_against_a_dummy_hash_and_stays_counted() {
    let mut h = Harness::new().counts(1);
    h.users.expect_find_by_username().returning(|_| Ok(None));
    h.hasher
        .expect_verify()
        .withf(|_, _, hash| hash.is_none())
        .times(1)
        .returning(|_, _, _| Ok(false));
    let (service, _) = h.build();
    let result = login(
        &service,
        &nobody(),
        attempt("mallory", "guess", SessionKind::Browser),
    )
    .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
}

#[tokio::test]
async fn r5c_a_wrong_password_logs_out_the_presented_session_of_either_kind() {
    for kind in [SessionKind::Browser, SessionKind::Api] {
        let mut h = Harness::new()
            .counts(3)
            .with_user(alice())
            .password_ok(false)
            .with_session(session(1, 1, Duration::seconds(1)));
        h.expect_end(1, 1, true);
        let (service, events) = h.build();
        let result = login(&service, &presented(1, 1), attempt("alice", "wrong", kind)).await;
        assert!(matches!(result, Err(LoginError::InvalidCredentials)));
        assert_eq!(
            events.take(),
            [
                "ended:logout:1",
                "failed:login_failed:alice:reason=bad_credentials",
                "audited:login_failed",
                "login:bad_credentials",
            ]
        );
    }
}

#[tokio::test]
async fn r9_a_failed_attempt_whose_count_started_a_lock_reports_the_lock_that_stands() {
    let mut h = Harness::new().with_user(alice()).password_ok(false);
    h.lockouts.expect_attempt().returning(|_, now, policy| {
        Ok(Attempt::Counted(Counted {
            failure_count: 10,
            started_lock: policy.lock_after(10, now),
        }))
    });
    let started = Counted {
        failure_count: 10,
        started_lock: Some(NOW + Duration::minutes(10)),
    };
    h.expect_failed(started);
    let (service, events) = h.build();
    let result = login(
        &service,
        &nobody(),
        attempt("alice", "wrong", SessionKind::Browser),
    )
    .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    assert_eq!(
        events.take(),
        [
            "failed:login_failed:alice:reason=bad_credentials",
            "failed:lock_started:alice:failures=10,until=2026-01-01T12:10:00Z",
            "lockout",
            "audited:login_failed",
            "audited:lock_started",
            "login:bad_credentials",
        ]
    );
}

/// Alice's API login with the right password, from nowhere in particular.
async fn alice_logs_in_over_the_api(service: &Sessions) -> Result<crate::Issued, LoginError> {
    login(
        service,
        &nobody(),
        attempt("alice", "right password", SessionKind::Api),
    )
    .await
}

/// The lock is provisional `provisional` looks before its verification ends; `attempts` are
/// what the attempt answers, in turn.
fn provisional_then(h: &mut Harness, looks: usize, attempts: Vec<Attempt>) {
    let mut answers = attempts.into_iter();
    h.lockouts
        .expect_attempt()
        .times(answers.len())
        .returning(move |_, _, _| Ok(answers.next().unwrap()));
    let mut seen = 0;
    h.lockouts.expect_state().returning(move |_, _| {
        seen += 1;
        Ok(LockoutState {
            failure_count: 10,
            locked_until: Some(NOW + Duration::minutes(10)),
            provisional: seen <= looks,
        })
    });
}

#[tokio::test]
async fn r9_an_attempt_meeting_a_provisional_lock_waits_and_is_counted_afresh_once_it_goes() {
    let mut h = Harness::new().with_user(alice()).password_ok(true);
    provisional_then(
        &mut h,
        2,
        vec![Attempt::Provisional, Attempt::Counted(counted(1))],
    );
    let mut admissions = 0;
    h.hasher = MockPasswordHasher::new();
    h.hasher.expect_verify().returning(|_, _, _| Ok(true));
    h.hasher.expect_admit().times(2).returning(move || {
        admissions += 1;
        Ok(HashTicket::new(admissions))
    });
    let mut h = h.clears(counted(1));
    h.script.new_id = 8;
    let (service, log) = h.build();
    let issued = alice_logs_in_over_the_api(&service).await.unwrap();
    assert_eq!(issued.session.id, sid(8));
    let log = log.take();
    let sleeps = log.iter().filter(|entry| *entry == "sleep:50ms").count();
    assert_eq!(sleeps, 3, "it waited for the verification: {log:?}");
    assert!(log.contains(&"login:success".to_owned()), "{log:?}");
}

#[tokio::test]
async fn r9_an_attempt_whose_provisional_lock_then_stands_is_refused_with_the_real_time() {
    let until = NOW + Duration::minutes(10);
    let mut h = Harness::new();
    provisional_then(
        &mut h,
        0,
        vec![
            Attempt::Provisional,
            Attempt::Locked {
                until,
                lapsed: false,
            },
        ],
    );
    let (service, log) = h.build();
    let result = alice_logs_in_over_the_api(&service).await;
    let Err(LoginError::Locked { retry_after, .. }) = result else {
        panic!("{result:?}");
    };
    assert_eq!(retry_after.seconds(), 600);
    assert_eq!(log.take(), ["sleep:50ms", "login:locked"]);
}

#[tokio::test]
async fn r9_waiting_past_the_lease_is_refused_for_a_second_and_counts_nothing() {
    let mut h = Harness::new();
    provisional_then(&mut h, usize::MAX, vec![Attempt::Provisional]);
    let (service, log) = h.build();
    let result = alice_logs_in_over_the_api(&service).await;
    let Err(LoginError::Locked { retry_after, .. }) = result else {
        panic!("{result:?}");
    };
    assert_eq!(retry_after.seconds(), 1);
    let log = log.take();
    let waited = log.iter().filter(|entry| *entry == "sleep:50ms").count() * 50;
    assert_eq!(
        waited as i64,
        LockoutPolicy::LEASE.whole_milliseconds() as i64,
        "it waited the lease, no more"
    );
    assert_eq!(log.last().map(String::as_str), Some("login:locked"));
}

#[tokio::test]
async fn r9_a_verified_password_removes_its_own_count_and_the_lock_it_started() {
    let own = Counted {
        failure_count: 10,
        started_lock: Some(NOW + Duration::minutes(10)),
    };
    let mut h = Harness::new()
        .with_user(alice())
        .password_ok(true)
        .clears(own);
    h.lockouts
        .expect_attempt()
        .returning(move |_, _, _| Ok(Attempt::Counted(own)));
    let (service, events) = h.build();
    let issued = login(
        &service,
        &nobody(),
        attempt("alice", "right", SessionKind::Api),
    )
    .await
    .unwrap();
    assert_eq!(issued.session.user, Some(as_session_user(&alice())));
    // The lock it started was removed: no lockout is reported.
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:record_login:7",
            "tx:create:api:t99:user7:192.0.2.1",
            "tx:audit:login_succeeded:alice:kind=api",
            "tx:commit",
            "audited:login_succeeded",
            "started:api",
            "login:success",
        ]
    );
}

#[tokio::test]
async fn r5d_a_login_the_connection_interrupted_decides_again_and_issues_one_session() {
    let mut h = alice_logs_in(None);
    h.script.interrupting("record_login", 2);
    let (service, events) = h.build();
    let issued = login(
        &service,
        &nobody(),
        attempt("alice", "right", SessionKind::Api),
    )
    .await
    .unwrap();
    assert_eq!(issued.session.id, sid(50));
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:record_login:interrupted",
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:record_login:interrupted",
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:record_login:7",
            "tx:create:api:t99:user7:192.0.2.1",
            "tx:audit:login_succeeded:alice:kind=api",
            "tx:commit",
            "audited:login_succeeded",
            "started:api",
            "login:success",
        ]
    );
}

#[tokio::test]
async fn r7_a_disabled_user_cannot_log_in_even_with_the_right_password() {
    let mut disabled = alice();
    disabled.disabled = true;
    // No `verified` expectation: the attempt stays counted.
    let h = Harness::new()
        .counts(1)
        .with_user(disabled)
        .password_ok(true);
    let (service, events) = h.build();
    let result = login(
        &service,
        &nobody(),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    assert_eq!(
        events.take(),
        [
            "failed:login_failed:alice:reason=disabled",
            "audited:login_failed",
            "login:bad_credentials",
        ]
    );
}

/// Alice logs in with the right password (counted as her 1st attempt), presenting `record`.
fn alice_logs_in(presented_session: Option<SessionRecord>) -> Harness {
    let h = Harness::new()
        .counts(1)
        .with_user(alice())
        .password_ok(true)
        .clears(counted(1));
    match presented_session {
        Some(record) => h.with_session(record),
        None => h,
    }
}

#[tokio::test]
async fn r5d_login_rotates_the_token_and_keeps_the_session_id() {
    let (service, events) = alice_logs_in(Some(session(1, 1, Duration::ZERO))).build();
    let issued = login(
        &service,
        &presented(1, 1),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await
    .unwrap();
    assert_eq!(issued.session.id, sid(1));
    assert_eq!(issued.credential, Some(Credential::new(sid(1), token(99))));
    assert_eq!(issued.session.authenticated_at, Some(NOW));
    assert_eq!(issued.session.created_at, NOW - Duration::hours(1));
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:record_login:7",
            "tx:bind:1:t1->t99:user7",
            "tx:end_sessions:user7:browser:except:1",
            "tx:audit:login_succeeded:alice:kind=browser",
            "tx:commit",
            "audited:login_succeeded",
            "login:success",
        ]
    );
}

#[tokio::test]
async fn r5d_a_presented_session_that_ended_meanwhile_gets_a_new_one() {
    let mut h = alice_logs_in(Some(session(1, 1, Duration::ZERO)));
    h.script.target_matches = false;
    let (service, events) = h.build();
    let issued = login(
        &service,
        &presented(1, 1),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await
    .unwrap();
    assert_eq!(issued.session.id, sid(50));
    assert_eq!(issued.session.created_at, NOW);
    let log = events.take();
    assert_eq!(
        log[2..5],
        [
            "tx:bind:1:t1->t99:user7".to_owned(),
            "tx:create:browser:t99:user7:192.0.2.1".to_owned(),
            "tx:end_sessions:user7:browser:except:50".to_owned(),
        ]
    );
    assert!(log.contains(&"started:browser".to_owned()));
}

#[tokio::test]
async fn r5d_an_operators_change_wins_the_race_the_login_is_refused_and_its_count_removed() {
    let mut h = alice_logs_in(Some(session(1, 1, Duration::ZERO)));
    h.script.account_unchanged = false;
    h.expect_end(1, 1, true);
    let (service, events) = h.build();
    let result = login(
        &service,
        &presented(1, 1),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await;
    assert!(matches!(result, Err(LoginError::InvalidCredentials)));
    // Nothing after the lock, no commit; the presented session is logged out.
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "ended:logout:1",
            "audit:login_failed:alice:reason=bad_credentials",
            "audited:login_failed",
            "login:bad_credentials",
        ]
    );
}

#[tokio::test]
async fn r5d_login_into_another_users_session_of_that_kind_logs_it_out_first() {
    let mut bobs = session(1, 1, Duration::ZERO);
    bobs.user = Some(SessionUser {
        id: UserId(8),
        username: Username::parse("bob").unwrap(),
        superuser: false,
    });
    let mut h = alice_logs_in(Some(bobs));
    h.expect_end(1, 1, true);
    let (service, events) = h.build();
    let issued = login(
        &service,
        &presented(1, 1),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await
    .unwrap();
    assert_eq!(issued.session.id, sid(50));
    // Bob's session is logged out, with its record, before alice's transaction.
    assert_eq!(
        events.take()[..5],
        [
            "end:logout:bob:".to_owned(),
            "ended:logout:1".to_owned(),
            "audited:logout".to_owned(),
            "tx:lock_user:7:unchanged:$argon2id$alice".to_owned(),
            "tx:record_login:7".to_owned(),
        ]
    );
}

#[tokio::test]
async fn r5e_a_presented_session_of_the_other_kind_is_left_alone_whoever_holds_it() {
    let mut alices_browser = session(1, 1, Duration::ZERO);
    alices_browser.user = Some(as_session_user(&alice()));
    let mut bobs_browser = session(1, 1, Duration::ZERO);
    bobs_browser.user = Some(SessionUser {
        id: UserId(8),
        username: Username::parse("bob").unwrap(),
        superuser: false,
    });
    for held in [alices_browser, bobs_browser, session(1, 1, Duration::ZERO)] {
        // No `end` expectation: ending the browser session would panic.
        let (service, events) = alice_logs_in(Some(held)).build();
        let issued = login(
            &service,
            &presented(1, 1),
            attempt("alice", "right", SessionKind::Api),
        )
        .await
        .unwrap();
        assert_eq!(issued.session.id, sid(50));
        assert_eq!(
            events.take(),
            [
                "tx:lock_user:7:unchanged:$argon2id$alice",
                "tx:record_login:7",
                "tx:create:api:t99:user7:192.0.2.1",
                "tx:audit:login_succeeded:alice:kind=api",
                "tx:commit",
                "audited:login_succeeded",
                "started:api",
                "login:success",
            ]
        );
    }
}

#[tokio::test]
async fn r5e_a_browser_login_ends_the_users_other_browser_sessions() {
    let mut h = alice_logs_in(None);
    h.script.ended = 2;
    let (service, events) = h.build();
    login(
        &service,
        &nobody(),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await
    .unwrap();
    let log = events.take();
    assert!(log.contains(&"tx:end_sessions:user7:browser:except:50".to_owned()));
    assert_eq!(
        log[log.len() - 8..],
        [
            "tx:audit:login_succeeded:alice:kind=browser".to_owned(),
            "tx:audit:sessions_ended:alice:cause=replaced,count=2".to_owned(),
            "tx:commit".to_owned(),
            "audited:login_succeeded".to_owned(),
            "audited:sessions_ended".to_owned(),
            "started:browser".to_owned(),
            "ended:replaced:2".to_owned(),
            "login:success".to_owned(),
        ]
    );
}

#[tokio::test]
async fn r5e_single_browser_session_off_ends_nothing() {
    let h = alice_logs_in(None).with_policy(|s| s.single_browser_session = false);
    let (service, events) = h.build();
    login(
        &service,
        &nobody(),
        attempt("alice", "right", SessionKind::Browser),
    )
    .await
    .unwrap();
    assert!(
        !events
            .take()
            .iter()
            .any(|e| e.starts_with("tx:end_sessions"))
    );
}

#[tokio::test]
async fn r5e_an_api_login_reuses_a_presented_api_session_and_ends_nothing() {
    let mut api = session(1, 1, Duration::ZERO);
    api.kind = SessionKind::Api;
    let (service, events) = alice_logs_in(Some(api)).build();
    let issued = login(
        &service,
        &presented(1, 1),
        attempt("alice", "right", SessionKind::Api),
    )
    .await
    .unwrap();
    assert_eq!(issued.session.id, sid(1));
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:record_login:7",
            "tx:bind:1:t1->t99:user7",
            "tx:audit:login_succeeded:alice:kind=api",
            "tx:commit",
            "audited:login_succeeded",
            "login:success",
        ]
    );
}

// ---- R6 logout, R8 maintenance ----

fn expect_one_batch(h: &mut Harness, expired: u64) {
    h.sessions
        .expect_purge()
        .withf(|cutoffs, batch, sweep, record| {
            *cutoffs == SessionPolicy::default().cutoffs(NOW)
                && *batch == crate::service::PURGE_BATCH
                && *sweep == Sweep::OneBatch
                && describe(record) == "sessions_ended:-:cause=expired"
        })
        .times(1)
        .returning(move |_, _, _, _| Ok(expired));
    h.lockouts
        .expect_purge()
        .with(
            eq(NOW),
            eq(crate::service::PURGE_BATCH),
            eq(Sweep::OneBatch),
        )
        .times(1)
        .returning(|_, _, _| Ok(LockoutPurge::default()));
}

#[tokio::test]
async fn r6_logout_ends_the_presented_session_with_its_record_then_maintains() {
    // One read tells whose session it is; the conditional write checks the token, validity
    // and address again. A logged-in session's logout is recorded with it (R19); an
    // anonymous one's is not.
    for user in [true, false] {
        let mut record = session(1, 1, Duration::ZERO);
        if user {
            record.user = Some(as_session_user(&alice()));
        }
        let mut h = Harness::new().with_session(record);
        h.expect_end(1, 1, true);
        expect_one_batch(&mut h, 3);
        let (service, events) = h.build();
        service.logout(&presented(1, 1)).await.unwrap();
        let expected: &[&str] = if user {
            &[
                "end:logout:alice:",
                "ended:logout:1",
                "audited:logout",
                "ended:expired:3",
                "purged:3",
            ]
        } else {
            &["ended:logout:1", "ended:expired:3", "purged:3"]
        };
        assert_eq!(events.take(), expected);
    }
}

#[tokio::test]
async fn r6_logout_without_a_valid_session_still_succeeds_and_maintains() {
    let mut h = Harness::new();
    h.sessions.expect_find().returning(|_| Ok(None));
    expect_one_batch(&mut h, 0);
    let (service, events) = h.build();
    service.logout(&presented(1, 1)).await.unwrap();
    assert_eq!(events.take(), ["purged:0"]);
    let mut h = Harness::new();
    expect_one_batch(&mut h, 0);
    let (service, _) = h.build();
    service.logout(&nobody()).await.unwrap();
}

// ---- R7 password change ----

fn alices_session() -> SessionRecord {
    let mut record = session(1, 1, Duration::ZERO);
    record.user = Some(as_session_user(&alice()));
    record.authenticated_at = Some(NOW - Duration::minutes(5));
    record
}

#[tokio::test]
async fn r15_a_saturated_password_change_records_nothing() {
    let (service, events) = Harness::new().saturated().build();
    let result = service
        .change_password(&presented(1, 1), Password::new("a"), Password::new("b"))
        .await;
    assert!(matches!(result, Err(ChangePasswordError::Saturated(_))));
    assert_eq!(events.take(), ["shed"]);
}

#[tokio::test]
async fn r7_an_anonymous_session_cannot_change_a_password() {
    let (service, _) = Harness::new()
        .with_session(session(1, 1, Duration::ZERO))
        .build();
    let result = service
        .change_password(&presented(1, 1), Password::new("a"), Password::new("b"))
        .await;
    assert!(matches!(result, Err(ChangePasswordError::NotLoggedIn)));
}

#[tokio::test]
async fn r7_a_locked_user_cannot_change_a_password_and_it_is_not_checked() {
    let mut h = Harness::new().with_session(alices_session());
    h.lockouts.expect_attempt().returning(|_, _, _| {
        Ok(Attempt::Locked {
            until: NOW + Duration::seconds(30),
            lapsed: false,
        })
    });
    let (service, _) = h.build();
    let result = service
        .change_password(
            &presented(1, 1),
            Password::new("right"),
            Password::new("new one 1234"),
        )
        .await;
    assert!(matches!(
        result,
        Err(ChangePasswordError::Locked { retry_after, .. }) if retry_after.seconds() == 30
    ));
}

#[tokio::test]
async fn r7_a_wrong_current_password_is_refused_and_stays_counted() {
    let h = Harness::new()
        .with_session(alices_session())
        .with_user(alice())
        .counts(2)
        .password_ok(false);
    let (service, events) = h.build();
    let result = service
        .change_password(
            &presented(1, 1),
            Password::new("wrong"),
            Password::new("new one 1234"),
        )
        .await;
    assert!(matches!(result, Err(ChangePasswordError::WrongPassword)));
    // No account transaction; the failure is recorded with its confirmation (R19).
    assert_eq!(
        events.take(),
        [
            "failed:login_failed:alice:during=password_change,reason=bad_credentials",
            "audited:login_failed",
        ]
    );
}

#[tokio::test]
async fn r7_the_policy_comes_after_the_current_password_which_clears_the_count() {
    let h = Harness::new()
        .with_session(alices_session())
        .with_user(alice())
        .counts(2)
        .password_ok(true)
        .clears(counted(2));
    let (service, events) = h.build();
    let result = service
        .change_password(
            &presented(1, 1),
            Password::new("right"),
            Password::new("short"),
        )
        .await;
    assert!(matches!(result, Err(ChangePasswordError::Policy(_))));
    assert!(events.take().is_empty());
}

#[tokio::test]
async fn r7_a_password_change_rotates_the_token_and_ends_the_other_sessions() {
    let mut h = Harness::new()
        .with_session(alices_session())
        .with_user(alice())
        .counts(1)
        .password_ok(true)
        .clears(counted(1));
    h.hasher
        .expect_hash()
        .withf(|_, p| p.expose() == "new password 1234")
        .returning(|_, _| Ok(PasswordHash::new("$argon2id$new")));
    h.script.ended = 2;
    let (service, events) = h.build();
    let issued = service
        .change_password(
            &presented(1, 1),
            Password::new("right"),
            Password::new("new password 1234"),
        )
        .await
        .unwrap();
    assert_eq!(issued.credential, Some(Credential::new(sid(1), token(99))));
    assert_eq!(issued.session.token_hash, token(99).hash());
    assert_eq!(
        events.take(),
        [
            "tx:lock_user:7:unchanged:$argon2id$alice",
            "tx:rotate:1:t1->t99:user7",
            "tx:set_password:7:$argon2id$new",
            "tx:end_sessions:user7:any:except:1",
            "tx:audit:password_changed:alice:",
            "tx:audit:sessions_ended:alice:cause=password_change,count=2",
            "tx:commit",
            "audited:password_changed",
            "audited:sessions_ended",
            "ended:password_change:2",
        ]
    );
}

#[tokio::test]
async fn r7_a_password_change_that_loses_to_an_operator_writes_nothing() {
    for (account_unchanged, target_matches) in [(false, true), (true, false)] {
        let mut h = Harness::new()
            .with_session(alices_session())
            .with_user(alice())
            .counts(1)
            .password_ok(true)
            .clears(counted(1));
        h.hasher
            .expect_hash()
            .returning(|_, _| Ok(PasswordHash::new("$argon2id$new")));
        h.script.account_unchanged = account_unchanged;
        h.script.target_matches = target_matches;
        let (service, events) = h.build();
        let result = service
            .change_password(
                &presented(1, 1),
                Password::new("right"),
                Password::new("new password 1234"),
            )
            .await;
        assert!(matches!(result, Err(ChangePasswordError::NotLoggedIn)));
        let log = events.take();
        assert!(
            !log.iter()
                .any(|e| e == "tx:commit" || e.starts_with("tx:set_password"))
        );
    }
}

// ---- R13 client state ----

#[tokio::test]
async fn r13_oversized_data_is_refused_before_any_read() {
    let (service, _) = Harness::new().build();
    let mut object = serde_json::Map::new();
    object.insert("k".into(), serde_json::Value::String("v".repeat(20_000)));
    let result = service.set_data(&presented(1, 1), object).await;
    assert!(matches!(result, Err(SetDataError::TooLarge(_))));
}

#[tokio::test]
async fn r13_data_is_written_only_while_the_session_still_matches() {
    for written in [true, false] {
        let mut h = Harness::new().with_session(session(1, 1, Duration::ZERO));
        h.sessions
            .expect_set_data()
            .withf(|t, _| *t == target(1, 1))
            .returning(move |_, _| Ok(written));
        let (service, _) = h.build();
        let result = service
            .set_data(&presented(1, 1), serde_json::Map::new())
            .await;
        assert_eq!(result.is_ok(), written);
    }
}

#[tokio::test]
async fn r13_without_a_session_there_is_no_data() {
    let (service, _) = Harness::new().build();
    assert_eq!(service.data(&nobody()).await.unwrap(), None);
}
