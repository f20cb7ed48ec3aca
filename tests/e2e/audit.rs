//! `websessions audit verify` (R19) as an operator runs it, on every backend: it prints the
//! chain's anchor and head and exits 0 on an untouched chain, holds a head noted elsewhere,
//! exits 1 naming the first broken record, and refuses a malformed head with exit 2. A chain
//! that another program wrote from the README's description of the canonical content
//! (`tests/contract/audit_chain.py`, in Python) verifies: the description is the format.
//!
//! And the records the running service writes: every event that exists today, once, listed
//! alike by `GET /v1/admin/audit` and `websessions audit --json`, none holding a password,
//! credential, token or hash; and a client that resets its HTTP/2 stream mid-login (without
//! the handler's own task, that ended the handler between the count and its record, and after
//! a right password's count without its login) leaves every change with its record.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};
use time::OffsetDateTime;
use websessions_domain::audit::{AuditEntry, AuditEvent};
use websessions_domain::ports::AuditTrail;
use websessions_infrastructure::SeaAudit;
use websessions_tests::{Backend, TestDb};

use crate::server::Server;
use crate::support::{PASSWORD, api_login, call, get_json, login};

websessions_tests::on! {
    every backend: [
        r19_audit_verify_prints_the_ends_and_names_a_broken_record,
        r19_every_event_is_recorded_once_listed_alike_by_api_and_cli_and_holds_no_secret,
        r19_a_client_that_disconnects_mid_login_leaves_each_count_with_its_record,
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

/// Every record, through `GET /v1/admin/audit`, `limit` at a time.
async fn api_records(server: &Server, bearer: &str, limit: u64) -> Vec<Value> {
    let mut records = Vec::new();
    let mut after = String::new();
    loop {
        let page = get_json(
            server,
            &format!("/v1/admin/audit?limit={limit}{after}"),
            bearer,
        )
        .await;
        records.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => return records,
        }
    }
}

fn events(records: &[Value]) -> Vec<&str> {
    records
        .iter()
        .map(|r| r["event"].as_str().unwrap())
        .collect()
}

/// The password hashes stored for every user.
async fn stored_hashes(server: &Server) -> Vec<String> {
    let db = &server.db().conn;
    db.query_all_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT password_hash FROM users",
    ))
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String>("", "password_hash").unwrap())
    .collect()
}

