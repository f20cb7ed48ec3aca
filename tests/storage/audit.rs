//! The audit trail's chain (R19) on every backend: appends racing over two connection pools
//! (two processes' worth) form one unbroken chain, `verify` names the record after an edit, a
//! deletion or a swap between the anchor and the head, and finds a truncation of the newest
//! records against a head noted elsewhere.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use sea_orm::ConnectionTrait;
use time::macros::datetime;
use tokio::sync::Barrier;
use websessions_domain::audit::{
    self, AuditEntry, AuditEvent, AuditFilter, AuditRecord, Broken, Detail, Stored, VERIFY_BATCH,
    VerifyError,
};
use websessions_domain::ports::{
    AccountStore, AuditTrail, Expect, NewSession, Owner, SessionRepository, Sweep,
};
use websessions_domain::{
    EndSessionError, LockoutPolicy, LoginError, Password, SessionAdmin, SessionId, SessionKind,
    SessionPolicy, Sessions, Superuser, UserAdmin,
};
use websessions_infrastructure::{PoolOptions, SeaAccounts, SeaAudit, SeaSessions, connect};

use crate::contract;
use websessions_tests::{Backend, TestDb};

websessions_tests::on! {
    every backend: [
        r19_appends_racing_over_two_pools_form_one_unbroken_chain,
        r19_verify_names_the_record_after_an_edit_a_deletion_or_a_swap,
        r19_a_truncation_of_the_newest_records_is_found_against_a_head_noted_elsewhere,
        r19_forty_failed_logins_over_two_processes_leave_forty_records_and_one_chain,
        r19_users_created_while_others_append_each_take_a_place_of_their_own,
        r19_one_session_revoked_twenty_times_over_two_processes_ends_once_with_one_record,
        r19_a_lock_is_recorded_with_the_failure_that_started_it,
        r19_a_login_racing_a_reset_leaves_records_that_match_what_happened,
        r19_a_change_rolled_back_leaves_no_record_and_an_ending_that_missed_none,
        r19_maintenance_records_each_batch_of_expired_sessions_that_had_a_user,
        r19_pages_filter_by_user_event_and_time_and_follow_on,
        r19_retention_deletes_the_chains_start_in_batches_and_verify_starts_at_the_anchor,
    ];
}

/// A failed login of `user{n}`, as R19 records it.
fn failed_login(n: u64) -> AuditEntry {
    let mut entry = AuditEntry::new(AuditEvent::LoginFailed, datetime!(2026-12-08 10:00 UTC))
        .user_agent("Mozilla/5.0 \u{1F600}");
    entry.username = Some(format!("user{n}"));
    entry.client_ip = Some("203.0.113.5".into());
    entry
        .details
        .insert("reason".into(), Detail::Text("bad_credentials".into()));
    entry
}

async fn broken(trail: &SeaAudit) -> Broken {
    match audit::verify(trail, None).await {
        Err(VerifyError::Broken(broken)) => broken,
        other => panic!("the chain verified: {other:?}"),
    }
}

/// A fresh database holding a chain of `n` failed logins, appended a hundred at a time.
async fn chain_of(backend: Backend, n: u64) -> (TestDb, SeaAudit) {
    let db = TestDb::new(backend).await;
    let trail = SeaAudit::new(db.store.clone());
    let all: Vec<u64> = (1..=n).collect();
    for group in all.chunks(100) {
        let entries = group.iter().map(|n| failed_login(*n)).collect();
        trail.append(entries).await.unwrap();
    }
    (db, trail)
}

