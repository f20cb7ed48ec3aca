//! Logins and lockout (R5, R9) end to end: the lock, bursts of guesses over many connections and over one HTTP/2 connection, and logins racing an operator.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::Server;
use crate::support::*;

websessions_tests::on! {
    every backend: [
        lockout_answers_423_with_retry_after_even_for_the_right_password,
        r9_a_burst_of_40_wrong_guesses_gets_at_most_10_verifications,
        r9_a_burst_over_one_http2_connection_gets_at_most_10_verifications,
        r5d_logins_looping_while_an_operator_acts_leave_no_valid_session_and_no_5xx,
        r9_40_concurrent_logins_with_the_right_password_all_succeed,
        r9_39_wrong_and_1_right_get_at_most_threshold_verifications_per_lock,
    ];
    postgres as two_processes needs postgres: [
        r9_40_concurrent_right_passwords_over_two_processes_all_succeed,
    ];
}

async fn lockout_answers_423_with_retry_after_even_for_the_right_password(backend: Backend) {
    let settings = [
        ("WEBSESSIONS_LOCKOUT_THRESHOLD", "3"),
        ("WEBSESSIONS_LOCKOUT_INCREMENT", "5m"),
    ];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    let before_the_lock = browser_login(&server, None).await;
    for _ in 0..3 {
        let resp = login(&server, None, "alice", "wrong password", "browser").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    // R7: a lockout ends no session.
    assert!(is_valid_cookie(&server, &before_the_lock).await);
    let resp = login(&server, None, "alice", PASSWORD, "browser").await;
    assert_eq!(resp.status(), StatusCode::LOCKED);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry), "Retry-After {retry}");
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    // An unknown user is answered exactly like a wrong password.
    let unknown = login(&server, None, "nobody", "whatever", "browser").await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let wrong = login(&server, None, "bob", "whatever", "browser").await;
    assert_eq!(unknown.text().await.unwrap(), wrong.text().await.unwrap());
}

/// 40 wrong guesses at once against threshold 10: the lock check and the count are one
/// step, so exactly 10 are counted and verified (the 10th starts the lock), 30 are refused
/// with 423 before their password is looked at, and then even the right password is locked.
async fn wrong_guess_burst(server: &Server, http: &reqwest::Client) {
    server.create_user("alice", PASSWORD);
    let before = metrics(server).await;
    let statuses = guesses(http, &[server.url("/v1/session/login")], 40).await;
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    let after = metrics(server).await;
    let verified = sample(&after, BAD_CREDENTIALS) - sample(&before, BAD_CREDENTIALS);
    assert_eq!(verified, 10.0, "wrong passwords verified for one lock");
    assert_eq!(count(StatusCode::UNAUTHORIZED), 10, "{statuses:?}");
    assert_eq!(count(StatusCode::LOCKED), 30, "{statuses:?}");
    let locked = login(server, None, "alice", PASSWORD, "api").await;
    assert_eq!(
        locked.status(),
        StatusCode::LOCKED,
        "the guessing stopped at the lock"
    );
}

async fn r9_a_burst_of_40_wrong_guesses_gets_at_most_10_verifications(backend: Backend) {
    let server = start(backend).await;
    let http = reqwest::Client::builder().build().unwrap();
    wrong_guess_burst(&server, &http).await;
}

async fn r9_a_burst_over_one_http2_connection_gets_at_most_10_verifications(backend: Backend) {
    let server = start(backend).await;
    // h2c with prior knowledge: every request a stream of one connection.
    let http = reqwest::Client::builder()
        .http2_prior_knowledge()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let resp = http
        .get(server.url("/health/live"))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    wrong_guess_burst(&server, &http).await;
}