async fn r19_every_event_is_recorded_once_listed_alike_by_api_and_cli_and_holds_no_secret(
    backend: Backend,
) {
    let server = Server::start(backend, &[]).await;
    let mut secrets = vec![PASSWORD.to_owned()];
    server.create_superuser("root", PASSWORD);
    let root = api_login(&server, "root", PASSWORD).await;
    let alices = [
        "alice's first password",
        "alice's second password",
        "alice's third one",
    ];
    secrets.extend(alices.iter().map(|p| (*p).to_owned()));
    let created = call(
        &server,
        Method::POST,
        "/v1/admin/users",
        Some(&root),
        Some(json!({"username": "alice", "password": alices[0]})),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let wrong = "a wrong guess at alice's";
    secrets.push(wrong.to_owned());
    assert_eq!(
        login(&server, None, "alice", wrong, "api").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A name typed with a password in it, as people do: recorded as typed, cut and cleaned.
    let typo = format!(
        "alice\t\u{2028}999 login_succeeded user=root{}",
        "x".repeat(300)
    );
    login(&server, None, &typo, "whatever it is", "api").await;
    let first = api_login(&server, "alice", alices[0]).await;
    let changed = call(
        &server,
        Method::PUT,
        "/v1/session/password",
        Some(&first),
        Some(json!({"current_password": alices[0], "new_password": alices[1]})),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let second = changed.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let reset = call(
        &server,
        Method::PUT,
        "/v1/admin/users/alice/password",
        Some(&root),
        Some(json!({"new_password": alices[2]})),
    )
    .await;
    assert!(reset.status().is_success(), "{}", reset.status());
    // A failure to unlock (alice's login cleared the first): an unlock of nothing records
    // nothing.
    login(&server, None, "alice", wrong, "api").await;
    for path in ["unlock", "unlock", "disable", "enable"] {
        let path = format!("/v1/admin/users/alice/{path}");
        let answer = call(&server, Method::POST, &path, Some(&root), None).await;
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
    }
    let third = api_login(&server, "alice", alices[2]).await;
    let fourth = api_login(&server, "alice", alices[2]).await;
    let id = fourth.split('.').next().unwrap();
    let revoked = call(
        &server,
        Method::DELETE,
        &format!("/v1/admin/sessions/{id}"),
        Some(&root),
        None,
    )
    .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let out = call(
        &server,
        Method::POST,
        "/v1/session/logout",
        Some(&third),
        None,
    )
    .await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let deleted = call(
        &server,
        Method::DELETE,
        "/v1/admin/users/alice",
        Some(&root),
        None,
    )
    .await;
    assert!(deleted.status().is_success());
    secrets.extend([root.clone(), first, second, third, fourth]);
    secrets.extend(stored_hashes(&server).await);

    let records = api_records(&server, &root, 3).await;
    assert_eq!(
        events(&records),
        [
            "user_created",
            "login_succeeded",
            "user_created",
            "login_failed",
            "login_failed",
            "login_succeeded",
            "password_changed",
            "password_reset",
            "sessions_ended",
            "login_failed",
            "unlocked",
            "user_disabled",
            "user_enabled",
            "login_succeeded",
            "login_succeeded",
            "sessions_ended",
            "logout",
            "user_deleted",
        ]
    );
    let actors: Vec<_> = records.iter().map(|r| r["actor"].clone()).collect();
    assert_eq!(actors[0], "cli");
    assert_eq!(actors[2], "root");
    assert_eq!(
        records[4]["username"].as_str().unwrap().chars().count(),
        191
    );
    assert!(
        records[4]["username"]
            .as_str()
            .unwrap()
            .starts_with("alice\u{FFFD}\u{FFFD}999")
    );
    assert_eq!(
        records[8]["details"],
        json!({"cause": "revoked", "count": 1})
    );
    assert_eq!(
        records[15]["details"],
        json!({"cause": "revoked", "count": 1})
    );
    assert!(records[5]["client_ip"] == "127.0.0.1" && records[5]["session_id"].is_i64());

    // The command line prints the same records, field for field.
    let printed = server.command(&["audit", "--json"], "");
    assert!(printed.status.success());
    let lines: Vec<Value> = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, records);
    let first = records[0]["at"].as_str().unwrap();
    let printed = server.command(&["audit", "--since", first], "");
    let text = String::from_utf8(printed.stdout).unwrap();
    assert_eq!(text.lines().count(), records.len(), "{text}");
    // What a client typed is quoted and escaped: it cannot pass for a field or a line.
    assert!(!text.contains('\u{2028}') && !text.contains('\t'), "{text}");
    assert!(
        text.contains("user=\"alice\u{FFFD}\u{FFFD}999 login_succeeded"),
        "{text}"
    );
    assert!(text.lines().next().unwrap().starts_with("1 "), "{text}");
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let later = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let printed = server.command(&["audit", "--since", &later], "");
    assert!(printed.status.success() && printed.stdout.is_empty());

    // No record holds a password, a credential, a token or a hash, in any form.
    let all = serde_json::to_string(&records).unwrap();
    for secret in &secrets {
        let token = secret.split('.').nth(1).unwrap_or(secret);
        for needle in [secret.as_str(), token] {
            assert!(!all.contains(needle), "a record holds a secret: {needle}");
        }
    }

    // Filters, and who may read.
    let failed = get_json(
        &server,
        "/v1/admin/audit?event=login_failed&user=alice",
        &root,
    )
    .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 2);
    let answer = call(
        &server,
        Method::GET,
        "/v1/admin/audit?user=%00",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(answer.status(), StatusCode::OK, "a name no record can hold");
    let answer = call(
        &server,
        Method::GET,
        "/v1/admin/audit?event=no_such_event",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let answer = call(
        &server,
        Method::GET,
        "/v1/admin/audit?since=yesterday",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let answer = call(&server, Method::GET, "/v1/admin/audit", None, None).await;
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    server.create_user("bob", PASSWORD);
    let bob = api_login(&server, "bob", PASSWORD).await;
    let answer = call(&server, Method::GET, "/v1/admin/audit", Some(&bob), None).await;
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    let (code, _, err) = verify(server.db(), &[]);
    assert_eq!(code, Some(0), "{err}");
}

/// Sends a login over HTTP/2 on a connection of its own and gives up on it after `wait`: the
/// stream is reset (RST_STREAM, how a client's timeout or a cancelled fetch ends a request),
/// which ends the request's handler unless it runs on to its end.
async fn login_and_hang_up(server: &Server, password: &str, wait: Duration) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let body = json!({"username": "alice", "password": password, "client": "api"}).to_string();
    let request = poem::http::Request::post(server.url("/v1/session/login"))
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let (answer, mut send) = client.send_request(request, false).unwrap();
    send.send_data(bytes::Bytes::from(body), true).unwrap();
    if tokio::time::timeout(wait, answer).await.is_err() {
        send.send_reset(h2::Reason::CANCEL);
    }
    // The reset goes out before the connection closes.
    tokio::time::sleep(Duration::from_millis(5)).await;
    drop(client);
    connection.abort();
}

async fn r19_a_client_that_disconnects_mid_login_leaves_each_count_with_its_record(
    backend: Backend,
) {
    // A threshold no guess reaches: every attempt is counted and verified.
    let server = Server::start(backend, &[("WEBSESSIONS_LOCKOUT_THRESHOLD", "1000")]).await;
    server.create_superuser("root", PASSWORD);
    server.create_user("alice", PASSWORD);
    let root = api_login(&server, "root", PASSWORD).await;
    // Hang up at once, during the count, during the verification (tens of milliseconds),
    // and after it: first with the right password (each session with its login), then with
    // wrong ones (each counted failure with its record; no success clears them after).
    for (password, attempts) in [(PASSWORD, 4u64), ("a wrong guess", 12)] {
        for n in 0..attempts {
            login_and_hang_up(&server, password, Duration::from_millis(1 + n * 5)).await;
        }
        // The work the closed connections left behind ends; then every change has its
        // record. A lost record never comes, and the deadline says so.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let shown = get_json(&server, "/v1/admin/users/alice", &root).await;
            let failures = shown["failure_count"].as_u64().unwrap();
            let records = api_records(&server, &root, 1000).await;
            let of = |event: &str| {
                records
                    .iter()
                    .filter(|r| r["event"] == event && r["username"] == "alice")
                    .count() as u64
            };
            let sessions = get_json(&server, "/v1/admin/sessions?user=alice", &root).await;
            let sessions = sessions["items"].as_array().unwrap().len() as u64;
            let settled = failures == of("login_failed") && sessions == of("login_succeeded");
            if settled && failures + sessions > 0 {
                // Let anything still in flight land, then look again.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let again = get_json(&server, "/v1/admin/users/alice", &root).await;
                if again["failure_count"].as_u64() == Some(failures) {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} failures and {} logins recorded; {failures} counted, {sessions} sessions",
                of("login_failed"),
                of("login_succeeded")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
