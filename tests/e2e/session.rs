//! The session holder's lifecycle end to end: starting, logging in (the token rotates), logging out, expiry, R12 at the edge, password changes, the logs and a graceful stop.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::{COOKIE, Server, cookie_header, set_cookie};
use crate::support::*;

websessions_tests::on! {
    every backend: [
        starting_a_session_sets_the_specified_cookie_and_creates_no_row_on_get,
        login_rotates_the_token_keeps_the_id_and_kills_the_old_credential,
        a_second_browser_login_ends_the_first,
        an_api_login_returns_a_bearer_credential_and_ends_nothing,
        r5e_an_api_login_presenting_the_users_browser_cookie_ends_nothing,
        logout_kills_the_credential_and_clears_the_cookie,
        an_idle_session_expires_after_the_configured_timeout,
        background_housekeeping_deletes_expired_sessions,
        cross_site_post_with_the_cookie_is_403_and_with_bearer_is_allowed,
        password_change_rotates_the_credential_and_ends_other_sessions,
        a_request_is_followed_by_its_trace_id_from_the_edge_to_its_statements,
        sigterm_stops_gracefully_and_the_logs_hold_no_secrets,
    ];
}

async fn starting_a_session_sets_the_specified_cookie_and_creates_no_row_on_get(backend: Backend) {
    let server = start(backend).await;
    let resp = server
        .http
        .post(server.url("/v1/session"))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let (credential, header) = set_cookie(resp.headers()).unwrap();
    assert_eq!(
        header,
        format!("{COOKIE}={credential}; Path=/; HttpOnly; Secure; SameSite=Lax")
    );
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["id"].to_string(), session_id(&credential));
    assert_eq!(view["ip_address"], "127.0.0.1");
    assert_eq!(view["kind"], "browser");

    // The same session again: 200, no new cookie.
    let again = server
        .http
        .post(server.url("/v1/session"))
        .header("cookie", cookie_header(&credential))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert!(set_cookie(again.headers()).is_none());

    // R4: a GET never creates a row; the next session's id follows the first directly.
    for _ in 0..3 {
        assert_eq!(
            whoami(&server, None, None).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let next = new_session(&server).await;
    let first: i64 = session_id(&credential).parse().unwrap();
    assert!(session_id(&next).parse::<i64>().unwrap() > first);
    assert_eq!(server.command(&["purge"], "").status.code(), Some(0));
}

async fn login_rotates_the_token_keeps_the_id_and_kills_the_old_credential(backend: Backend) {
    let server = with_alice(backend).await;
    let anonymous = new_session(&server).await;
    let logged_in = browser_login(&server, Some(&anonymous)).await;
    assert_eq!(session_id(&logged_in), session_id(&anonymous));
    assert_ne!(logged_in, anonymous);
    assert!(
        !is_valid_cookie(&server, &anonymous).await,
        "pre-login credential still works"
    );
    let view: Value = whoami(&server, Some(&logged_in), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["user"]["username"], "alice");
    assert!(view["authenticated_at"].is_string());
}

async fn a_second_browser_login_ends_the_first(backend: Backend) {
    let server = with_alice(backend).await;
    let first = browser_login(&server, None).await;
    let second = browser_login(&server, None).await;
    assert_ne!(session_id(&first), session_id(&second));
    assert!(!is_valid_cookie(&server, &first).await);
    assert!(is_valid_cookie(&server, &second).await);
}

async fn an_api_login_returns_a_bearer_credential_and_ends_nothing(backend: Backend) {
    let server = with_alice(backend).await;
    let browser = browser_login(&server, None).await;
    let resp = login(&server, None, "alice", PASSWORD, "api").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(set_cookie(resp.headers()).is_none());
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["kind"], "api");
    let credential = view["credential"].as_str().unwrap().to_owned();
    assert!(is_valid_bearer(&server, &credential).await);
    assert!(
        is_valid_cookie(&server, &browser).await,
        "the api login ended the browser session"
    );
    let recognised: Value = whoami(&server, None, Some(&credential))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        recognised.get("credential").is_none(),
        "the token is only in the login answer"
    );
}

