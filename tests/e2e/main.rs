//! End-to-end: the real `websessions` binary, a real database (SQLite always; PostgreSQL and
//! MariaDB when `WEBSESSIONS_TEST_POSTGRES_URL` / `WEBSESSIONS_TEST_MYSQL_URL` are set), real
//! HTTP. Each test starts its own server on a free port with a fresh database.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod contract;
mod gateway;
mod restart;
mod server;
mod tools;

use std::time::Duration;

use contract::SendChecked;
use reqwest::StatusCode;
use serde_json::{Value, json};
use server::{COOKIE, Server, cookie_header, set_cookie};
use websessions_infrastructure::testing::Backend;

macro_rules! e2e {
    ($($name:ident),* $(,)?) => {
        mod sqlite { $(
            #[tokio::test]
            async fn $name() { crate::$name(websessions_infrastructure::testing::Backend::Sqlite).await }
        )* }
        mod postgres { $(
            #[tokio::test]
            #[cfg_attr(not(has_postgres), ignore = "set WEBSESSIONS_TEST_POSTGRES_URL to run on PostgreSQL")]
            async fn $name() { crate::$name(websessions_infrastructure::testing::Backend::Postgres).await }
        )* }
        mod mysql { $(
            #[tokio::test]
            #[cfg_attr(not(has_mysql), ignore = "set WEBSESSIONS_TEST_MYSQL_URL to run on MySQL/MariaDB")]
            async fn $name() { crate::$name(websessions_infrastructure::testing::Backend::Mysql).await }
        )* }
    };
}

e2e!(
    starting_a_session_sets_the_specified_cookie_and_creates_no_row_on_get,
    login_rotates_the_token_keeps_the_id_and_kills_the_old_credential,
    a_second_browser_login_ends_the_first,
    an_api_login_returns_a_bearer_credential_and_ends_nothing,
    logout_kills_the_credential_and_clears_the_cookie,
    an_idle_session_expires_after_the_configured_timeout,
    lockout_answers_423_with_retry_after_even_for_the_right_password,
    cross_site_post_with_the_cookie_is_403_and_with_bearer_is_allowed,
    hostile_inputs_get_a_4xx_and_never_a_5xx,
    session_data_survives_login_and_is_wiped_by_logout,
    password_change_rotates_the_credential_and_ends_other_sessions,
    operator_commands_set_passwords_unlock_and_purge,
    sigterm_stops_gracefully_and_the_logs_hold_no_secrets,
    a_request_is_followed_by_its_trace_id_from_the_edge_to_its_statements,
    background_housekeeping_deletes_expired_sessions,
    anyone_but_a_superuser_is_refused_every_admin_route,
    users_list_and_end_their_own_sessions_only,
    an_operators_reset_and_a_users_deletion_kill_every_old_credential,
    admin_paging_returns_every_session_exactly_once,
    admin_user_management_and_lockout_state,
    metrics_move_by_exactly_the_expected_amounts,
    r9_a_burst_of_40_wrong_guesses_gets_at_most_10_verifications,
    r9_a_burst_over_one_http2_connection_gets_at_most_10_verifications,
    r5d_logins_looping_while_an_operator_acts_leave_no_valid_session_and_no_5xx,
    r5e_an_api_login_presenting_the_users_browser_cookie_ends_nothing,
    r14_starts_and_logins_over_the_address_limit_get_429_and_record_nothing,
    r15_logins_beyond_the_hashing_queue_are_shed_and_record_nothing,
    usernames_compare_byte_for_byte_and_client_state_holds_any_unicode,
);

const PASSWORD: &str = "correct horse battery";

async fn start(backend: Backend) -> Server {
    Server::start(backend, &[("WEBSESSIONS_COOKIE_SECURE", "true")]).await
}

/// A server on `backend` with the user alice (password `PASSWORD`), created through the CLI.
async fn with_alice(backend: Backend) -> Server {
    let server = start(backend).await;
    server.create_user("alice", PASSWORD);
    server
}