async fn r19_appends_racing_over_two_pools_form_one_unbroken_chain(backend: Backend) {
    let db = TestDb::new(backend).await;
    let other = connect(&db.url, &PoolOptions::default()).await.unwrap();
    let trails = [SeaAudit::new(db.store.clone()), SeaAudit::new(other)];
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40u64)
        .map(|n| {
            let (trail, barrier) = (trails[(n % 2) as usize].clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // Every fourth task appends two records in one transaction.
                let mut entries = vec![failed_login(n)];
                if n % 4 == 0 {
                    entries.push(failed_login(n + 1000));
                }
                trail.append(entries).await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let verified = audit::verify(&trails[1], None).await.unwrap();
    assert_eq!(verified.records, 50);
    assert_eq!(verified.head.seq, 50);
    let records = trails[0].after(0, 100).await.unwrap();
    let names: BTreeSet<String> = records
        .iter()
        .map(|stored| match stored {
            Stored::Record(record) => record.entry.username.clone().unwrap(),
            Stored::Unreadable { seq } => panic!("record {seq} was not read back"),
        })
        .collect();
    assert_eq!(names.len(), 50, "each entry is recorded once");
    // A transaction's records are adjacent, in the order given.
    for (n, stored) in records.iter().enumerate() {
        let Stored::Record(record) = stored else {
            unreachable!()
        };
        let name = record.entry.username.as_deref().unwrap();
        let first = name
            .strip_prefix("user")
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first.filter(|first| *first < 1000 && first % 4 == 0) {
            let Stored::Record(next) = &records[n + 1] else {
                unreachable!()
            };
            let second = format!("user{}", first + 1000);
            assert_eq!(next.entry.username.as_deref(), Some(second.as_str()));
        }
    }
    db.drop().await;
}

async fn r19_verify_names_the_record_after_an_edit_a_deletion_or_a_swap(backend: Backend) {
    // Longer than one batch of verify's walk, so that the break is found past the first.
    let n = VERIFY_BATCH + 5;
    let at = n - 2;
    let tampering: [(&str, Vec<String>, Broken); 6] = [
        (
            "the same details spelt otherwise",
            vec![format!(
                "UPDATE audit_records SET details = '{{\"reason\": \"bad_credentials\"}}' \
                 WHERE seq = {at}"
            )],
            Broken::Changed { seq: at },
        ),
        (
            "a record put before the anchor",
            vec![
                "INSERT INTO audit_records (seq, at, event, username, actor, session_id, \
                 client_ip, user_agent, details, prev_hash, hash) SELECT 0, at, 'user_deleted', \
                 username, actor, session_id, client_ip, user_agent, details, prev_hash, hash \
                 FROM audit_records WHERE seq = 1"
                    .to_owned(),
            ],
            Broken::BeforeAnchor {
                seq: 0,
                anchor: audit::ChainPoint::START,
            },
        ),
        (
            "an edit",
            vec![format!(
                "UPDATE audit_records SET client_ip = '198.51.100.1' WHERE seq = {at}"
            )],
            Broken::Changed { seq: at },
        ),
        (
            "an event that does not exist",
            vec![format!(
                "UPDATE audit_records SET event = 'nothing' WHERE seq = {at}"
            )],
            Broken::Changed { seq: at },
        ),
        (
            "a deletion",
            vec![format!("DELETE FROM audit_records WHERE seq = {at}")],
            Broken::Missing {
                seq: at,
                after: at - 1,
            },
        ),
        (
            "a swap",
            vec![
                format!("UPDATE audit_records SET seq = 0 WHERE seq = {at}"),
                format!("UPDATE audit_records SET seq = {at} WHERE seq = {}", at + 1),
                format!("UPDATE audit_records SET seq = {} WHERE seq = 0", at + 1),
            ],
            Broken::Unlinked { seq: at },
        ),
    ];
    let (db, trail) = chain_of(backend, n).await;
    let untouched = audit::verify(&trail, None).await.unwrap();
    assert_eq!(untouched.records, n);
    db.drop().await;
    for (what, statements, expected) in tampering {
        let (db, trail) = chain_of(backend, n).await;
        for statement in &statements {
            db.conn.execute_unprepared(statement).await.unwrap();
        }
        assert_eq!(broken(&trail).await, expected, "{what}");
        db.drop().await;
    }
}

async fn r19_a_truncation_of_the_newest_records_is_found_against_a_head_noted_elsewhere(
    backend: Backend,
) {
    let (db, trail) = chain_of(backend, 5).await;
    let noted = audit::verify(&trail, None).await.unwrap().head;
    assert!(audit::verify(&trail, Some(noted)).await.is_ok());
    // The newest two records go: the head kept in storage no longer matches.
    db.conn
        .execute_unprepared("DELETE FROM audit_records WHERE seq > 3")
        .await
        .unwrap();
    assert!(matches!(broken(&trail).await, Broken::HeadMismatch { .. }));
    // Moving the head back too hides it from the chain itself, not from the noted head.
    let third = match &trail.after(2, 1).await.unwrap()[0] {
        Stored::Record(record) => record.hash,
        Stored::Unreadable { .. } => unreachable!(),
    };
    let hex = third.hex();
    let head = match backend {
        Backend::Postgres => format!("'\\x{hex}'"),
        _ => format!("X'{hex}'"),
    };
    db.conn
        .execute_unprepared(&format!(
            "UPDATE audit_chain SET head_seq = 3, head_hash = {head}"
        ))
        .await
        .unwrap();
    assert_eq!(audit::verify(&trail, None).await.unwrap().head.seq, 3);
    let Err(VerifyError::Broken(Broken::NotTheExpectedHead { expected, found })) =
        audit::verify(&trail, Some(noted)).await
    else {
        panic!("a truncated chain held the noted head");
    };
    assert_eq!((expected, found.seq), (noted, 3));
    db.drop().await;
}

// ---- the rules' records, over the real adapters ----

/// Every record, in sequence order.
async fn all_records(trail: &SeaAudit) -> Vec<AuditRecord> {
    trail
        .after(0, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .map(|stored| match stored {
            Stored::Record(record) => *record,
            Stored::Unreadable { seq } => panic!("record {seq} is unreadable"),
        })
        .collect()
}

fn events(records: &[AuditRecord]) -> Vec<&'static str> {
    records.iter().map(|r| r.entry.event.as_str()).collect()
}

fn text<'a>(record: &'a AuditRecord, key: &str) -> Option<&'a str> {
    match record.entry.details.get(key) {
        Some(Detail::Text(text)) => Some(text),
        _ => None,
    }
}