/// R5e: an API login that presents the same user's browser cookie ends nothing.
async fn r5e_an_api_login_presenting_the_users_browser_cookie_ends_nothing(backend: Backend) {
    let server = with_alice(backend).await;
    let browser = browser_login(&server, None).await;
    let resp = login(&server, Some(&browser), "alice", PASSWORD, "api").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let api: Value = resp.json().await.unwrap();
    assert_ne!(api["id"].to_string(), session_id(&browser));
    assert!(
        is_valid_cookie(&server, &browser).await,
        "the browser session survives"
    );
    let bearer = api["credential"].as_str().unwrap();
    assert!(is_valid_bearer(&server, bearer).await);
}

async fn logout_kills_the_credential_and_clears_the_cookie(backend: Backend) {
    let server = with_alice(backend).await;
    let credential = browser_login(&server, None).await;
    let resp = logout(&server, &credential).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (value, header) = set_cookie(resp.headers()).unwrap();
    assert_eq!(value, "");
    assert!(header.ends_with("Max-Age=0"));
    assert!(!is_valid_cookie(&server, &credential).await);
    // Logging out without a session is fine too.
    let resp = server
        .http
        .post(server.url("/v1/session/logout"))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

async fn an_idle_session_expires_after_the_configured_timeout(backend: Backend) {
    // The rule itself is proved with a fixed clock in the domain's tests; here the real binary
    // must honour a configured timeout on the real clock, so the test has to let time pass.
    let settings = [
        ("WEBSESSIONS_IDLE_TIMEOUT", "1s"),
        ("WEBSESSIONS_TOUCH_INTERVAL", "0"),
    ];
    let server = Server::start(backend, &settings).await;
    let credential = new_session(&server).await;
    assert!(is_valid_cookie(&server, &credential).await);
    // Every recognition is activity, so the wait must not ask; timestamps are whole seconds,
    // so 2.5 s is more than a second of idleness however the seconds fall.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!is_valid_cookie(&server, &credential).await);
}

async fn background_housekeeping_deletes_expired_sessions(backend: Backend) {
    let settings = [
        ("WEBSESSIONS_IDLE_TIMEOUT", "1s"),
        ("WEBSESSIONS_TOUCH_INTERVAL", "0"),
        ("WEBSESSIONS_HOUSEKEEPING_INTERVAL", "1s"),
    ];
    let server = Server::start(backend, &settings).await;
    new_session(&server).await;
    assert_eq!(session_rows(&server).await, 1);
    // Nothing but the server's own housekeeping deletes the row (no purge, no request).
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while session_rows(&server).await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "housekeeping never ran: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn cross_site_post_with_the_cookie_is_403_and_with_bearer_is_allowed(backend: Backend) {
    let server = with_alice(backend).await;
    let credential = browser_login(&server, None).await;
    let refused = server
        .http
        .post(server.url("/v1/session/logout"))
        .header("cookie", cookie_header(&credential))
        .header("origin", "https://evil.example")
        .send_checked()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        is_valid_cookie(&server, &credential).await,
        "a refused request changed nothing"
    );

    let resp = login(&server, None, "alice", PASSWORD, "api").await;
    let bearer = resp.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let allowed = server
        .http
        .post(server.url("/v1/session/logout"))
        .bearer_auth(&bearer)
        .header("cookie", cookie_header(&credential))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send_checked()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert!(!is_valid_bearer(&server, &bearer).await);
}

