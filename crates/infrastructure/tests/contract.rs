//! The storage contract: every repository method, and the concurrency properties of R3, R5e,
//! R8 and R9, written once and run on SQLite, PostgreSQL and MySQL/MariaDB (see `testing`).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sea_orm::DatabaseConnection;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use websessions_domain::ports::{
    Clock, LockoutRepository, LoginTarget, LoginWrite, NewSession, NewUser, NoEvents, Rotation,
    SessionRepository, Sweep, UserRepository,
};
use websessions_domain::{
    ClientIp, CreateUserError, Cutoffs, LockoutPolicy, LoginAttempt, LoginError, Password,
    PasswordHash, Ports, Presented, SessionData, SessionId, SessionKind, SessionPolicy,
    SessionQuery, SessionService, Sessions, Token, TokenHash, User, UserId, Username,
};
use websessions_infrastructure::{Argon2Hasher, OsTokens, SeaLockouts, SeaSessions, SeaUsers};

const NOW: OffsetDateTime = datetime!(2026-03-01 09:00 UTC);

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { crate::run(websessions_infrastructure::testing::Backend::Sqlite, crate::$name).await }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { crate::run(websessions_infrastructure::testing::Backend::Postgres, crate::$name).await }
        )* }
        mod mysql { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() { crate::run(websessions_infrastructure::testing::Backend::Mysql, crate::$name).await }
        )* }
    };
}

contract!(
    created_session_is_found_anonymous_with_its_fields,
    unknown_session_id_is_not_found,
    touch_writes_only_while_the_token_matches_and_the_session_is_valid,
    touch_racing_a_logout_never_revives_the_session,
    touch_and_find_checks_every_condition_and_returns_the_touched_session,
    login_into_a_session_rotates_the_token_and_keeps_the_id,
    login_creates_a_session_when_the_target_ended_meanwhile,
    browser_login_ends_other_browser_sessions_but_not_api_sessions,
    concurrent_browser_logins_of_one_user_leave_exactly_one_valid_session,
    end_with_a_stale_token_ends_nothing,
    end_for_user_spares_the_excepted_session,
    client_state_is_stored_and_read_only_with_the_right_token,
    list_shows_only_valid_sessions_filtered_and_paged_by_id,
    count_active_since_counts_sessions_not_logged_out,
    purge_deletes_every_expired_and_ended_row_and_no_valid_one,
    purge_works_in_batches_smaller_than_the_backlog,
    one_batch_of_purge_deletes_at_most_one_batch_of_each_kind,
    users_are_created_found_listed_and_unique,
    password_change_rotates_the_session_and_ends_the_others_atomically,
    password_change_with_an_ended_session_writes_nothing,
    operator_reset_ends_every_session_of_the_user,
    disabling_ends_sessions_and_enabling_does_not,
    deleting_a_user_deletes_its_sessions,
    failures_count_and_lock_at_each_multiple_of_the_threshold,
    concurrent_failures_are_counted_exactly_and_lock_at_each_threshold,
    concurrent_wrong_password_logins_leave_the_username_locked,
    clearing_removes_failures_and_lock,
    purge_deletes_only_expired_lockouts,
);

async fn run<F, Fut>(backend: websessions_infrastructure::testing::Backend, test: F)
where
    F: FnOnce(DatabaseConnection) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(db) = websessions_infrastructure::testing::TestDb::new(backend).await else {
        return;
    };
    test(db.conn.clone()).await;
    db.drop().await;
}

// ---- helpers ----

fn ip() -> ClientIp {
    ClientIp::new("203.0.113.5".parse().unwrap())
}

fn token(n: u8) -> Token {
    Token::from_bytes(vec![n; 16])
}

fn hash(n: u8) -> TokenHash {
    token(n).hash()
}

fn cutoffs_at(now: OffsetDateTime) -> Cutoffs {
    SessionPolicy::default().cutoffs(now)
}