fn count(record: &AuditRecord) -> Option<u64> {
    match record.entry.details.get("count") {
        Some(Detail::Count(n)) => Some(*n),
        _ => None,
    }
}

/// The rules on `db`'s database over a second connection pool: another process's worth.
async fn second_process(db: &TestDb, lockout: LockoutPolicy) -> Arc<Sessions> {
    let other = connect(&db.url, &PoolOptions::default()).await.unwrap();
    contract::service(&other, lockout).0
}

async fn r19_forty_failed_logins_over_two_processes_leave_forty_records_and_one_chain(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    // A threshold above the attempts: every one is verified, none refused by a lock.
    let (first, _) = contract::service(&db.store, contract::policy(100));
    let second = second_process(&db, contract::policy(100)).await;
    first
        .create_user(
            &Superuser::operator(),
            "alice",
            Password::new("the right password"),
            false,
        )
        .await
        .unwrap();
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40usize)
        .map(|n| {
            let service = [first.clone(), second.clone()][n % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                // Half guess at alice, half at names without an account.
                let name = if n % 4 < 2 {
                    "alice".to_owned()
                } else {
                    format!("nobody{n}")
                };
                contract::login(
                    &service,
                    &contract::anonymous(),
                    &name,
                    "a wrong guess",
                    SessionKind::Api,
                )
                .await
            })
        })
        .collect();
    for task in tasks {
        assert!(matches!(
            task.await.unwrap(),
            Err(LoginError::InvalidCredentials)
        ));
    }
    let trail = SeaAudit::new(db.store.clone());
    let records = all_records(&trail).await;
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r.entry.event == AuditEvent::LoginFailed)
        .collect();
    assert_eq!(failed.len(), 40, "{:?}", events(&records));
    assert_eq!(records.len(), 41, "user_created, then the failures");
    assert!(
        failed
            .iter()
            .all(|r| text(r, "reason") == Some("bad_credentials"))
    );
    assert_eq!(
        failed
            .iter()
            .filter(|r| r.entry.username.as_deref() == Some("alice"))
            .count(),
        20
    );
    let verified = audit::verify(&trail, None).await.unwrap();
    assert_eq!(verified.records, 41);
    db.drop().await;
}

async fn r19_a_lock_is_recorded_with_the_failure_that_started_it(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (service, _) = contract::service(&db.store, contract::policy(3));
    for _ in 0..4 {
        let _ = contract::login(
            &service,
            &contract::anonymous(),
            "mallory",
            "a guess",
            SessionKind::Api,
        )
        .await;
    }
    let trail = SeaAudit::new(db.store.clone());
    let records = all_records(&trail).await;
    // The fourth attempt met the lock (423): not recorded.
    assert_eq!(
        events(&records),
        [
            "login_failed",
            "login_failed",
            "login_failed",
            "lock_started"
        ]
    );
    let lock = &records[3];
    assert_eq!(lock.entry.username.as_deref(), Some("mallory"));
    assert_eq!(lock.entry.details.get("failures"), Some(&Detail::Count(3)));
    assert_eq!(text(lock, "until"), Some("2026-03-01T09:10:00Z"));
    db.drop().await;
}

