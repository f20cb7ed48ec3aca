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
    self, AuditEntry, AuditEvent, Broken, Detail, Stored, VERIFY_BATCH, VerifyError,
};
use websessions_domain::ports::AuditTrail;
use websessions_infrastructure::{PoolOptions, SeaAudit, connect};
use websessions_tests::{Backend, TestDb};

websessions_tests::on! {
    every backend: [
        r19_appends_racing_over_two_pools_form_one_unbroken_chain,
        r19_verify_names_the_record_after_an_edit_a_deletion_or_a_swap,
        r19_a_truncation_of_the_newest_records_is_found_against_a_head_noted_elsewhere,
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
    let tampering: [(&str, Vec<String>, Broken); 4] = [
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