fn username(name: &str) -> Username {
    Username::parse(name).unwrap()
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
        now: at,
    })
    .await
    .unwrap()
}

async fn new_user(db: &DatabaseConnection, name: &str) -> User {
    SeaUsers::new(db.clone())
        .create(NewUser {
            username: username(name),
            password_hash: PasswordHash::new("$argon2id$stub"),
            superuser: false,
            now: NOW,
        })
        .await
        .unwrap()
}

fn login_write(user: UserId, target: LoginTarget, n: u8, kind: SessionKind) -> LoginWrite {
    LoginWrite {
        user,
        target,
        kind,
        ip_address: ip(),
        token_hash: hash(n),
        now: NOW,
        cutoffs: cutoffs_at(NOW),
        end_other_browser_sessions: kind == SessionKind::Browser,
    }
}

/// A new session of `user` holding `n`'s token, through a real login write.
async fn logged_in(repo: &SeaSessions, user: UserId, n: u8, kind: SessionKind) -> SessionId {
    let write = login_write(user, LoginTarget::New, n, kind);
    repo.login(write).await.unwrap().session
}

/// Whether the session holds `n`'s token and is valid at NOW.
async fn holds(repo: &SeaSessions, id: SessionId, n: u8) -> bool {
    repo.find(id).await.unwrap().is_some_and(|s| {
        s.token_hash == Some(hash(n))
            && cutoffs_at(NOW).admits(s.last_activity_at, s.created_at, s.authenticated_at)
    })
}

// ---- sessions ----

async fn created_session_is_found_anonymous_with_its_fields(db: DatabaseConnection) {
    let repo = SeaSessions::new(db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    let found = repo.find(id).await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.token_hash, Some(hash(1)));
    assert_eq!(found.ip_address, ip());
    assert_eq!(found.kind, SessionKind::Browser);
    assert_eq!(found.user, None);
    assert_eq!(found.created_at, NOW);
    assert_eq!(found.authenticated_at, None);
    assert_eq!(found.last_activity_at, NOW);
    let other = new_session(&repo, 2, SessionKind::Api, NOW).await;
    assert!(other.get() > id.get());
}

async fn unknown_session_id_is_not_found(db: DatabaseConnection) {
    let repo = SeaSessions::new(db);
    assert_eq!(
        repo.find(SessionId::new(999_999).unwrap()).await.unwrap(),
        None
    );
}