async fn r19_a_login_racing_a_reset_leaves_records_that_match_what_happened(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (service, _) = contract::service(&db.store, contract::policy(1000));
    let operator = Superuser::operator();
    service
        .create_user(
            &operator,
            "alice",
            Password::new("password number 0"),
            false,
        )
        .await
        .unwrap();
    let trail = SeaAudit::new(db.store.clone());
    let mut seen = BTreeSet::new();
    for round in 1..=12 {
        let before = audit::verify(&trail, None).await.unwrap().head.seq;
        let (login_service, reset_service) = (service.clone(), service.clone());
        let old = format!("password number {}", round - 1);
        let new = format!("password number {round}");
        let login = tokio::spawn(async move {
            contract::login(
                &login_service,
                &contract::anonymous(),
                "alice",
                &old,
                SessionKind::Api,
            )
            .await
        });
        let reset = tokio::spawn(async move {
            reset_service
                .reset_password(&Superuser::operator(), "alice", Password::new(&new))
                .await
        });
        let login = login.await.unwrap();
        reset.await.unwrap().unwrap();
        let records: Vec<_> = all_records(&trail)
            .await
            .into_iter()
            .filter(|r| r.seq > before)
            .collect();
        let happened = events(&records);
        match &login {
            // The login committed first: its session was ended by the reset, which says so.
            Ok(issued) => {
                assert_eq!(
                    happened,
                    ["login_succeeded", "password_reset", "sessions_ended"],
                    "round {round}"
                );
                assert_eq!(records[0].entry.session_id, Some(issued.session.id.get()));
                assert_eq!(count(&records[2]), Some(1));
                assert_eq!(text(&records[2], "cause"), Some("revoked"));
                seen.insert("login first");
            }
            // The reset won: the login is a failure, recorded after it, and nothing ended.
            Err(LoginError::InvalidCredentials) => {
                assert_eq!(
                    happened,
                    ["password_reset", "login_failed"],
                    "round {round}"
                );
                seen.insert("reset first");
            }
            Err(other) => panic!("round {round}: the login answered {other:?}"),
        }
        assert!(
            records
                .iter()
                .all(|r| r.entry.username.as_deref() == Some("alice"))
        );
    }
    audit::verify(&trail, None).await.unwrap();
    assert!(!seen.is_empty());
    db.drop().await;
}

async fn r19_a_change_rolled_back_leaves_no_record_and_an_ending_that_missed_none(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let alice = contract::new_user(&db.store, "alice").await;
    let accounts = SeaAccounts::new(db.store.clone());
    let mut change = accounts.begin().await.unwrap();
    assert!(change.lock_user(alice.id, Expect::Exists).await.unwrap());
    change.audit(AuditEntry::new(AuditEvent::UserDisabled, contract::NOW));
    change.set_disabled(alice.id, true).await.unwrap();
    drop(change);
    let sessions = SeaSessions::new(db.store.clone()).unwrap();
    let record = AuditEntry::new(AuditEvent::SessionsEnded, contract::NOW).count(1);
    let missed = sessions
        .end_by_id(
            SessionId::new(12345).unwrap(),
            Owner::User(alice.id),
            SessionPolicy::default().cutoffs(contract::NOW),
            Some(record),
        )
        .await
        .unwrap();
    assert!(!missed);
    let trail = SeaAudit::new(db.store.clone());
    // Only the creation's record (new_user's).
    assert_eq!(events(&all_records(&trail).await), ["user_created"]);
    db.drop().await;
}

