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
