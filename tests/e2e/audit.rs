//! `websessions audit verify` (R19) as an operator runs it, on every backend: it prints the
//! chain's anchor and head and exits 0 on an untouched chain, holds a head noted elsewhere,
//! exits 1 naming the first broken record, and refuses a malformed head with exit 2. A chain
//! that another program wrote from the README's description of the canonical content
//! (`tests/contract/audit_chain.py`, in Python) verifies: the description is the format.

use std::process::Command;

use sea_orm::ConnectionTrait;
use time::OffsetDateTime;
use websessions_domain::audit::{AuditEntry, AuditEvent};
use websessions_domain::ports::AuditTrail;
use websessions_infrastructure::SeaAudit;
use websessions_tests::{Backend, TestDb};

websessions_tests::on! {
    every backend: [
        r19_audit_verify_prints_the_ends_and_names_a_broken_record,
    ];
    sqlite as outside needs python: [
        r19_a_chain_an_outside_tool_wrote_from_the_readme_verifies,
    ];
}

/// `websessions audit verify ARGS` on `db`: its exit code, standard output and error.
fn verify(db: &TestDb, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_websessions"))
        .args(["audit", "verify"])
        .args(args)
        .env("WEBSESSIONS_DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

async fn r19_audit_verify_prints_the_ends_and_names_a_broken_record(backend: Backend) {
    let db = TestDb::new(backend).await;
    let (code, out, err) = verify(&db, &[]);
    assert_eq!(code, Some(0), "an empty chain verifies: {err}");
    assert!(out.contains(&format!("head 0:{}", "0".repeat(64))), "{out}");
    let entries = (1..=3)
        .map(|n| {
            let mut entry = AuditEntry::new(AuditEvent::Logout, OffsetDateTime::now_utc());
            entry.username = Some(format!("user{n}"));
            entry
        })
        .collect();
    SeaAudit::new(db.store.clone())
        .append(entries)
        .await
        .unwrap();
    let (code, out, err) = verify(&db, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains(&format!("anchor 0:{}", "0".repeat(64))),
        "{out}"
    );
    let head = out
        .lines()
        .find_map(|line| line.strip_prefix("head "))
        .unwrap()
        .to_owned();
    assert!(head.starts_with("3:"), "{out}");
    assert_eq!(verify(&db, &["--expect-head", &head]).0, Some(0));
    let (code, _, err) = verify(&db, &["--expect-head", "3:not-a-hash"]);
    assert_eq!(code, Some(2), "a malformed head is a usage error: {err}");
    let elsewhere = format!("4:{}", "ab".repeat(32));
    let (code, _, err) = verify(&db, &["--expect-head", &elsewhere]);
    assert_eq!(code, Some(1), "a head the chain does not hold: {err}");
    db.conn
        .execute_unprepared("UPDATE audit_records SET username = 'mallory' WHERE seq = 2")
        .await
        .unwrap();
    let (code, _, err) = verify(&db, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("record 2 "),
        "the broken record is named: {err}"
    );
    db.drop().await;
}

async fn r19_a_chain_an_outside_tool_wrote_from_the_readme_verifies(backend: Backend) {
    let db = TestDb::new(backend).await;
    let file = db.url.trim_start_matches("sqlite://");
    let file = file.split('?').next().unwrap().to_owned();
    let python = std::env::var("WEBSESSIONS_TEST_PYTHON").unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/contract/audit_chain.py"
    );
    let written = Command::new(python)
        .args([script, &file, "300"])
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let head = String::from_utf8_lossy(&written.stdout).trim().to_owned();
    let (code, out, err) = verify(&db, &["--expect-head", &head]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(&format!("head {head}")), "{out}");
    assert!(out.contains("records 300"), "{out}");
    db.drop().await;
}