async fn touch_writes_only_while_the_token_matches_and_the_session_is_valid(
    db: DatabaseConnection,
) {
    let repo = SeaSessions::new(db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    let later = NOW + Duration::minutes(10);
    assert!(
        !repo
            .touch(id, hash(2), cutoffs_at(later), later)
            .await
            .unwrap()
    );
    assert!(
        repo.touch(id, hash(1), cutoffs_at(later), later)
            .await
            .unwrap()
    );
    assert_eq!(
        repo.find(id).await.unwrap().unwrap().last_activity_at,
        later
    );
    // 31 minutes idle: past the default idle timeout, the touch must not revive it.
    let too_late = later + Duration::minutes(31);
    assert!(
        !repo
            .touch(id, hash(1), cutoffs_at(too_late), too_late)
            .await
            .unwrap()
    );
    assert_eq!(
        repo.find(id).await.unwrap().unwrap().last_activity_at,
        later
    );
}

async fn touch_and_find_checks_every_condition_and_returns_the_touched_session(
    db: DatabaseConnection,
) {
    let alice = new_user(&db, "alice").await;
    let repo = SeaSessions::new(db);
    let id = logged_in(&repo, alice.id, 1, SessionKind::Browser).await;
    let later = NOW + Duration::minutes(5);
    let other_ip = ClientIp::new("198.51.100.1".parse().unwrap());
    let cutoffs = cutoffs_at(later);
    assert_eq!(
        repo.touch_and_find(id, hash(2), cutoffs, Some(ip()), later)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        repo.touch_and_find(id, hash(1), cutoffs, Some(other_ip), later)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        repo.find(id).await.unwrap().unwrap().last_activity_at,
        NOW,
        "nothing written"
    );
    let touched = repo
        .touch_and_find(id, hash(1), cutoffs, Some(ip()), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(touched.last_activity_at, later);
    assert_eq!(
        touched.user.as_ref().map(|u| &u.username),
        Some(&username("alice"))
    );
    assert_eq!(touched, repo.find(id).await.unwrap().unwrap());
    let anywhere = repo
        .touch_and_find(id, hash(1), cutoffs, None, later)
        .await
        .unwrap();
    assert!(anywhere.is_some(), "no ip condition without check_ip");
    let idle = later + Duration::minutes(31);
    let expired = repo
        .touch_and_find(id, hash(1), cutoffs_at(idle), None, idle)
        .await;
    assert_eq!(expired.unwrap(), None);
    let no_absolute = Cutoffs {
        idle: later - Duration::minutes(1),
        absolute: None,
    };
    let anonymous = new_session(&repo, 3, SessionKind::Api, later).await;
    let found = repo
        .touch_and_find(anonymous, hash(3), no_absolute, None, later)
        .await;
    assert_eq!(found.unwrap().unwrap().user, None);
}

async fn touch_racing_a_logout_never_revives_the_session(db: DatabaseConnection) {
    let repo = Arc::new(SeaSessions::new(db));
    for round in 0..10u8 {
        let id = new_session(&repo, round, SessionKind::Browser, NOW).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let repo = repo.clone();
            tasks.push(tokio::spawn(async move {
                let at = NOW + Duration::seconds(i);
                repo.touch(id, hash(round), cutoffs_at(at), at)
                    .await
                    .unwrap();
            }));
        }
        let ender = repo.clone();
        tasks.push(tokio::spawn(async move {
            assert!(ender.end(id, Some(hash(round))).await.unwrap());
        }));
        for task in tasks {
            task.await.unwrap();
        }
        let after = repo.find(id).await.unwrap().unwrap();
        assert_eq!(
            after.token_hash, None,
            "round {round}: the session came back"
        );
        assert!(
            !repo
                .touch(id, hash(round), cutoffs_at(NOW), NOW)
                .await
                .unwrap()
        );
    }
}

async fn login_into_a_session_rotates_the_token_and_keeps_the_id(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let repo = SeaSessions::new(db.clone());
    let id = new_session(&repo, 1, SessionKind::Browser, NOW - Duration::minutes(5)).await;
    let target = LoginTarget::Existing {
        id,
        token_hash: hash(1),
    };
    let outcome = repo
        .login(login_write(alice.id, target, 2, SessionKind::Browser))
        .await
        .unwrap();
    assert_eq!(outcome.session, id);
    assert!(!outcome.created);
    let found = repo.find(id).await.unwrap().unwrap();
    assert_eq!(found.token_hash, Some(hash(2)));
    assert_eq!(found.user.map(|u| u.username), Some(username("alice")));
    assert_eq!(found.authenticated_at, Some(NOW));
    assert_eq!(found.created_at, NOW - Duration::minutes(5));
    let users = SeaUsers::new(db);
    let alice = users
        .find_by_username(&username("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.last_login_at, Some(NOW));
}

async fn login_creates_a_session_when_the_target_ended_meanwhile(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let repo = SeaSessions::new(db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    assert!(repo.end(id, None).await.unwrap());
    let target = LoginTarget::Existing {
        id,
        token_hash: hash(1),
    };
    let outcome = repo
        .login(login_write(alice.id, target, 2, SessionKind::Browser))
        .await
        .unwrap();
    assert!(outcome.created);
    assert_ne!(outcome.session, id);
    assert!(holds(&repo, outcome.session, 2).await);
    assert_eq!(repo.find(id).await.unwrap().unwrap().token_hash, None);
}

async fn browser_login_ends_other_browser_sessions_but_not_api_sessions(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let bob = new_user(&db, "bob").await;
    let repo = SeaSessions::new(db);
    let first = repo
        .login(login_write(
            alice.id,
            LoginTarget::New,
            1,
            SessionKind::Browser,
        ))
        .await
        .unwrap();
    let api = repo
        .login(login_write(alice.id, LoginTarget::New, 2, SessionKind::Api))
        .await
        .unwrap();
    assert_eq!(api.replaced, 0);
    let bobs = repo
        .login(login_write(
            bob.id,
            LoginTarget::New,
            3,
            SessionKind::Browser,
        ))
        .await
        .unwrap();
    let second = repo
        .login(login_write(
            alice.id,
            LoginTarget::New,
            4,
            SessionKind::Browser,
        ))
        .await
        .unwrap();
    assert_eq!(second.replaced, 1);
    assert!(!holds(&repo, first.session, 1).await);
    assert!(holds(&repo, api.session, 2).await);
    assert!(holds(&repo, bobs.session, 3).await);
    assert!(holds(&repo, second.session, 4).await);
}

async fn concurrent_browser_logins_of_one_user_leave_exactly_one_valid_session(
    db: DatabaseConnection,
) {
    let alice = new_user(&db, "alice").await;
    let repo = Arc::new(SeaSessions::new(db));
    let mut anonymous = Vec::new();
    for n in 0..20u8 {
        anonymous.push(new_session(&repo, n, SessionKind::Browser, NOW).await);
    }
    let mut tasks = Vec::new();
    for (n, id) in anonymous.iter().copied().enumerate() {
        let repo = repo.clone();
        let n = n as u8;
        tasks.push(tokio::spawn(async move {
            let target = LoginTarget::Existing {
                id,
                token_hash: hash(n),
            };
            repo.login(login_write(alice.id, target, 100 + n, SessionKind::Browser))
                .await
                .unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let mut valid = 0;
    for outcome in &outcomes {
        let n = anonymous
            .iter()
            .position(|id| *id == outcome.session)
            .unwrap() as u8;
        if holds(&repo, outcome.session, 100 + n).await {
            valid += 1;
        }
    }
    assert_eq!(valid, 1, "exactly one login may survive");
    let replaced: u64 = outcomes.iter().map(|o| o.replaced).sum();
    assert_eq!(replaced, 19, "each other login was replaced exactly once");
}

async fn end_with_a_stale_token_ends_nothing(db: DatabaseConnection) {
    let repo = SeaSessions::new(db);
    let id = new_session(&repo, 1, SessionKind::Browser, NOW).await;
    assert!(!repo.end(id, Some(hash(2))).await.unwrap());
    assert!(holds(&repo, id, 1).await);
    assert!(repo.end(id, Some(hash(1))).await.unwrap());
    assert!(!repo.end(id, None).await.unwrap(), "already ended");
    let ended = repo.find(id).await.unwrap().unwrap();
    assert_eq!(ended.token_hash, None);
    assert_eq!(ended.user, None);
}

async fn end_for_user_spares_the_excepted_session(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let repo = SeaSessions::new(db);
    let mut ids = Vec::new();
    for n in 0..3 {
        let write = login_write(alice.id, LoginTarget::New, n, SessionKind::Api);
        ids.push(repo.login(write).await.unwrap().session);
    }
    assert_eq!(repo.end_for_user(alice.id, Some(ids[1])).await.unwrap(), 2);
    assert!(holds(&repo, ids[1], 1).await);
    assert!(!holds(&repo, ids[0], 0).await);
    assert_eq!(repo.end_for_user(alice.id, None).await.unwrap(), 1);
}

async fn client_state_is_stored_and_read_only_with_the_right_token(db: DatabaseConnection) {
    let repo = SeaSessions::new(db);
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
            .set_data(id, hash(2), cutoffs_at(NOW), data.clone())
            .await
            .unwrap()
    );
    assert!(
        repo.set_data(id, hash(1), cutoffs_at(NOW), data.clone())
            .await
            .unwrap()
    );
    assert_eq!(repo.data(id, hash(1)).await.unwrap(), Some(data));
    assert_eq!(repo.data(id, hash(2)).await.unwrap(), None);
    // R13: logout wipes it.
    repo.end(id, Some(hash(1))).await.unwrap();
    assert_eq!(repo.data(id, hash(1)).await.unwrap(), None);
}

async fn list_shows_only_valid_sessions_filtered_and_paged_by_id(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let repo = SeaSessions::new(db);
    let mut alices = Vec::new();
    for n in 0..5 {
        let write = login_write(alice.id, LoginTarget::New, n, SessionKind::Api);
        alices.push(repo.login(write).await.unwrap().session);
    }
    let anonymous = new_session(&repo, 10, SessionKind::Browser, NOW - Duration::minutes(10)).await;
    let ended = new_session(&repo, 11, SessionKind::Browser, NOW).await;
    repo.end(ended, None).await.unwrap();
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
        let page = repo
            .list(
                SessionQuery {
                    after,
                    limit: 2,
                    ..all.clone()
                },
                cutoffs_at(NOW),
            )
            .await
            .unwrap();
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

async fn count_active_since_counts_sessions_not_logged_out(db: DatabaseConnection) {
    let repo = SeaSessions::new(db);
    new_session(&repo, 1, SessionKind::Browser, NOW).await;
    new_session(&repo, 2, SessionKind::Browser, NOW - Duration::minutes(20)).await;
    let ended = new_session(&repo, 3, SessionKind::Browser, NOW).await;
    repo.end(ended, None).await.unwrap();
    assert_eq!(repo.count_active_since(NOW).await.unwrap(), 1);
    assert_eq!(
        repo.count_active_since(NOW - Duration::minutes(20))
            .await
            .unwrap(),
        2
    );
}

async fn purge_deletes_every_expired_and_ended_row_and_no_valid_one(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let repo = SeaSessions::new(db);
    let valid_at_limit =
        new_session(&repo, 1, SessionKind::Browser, NOW - Duration::minutes(30)).await;
    let idle = new_session(&repo, 2, SessionKind::Browser, NOW - Duration::minutes(31)).await;
    let ended = new_session(&repo, 3, SessionKind::Browser, NOW).await;
    repo.end(ended, None).await.unwrap();
    // Active but created 13 hours ago and never logged in: past the absolute limit.
    let old = new_session(&repo, 4, SessionKind::Browser, NOW - Duration::hours(13)).await;
    repo.touch(
        old,
        hash(4),
        Cutoffs {
            idle: NOW - Duration::days(1),
            absolute: None,
        },
        NOW,
    )
    .await
    .unwrap();
    // Created 13 hours ago but logged in just now: valid (the login itself is forced through
    // with lenient cutoffs, as if it had happened before the limit).
    let renewed = new_session(&repo, 5, SessionKind::Browser, NOW - Duration::hours(13)).await;
    let target = LoginTarget::Existing {
        id: renewed,
        token_hash: hash(5),
    };
    let mut write = login_write(alice.id, target, 6, SessionKind::Browser);
    write.cutoffs = Cutoffs {
        idle: NOW - Duration::days(1),
        absolute: None,
    };
    assert!(!repo.login(write).await.unwrap().created);

    let (expired, ended_count) = repo.purge(cutoffs_at(NOW), 1000, Sweep::All).await.unwrap();
    assert_eq!((expired, ended_count), (2, 1));
    assert!(repo.find(valid_at_limit).await.unwrap().is_some());
    assert!(repo.find(renewed).await.unwrap().is_some());
    for gone in [idle, ended, old] {
        assert_eq!(repo.find(gone).await.unwrap(), None);
    }
}

async fn purge_works_in_batches_smaller_than_the_backlog(db: DatabaseConnection) {
    let repo = SeaSessions::new(db);
    for n in 0..7 {
        new_session(&repo, n, SessionKind::Browser, NOW - Duration::hours(2)).await;
    }
    let keep = new_session(&repo, 9, SessionKind::Browser, NOW).await;
    assert_eq!(
        repo.purge(cutoffs_at(NOW), 3, Sweep::All).await.unwrap(),
        (7, 0)
    );
    assert!(repo.find(keep).await.unwrap().is_some());
}

async fn one_batch_of_purge_deletes_at_most_one_batch_of_each_kind(db: DatabaseConnection) {
    let repo = SeaSessions::new(db.clone());
    for n in 0..5 {
        new_session(&repo, n, SessionKind::Browser, NOW - Duration::hours(2)).await;
        let ended = new_session(&repo, 10 + n, SessionKind::Browser, NOW).await;
        repo.end(ended, None).await.unwrap();
    }
    for _ in 0..2 {
        let one_batch = repo.purge(cutoffs_at(NOW), 2, Sweep::OneBatch).await;
        assert_eq!(one_batch.unwrap(), (2, 2), "(expired, ended), two of each");
    }
    assert_eq!(
        repo.purge(cutoffs_at(NOW), 2, Sweep::All).await.unwrap(),
        (1, 1)
    );
    let lockouts = SeaLockouts::new(db);
    for name in ["a", "b", "c"] {
        lockouts
            .record_failure(&username(name), NOW - Duration::hours(1), policy(1))
            .await
            .unwrap();
    }
    assert_eq!(lockouts.purge(NOW, 2, Sweep::OneBatch).await.unwrap(), 2);
    assert_eq!(lockouts.purge(NOW, 2, Sweep::OneBatch).await.unwrap(), 1);
}

// ---- users ----

async fn users_are_created_found_listed_and_unique(db: DatabaseConnection) {
    let users = SeaUsers::new(db.clone());
    let bob = new_user(&db, "bob").await;
    let alice = new_user(&db, "alice").await;
    assert_eq!(bob.created_at, NOW);
    assert!(!bob.superuser && !bob.disabled);
    let again = users
        .create(NewUser {
            username: username("alice"),
            password_hash: PasswordHash::new("x"),
            superuser: true,
            now: NOW,
        })
        .await;
    assert!(matches!(again, Err(CreateUserError::Taken)));
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

async fn password_change_rotates_the_session_and_ends_the_others_atomically(
    db: DatabaseConnection,
) {
    let alice = new_user(&db, "alice").await;
    let sessions = SeaSessions::new(db.clone());
    let users = SeaUsers::new(db);
    let current = logged_in(&sessions, alice.id, 1, SessionKind::Browser).await;
    let other = logged_in(&sessions, alice.id, 2, SessionKind::Api).await;
    let later = NOW + Duration::minutes(1);
    let rotation = Rotation {
        session: current,
        old_hash: hash(1),
        new_hash: hash(3),
        cutoffs: cutoffs_at(later),
    };
    let ended = users
        .set_password(alice.id, PasswordHash::new("new"), later, Some(rotation))
        .await
        .unwrap();
    assert_eq!(ended, Some(1));
    assert!(holds(&sessions, current, 3).await);
    assert!(!holds(&sessions, other, 2).await);
    let stored = users
        .find_by_username(&username("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.as_str(), "new");
    assert_eq!(stored.password_changed_at, later);
}

async fn password_change_with_an_ended_session_writes_nothing(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let sessions = SeaSessions::new(db.clone());
    let users = SeaUsers::new(db);
    let other = logged_in(&sessions, alice.id, 2, SessionKind::Api).await;
    let stale = Rotation {
        session: other,
        old_hash: hash(9),
        new_hash: hash(3),
        cutoffs: cutoffs_at(NOW),
    };
    let result = users
        .set_password(alice.id, PasswordHash::new("new"), NOW, Some(stale))
        .await
        .unwrap();
    assert_eq!(result, None);
    assert!(
        holds(&sessions, other, 2).await,
        "rolled back: nothing ended"
    );
    let stored = users
        .find_by_username(&username("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.as_str(), "$argon2id$stub");
}

async fn operator_reset_ends_every_session_of_the_user(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let sessions = SeaSessions::new(db.clone());
    let users = SeaUsers::new(db);
    for n in 0..3 {
        let write = login_write(alice.id, LoginTarget::New, n, SessionKind::Api);
        sessions.login(write).await.unwrap();
    }
    let ended = users
        .set_password(alice.id, PasswordHash::new("reset"), NOW, None)
        .await
        .unwrap();
    assert_eq!(ended, Some(3));
    assert_eq!(
        users
            .set_password(UserId(987_654), PasswordHash::new("x"), NOW, None)
            .await
            .unwrap(),
        None
    );
}

async fn disabling_ends_sessions_and_enabling_does_not(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let sessions = SeaSessions::new(db.clone());
    let users = SeaUsers::new(db);
    let id = logged_in(&sessions, alice.id, 1, SessionKind::Browser).await;
    assert_eq!(users.set_disabled(alice.id, true).await.unwrap(), 1);
    assert!(!holds(&sessions, id, 1).await);
    let stored = users
        .find_by_username(&username("alice"))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.disabled);
    let id = logged_in(&sessions, alice.id, 2, SessionKind::Browser).await;
    assert_eq!(users.set_disabled(alice.id, false).await.unwrap(), 0);
    assert!(holds(&sessions, id, 2).await);
}

async fn deleting_a_user_deletes_its_sessions(db: DatabaseConnection) {
    let alice = new_user(&db, "alice").await;
    let bob = new_user(&db, "bob").await;
    let sessions = SeaSessions::new(db.clone());
    let users = SeaUsers::new(db);
    let alices = logged_in(&sessions, alice.id, 1, SessionKind::Browser).await;
    let bobs = logged_in(&sessions, bob.id, 2, SessionKind::Browser).await;
    assert_eq!(users.delete(alice.id).await.unwrap(), Some(1));
    assert_eq!(sessions.find(alices).await.unwrap(), None, "cascaded");
    assert!(holds(&sessions, bobs, 2).await);
    assert_eq!(users.delete(alice.id).await.unwrap(), None);
}

// ---- lockouts ----

fn policy(threshold: u32) -> LockoutPolicy {
    LockoutPolicy::new(threshold, Duration::minutes(10)).unwrap()
}

async fn failures_count_and_lock_at_each_multiple_of_the_threshold(db: DatabaseConnection) {
    let repo = SeaLockouts::new(db);
    let name = username("ghost");
    for n in 1..=6u32 {
        let recorded = repo.record_failure(&name, NOW, policy(3)).await.unwrap();
        assert_eq!(recorded.failure_count, n);
        let expected = match n {
            3 => Some(NOW + Duration::minutes(10)),
            6 => Some(NOW + Duration::minutes(20)),
            _ => None,
        };
        assert_eq!(recorded.locked_until, expected, "failure {n}");
    }
    let state = repo.state(&name, NOW).await.unwrap();
    assert_eq!(state.failure_count, 6);
    assert_eq!(state.locked_until, Some(NOW + Duration::minutes(20)));
    let after = repo
        .state(&name, NOW + Duration::minutes(20))
        .await
        .unwrap();
    assert_eq!(after.locked_until, None, "a lock ends at its time");
    assert_eq!(
        repo.state(&username("nobody"), NOW)
            .await
            .unwrap()
            .failure_count,
        0
    );
}

async fn concurrent_failures_are_counted_exactly_and_lock_at_each_threshold(
    db: DatabaseConnection,
) {
    let repo = Arc::new(SeaLockouts::new(db));
    let tasks: Vec<_> = (0..25)
        .map(|_| {
            let repo = repo.clone();
            tokio::spawn(async move {
                repo.record_failure(&username("alice"), NOW, policy(10))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut counts = Vec::new();
    let mut locks = Vec::new();
    for task in tasks {
        let recorded = task.await.unwrap();
        counts.push(recorded.failure_count);
        locks.extend(recorded.locked_until);
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=25).collect::<Vec<_>>(),
        "each failure its own count"
    );
    locks.sort();
    assert_eq!(
        locks,
        [NOW + Duration::minutes(10), NOW + Duration::minutes(20)],
        "exactly the locks at 10 and 20"
    );
    assert_eq!(
        repo.state(&username("alice"), NOW)
            .await
            .unwrap()
            .failure_count,
        25
    );
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        NOW
    }
}

async fn concurrent_wrong_password_logins_leave_the_username_locked(db: DatabaseConnection) {
    let hasher = Arc::new(Argon2Hasher::fast_for_tests().unwrap());
    let ports = Ports {
        sessions: Arc::new(SeaSessions::new(db.clone())),
        users: Arc::new(SeaUsers::new(db.clone())),
        lockouts: Arc::new(SeaLockouts::new(db.clone())),
        hasher,
        tokens: Arc::new(OsTokens),
        clock: Arc::new(FixedClock),
        events: Arc::new(NoEvents),
    };
    let service = Arc::new(Sessions::new(ports, SessionPolicy::default(), policy(10)));
    service
        .create_user("alice", Password::new("the right password"), false)
        .await
        .unwrap();
    let anonymous = Presented {
        credential: None,
        ip: ip(),
    };
    let tasks: Vec<_> = (0..25)
        .map(|_| {
            let service = service.clone();
            let anonymous = anonymous.clone();
            tokio::spawn(async move {
                let attempt = LoginAttempt {
                    username: "alice".into(),
                    password: Password::new("a wrong guess"),
                    kind: SessionKind::Browser,
                };
                service.login(&anonymous, attempt).await
            })
        })
        .collect();
    for task in tasks {
        let result = task.await.unwrap();
        assert!(matches!(
            result,
            Err(LoginError::InvalidCredentials | LoginError::Locked { .. })
        ));
    }
    let right = LoginAttempt {
        username: "alice".into(),
        password: Password::new("the right password"),
        kind: SessionKind::Browser,
    };
    assert!(matches!(
        service.login(&anonymous, right).await,
        Err(LoginError::Locked { .. })
    ));
    let (_, state) = service.user("alice").await.unwrap();
    assert!(state.failure_count >= 10);
}

async fn clearing_removes_failures_and_lock(db: DatabaseConnection) {
    let repo = SeaLockouts::new(db);
    let name = username("alice");
    for _ in 0..3 {
        repo.record_failure(&name, NOW, policy(3)).await.unwrap();
    }
    assert!(repo.state(&name, NOW).await.unwrap().locked_until.is_some());
    repo.clear(&name).await.unwrap();
    assert_eq!(repo.state(&name, NOW).await.unwrap(), Default::default());
    let first = repo.record_failure(&name, NOW, policy(3)).await.unwrap();
    assert_eq!(first.failure_count, 1, "counting starts over");
}

async fn purge_deletes_only_expired_lockouts(db: DatabaseConnection) {
    let repo = SeaLockouts::new(db);
    for (name, at) in [
        ("a", NOW - Duration::hours(1)),
        ("b", NOW - Duration::minutes(10)),
        ("c", NOW),
    ] {
        repo.record_failure(&username(name), at, policy(1))
            .await
            .unwrap();
    }
    // Locks end at at + 10 min: a's and b's (ending exactly now) have passed; c's has not.
    assert_eq!(repo.purge(NOW, 1, Sweep::All).await.unwrap(), 2);
    assert!(
        repo.state(&username("c"), NOW)
            .await
            .unwrap()
            .locked_until
            .is_some()
    );
    assert_eq!(
        repo.state(&username("a"), NOW).await.unwrap().failure_count,
        1
    );
}