async fn r19_maintenance_records_each_batch_of_expired_sessions_that_had_a_user(backend: Backend) {
    let db = TestDb::new(backend).await;
    let alice = contract::new_user(&db.store, "alice").await;
    let sessions = SeaSessions::new(db.store.clone()).unwrap();
    let long_ago = contract::NOW - time::Duration::days(2);
    for n in 0..7u8 {
        sessions
            .create(NewSession {
                token_hash: websessions_domain::fixtures::token(n).hash(),
                ip_address: contract::ip(),
                kind: SessionKind::Api,
                // Three of alice's, four anonymous.
                user: (n < 3).then_some(alice.id),
                now: long_ago,
            })
            .await
            .unwrap();
    }
    let expired = AuditEntry::new(AuditEvent::SessionsEnded, contract::NOW)
        .actor("cli")
        .detail("cause", "expired");
    let cutoffs = SessionPolicy::default().cutoffs(contract::NOW);
    let deleted = sessions
        .purge(cutoffs, 2, Sweep::All, &expired)
        .await
        .unwrap();
    assert_eq!(deleted, 7);
    let trail = SeaAudit::new(db.store.clone());
    let records: Vec<_> = all_records(&trail)
        .await
        .into_iter()
        .filter(|r| r.entry.event == AuditEvent::SessionsEnded)
        .collect();
    // One record per batch that ended a user's session, counting only those.
    assert!(!records.is_empty() && records.len() <= 2, "{records:?}");
    assert_eq!(records.iter().filter_map(count).sum::<u64>(), 3);
    assert!(records.iter().all(|r| text(r, "cause") == Some("expired")));
    db.drop().await;
}

/// A record of `event` for `user` at `at`.
fn at(event: AuditEvent, user: &str, at: time::OffsetDateTime) -> AuditEntry {
    AuditEntry::new(event, at).username(user)
}