/// The race of issue 9: four clients loop API logins while a superuser resets alice's
/// password, then disables her, then deletes her. Every answer is 200 or 401, and once the
/// operator has answered, no credential a login issued is valid.
async fn r5d_logins_looping_while_an_operator_acts_leave_no_valid_session_and_no_5xx(
    backend: Backend,
) {
    use reqwest::Method;
    let settings = [("WEBSESSIONS_LOCKOUT_THRESHOLD", "100000")];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    server.create_superuser("root", PASSWORD);
    let root = api_login(&server, "root", PASSWORD).await;
    let second = "the second password";
    let rounds: [(&str, Method, String, Option<Value>); 3] = [
        (
            PASSWORD,
            Method::PUT,
            "/v1/admin/users/alice/password".into(),
            Some(json!({"new_password": second})),
        ),
        (
            second,
            Method::POST,
            "/v1/admin/users/alice/disable".into(),
            None,
        ),
        (second, Method::DELETE, "/v1/admin/users/alice".into(), None),
    ];
    for (password, method, path, body) in rounds {
        if path.ends_with("alice") {
            let enable = "/v1/admin/users/alice/enable";
            let resp = call(&server, Method::POST, enable, Some(&root), None).await;
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        }
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let loops: Vec<_> = (0..4)
            .map(|_| {
                let (http, done) = (server.http.clone(), done.clone());
                let url = server.url("/v1/session/login");
                tokio::spawn(async move {
                    let mut issued = Vec::new();
                    while !done.load(std::sync::atomic::Ordering::SeqCst) {
                        let resp = http
                            .post(&url)
                            .json(&json!({"username": "alice", "password": password, "client": "api"}))
                            .send_checked()
                            .await
                            .unwrap();
                        match resp.status() {
                            StatusCode::OK => {
                                let view: Value = resp.json().await.unwrap();
                                issued.push(view["credential"].as_str().unwrap().to_owned());
                            }
                            StatusCode::UNAUTHORIZED => {}
                            other => panic!("a login answered {other}"),
                        }
                    }
                    issued
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let resp = call(&server, method.clone(), &path, Some(&root), body).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{method} {path}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut issued = Vec::new();
        for task in loops {
            issued.extend(task.await.unwrap());
        }
        assert!(
            !issued.is_empty(),
            "no login got through before {method} {path}"
        );
        for credential in issued {
            assert!(
                !is_valid_bearer(&server, &credential).await,
                "a login outran {method} {path}"
            );
        }
    }
    assert!(
        !server.logs().contains("\"level\":\"ERROR\""),
        "{}",
        server.logs()
    );
}

/// R9's provisional locks: the tenth of 40 concurrent logins with the right password starts a
/// lock, which the others wait on instead of being refused; its password verifies, the lock
/// goes, and they are counted afresh. Every one logs in (browsers and API clients alike), and
/// the lock is never seen from outside.
async fn r9_40_concurrent_logins_with_the_right_password_all_succeed(backend: Backend) {
    let server = with_alice(backend).await;
    let attempts: Vec<(&str, &str)> = (0..40)
        .map(|n| (PASSWORD, if n % 2 == 0 { "browser" } else { "api" }))
        .collect();
    let http = reqwest::Client::new();
    let statuses = logins_together(&http, &[server.url("/v1/session/login")], &attempts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let after = metrics(&server).await;
    assert_eq!(
        sample(&after, "websessions_logins_total{result=\"success\"}"),
        40.0
    );
    assert_eq!(
        sample(&after, "websessions_logins_total{result=\"locked\"}"),
        0.0
    );
}

/// The same over two processes on one database: the provisional lock is the database's, so a
/// process waits for the other's verification.
async fn r9_40_concurrent_right_passwords_over_two_processes_all_succeed(backend: Backend) {
    let first = with_alice(backend).await;
    let second = Server::start_on(&first.db().url, &[], crate::server::free_port()).await;
    let attempts = vec![(PASSWORD, "api"); 40];
    let urls = [
        first.url("/v1/session/login"),
        second.url("/v1/session/login"),
    ];
    let statuses = logins_together(&reqwest::Client::new(), &urls, &attempts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}

/// 39 wrong passwords and one right, together, threshold 10: between two verified passwords no
/// more than `threshold` guesses are verified. Where the right one falls decides the rest:
/// counted before the tenth, it logs in and the tenth's lock stands (9 wrong verified); the
/// tenth itself, it removes its lock and the others are counted afresh up to a new lock (9 and
/// then 10 wrong verified); after the lock, it is refused with the rest (10 wrong verified).
async fn r9_39_wrong_and_1_right_get_at_most_threshold_verifications_per_lock(backend: Backend) {
    let server = with_alice(backend).await;
    let mut attempts = vec![("a wrong guess", "api"); 39];
    attempts.insert(17, (PASSWORD, "api"));
    let http = reqwest::Client::new();
    let statuses = logins_together(&http, &[server.url("/v1/session/login")], &attempts).await;
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    let outcome = (
        count(StatusCode::UNAUTHORIZED),
        count(StatusCode::OK),
        count(StatusCode::LOCKED),
    );
    assert!(
        [(9, 1, 30), (19, 1, 20), (10, 0, 30)].contains(&outcome),
        "(401, 200, 423) = {outcome:?}: {statuses:?}"
    );
    let after = metrics(&server).await;
    assert_eq!(sample(&after, BAD_CREDENTIALS), outcome.0 as f64);
}
