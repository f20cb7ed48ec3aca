//! The storage contract: every repository method, and the promises that only hold when the
//! database holds them under concurrency (R3, R5d, R5e, R8, R9), written once and run on
//! SQLite, PostgreSQL and MySQL/MariaDB (see `websessions_tests::db`). The attacks race real tasks released
//! together, and assert exactly what the rule says.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use sea_orm::ConnectionTrait;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tokio::sync::Barrier;
use websessions_domain::audit::{AuditEntry, AuditEvent};
use websessions_domain::fixtures::{self, token};
use websessions_domain::ports::AuditTrail as _;
use websessions_domain::ports::{
    AccountStore, Clock, Created, Expect, HashTicket, LockoutRepository, NewSession, NewUser,
    NoEvents, Owner, PasswordHasher, SessionRepository, Sweep, Target, UserRepository,
    UserSessions,
};
use websessions_domain::{
    Attempt, ClientIp, Counted, Cutoffs, InfraError, LockoutPolicy, LoginAttempt, LoginError,
    Password, PasswordHash, Ports, Presented, Saturated, SessionData, SessionHolder, SessionId,
    SessionKind, SessionPolicy, SessionQuery, Sessions, Superuser, TokenHash, User, UserAdmin,
    UserId, Username,
};
use websessions_infrastructure::Store;
use websessions_infrastructure::{
    AddressLimits, Argon2Hasher, OsTokens, SeaAccounts, SeaAudit, SeaLockouts, SeaSessions,
    SeaUsers, TokioTimer,
};
use websessions_tests::{Backend, TestDb};

pub(crate) const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

websessions_tests::on! {
    with run;
    every backend: [
    created_session_is_found_anonymous_with_its_fields,
    unknown_session_id_is_not_found,
    r2_the_translation_admits_exactly_what_the_domain_admits,
    touch_writes_only_while_the_target_matches,
    touch_racing_a_logout_never_revives_the_session,
    touch_and_find_checks_every_condition_and_returns_the_touched_session,
    end_deletes_the_row_only_while_the_target_matches,
    end_by_id_respects_the_owner_and_validity,
    client_state_is_stored_and_read_only_with_the_right_token,
    client_state_holds_any_unicode_text,
    list_shows_only_valid_sessions_filtered_and_paged_by_id,
    count_active_since_counts_live_sessions,
    purge_deletes_every_expired_row_and_no_valid_one,
    purge_works_in_batches_smaller_than_the_backlog,
    one_batch_of_purge_deletes_at_most_one_batch_of_each_kind,
    account_change_binds_rotates_and_ends_in_one_transaction,
    an_account_change_dropped_without_commit_writes_nothing,
    lock_user_sees_the_account_as_it_is_now,
    deleting_a_user_deletes_every_session_row_of_theirs,
    users_are_created_found_listed_and_unique,
    r7_usernames_compare_byte_for_byte,
    r5e_concurrent_browser_logins_of_one_user_leave_exactly_one_valid_session,
    r9_attempts_count_and_lock_at_each_multiple_of_the_threshold,
    r9_a_burst_of_attempts_is_counted_up_to_the_lock_and_no_further,
    r9_a_verified_password_removes_only_the_lock_its_own_count_started,
    r9_a_burst_of_wrong_logins_gets_at_most_threshold_verifications,
    r5d_logins_racing_an_operator_leave_no_valid_session_and_no_error,
    clearing_removes_failures_and_lock,
    r8_purge_deletes_expired_locks_and_failures_of_names_without_an_account,
    ];
}

async fn run<F, Fut>(backend: Backend, test: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::new(backend).await;
    test(db.store.clone()).await;
    db.drop().await;
}

// ---- helpers ----

pub(crate) fn ip() -> ClientIp {
    fixtures::ip("203.0.113.5")
}

fn hash(n: u8) -> TokenHash {
    token(n).hash()
}

fn cutoffs_at(now: OffsetDateTime) -> Cutoffs {
    SessionPolicy::default().cutoffs(now)
}

pub(crate) fn username(name: &str) -> Username {
    Username::parse(name).unwrap()
}

fn sessions(db: &Store) -> SeaSessions {
    SeaSessions::new(db.clone()).unwrap()
}

/// The target naming session `id` with `n`'s token at `at`, with or without the address.
fn target(id: SessionId, n: u8, at: OffsetDateTime) -> Target {
    Target {
        id,
        token_hash: hash(n),
        cutoffs: cutoffs_at(at),
        ip: Some(ip()),
    }
}

async fn new_session(
    repo: &SeaSessions,
    n: u8,
    kind: SessionKind,
    at: OffsetDateTime,
) -> SessionId {
    repo.create(NewSession {
        token_hash: hash(n),
        ip_address: ip(),
        kind,
        user: None,
        now: at,
    })
    .await
    .unwrap()
}

/// A record of `event` at NOW.
fn record(event: AuditEvent) -> AuditEntry {
    AuditEntry::new(event, NOW)
}

/// Maintenance's record of the expired sessions that had a user.
fn expired_record() -> AuditEntry {
    record(AuditEvent::SessionsEnded).detail("cause", "expired")
}

pub(crate) async fn new_user(db: &Store, name: &str) -> User {
    let created = SeaUsers::new(db.clone())
        .create(
            NewUser {
                username: username(name),
                password_hash: PasswordHash::new("$argon2id$stub"),
                superuser: false,
                now: NOW,
            },
            record(AuditEvent::UserCreated),
        )
        .await
        .unwrap();
    match created {
        Created::User(user) => user,
        Created::Taken => panic!("{name} taken"),
    }
}

/// A new session of `user` holding `n`'s token, created in an account transaction as a login
/// creates it.
async fn logged_in(db: &Store, user: UserId, n: u8, kind: SessionKind) -> SessionId {
    let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
    assert!(change.lock_user(user, Expect::Exists).await.unwrap());
    let id = change
        .create_session(NewSession {
            token_hash: hash(n),
            ip_address: ip(),
            kind,
            user: Some(user),
            now: NOW,
        })
        .await
        .unwrap();
    change.commit().await.unwrap();
    id
}