async fn r19_pages_filter_by_user_event_and_time_and_follow_on(backend: Backend) {
    let db = TestDb::new(backend).await;
    let trail = SeaAudit::new(db.store.clone());
    let day = |d: i64| datetime!(2026-12-01 00:00 UTC) + time::Duration::days(d);
    trail
        .append(vec![
            at(AuditEvent::LoginFailed, "alice", day(0)),
            at(AuditEvent::LoginSucceeded, "alice", day(1)),
            at(AuditEvent::LoginFailed, "bob", day(2)),
            at(AuditEvent::LoginFailed, "alice", day(3)),
            at(AuditEvent::Logout, "alice", day(4)),
        ])
        .await
        .unwrap();
    let seqs = |page: Vec<Stored>| -> Vec<u64> { page.iter().map(Stored::seq).collect() };
    let filter = |f: AuditFilter| AuditFilter { limit: 100, ..f };
    let page = trail
        .page(&filter(AuditFilter {
            username: Some("alice".into()),
            event: Some(AuditEvent::LoginFailed),
            ..AuditFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(seqs(page), [1, 4]);
    let page = trail
        .page(&filter(AuditFilter {
            since: Some(day(1)),
            until: Some(day(4)),
            ..AuditFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(seqs(page), [2, 3, 4], "since is inclusive, until is not");
    // Records keep whole seconds: a bound between two seconds falls on the later one.
    let half = time::Duration::milliseconds(500);
    let page = trail
        .page(&filter(AuditFilter {
            since: Some(day(1) + half),
            until: Some(day(4) - half),
            ..AuditFilter::default()
        }))
        .await
        .unwrap();
    assert_eq!(seqs(page), [3, 4]);
    let page = trail
        .page(&AuditFilter {
            after: Some(2),
            limit: 2,
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(seqs(page), [3, 4]);
    // A name no record holds, and one that is not a username at all, match nothing.
    for name in ["carol", "' OR 1=1 --"] {
        let page = trail
            .page(&filter(AuditFilter {
                username: Some(name.into()),
                ..AuditFilter::default()
            }))
            .await
            .unwrap();
        assert!(page.is_empty());
    }
    db.drop().await;
}

async fn r19_retention_deletes_the_chains_start_in_batches_and_verify_starts_at_the_anchor(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let trail = SeaAudit::new(db.store.clone());
    let day = |d: i64| datetime!(2026-01-01 00:00 UTC) + time::Duration::days(d);
    // Five old records, one whose clock ran behind after a newer one, then new ones.
    let mut entries: Vec<_> = (0..5)
        .map(|d| at(AuditEvent::LoginFailed, "old", day(d)))
        .collect();
    entries.push(at(AuditEvent::LoginFailed, "new", day(100)));
    entries.push(at(AuditEvent::LoginFailed, "behind", day(6)));
    entries.push(at(AuditEvent::LoginFailed, "new", day(101)));
    trail.append(entries).await.unwrap();
    let before = day(50);
    // One batch of two.
    assert_eq!(trail.expire(before, 2, Sweep::OneBatch).await.unwrap(), 2);
    let ends = trail.ends().await.unwrap();
    assert_eq!(ends.anchor.seq, 2);
    assert_eq!(audit::verify(&trail, None).await.unwrap().records, 6);
    // The rest of the old run; the record behind the new one waits for it.
    assert_eq!(trail.expire(before, 2, Sweep::All).await.unwrap(), 3);
    let verified = audit::verify(&trail, None).await.unwrap();
    assert_eq!(verified.anchor.seq, 5);
    assert_eq!(verified.records, 3);
    assert_eq!(verified.head, ends.head);
    // An edit after the anchor is still found; the anchor is where the walk starts.
    db.conn
        .execute_unprepared("UPDATE audit_records SET username = 'x' WHERE seq = 7")
        .await
        .unwrap();
    assert_eq!(broken(&trail).await, Broken::Changed { seq: 7 });
    db.conn
        .execute_unprepared("UPDATE audit_records SET username = 'behind' WHERE seq = 7")
        .await
        .unwrap();
    // Everything goes once it is all old: the anchor is the head, and appends link on.
    assert_eq!(trail.expire(day(1000), 2, Sweep::All).await.unwrap(), 3);
    let empty = audit::verify(&trail, None).await.unwrap();
    assert_eq!((empty.anchor, empty.records), (ends.head, 0));
    trail
        .append(vec![at(AuditEvent::Logout, "after", day(1001))])
        .await
        .unwrap();
    let after = audit::verify(&trail, None).await.unwrap();
    assert_eq!((after.anchor, after.records), (ends.head, 1));
    db.drop().await;
}

async fn r19_users_created_while_others_append_each_take_a_place_of_their_own(backend: Backend) {
    // A creation reads its new row back before it appends (a snapshot, on MySQL/MariaDB,
    // older than the head it then locks): it must still link after the newest record.
    let db = TestDb::new(backend).await;
    let (first, _) = contract::service(&db.store, contract::policy(1000));
    let second = second_process(&db, contract::policy(1000)).await;
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40usize)
        .map(|n| {
            let service = [first.clone(), second.clone()][n % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                if n % 2 == 0 {
                    let name = format!("user{n}");
                    let password = Password::new("a long enough password");
                    service
                        .create_user(&Superuser::operator(), &name, password, false)
                        .await
                        .map(drop)
                        .map_err(|e| format!("{e:?}"))
                } else {
                    let failed = contract::login(
                        &service,
                        &contract::anonymous(),
                        "nobody",
                        "a guess",
                        SessionKind::Api,
                    )
                    .await;
                    assert!(matches!(failed, Err(LoginError::InvalidCredentials)));
                    Ok(())
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let trail = SeaAudit::new(db.store.clone());
    let verified = audit::verify(&trail, None).await.unwrap();
    assert_eq!(verified.records, 40);
    db.drop().await;
}

async fn r19_one_session_revoked_twenty_times_over_two_processes_ends_once_with_one_record(
    backend: Backend,
) {
    let db = TestDb::new(backend).await;
    let (first, _) = contract::service(&db.store, contract::policy(1000));
    let second = second_process(&db, contract::policy(1000)).await;
    let password = Password::new("alice's password 1");
    first
        .create_user(&Superuser::operator(), "alice", password, false)
        .await
        .unwrap();
    let issued = contract::login(
        &first,
        &contract::anonymous(),
        "alice",
        "alice's password 1",
        SessionKind::Api,
    )
    .await
    .unwrap();
    let id = issued.session.id;
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20usize)
        .map(|n| {
            let service = [first.clone(), second.clone()][n % 2].clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                service.revoke(&Superuser::operator(), id).await
            })
        })
        .collect();
    let mut ended = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => ended += 1,
            Err(EndSessionError::NotFound) => {}
            Err(other) => panic!("a revocation answered {other:?}"),
        }
    }
    assert_eq!(ended, 1, "exactly one revocation ends the session");
    let trail = SeaAudit::new(db.store.clone());
    let records = all_records(&trail).await;
    let endings: Vec<_> = records
        .iter()
        .filter(|r| r.entry.event == AuditEvent::SessionsEnded)
        .collect();
    assert_eq!(endings.len(), 1, "{:?}", events(&records));
    assert_eq!(endings[0].entry.session_id, Some(id.get()));
    assert_eq!(count(endings[0]), Some(1));
    audit::verify(&trail, None).await.unwrap();
    db.drop().await;
}