/// POST /v1/session/logout with the cookie.
async fn logout(server: &Server, credential: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/v1/session/logout"))
        .header("cookie", cookie_header(credential))
        .send_checked()
        .await
        .unwrap()
}

/// POST /v1/session without a credential: the new browser session's credential.
async fn new_session(server: &Server) -> String {
    let resp = server
        .http
        .post(server.url("/v1/session"))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    set_cookie(resp.headers()).unwrap().0
}

async fn whoami(server: &Server, cookie: Option<&str>, bearer: Option<&str>) -> reqwest::Response {
    let mut req = server.http.get(server.url("/v1/session"));
    if let Some(credential) = cookie {
        req = req.header("cookie", cookie_header(credential));
    }
    if let Some(credential) = bearer {
        req = req.bearer_auth(credential);
    }
    req.send_checked().await.unwrap()
}

async fn is_valid_cookie(server: &Server, credential: &str) -> bool {
    whoami(server, Some(credential), None).await.status() == StatusCode::OK
}

async fn is_valid_bearer(server: &Server, credential: &str) -> bool {
    whoami(server, None, Some(credential)).await.status() == StatusCode::OK
}

async fn login(
    server: &Server,
    cookie: Option<&str>,
    username: &str,
    password: &str,
    client: &str,
) -> reqwest::Response {
    let mut req = server
        .http
        .post(server.url("/v1/session/login"))
        .json(&json!({"username": username, "password": password, "client": client}));
    if let Some(credential) = cookie {
        req = req.header("cookie", cookie_header(credential));
    }
    req.send_checked().await.unwrap()
}

/// Logs alice in as a browser; her credential.
async fn browser_login(server: &Server, cookie: Option<&str>) -> String {
    let resp = login(server, cookie, "alice", PASSWORD, "browser").await;
    assert_eq!(resp.status(), StatusCode::OK);
    set_cookie(resp.headers()).unwrap().0
}