/// Whether the session holds `n`'s token and is valid at NOW.
async fn holds(repo: &SeaSessions, id: SessionId, n: u8) -> bool {
    repo.find(id)
        .await
        .unwrap()
        .is_some_and(|s| s.token_hash == hash(n) && cutoffs_at(NOW).admits(&s))
}

/// How many rows `table` has.
async fn rows(db: &Store, table: &str) -> i64 {
    let db = db.connection();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

// ---- sessions ----

async fn created_session_is_found_anonymous_with_its_fields(db: Store) {
    let repo = sessions(&db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    let found = repo.find(id).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.token_hash, hash(1));
    assert_eq!(found.ip_address, ip());
    assert_eq!(found.kind, SessionKind::Browser);
    assert_eq!(found.user, None);
    assert_eq!(found.created_at, NOW);
    assert_eq!(found.authenticated_at, None);
    assert_eq!(found.last_activity_at, NOW);
    let other = new_session(&repo, 2, SessionKind::Api, NOW).await;
    assert!(other.get() > id.get());
}

async fn unknown_session_id_is_not_found(db: Store) {
    let repo = sessions(&db);
    assert_eq!(
        repo.find(SessionId::new(999_999).unwrap()).await.unwrap(),
        None
    );
}

/// R2 in two forms must agree: for sessions around every boundary, the database's conditional
/// write matches exactly the sessions `Cutoffs::admits` admits.
async fn r2_the_translation_admits_exactly_what_the_domain_admits(db: Store) {
    let alice = new_user(&db, "alice").await;
    let repo = sessions(&db);
    let policy = SessionPolicy::default();
    let now = NOW + Duration::days(1);
    let idle = Duration::minutes(30);
    let absolute = Duration::hours(12);
    let mut cases = Vec::new();
    for created in [
        absolute + Duration::SECOND,
        absolute,
        absolute - Duration::SECOND,
    ] {
        for logged_in in [
            None,
            Some(absolute + Duration::SECOND),
            Some(absolute),
            Some(idle),
        ] {
            for active in [idle + Duration::SECOND, idle, Duration::ZERO] {
                if logged_in.is_some_and(|l| l > created) {
                    continue;
                }
                cases.push((created, logged_in, active));
            }
        }
    }
    for (n, (created, logged_in, active)) in cases.into_iter().enumerate() {
        let n = u8::try_from(n).unwrap();
        let id = new_session(&repo, n, SessionKind::Browser, now - created).await;
        let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
        change.lock_user(alice.id, Expect::Exists).await.unwrap();
        if let Some(ago) = logged_in {
            let lenient = Target {
                cutoffs: Cutoffs {
                    idle: now - Duration::days(2),
                    absolute: None,
                },
                ..target(id, n, now)
            };
            let bound = change.bind(&lenient, alice.id, hash(n), now - ago).await;
            assert!(bound.unwrap());
        }
        change.commit().await.unwrap();
        let lenient = Target {
            cutoffs: Cutoffs {
                idle: now - Duration::days(2),
                absolute: None,
            },
            ..target(id, n, now)
        };
        assert!(repo.touch(&lenient, now - active).await.unwrap());
        let record = repo.find(id).await.unwrap().unwrap();
        let admitted = policy.cutoffs(now).admits(&record);
        let matched = repo.touch(&target(id, n, now), now - active).await.unwrap();
        assert_eq!(
            matched, admitted,
            "created {created} ago, logged in {logged_in:?} ago, active {active} ago"
        );
    }
}

async fn touch_writes_only_while_the_target_matches(db: Store) {
    let repo = sessions(&db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    let later = NOW + Duration::minutes(10);
    assert!(!repo.touch(&target(id, 2, later), later).await.unwrap());
    let elsewhere = Target {
        ip: Some(ClientIp::new("198.51.100.1".parse().unwrap())),
        ..target(id, 1, later)
    };
    assert!(!repo.touch(&elsewhere, later).await.unwrap());
    assert!(repo.touch(&target(id, 1, later), later).await.unwrap());
    assert_eq!(
        repo.find(id).await.unwrap().unwrap().last_activity_at,
        later
    );
    // 31 minutes idle: past the default idle timeout, the touch must not revive it.
    let too_late = later + Duration::minutes(31);
    assert!(
        !repo
            .touch(&target(id, 1, too_late), too_late)
            .await
            .unwrap()
    );
    assert_eq!(
        repo.find(id).await.unwrap().unwrap().last_activity_at,
        later
    );
}

async fn touch_and_find_checks_every_condition_and_returns_the_touched_session(db: Store) {
    let alice = new_user(&db, "alice").await;
    let repo = sessions(&db);
    let id = logged_in(&db, alice.id, 1, SessionKind::Browser).await;
    let later = NOW + Duration::minutes(5);
    let other_ip = ClientIp::new("198.51.100.1".parse().unwrap());
    assert_eq!(
        repo.touch_and_find(&target(id, 2, later), later)
            .await
            .unwrap(),
        None
    );
    let elsewhere = Target {
        ip: Some(other_ip),
        ..target(id, 1, later)
    };
    assert_eq!(repo.touch_and_find(&elsewhere, later).await.unwrap(), None);
    assert_eq!(
        repo.find(id).await.unwrap().unwrap().last_activity_at,
        NOW,
        "nothing written"
    );
    let touched = repo
        .touch_and_find(&target(id, 1, later), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_activity_at, later);
    assert_eq!(
        touched.user.as_ref().map(|u| &u.username),
        Some(&username("alice"))
    );
    assert_eq!(touched, repo.find(id).await.unwrap().unwrap());
    let anywhere = Target {
        ip: None,
        ..elsewhere
    };
    assert!(
        repo.touch_and_find(&anywhere, later)
            .await
            .unwrap()
            .is_some()
    );
    let idle = later + Duration::minutes(31);
    assert_eq!(
        repo.touch_and_find(&target(id, 1, idle), idle)
            .await
            .unwrap(),
        None
    );
    let anonymous = new_session(&repo, 3, SessionKind::Api, later).await;
    let no_absolute = Target {
        cutoffs: Cutoffs {
            idle: later - Duration::minutes(1),
            absolute: None,
        },
        ..target(anonymous, 3, later)
    };
    let found = repo.touch_and_find(&no_absolute, later).await;
    assert_eq!(found.unwrap().unwrap().user, None);
}

async fn touch_racing_a_logout_never_revives_the_session(db: Store) {
    let repo = Arc::new(sessions(&db));
    for round in 0..10u8 {
        let id = new_session(&repo, round, SessionKind::Browser, NOW).await;
        let barrier = Arc::new(Barrier::new(9));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (repo, barrier) = (repo.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let at = NOW + Duration::seconds(i);
                barrier.wait().await;
                repo.touch(&target(id, round, at), at).await.unwrap();
            }));
        }
        let (ender, barrier) = (repo.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            assert!(ender.end(&target(id, round, NOW), None).await.unwrap());
        }));
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            repo.find(id).await.unwrap(),
            None,
            "round {round}: the session came back"
        );
    }
}