async fn password_change_rotates_the_credential_and_ends_other_sessions(backend: Backend) {
    let server = with_alice(backend).await;
    let browser = browser_login(&server, None).await;
    let api = login(&server, None, "alice", PASSWORD, "api").await;
    let api = api.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned();
    let change = |current: &str, new: &str| {
        server
            .http
            .put(server.url("/v1/session/password"))
            .header("cookie", cookie_header(&browser))
            .json(&json!({"current_password": current, "new_password": new}))
            .send_checked()
    };
    assert_eq!(
        change("wrong", "a brand new password")
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        change(PASSWORD, "short").await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let resp = change(PASSWORD, "a brand new password").await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let rotated = set_cookie(resp.headers()).unwrap().0;
    assert_eq!(session_id(&rotated), session_id(&browser));
    assert!(!is_valid_cookie(&server, &browser).await);
    assert!(is_valid_cookie(&server, &rotated).await);
    assert!(
        !is_valid_bearer(&server, &api).await,
        "the other session survived"
    );
    let resp = login(&server, None, "alice", "a brand new password", "api").await;
    assert_eq!(resp.status(), StatusCode::OK);
}

/// At `RUST_LOG=debug`, one request with a W3C `traceparent` shows as a tree of spans, from the
/// edge (method, route, status, ids) through the rules to the adapter, down to the SQL
/// statements, all carrying the caller's trace id; the answer continues the trace; and no
/// line holds a secret, though every statement is logged.
async fn a_request_is_followed_by_its_trace_id_from_the_edge_to_its_statements(backend: Backend) {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let server = Server::start(backend, &[("RUST_LOG", "debug")]).await;
    server.create_user("alice", PASSWORD);
    let resp = server
        .http
        .post(server.url("/v1/session/login"))
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let answer = resp.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(answer.starts_with(&format!("00-{TRACE}-")), "{answer}");
    assert!(!answer.contains("00f067aa0ba902b7"), "a span of its own");
    let credential = set_cookie(resp.headers()).unwrap().0;
    let (status, logs) = server.stop().await;
    assert_eq!(status.code(), Some(0), "{logs}");
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let spans =
        |line: &Value| -> Vec<Value> { line["spans"].as_array().cloned().unwrap_or_default() };
    let traced: Vec<&Value> = lines
        .iter()
        .filter(|line| {
            spans(line)
                .first()
                .is_some_and(|root| root["trace_id"] == TRACE)
        })
        .collect();
    let names = |line: &Value| -> Vec<String> {
        spans(line)
            .iter()
            .filter_map(|span| span["name"].as_str().map(str::to_owned))
            .collect()
    };
    // The edge's span, closed with what the request became.
    let ended = traced
        .iter()
        .find(|line| line["fields"]["message"] == "request")
        .unwrap_or_else(|| panic!("no request line for the trace:\n{logs}"));
    let root = &spans(ended)[0];
    assert_eq!(root["name"], "request");
    assert_eq!(root["method"], "POST");
    assert_eq!(root["route"], "/v1/session/login");
    assert_eq!(root["status"], 200);
    assert_eq!(
        root["request_id"].as_str(),
        answer.split('-').nth(2),
        "the request id is the span the answer names"
    );
    // A statement, inside the rule, inside the adapter's operation, inside the request.
    let statement = traced
        .iter()
        .find(|line| {
            line["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("sqlx::query"))
                && names(line).starts_with(&["request".to_owned(), "login".to_owned()])
                && names(line).len() >= 3
        })
        .unwrap_or_else(|| panic!("no statement under the request and its login:\n{logs}"));
    assert!(
        statement["fields"]["db.statement"].is_string()
            || statement["fields"]["summary"].is_string(),
        "{statement}"
    );
    let token = credential.split_once('.').unwrap().1;
    for secret in [token, PASSWORD, "$argon2id$"] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}

async fn sigterm_stops_gracefully_and_the_logs_hold_no_secrets(backend: Backend) {
    let server = with_alice(backend).await;
    let credential = browser_login(&server, None).await;
    login(&server, None, "alice", "a wrong secret", "browser").await;
    let (status, logs) = server.stop().await;
    assert_eq!(status.code(), Some(0), "{logs}");
    let token = credential.split_once('.').unwrap().1;
    assert!(
        logs.contains("\"path\":\"/v1/session/login\""),
        "requests are logged"
    );
    for secret in [token, PASSWORD, "a wrong secret"] {
        assert!(!logs.contains(secret), "the logs contain a secret");
    }
}