fn session_id(credential: &str) -> &str {
    credential.split('.').next().unwrap()
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

async fn hostile_inputs_get_a_4xx_and_never_a_5xx(backend: Backend) {
    let server = start(backend).await;
    let credential = new_session(&server).await;
    let id = session_id(&credential);
    let token = credential.split_once('.').unwrap().1;
    for cookie in [
        String::new(),
        "garbage".into(),
        format!("0.{token}"),
        format!("-{id}.{token}"),
        format!("0{id}.{token}"),
        format!("{id}.{token}=="),
        format!("{id}.{}", &token[1..]),
        format!("99999999999999999999.{token}"),
        format!("{id}.{}", "A".repeat(5000)),
    ] {
        let resp = server
            .http
            .get(server.url("/v1/session"))
            .header("cookie", format!("{COOKIE}={cookie}"))
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "cookie {cookie:?}");
    }
    for authorization in [
        "Bearer",
        "Basic abc",
        "Bearer  ",
        &format!("Bearer {credential}x"),
    ] {
        let resp = server
            .http
            .get(server.url("/v1/session"))
            .header("authorization", authorization)
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{authorization:?}");
    }
    let huge = server
        .http
        .get(server.url("/v1/session"))
        .header("cookie", format!("{COOKIE}={}", "x".repeat(64 * 1024)))
        .send_checked()
        .await;
    if let Ok(resp) = huge {
        assert!(
            resp.status().is_client_error(),
            "huge header: {}",
            resp.status()
        );
    }
    for (content_type, body, status) in [
        ("application/json", "{", StatusCode::BAD_REQUEST),
        ("application/json", "null", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "application/json",
            "{\"username\":\"a\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            "{\"username\":5,\"password\":\"b\"}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            "{\"username\":\"a\",\"password\":\"b\",\"x\":1}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "text/plain",
            "{\"username\":\"a\",\"password\":\"b\"}",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/x-www-form-urlencoded",
            "username=a&password=b",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let resp = server
            .http
            .post(server.url("/v1/session/login"))
            .header("content-type", content_type)
            .body(body)
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "body {body:?}");
    }
    let resp = server
        .http
        .put(server.url("/v1/session/data"))
        .header("cookie", cookie_header(&credential))
        .json(&json!({"k": "v".repeat(20 * 1024)}))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = login(
        &server,
        None,
        &"a".repeat(500),
        &"p".repeat(2000),
        "browser",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        is_valid_cookie(&server, &credential).await,
        "hostile input lost the session"
    );
}

async fn session_data_survives_login_and_is_wiped_by_logout(backend: Backend) {
    let server = with_alice(backend).await;
    let anonymous = new_session(&server).await;
    let state = json!({"form": {"step": 2, "answers": [1, "two", null]}});
    let resp = server
        .http
        .put(server.url("/v1/session/data"))
        .header("cookie", cookie_header(&anonymous))
        .json(&state)
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let logged_in = browser_login(&server, Some(&anonymous)).await;
    let read = |credential: String| {
        let req = server
            .http
            .get(server.url("/v1/session/data"))
            .header("cookie", cookie_header(&credential));
        async move { req.send_checked().await.unwrap() }
    };
    assert_eq!(
        read(logged_in.clone()).await.json::<Value>().await.unwrap(),
        state
    );
    logout(&server, &logged_in).await;
    assert_eq!(read(logged_in).await.status(), StatusCode::UNAUTHORIZED);
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

async fn operator_commands_set_passwords_unlock_and_purge(backend: Backend) {
    let settings = [("WEBSESSIONS_LOCKOUT_THRESHOLD", "2")];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    let duplicate = server.command(&["user", "create", "alice"], "another password\n");
    assert_eq!(duplicate.status.code(), Some(1));
    let short = server.command(&["user", "create", "bob"], "short\n");
    assert_eq!(short.status.code(), Some(1));

    let credential = browser_login(&server, None).await;
    let out = server.command(&["user", "set-password", "alice"], "an operator's choice\n");
    assert!(out.status.success());
    assert!(
        !is_valid_cookie(&server, &credential).await,
        "R7: reset ends every session"
    );

    for _ in 0..2 {
        login(&server, None, "alice", "wrong", "browser").await;
    }
    let locked = login(&server, None, "alice", "an operator's choice", "browser").await;
    assert_eq!(locked.status(), StatusCode::LOCKED);
    assert!(
        server
            .command(&["user", "unlock", "alice"], "")
            .status
            .success()
    );
    let unlocked = login(&server, None, "alice", "an operator's choice", "browser").await;
    assert_eq!(unlocked.status(), StatusCode::OK);

    // A failure of a name without an account is what maintenance deletes here (R8); ended
    // sessions were deleted when they ended, and alice's failures stay with her account.
    login(&server, None, "nobody", "a guess", "browser").await;
    let out = server.command(&["purge"], "");
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "1");
    let out = server.command(&["purge"], "");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), "0");
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

#[test]
fn invalid_configuration_exits_2_with_one_line_naming_the_variable() {
    for (variable, value) in [
        ("WEBSESSIONS_IDLE_TIMEOUT", "forever"),
        ("WEBSESSIONS_IDLE_TIMEOUT", "100000000days"),
        ("WEBSESSIONS_TOUCH_INTERVAL", "30m"),
        ("WEBSESSIONS_LOCKOUT_INCREMENT", "0"),
        ("WEBSESSIONS_LOGIN_LIMIT", "many"),
        ("WEBSESSIONS_MAX_PENDING_HASHES", "0"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_websessions"))
            .arg("migrate")
            .env(variable, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(variable), "{stderr}");
    }
}

#[test]
fn the_openapi_command_prints_the_committed_spec() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_websessions"))
        .arg("openapi")
        .env(
            "WEBSESSIONS_DATABASE_URL",
            "postgres://nowhere.invalid/none",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let committed = include_str!("../../openapi/openapi.json");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        committed.trim_end()
    );
}

async fn session_rows(server: &Server) -> i64 {
    use sea_orm::{ConnectionTrait, Statement};
    let db = &server.db().conn;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM sessions",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
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

/// With `WEBSESSIONS_DATABASE_WAIT=0` nothing waits: a database that refuses connections is a
/// 503 at once (restarts under a wait: `restart.rs`). PostgreSQL only: an embedded file cannot
/// go away, and MariaDB has no per-database switch to refuse connections.
#[tokio::test]
#[cfg_attr(
    not(has_postgres),
    ignore = "set WEBSESSIONS_TEST_POSTGRES_URL to run on PostgreSQL"
)]
async fn postgres_outage_with_no_wait_answers_503_at_once_and_the_service_recovers() {
    let server = Server::start(Backend::Postgres, &[("WEBSESSIONS_DATABASE_WAIT", "0")]).await;
    let credential = new_session(&server).await;
    server
        .db()
        .as_admin("ALTER DATABASE {db} ALLOW_CONNECTIONS false")
        .await;
    server
        .db()
        .as_admin("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'")
        .await;
    for _ in 0..4 {
        let resp = whoami(&server, Some(&credential), None).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
    }
    assert_eq!(readiness(&server).await, StatusCode::SERVICE_UNAVAILABLE);
    server
        .db()
        .as_admin("ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        .await;
    assert_eq!(readiness(&server).await, StatusCode::OK);
    assert!(
        is_valid_cookie(&server, &credential).await,
        "the session survived the outage"
    );
}

/// What `GET /health/ready` answers.
async fn readiness(server: &Server) -> StatusCode {
    let ready = server.http.get(server.url("/health/ready"));
    ready.send_checked().await.unwrap().status()
}

/// Logs `name` in as an API client; the bearer credential.
async fn api_login(server: &Server, name: &str, password: &str) -> String {
    let resp = login(server, None, name, password, "api").await;
    assert_eq!(resp.status(), StatusCode::OK, "login of {name}");
    resp.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A superuser `root` and a user `alice`, with root's bearer credential.
async fn with_root_and_alice(backend: Backend) -> (Server, String) {
    let server = with_alice(backend).await;
    server.create_superuser("root", PASSWORD);
    let root = api_login(&server, "root", PASSWORD).await;
    (server, root)
}

async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = server.http.request(method, server.url(path));
    if let Some(credential) = bearer {
        req = req.bearer_auth(credential);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send_checked().await.unwrap()
}

/// GET `path` with a bearer credential; the JSON answer.
async fn get_json(server: &Server, path: &str, bearer: &str) -> Value {
    call(server, reqwest::Method::GET, path, Some(bearer), None)
        .await
        .json()
        .await
        .unwrap()
}

async fn anyone_but_a_superuser_is_refused_every_admin_route(backend: Backend) {
    use reqwest::Method;
    let (server, _root) = with_root_and_alice(backend).await;
    let alice = api_login(&server, "alice", PASSWORD).await;
    let anonymous = new_session(&server).await;
    let new_user = json!({"username": "mallory", "password": "a long password"});
    let new_password = json!({"new_password": "a long password"});
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/v1/admin/sessions", None),
        (
            Method::GET,
            "/v1/admin/sessions/count?active_since=2026-01-01T00:00:00Z",
            None,
        ),
        (Method::DELETE, "/v1/admin/sessions/1", None),
        (Method::POST, "/v1/admin/sessions/purge", None),
        (Method::POST, "/v1/admin/users", Some(new_user)),
        (Method::GET, "/v1/admin/users", None),
        (Method::GET, "/v1/admin/users/root", None),
        (Method::DELETE, "/v1/admin/users/root", None),
        (
            Method::PUT,
            "/v1/admin/users/root/password",
            Some(new_password),
        ),
        (Method::POST, "/v1/admin/users/root/unlock", None),
        (Method::POST, "/v1/admin/users/root/disable", None),
        (Method::POST, "/v1/admin/users/root/enable", None),
        (Method::DELETE, "/v1/admin/users/root/sessions", None),
    ];
    for (method, path, body) in routes {
        let resp = call(&server, method.clone(), path, Some(&alice), body.clone()).await;
        assert_eq!(
            resp.status(),
            StatusCode::FORBIDDEN,
            "alice: {method} {path}"
        );
        let resp = call(&server, method.clone(), path, None, body.clone()).await;
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "nobody: {method} {path}"
        );
        let mut req = server
            .http
            .request(method.clone(), server.url(path))
            .header("cookie", cookie_header(&anonymous));
        if let Some(body) = &body {
            req = req.json(body);
        }
        let resp = req.send_checked().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "anonymous: {method} {path}"
        );
    }
    // Nothing was done on their behalf: root still exists and can log in.
    api_login(&server, "root", PASSWORD).await;
}