async fn end_deletes_the_row_only_while_the_target_matches(db: Store) {
    let repo = sessions(&db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    assert!(!repo.end(&target(id, 2, NOW), None).await.unwrap());
    assert!(holds(&repo, id, 1).await);
    let expired = NOW + Duration::hours(1);
    assert!(
        !repo.end(&target(id, 1, expired), None).await.unwrap(),
        "expired"
    );
    assert!(repo.end(&target(id, 1, NOW), None).await.unwrap());
    assert!(
        !repo.end(&target(id, 1, NOW), None).await.unwrap(),
        "already ended"
    );
    assert_eq!(repo.find(id).await.unwrap(), None);
}

async fn end_by_id_respects_the_owner_and_validity(db: Store) {
    let alice = new_user(&db, "alice").await;
    let bob = new_user(&db, "bob").await;
    let repo = sessions(&db);
    let alices = logged_in(&db, alice.id, 1, SessionKind::Api).await;
    assert!(
        !repo
            .end_by_id(alices, Owner::User(bob.id), cutoffs_at(NOW), None)
            .await
            .unwrap()
    );
    let expired = cutoffs_at(NOW + Duration::hours(1));
    assert!(
        !repo
            .end_by_id(alices, Owner::User(alice.id), expired, None)
            .await
            .unwrap()
    );
    assert!(holds(&repo, alices, 1).await);
    assert!(
        repo.end_by_id(alices, Owner::User(alice.id), cutoffs_at(NOW), None)
            .await
            .unwrap()
    );
    let anonymous = new_session(&repo, 2, SessionKind::Browser, NOW).await;
    assert!(
        !repo
            .end_by_id(anonymous, Owner::User(alice.id), cutoffs_at(NOW), None)
            .await
            .unwrap()
    );
    assert!(
        repo.end_by_id(anonymous, Owner::Nobody, cutoffs_at(NOW), None)
            .await
            .unwrap()
    );
    assert_eq!(rows(&db, "sessions").await, 0);
}

async fn client_state_is_stored_and_read_only_with_the_right_token(db: Store) {
    let repo = sessions(&db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    assert_eq!(
        repo.data(id, hash(1)).await.unwrap(),
        Some(SessionData::default())
    );
    let mut object = serde_json::Map::new();
    object.insert("form".into(), serde_json::json!({"step": 3, "name": "é ✓"}));
    let data = SessionData::new(object).unwrap();
    assert!(
        !repo
            .set_data(&target(id, 2, NOW), data.clone())
            .await
            .unwrap()
    );
    assert!(
        repo.set_data(&target(id, 1, NOW), data.clone())
            .await
            .unwrap()
    );
    assert_eq!(repo.data(id, hash(1)).await.unwrap(), Some(data));
    assert_eq!(repo.data(id, hash(2)).await.unwrap(), None);
    // R13: logout wipes it.
    repo.end(&target(id, 1, NOW), None).await.unwrap();
    assert_eq!(repo.data(id, hash(1)).await.unwrap(), None);
}

/// SPEC section 7: full UTF-8, also on a MySQL database created with a latin1 default.
async fn client_state_holds_any_unicode_text(db: Store) {
    let repo = sessions(&db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    let mut object = serde_json::Map::new();
    for (key, text) in [
        ("emoji", "😀🎉"),
        ("cjk", "漢字かな"),
        ("rtl", "עברית"),
        ("nul", "a\u{1}b"),
    ] {
        object.insert(key.into(), serde_json::Value::String(text.into()));
    }
    let data = SessionData::new(object).unwrap();
    assert!(
        repo.set_data(&target(id, 1, NOW), data.clone())
            .await
            .unwrap()
    );
    assert_eq!(repo.data(id, hash(1)).await.unwrap(), Some(data));
}

async fn list_shows_only_valid_sessions_filtered_and_paged_by_id(db: Store) {
    let alice = new_user(&db, "alice").await;
    let repo = sessions(&db);
    let mut alices = Vec::new();
    for n in 0..5 {
        alices.push(logged_in(&db, alice.id, n, SessionKind::Api).await);
    }
    let anonymous = new_session(&repo, 10, SessionKind::Browser, NOW - Duration::minutes(10)).await;
    let _expired = new_session(&repo, 12, SessionKind::Browser, NOW - Duration::hours(1)).await;

    let all = SessionQuery {
        user: None,
        active_since: None,
        after: None,
        limit: 100,
    };
    let ids: Vec<_> = repo
        .list(all.clone(), cutoffs_at(NOW))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let mut expected = alices.clone();
    expected.push(anonymous);
    assert_eq!(ids, expected);

    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let query = SessionQuery {
            after,
            limit: 2,
            ..all.clone()
        };
        let page = repo.list(query, cutoffs_at(NOW)).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        paged.extend(page.iter().map(|s| s.id));
    }
    assert_eq!(paged, expected, "every session exactly once across pages");

    let only_alice = SessionQuery {
        user: Some(alice.id),
        ..all.clone()
    };
    let listed = repo.list(only_alice, cutoffs_at(NOW)).await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(
        listed
            .iter()
            .all(|s| s.user.as_ref().is_some_and(|u| u.id == alice.id))
    );
    let recent = SessionQuery {
        active_since: Some(NOW - Duration::minutes(1)),
        ..all
    };
    assert_eq!(repo.list(recent, cutoffs_at(NOW)).await.unwrap().len(), 5);
}

async fn count_active_since_counts_live_sessions(db: Store) {
    let repo = sessions(&db);
    new_session(&repo, 1, SessionKind::Browser, NOW).await;
    new_session(&repo, 2, SessionKind::Browser, NOW - Duration::minutes(20)).await;
    let ended = new_session(&repo, 3, SessionKind::Browser, NOW).await;
    repo.end(&target(ended, 3, NOW), None).await.unwrap();
    assert_eq!(repo.count_active_since(NOW).await.unwrap(), 1);
    let since = NOW - Duration::minutes(20);
    assert_eq!(repo.count_active_since(since).await.unwrap(), 2);
}

async fn purge_deletes_every_expired_row_and_no_valid_one(db: Store) {
    let alice = new_user(&db, "alice").await;
    let repo = sessions(&db);
    let valid_at_limit =
        new_session(&repo, 1, SessionKind::Browser, NOW - Duration::minutes(30)).await;
    let idle = new_session(&repo, 2, SessionKind::Browser, NOW - Duration::minutes(31)).await;
    let lenient = |id, n| Target {
        cutoffs: Cutoffs {
            idle: NOW - Duration::days(1),
            absolute: None,
        },
        ..target(id, n, NOW)
    };
    // Active but created 13 hours ago and never logged in: past the absolute limit.
    let old = new_session(&repo, 4, SessionKind::Browser, NOW - Duration::hours(13)).await;
    assert!(repo.touch(&lenient(old, 4), NOW).await.unwrap());
    // Logged in 13 hours ago and active since: past the absolute limit too.
    let stale_login = new_session(&repo, 5, SessionKind::Browser, NOW - Duration::hours(14)).await;
    // Created 13 hours ago but logged in just now: valid.
    let renewed = new_session(&repo, 6, SessionKind::Browser, NOW - Duration::hours(13)).await;
    let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
    change.lock_user(alice.id, Expect::Exists).await.unwrap();
    let long_ago = NOW - Duration::hours(13);
    assert!(
        change
            .bind(&lenient(stale_login, 5), alice.id, hash(5), long_ago)
            .await
            .unwrap()
    );
    assert!(
        change
            .bind(&lenient(renewed, 6), alice.id, hash(6), NOW)
            .await
            .unwrap()
    );
    change.commit().await.unwrap();
    assert!(repo.touch(&lenient(stale_login, 5), NOW).await.unwrap());

    let deleted = repo
        .purge(cutoffs_at(NOW), 1000, Sweep::All, &expired_record())
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    assert!(repo.find(valid_at_limit).await.unwrap().is_some());
    assert!(repo.find(renewed).await.unwrap().is_some());
    for gone in [idle, old, stale_login] {
        assert_eq!(repo.find(gone).await.unwrap(), None);
    }
}

async fn purge_works_in_batches_smaller_than_the_backlog(db: Store) {
    let repo = sessions(&db);
    for n in 0..7 {
        new_session(&repo, n, SessionKind::Browser, NOW - Duration::hours(2)).await;
    }
    let keep = new_session(&repo, 9, SessionKind::Browser, NOW).await;
    assert_eq!(
        repo.purge(cutoffs_at(NOW), 3, Sweep::All, &expired_record())
            .await
            .unwrap(),
        7
    );
    assert!(repo.find(keep).await.unwrap().is_some());
}

async fn one_batch_of_purge_deletes_at_most_one_batch_of_each_kind(db: Store) {
    let repo = sessions(&db);
    for n in 0..5 {
        new_session(&repo, n, SessionKind::Browser, NOW - Duration::hours(2)).await;
    }
    for expected in [2, 2, 1, 0] {
        let one_batch = repo
            .purge(cutoffs_at(NOW), 2, Sweep::OneBatch, &expired_record())
            .await;
        assert_eq!(one_batch.unwrap(), expected);
    }
    let lockouts = SeaLockouts::new(db);
    for name in ["a", "b", "c"] {
        let earlier = NOW - Duration::hours(1);
        lockouts
            .attempt(&username(name), earlier, policy(1))
            .await
            .unwrap();
    }
    let first = lockouts.purge(NOW, 2, Sweep::OneBatch).await.unwrap();
    assert_eq!((first.expired_locks, first.orphan_failures), (2, 2));
    let second = lockouts.purge(NOW, 2, Sweep::OneBatch).await.unwrap();
    assert_eq!((second.expired_locks, second.orphan_failures), (1, 1));
}

// ---- account transactions ----

async fn account_change_binds_rotates_and_ends_in_one_transaction(db: Store) {
    let alice = new_user(&db, "alice").await;
    let bob = new_user(&db, "bob").await;
    let repo = sessions(&db);
    let anonymous = new_session(&repo, 1, SessionKind::Browser, NOW - Duration::minutes(5)).await;
    let other_browser = logged_in(&db, alice.id, 2, SessionKind::Browser).await;
    let api = logged_in(&db, alice.id, 3, SessionKind::Api).await;
    let bobs = logged_in(&db, bob.id, 4, SessionKind::Browser).await;
    let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
    assert!(change.lock_user(alice.id, Expect::Exists).await.unwrap());
    change.record_login(alice.id, NOW).await.unwrap();
    assert!(
        !change
            .bind(&target(anonymous, 9, NOW), alice.id, hash(5), NOW)
            .await
            .unwrap()
    );
    assert!(
        change
            .bind(&target(anonymous, 1, NOW), alice.id, hash(5), NOW)
            .await
            .unwrap()
    );
    let others = UserSessions {
        user: alice.id,
        kind: Some(SessionKind::Browser),
        except: Some(anonymous),
        cutoffs: cutoffs_at(NOW),
    };
    assert_eq!(change.end_sessions(others).await.unwrap(), 1);
    change.commit().await.unwrap();
    let bound = repo.find(anonymous).await.unwrap().unwrap();
    assert_eq!(bound.token_hash, hash(5));
    assert_eq!(bound.user.map(|u| u.username), Some(username("alice")));
    assert_eq!(bound.authenticated_at, Some(NOW));
    assert_eq!(bound.created_at, NOW - Duration::minutes(5));
    assert_eq!(repo.find(other_browser).await.unwrap(), None);
    assert!(
        holds(&repo, api, 3).await,
        "an api session is not a browser session"
    );
    assert!(holds(&repo, bobs, 4).await, "another user's session stays");
    let stored = SeaUsers::new(db.clone())
        .find_by_username(&username("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.last_login_at, Some(NOW));

    let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
    change.lock_user(alice.id, Expect::Exists).await.unwrap();
    assert!(
        !change
            .rotate(&target(anonymous, 5, NOW), bob.id, hash(6), NOW)
            .await
            .unwrap()
    );
    assert!(
        change
            .rotate(&target(anonymous, 5, NOW), alice.id, hash(6), NOW)
            .await
            .unwrap()
    );
    change
        .set_password(alice.id, PasswordHash::new("new"), NOW)
        .await
        .unwrap();
    let all_but_current = UserSessions {
        user: alice.id,
        kind: None,
        except: Some(anonymous),
        cutoffs: cutoffs_at(NOW),
    };
    assert_eq!(change.end_sessions(all_but_current).await.unwrap(), 1);
    change.commit().await.unwrap();
    assert!(holds(&repo, anonymous, 6).await);
    assert_eq!(repo.find(api).await.unwrap(), None);
}

async fn an_account_change_dropped_without_commit_writes_nothing(db: Store) {
    let alice = new_user(&db, "alice").await;
    let repo = sessions(&db);
    let api = logged_in(&db, alice.id, 1, SessionKind::Api).await;
    let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
    change.lock_user(alice.id, Expect::Exists).await.unwrap();
    change
        .set_password(alice.id, PasswordHash::new("new"), NOW)
        .await
        .unwrap();
    change.set_disabled(alice.id, true).await.unwrap();
    let all = UserSessions {
        user: alice.id,
        kind: None,
        except: None,
        cutoffs: cutoffs_at(NOW),
    };
    assert_eq!(change.end_sessions(all).await.unwrap(), 1);
    drop(change);
    assert!(holds(&repo, api, 1).await);
    let stored = SeaUsers::new(db)
        .find_by_username(&username("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.as_str(), "$argon2id$stub");
    assert!(!stored.disabled);
}

async fn lock_user_sees_the_account_as_it_is_now(db: Store) {
    let alice = new_user(&db, "alice").await;
    let accounts = SeaAccounts::new(db.clone());
    let stub = || Expect::Unchanged(PasswordHash::new("$argon2id$stub"));
    let check = |expect: Expect| {
        let accounts = accounts.clone();
        async move {
            let mut change = accounts.begin().await.unwrap();
            let found = change.lock_user(alice.id, expect).await.unwrap();
            change.commit().await.unwrap();
            found
        }
    };
    assert!(check(stub()).await);
    assert!(!check(Expect::Unchanged(PasswordHash::new("other"))).await);
    let mut change = accounts.begin().await.unwrap();
    change.lock_user(alice.id, Expect::Exists).await.unwrap();
    change.set_disabled(alice.id, true).await.unwrap();
    change.commit().await.unwrap();
    assert!(!check(stub()).await, "disabled");
    assert!(check(Expect::Exists).await);
    let mut change = accounts.begin().await.unwrap();
    change.lock_user(alice.id, Expect::Exists).await.unwrap();
    change.delete_user(alice.id).await.unwrap();
    change.commit().await.unwrap();
    assert!(!check(Expect::Exists).await, "deleted");
}

async fn deleting_a_user_deletes_every_session_row_of_theirs(db: Store) {
    let alice = new_user(&db, "alice").await;
    let bob = new_user(&db, "bob").await;
    let repo = sessions(&db);
    logged_in(&db, alice.id, 1, SessionKind::Browser).await;
    let bobs = logged_in(&db, bob.id, 2, SessionKind::Browser).await;
    let mut change = SeaAccounts::new(db.clone()).begin().await.unwrap();
    change.lock_user(alice.id, Expect::Exists).await.unwrap();
    change.delete_user(alice.id).await.unwrap();
    change.commit().await.unwrap();
    assert_eq!(rows(&db, "sessions").await, 1);
    assert!(holds(&repo, bobs, 2).await);
    let users = SeaUsers::new(db);
    assert_eq!(
        users.find_by_username(&username("alice")).await.unwrap(),
        None
    );
}

// ---- users ----

async fn users_are_created_found_listed_and_unique(db: Store) {
    let users = SeaUsers::new(db.clone());
    let bob = new_user(&db, "bob").await;
    let alice = new_user(&db, "alice").await;
    assert_eq!(bob.created_at, NOW);
    assert!(!bob.superuser && !bob.disabled);
    let again = users
        .create(
            NewUser {
                username: username("alice"),
                password_hash: PasswordHash::new("x"),
                superuser: true,
                now: NOW,
            },
            record(AuditEvent::UserCreated),
        )
        .await
        .unwrap();
    assert_eq!(again, Created::Taken);
    assert_eq!(
        users.find_by_username(&username("alice")).await.unwrap(),
        Some(alice)
    );
    assert_eq!(
        users.find_by_username(&username("carol")).await.unwrap(),
        None
    );
    let names: Vec<_> = users
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username.to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
}

/// SPEC section 7: `Admin` and `admin` are two accounts, on every backend.
async fn r7_usernames_compare_byte_for_byte(db: Store) {
    let users = SeaUsers::new(db.clone());
    let admin = new_user(&db, "admin").await;
    let capital = new_user(&db, "Admin").await;
    assert_ne!(admin.id, capital.id);
    for (name, id) in [("admin", admin.id), ("Admin", capital.id)] {
        let found = users.find_by_username(&username(name)).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(id), "{name}");
    }
    assert_eq!(
        users.find_by_username(&username("ADMIN")).await.unwrap(),
        None
    );
    let lockouts = SeaLockouts::new(db);
    lockouts
        .attempt(&username("admin"), NOW, policy(10))
        .await
        .unwrap();
    let state = lockouts.state(&username("ADMIN"), NOW).await.unwrap();
    assert_eq!(state.failure_count, 0, "failures are per exact name");
}

// ---- the rules under concurrency ----

/// A clock that always says NOW.
struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        NOW
    }
}

/// argon2id (cheap parameters) that counts verifications.
pub(crate) struct CountingHasher {
    inner: Argon2Hasher,
    verifications: AtomicU32,
}

#[async_trait]
impl PasswordHasher for CountingHasher {
    fn admit(&self) -> Result<HashTicket, Saturated> {
        self.inner.admit()
    }
    async fn hash(
        &self,
        ticket: &HashTicket,
        password: Password,
    ) -> Result<PasswordHash, InfraError> {
        self.inner.hash(ticket, password).await
    }
    async fn verify(
        &self,
        ticket: &HashTicket,
        password: Password,
        hash: Option<PasswordHash>,
    ) -> Result<bool, InfraError> {
        self.verifications.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(ticket, password, hash).await
    }
}

/// The rules over the real adapters on `db`, with a counting hasher.
pub(crate) fn service(db: &Store, lockout: LockoutPolicy) -> (Arc<Sessions>, Arc<CountingHasher>) {
    let hasher = Arc::new(CountingHasher {
        inner: Argon2Hasher::fast_for_tests()
            .unwrap()
            .with_max_pending(1000),
        verifications: AtomicU32::new(0),
    });
    let ports = Ports {
        sessions: Arc::new(sessions(db)),
        accounts: Arc::new(SeaAccounts::new(db.clone())),
        users: Arc::new(SeaUsers::new(db.clone())),
        lockouts: Arc::new(SeaLockouts::new(db.clone())),
        hasher: hasher.clone(),
        tokens: Arc::new(OsTokens),
        clock: Arc::new(FixedClock),
        timer: Arc::new(TokioTimer),
        limits: Arc::new(AddressLimits::new(None, None)),
        events: Arc::new(NoEvents),
        audit: Arc::new(SeaAudit::new(db.clone())),
    };
    let service = Sessions::new(ports, SessionPolicy::default(), lockout);
    (Arc::new(service), hasher)
}

pub(crate) fn anonymous() -> Presented {
    Presented {
        credential: None,
        ip: ip(),
        user_agent: None,
    }
}

pub(crate) async fn login(
    service: &Sessions,
    presented: &Presented,
    name: &str,
    password: &str,
    kind: SessionKind,
) -> Result<websessions_domain::Issued, LoginError> {
    let pass = service.admit_login(presented.ip).unwrap();
    let attempt = LoginAttempt {
        username: name.into(),
        password: Password::new(password),
        kind,
    };
    service.login(presented, pass, attempt).await
}

async fn r5e_concurrent_browser_logins_of_one_user_leave_exactly_one_valid_session(db: Store) {
    // Counting comes before verification (R9): 20 attempts at once would reach a threshold
    // of 10 and lock, right passwords or not.
    let (service, _) = service(&db, policy(100));
    let root = Superuser::operator();
    service
        .create_user(&root, "alice", Password::new("the right password"), false)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (service, barrier) = (service.clone(), barrier.clone());
            tokio::spawn(async move {
                let started = service.start(&anonymous()).await.unwrap();
                let presented = Presented {
                    credential: started.credential,
                    ip: ip(),
                    user_agent: None,
                };
                barrier.wait().await;
                login(
                    &service,
                    &presented,
                    "alice",
                    "the right password",
                    SessionKind::Browser,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut issued = Vec::new();
    for task in tasks {
        issued.push(task.await.unwrap());
    }
    let mut valid = 0;
    for login in issued {
        let presented = Presented {
            credential: login.credential,
            ip: ip(),
            user_agent: None,
        };
        valid += usize::from(service.recognise(&presented).await.unwrap().is_some());
    }
    assert_eq!(valid, 1, "exactly one login may survive");
}

pub(crate) fn policy(threshold: u32) -> LockoutPolicy {
    LockoutPolicy::new(threshold, Duration::minutes(10)).unwrap()
}

async fn r9_attempts_count_and_lock_at_each_multiple_of_the_threshold(db: Store) {
    let repo = SeaLockouts::new(db);
    let name = username("ghost");
    let mut at = NOW;
    for n in 1..=6u32 {
        let Attempt::Counted(counted) = repo.attempt(&name, at, policy(3)).await.unwrap() else {
            panic!("attempt {n} refused");
        };
        assert_eq!(counted.failure_count, n);
        let expected = match n {
            3 => Some(at + Duration::minutes(10)),
            6 => Some(at + Duration::minutes(20)),
            _ => None,
        };
        assert_eq!(counted.started_lock, expected, "attempt {n}");
        if n == 3 {
            // While the attempt that started the lock is being verified, the lock is
            // provisional: another attempt waits rather than being refused.
            let waiting = repo.attempt(&name, at, policy(3)).await.unwrap();
            assert_eq!(waiting, Attempt::Provisional);
            // Its password did not verify: the lock stands. While it is in force, an attempt
            // is refused and nothing is counted.
            repo.failed(&name, counted, vec![]).await.unwrap();
            let refused = repo.attempt(&name, at, policy(3)).await.unwrap();
            assert_eq!(
                refused,
                Attempt::Locked {
                    until: at + Duration::minutes(10),
                    lapsed: false,
                }
            );
            at += Duration::minutes(10);
        }
    }
    let state = repo.state(&name, at).await.unwrap();
    assert_eq!(state.failure_count, 6);
    assert_eq!(state.locked_until, Some(at + Duration::minutes(20)));
    let after = repo.state(&name, at + Duration::minutes(20)).await.unwrap();
    assert_eq!(after.locked_until, None, "a lock ends at its time");
    let nobody = repo.state(&username("nobody"), NOW).await.unwrap();
    assert_eq!(nobody.failure_count, 0);
}

/// R9's one atomic step under a burst: exactly `threshold` attempts are counted, the one that
/// reaches it starts the lock, and every other is refused without a count. A lease that
/// lapses is told, and the first to tell it records the lock (R19), once.
async fn r9_a_burst_of_attempts_is_counted_up_to_the_lock_and_no_further(db: Store) {
    let repo = Arc::new(SeaLockouts::new(db.clone()));
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (repo, barrier) = (repo.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                repo.attempt(&username("alice"), NOW, policy(10))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut counts = Vec::new();
    let mut locks = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Attempt::Counted(counted) => {
                counts.push(counted.failure_count);
                locks.extend(counted.started_lock);
            }
            Attempt::Locked { .. } => panic!("the lock is provisional while it is verified"),
            Attempt::Provisional => refused += 1,
        }
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=10).collect::<Vec<_>>(),
        "each counted attempt its own count"
    );
    assert_eq!(locks, [NOW + Duration::minutes(10)], "exactly one lock");
    assert_eq!(refused, 30);
    let state = repo.state(&username("alice"), NOW).await.unwrap();
    assert_eq!(state.failure_count, 10);
    assert!(state.provisional);
    // Its attempt's password did not verify: the lock stands, and refuses outright.
    let started = Counted {
        failure_count: 10,
        started_lock: Some(NOW + Duration::minutes(10)),
    };
    repo.failed(&username("alice"), started, vec![])
        .await
        .unwrap();
    assert!(
        !repo
            .state(&username("alice"), NOW)
            .await
            .unwrap()
            .provisional
    );
    assert_eq!(
        repo.attempt(&username("alice"), NOW, policy(10))
            .await
            .unwrap(),
        Attempt::Locked {
            until: NOW + Duration::minutes(10),
            lapsed: false,
        }
    );
    // The lease of a lock whose verifier never answered lapses: the lock stands.
    let later = NOW + LockoutPolicy::LEASE + Duration::SECOND;
    let bob = username("bob");
    for _ in 0..10 {
        repo.attempt(&bob, NOW, policy(10)).await.unwrap();
    }
    assert_eq!(
        repo.attempt(&bob, NOW, policy(10)).await.unwrap(),
        Attempt::Provisional
    );
    let Attempt::Locked { until, lapsed } = repo.attempt(&bob, later, policy(10)).await.unwrap()
    else {
        panic!("a lapsed lease lets attempts through");
    };
    assert!(lapsed, "the lapse is told, so that it can be recorded");
    // The first to say so makes it stand, with its record; no one after.
    let record_of = record;
    let record = || record_of(AuditEvent::LockStarted);
    assert!(repo.stood(&bob, until, record()).await.unwrap());
    assert!(!repo.stood(&bob, until, record()).await.unwrap());
    assert_eq!(
        repo.attempt(&bob, later, policy(10)).await.unwrap(),
        Attempt::Locked {
            until,
            lapsed: false,
        }
    );
    // The slow verifier's outcome comes after: its failure is recorded, the lock not again.
    let started = Counted {
        failure_count: 10,
        started_lock: Some(until),
    };
    let failure = record_of(AuditEvent::LoginFailed);
    repo.failed(&bob, started, vec![failure, record()])
        .await
        .unwrap();
    let trail = SeaAudit::new(db);
    let events: Vec<_> = trail
        .after(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| match stored {
            websessions_domain::audit::Stored::Record(r) => r.entry.event,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(events, [AuditEvent::LockStarted, AuditEvent::LoginFailed]);
}

async fn r9_a_verified_password_removes_only_the_lock_its_own_count_started(db: Store) {
    let repo = SeaLockouts::new(db);
    let name = username("alice");
    let mut counted = Vec::new();
    for _ in 0..3 {
        let Attempt::Counted(c) = repo.attempt(&name, NOW, policy(3)).await.unwrap() else {
            panic!("refused")
        };
        counted.push(c);
    }
    // The second attempt's password verified: failures go, the lock the third started stays.
    repo.verified(&name, counted[1]).await.unwrap();
    let state = repo.state(&name, NOW).await.unwrap();
    assert_eq!(state.failure_count, 0);
    assert_eq!(state.locked_until, Some(NOW + Duration::minutes(10)));
    // The third attempt's password verified: its own lock goes.
    repo.verified(&name, counted[2]).await.unwrap();
    assert_eq!(repo.state(&name, NOW).await.unwrap(), Default::default());
    let stale = Counted {
        failure_count: 3,
        started_lock: Some(NOW),
    };
    repo.attempt(&name, NOW, policy(1)).await.unwrap();
    repo.verified(&name, stale).await.unwrap();
    let state = repo.state(&name, NOW).await.unwrap();
    assert!(
        state.locked_until.is_some(),
        "a lock of another time stands"
    );
}

/// The attack of issue 9: 40 concurrent wrong guesses, threshold 10. Exactly 10 passwords
/// are verified (the 10th count starts the lock), 30 attempts are refused before their
/// password is looked at, and afterwards even the right password is locked.
async fn r9_a_burst_of_wrong_logins_gets_at_most_threshold_verifications(db: Store) {
    let (service, hasher) = service(&db, policy(10));
    let root = Superuser::operator();
    service
        .create_user(&root, "alice", Password::new("the right password"), false)
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (service, barrier) = (service.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                login(
                    &service,
                    &anonymous(),
                    "alice",
                    "a wrong guess",
                    SessionKind::Api,
                )
                .await
            })
        })
        .collect();
    let (mut refused, mut locked) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Err(LoginError::InvalidCredentials) => refused += 1,
            Err(LoginError::Locked { .. }) => locked += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(hasher.verifications.load(Ordering::SeqCst), 10);
    assert_eq!((refused, locked), (10, 30));
    let right = login(
        &service,
        &anonymous(),
        "alice",
        "the right password",
        SessionKind::Api,
    )
    .await;
    assert!(matches!(right, Err(LoginError::Locked { .. })), "{right:?}");
    assert_eq!(
        hasher.verifications.load(Ordering::SeqCst),
        10,
        "a lock verifies nothing"
    );
}

/// Four tasks loop logins with `password` until `operator` has acted and they are told to
/// stop; returns every credential the logins issued.
async fn logins_racing<F, Fut>(
    service: &Arc<Sessions>,
    password: &'static str,
    operator: F,
) -> Vec<Presented>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loops: Vec<_> = (0..4)
        .map(|i| {
            let (service, done) = (service.clone(), done.clone());
            tokio::spawn(async move {
                let mut issued = Vec::new();
                while !done.load(Ordering::SeqCst) {
                    let kind = if i % 2 == 0 {
                        SessionKind::Api
                    } else {
                        SessionKind::Browser
                    };
                    match login(&service, &anonymous(), "alice", password, kind).await {
                        Ok(login) => issued.push(Presented {
                            credential: login.credential,
                            ip: ip(),
                            user_agent: None,
                        }),
                        Err(LoginError::InvalidCredentials) => {}
                        Err(other) => panic!("a login answered {other:?}"),
                    }
                }
                issued
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    operator().await;
    // The loops go on a while after the operator's answer: logins in flight finish.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    done.store(true, Ordering::SeqCst);
    let mut issued = Vec::new();
    for task in loops {
        issued.extend(task.await.unwrap());
    }
    assert!(
        !issued.is_empty(),
        "no login got through: the race proved nothing"
    );
    issued
}

/// The race of issue 9: logins loop while an operator resets the password, then disables the
/// account, then deletes it. Whatever interleaving the database picks, every login answers
/// 200 or 401, and once the operator has answered no session issued before or during the
/// loop is valid (R5d, R7).
async fn r5d_logins_racing_an_operator_leave_no_valid_session_and_no_error(db: Store) {
    let (service, _) = service(
        &db,
        LockoutPolicy::new(100_000, Duration::minutes(1)).unwrap(),
    );
    let root = Superuser::operator();
    let first = "the first password";
    service
        .create_user(&root, "alice", Password::new(first), false)
        .await
        .unwrap();
    let valid = |issued: Vec<Presented>| {
        let service = service.clone();
        async move {
            let mut valid = 0;
            for presented in issued {
                valid += usize::from(service.recognise(&presented).await.unwrap().is_some());
            }
            valid
        }
    };
    let second = "the second password";
    let issued = logins_racing(&service, first, || async {
        service
            .reset_password(&root, "alice", Password::new(second))
            .await
            .unwrap();
    })
    .await;
    assert_eq!(valid(issued).await, 0, "a login outran the reset");

    let issued = logins_racing(&service, second, || async {
        service.set_disabled(&root, "alice", true).await.unwrap();
    })
    .await;
    assert_eq!(valid(issued).await, 0, "a login outran the disabling");
    service.set_disabled(&root, "alice", false).await.unwrap();

    let issued = logins_racing(&service, second, || async {
        service.delete_user(&root, "alice").await.unwrap();
    })
    .await;
    assert_eq!(valid(issued).await, 0, "a login outran the deletion");
    assert_eq!(rows(&db, "sessions").await, 0);
}

async fn clearing_removes_failures_and_lock(db: Store) {
    let repo = SeaLockouts::new(db);
    let name = username("alice");
    for _ in 0..3 {
        repo.attempt(&name, NOW, policy(3)).await.unwrap();
    }
    assert!(repo.state(&name, NOW).await.unwrap().locked_until.is_some());
    repo.clear(&name, record(AuditEvent::Unlocked))
        .await
        .unwrap();
    assert_eq!(repo.state(&name, NOW).await.unwrap(), Default::default());
    let Attempt::Counted(first) = repo.attempt(&name, NOW, policy(3)).await.unwrap() else {
        panic!("refused after clearing");
    };
    assert_eq!(first.failure_count, 1, "counting starts over");
}

async fn r8_purge_deletes_expired_locks_and_failures_of_names_without_an_account(db: Store) {
    new_user(&db, "alice").await;
    let repo = SeaLockouts::new(db.clone());
    // alice has an account; a and b have none; c has none but a lock in force.
    for (name, at, threshold) in [
        ("alice", NOW - Duration::hours(1), 1),
        ("a", NOW - Duration::hours(1), 1),
        ("b", NOW - Duration::minutes(10), 5),
        ("c", NOW, 1),
    ] {
        repo.attempt(&username(name), at, policy(threshold))
            .await
            .unwrap();
    }
    // Locks end at at + 10 min: alice's and a's have passed, b has none, c's has not.
    let purged = repo.purge(NOW, 1, Sweep::All).await.unwrap();
    assert_eq!(purged.expired_locks, 2);
    assert_eq!(purged.orphan_failures, 2, "a and b");
    assert_eq!(
        repo.state(&username("alice"), NOW)
            .await
            .unwrap()
            .failure_count,
        1
    );
    let c = repo.state(&username("c"), NOW).await.unwrap();
    assert_eq!(c.failure_count, 1);
    assert!(c.locked_until.is_some());
    for gone in ["a", "b"] {
        assert_eq!(
            repo.state(&username(gone), NOW).await.unwrap(),
            Default::default()
        );
    }
    assert_eq!(rows(&db, "login_failures").await, 2);
}