async fn users_list_and_end_their_own_sessions_only(backend: Backend) {
    use reqwest::Method;
    let (server, root) = with_root_and_alice(backend).await;
    let first = api_login(&server, "alice", PASSWORD).await;
    let second = api_login(&server, "alice", PASSWORD).await;
    let third = api_login(&server, "alice", PASSWORD).await;
    let listed = get_json(&server, "/v1/me/sessions", &first).await;
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let current: Vec<_> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"].to_string(), session_id(&first));

    // Root's session id, from alice's point of view, is indistinguishable from a missing one.
    let roots = format!("/v1/me/sessions/{}", session_id(&root));
    let resp = call(&server, Method::DELETE, &roots, Some(&first), None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = call(
        &server,
        Method::DELETE,
        "/v1/me/sessions/987654",
        Some(&first),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(is_valid_bearer(&server, &root).await);

    let seconds = format!("/v1/me/sessions/{}", session_id(&second));
    let resp = call(&server, Method::DELETE, &seconds, Some(&first), None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!is_valid_bearer(&server, &second).await);

    let resp = call(
        &server,
        Method::DELETE,
        "/v1/me/sessions",
        Some(&first),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!is_valid_bearer(&server, &third).await);
    assert!(
        is_valid_bearer(&server, &first).await,
        "the current session survives"
    );
}

async fn an_operators_reset_and_a_users_deletion_kill_every_old_credential(backend: Backend) {
    use reqwest::Method;
    let (server, root) = with_root_and_alice(backend).await;
    let browser = browser_login(&server, None).await;
    let api = api_login(&server, "alice", PASSWORD).await;
    let body = json!({"new_password": "chosen by the operator"});
    let resp = call(
        &server,
        Method::PUT,
        "/v1/admin/users/alice/password",
        Some(&root),
        Some(body),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!is_valid_cookie(&server, &browser).await);
    assert!(!is_valid_bearer(&server, &api).await);

    let again = api_login(&server, "alice", "chosen by the operator").await;
    let resp = call(
        &server,
        Method::DELETE,
        "/v1/admin/users/alice",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!is_valid_bearer(&server, &again).await);
    let resp = call(
        &server,
        Method::GET,
        "/v1/admin/users/alice",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = login(&server, None, "alice", "chosen by the operator", "api").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

async fn admin_paging_returns_every_session_exactly_once(backend: Backend) {
    use reqwest::Method;
    let (server, root) = with_root_and_alice(backend).await;
    for _ in 0..7 {
        new_session(&server).await;
        api_login(&server, "alice", PASSWORD).await;
    }
    let mut seen = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(id) => format!("/v1/admin/sessions?limit=4&after={id}"),
            None => "/v1/admin/sessions?limit=4".to_owned(),
        };
        let page = get_json(&server, &path, &root).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 4);
        seen.extend(items.iter().map(|s| s["id"].as_i64().unwrap()));
        match page["next"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // 7 anonymous + 7 of alice + root's own.
    assert_eq!(seen.len(), 15);
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "ids ascend with no repeats");

    let alices = get_json(&server, "/v1/admin/sessions?user=alice", &root).await;
    assert_eq!(alices["items"].as_array().unwrap().len(), 7);
    let count = get_json(
        &server,
        "/v1/admin/sessions/count?active_since=2000-01-01T00:00:00Z",
        &root,
    )
    .await;
    assert_eq!(count["count"], 15);
    let resp = call(
        &server,
        Method::GET,
        "/v1/admin/sessions?limit=501",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // seen[0] is root's own session; end the next one.
    let id = seen[1];
    let path = format!("/v1/admin/sessions/{id}");
    let resp = call(&server, Method::DELETE, &path, Some(&root), None).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = call(&server, Method::DELETE, &path, Some(&root), None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

async fn admin_user_management_and_lockout_state(backend: Backend) {
    use reqwest::Method;
    let settings = [("WEBSESSIONS_LOCKOUT_THRESHOLD", "2")];
    let server = Server::start(backend, &settings).await;
    server.create_superuser("root", PASSWORD);
    let root = api_login(&server, "root", PASSWORD).await;
    let body = json!({"username": "carol", "password": "carol's password"});
    let resp = call(
        &server,
        Method::POST,
        "/v1/admin/users",
        Some(&root),
        Some(body.clone()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    assert_eq!(created["username"], "carol");
    assert_eq!(created["superuser"], false);
    let resp = call(
        &server,
        Method::POST,
        "/v1/admin/users",
        Some(&root),
        Some(body),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let weak = json!({"username": "dave", "password": "short"});
    let resp = call(
        &server,
        Method::POST,
        "/v1/admin/users",
        Some(&root),
        Some(weak),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let carol = api_login(&server, "carol", "carol's password").await;
    for _ in 0..2 {
        login(&server, None, "carol", "wrong", "api").await;
    }
    let shown = get_json(&server, "/v1/admin/users/carol", &root).await;
    assert_eq!(shown["failure_count"], 2);
    assert!(shown["locked_until"].is_string());
    let resp = call(
        &server,
        Method::POST,
        "/v1/admin/users/carol/unlock",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let shown = get_json(&server, "/v1/admin/users/carol", &root).await;
    assert_eq!(shown["failure_count"], 0);
    assert_eq!(shown["locked_until"], Value::Null);

    let resp = call(
        &server,
        Method::POST,
        "/v1/admin/users/carol/disable",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(
        !is_valid_bearer(&server, &carol).await,
        "disabling ends sessions"
    );
    let resp = login(&server, None, "carol", "carol's password", "api").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    call(
        &server,
        Method::POST,
        "/v1/admin/users/carol/enable",
        Some(&root),
        None,
    )
    .await;
    let carol = api_login(&server, "carol", "carol's password").await;
    let resp = call(
        &server,
        Method::DELETE,
        "/v1/admin/users/carol/sessions",
        Some(&root),
        None,
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!is_valid_bearer(&server, &carol).await);

    login(&server, None, "ghost", "a guess", "api").await;
    let users = get_json(&server, "/v1/admin/users", &root).await;
    let names: Vec<_> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["carol", "root"]);
    let purged: Value = call(
        &server,
        Method::POST,
        "/v1/admin/sessions/purge",
        Some(&root),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(purged["deleted"], 1, "the ghost's failure: {purged}");
}

/// The value of each `name{labels} value` line of a Prometheus text page.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(series, value)| Some((series.to_owned(), value.parse().ok()?)))
        .collect()
}

async fn metrics_move_by_exactly_the_expected_amounts(backend: Backend) {
    let settings = [("WEBSESSIONS_LOCKOUT_THRESHOLD", "2")];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    let read = || async {
        let text = server
            .http
            .get(server.url("/metrics"))
            .send_checked()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        samples(&text)
    };
    let before = read().await;
    let delta = |after: &std::collections::HashMap<String, f64>, series: &str| {
        after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0)
    };

    let anonymous = new_session(&server).await; // started{browser} +1
    let first = browser_login(&server, Some(&anonymous)).await; // success +1 (same session)
    let second = browser_login(&server, None).await; // success +1, started +1, replaced +1
    api_login(&server, "alice", PASSWORD).await; // success +1, started{api} +1
    login(&server, None, "alice", "wrong", "api").await; // bad +1
    login(&server, None, "alice", "wrong", "api").await; // bad +1, lockout +1
    login(&server, None, "alice", PASSWORD, "api").await; // locked +1
    logout(&server, &second).await; // logout +1
    assert!(!is_valid_cookie(&server, &first).await);

    let after = read().await;
    for (series, expected) in [
        ("websessions_logins_total{result=\"success\"}", 3.0),
        ("websessions_logins_total{result=\"bad_credentials\"}", 2.0),
        ("websessions_logins_total{result=\"locked\"}", 1.0),
        ("websessions_lockouts_total", 1.0),
        ("websessions_sessions_started_total{kind=\"browser\"}", 2.0),
        ("websessions_sessions_started_total{kind=\"api\"}", 1.0),
        ("websessions_sessions_ended_total{cause=\"replaced\"}", 1.0),
        ("websessions_sessions_ended_total{cause=\"logout\"}", 1.0),
    ] {
        assert_eq!(delta(&after, series), expected, "{series}");
    }
    // Ending a session deletes its row at once: the logout's maintenance found nothing.
    assert_eq!(delta(&after, "websessions_purged_rows_total"), 0.0);
    assert_eq!(
        session_rows(&server).await,
        1,
        "only alice's api session is left"
    );
    let login_route = "websessions_http_request_duration_seconds_count{route=\"/v1/session/login\",method=\"POST\",status=\"200\"}";
    assert_eq!(delta(&after, login_route), 3.0);
}

/// The metrics page as samples.
async fn metrics(server: &Server) -> std::collections::HashMap<String, f64> {
    let text = server
        .http
        .get(server.url("/metrics"))
        .send_checked()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    samples(&text)
}

fn sample(samples: &std::collections::HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

const BAD_CREDENTIALS: &str = "websessions_logins_total{result=\"bad_credentials\"}";

/// 40 wrong guesses at once against threshold 10: the lock check and the count are one
/// step, so exactly 10 are counted and verified (the 10th starts the lock), 30 are refused
/// with 423 before their password is looked at, and then even the right password is locked.
async fn wrong_guess_burst(server: &Server, http: &reqwest::Client) {
    server.create_user("alice", PASSWORD);
    let before = metrics(server).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let (http, barrier) = (http.clone(), barrier.clone());
            let url = server.url("/v1/session/login");
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(url)
                    .json(
                        &json!({"username": "alice", "password": "a wrong guess", "client": "api"}),
                    )
                    .send_checked()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
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

/// R14: with limits of 3 per minute, the fourth session start and the fourth login from one
/// address are 429 with Retry-After and a problem body; nothing is recorded for them.
async fn r14_starts_and_logins_over_the_address_limit_get_429_and_record_nothing(backend: Backend) {
    let settings = [
        ("WEBSESSIONS_SESSION_START_LIMIT", "3/min"),
        ("WEBSESSIONS_LOGIN_LIMIT", "3/min"),
    ];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    let mut credentials = Vec::new();
    for _ in 0..3 {
        credentials.push(new_session(&server).await);
    }
    let rows = session_rows(&server).await;
    let limited = server
        .http
        .post(server.url("/v1/session"))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        limited.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        session_rows(&server).await,
        rows,
        "no row for a refused start"
    );
    // Presenting a valid session takes no token: it is simply returned.
    let resp = server
        .http
        .post(server.url("/v1/session"))
        .header("cookie", cookie_header(&credentials[0]))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    let before = metrics(&server).await;
    for _ in 0..3 {
        let resp = login(&server, None, "alice", "a wrong guess", "api").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = login(&server, None, "alice", PASSWORD, "api").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let after = metrics(&server).await;
    assert_eq!(
        sample(&after, BAD_CREDENTIALS) - sample(&before, BAD_CREDENTIALS),
        3.0
    );
    let logins: f64 = ["success", "bad_credentials", "locked"]
        .iter()
        .map(|r| {
            let series = format!("websessions_logins_total{{result=\"{r}\"}}");
            sample(&after, &series) - sample(&before, &series)
        })
        .sum();
    assert_eq!(logins, 3.0, "the refused login is no login attempt");
    let limited = |action: &str| {
        sample(
            &after,
            &format!("websessions_rate_limited_total{{action=\"{action}\"}}"),
        )
    };
    assert_eq!((limited("session_start"), limited("login")), (1.0, 1.0));
}

/// R15: with one place in the hashing queue, a burst of logins with the real argon2id cost
/// sheds what does not fit: 503 with `Retry-After: 1`, counted in `websessions_shed_total`
/// and in no login result.
async fn r15_logins_beyond_the_hashing_queue_are_shed_and_record_nothing(backend: Backend) {
    let settings = [
        ("WEBSESSIONS_MAX_PENDING_HASHES", "1"),
        ("WEBSESSIONS_LOCKOUT_THRESHOLD", "1000"),
    ];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    let before = metrics(&server).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(24));
    let tasks: Vec<_> = (0..24)
        .map(|_| {
            let (http, barrier) = (server.http.clone(), barrier.clone());
            let url = server.url("/v1/session/login");
            tokio::spawn(async move {
                barrier.wait().await;
                let resp = http
                    .post(url)
                    .json(&json!({"username": "alice", "password": "a wrong guess"}))
                    .send_checked()
                    .await
                    .unwrap();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_owned());
                (resp.status(), retry)
            })
        })
        .collect();
    let mut shed = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (StatusCode::SERVICE_UNAVAILABLE, retry) => {
                assert_eq!(retry.as_deref(), Some("1"));
                shed += 1;
            }
            (StatusCode::UNAUTHORIZED, _) => refused += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(shed > 0, "nothing was shed");
    assert!(refused > 0, "nothing got through");
    let after = metrics(&server).await;
    let delta = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(delta("websessions_shed_total"), f64::from(shed));
    assert_eq!(delta(BAD_CREDENTIALS), f64::from(refused));
}

/// SPEC section 7 through the API: `ADMIN` does not log in as `admin`, `Admin` can be created
/// beside it, and the client state holds text outside latin1 (the MySQL test databases have a
/// latin1 default).
async fn usernames_compare_byte_for_byte_and_client_state_holds_any_unicode(backend: Backend) {
    use reqwest::Method;
    let server = start(backend).await;
    server.create_superuser("admin", PASSWORD);
    let resp = login(&server, None, "ADMIN", PASSWORD, "api").await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let root = api_login(&server, "admin", PASSWORD).await;
    let body = json!({"username": "Admin", "password": "another password"});
    let resp = call(
        &server,
        Method::POST,
        "/v1/admin/users",
        Some(&root),
        Some(body),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let capital = api_login(&server, "Admin", "another password").await;
    let me = get_json(&server, "/v1/session", &capital).await;
    assert_eq!(me["user"]["username"], "Admin");

    let state = json!({"k": "😀 漢字 עברית", "nested": {"emoji": "🎉"}});
    let resp = call(
        &server,
        Method::PUT,
        "/v1/session/data",
        Some(&root),
        Some(state.clone()),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(get_json(&server, "/v1/session/data", &root).await, state);
}
