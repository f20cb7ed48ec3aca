//! Limits and hostile input end to end: every bad input a 4xx and never a 5xx, R14's per-address limits, R15's shedding, bad configuration, and a database outage.

use reqwest::StatusCode;
use serde_json::json;
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::{COOKIE, Server, cookie_header};
use crate::support::*;

websessions_tests::on! {
    every backend: [
        hostile_inputs_get_a_4xx_and_never_a_5xx,
        r14_starts_and_logins_over_the_address_limit_get_429_and_record_nothing,
        r15_logins_beyond_the_hashing_queue_are_shed_and_record_nothing,
    ];
    postgres as outage needs postgres: [
        postgres_outage_with_no_wait_answers_503_at_once_and_the_service_recovers,
    ];
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

/// With `WEBSESSIONS_DATABASE_WAIT=0` nothing waits: a database that refuses connections is a
/// 503 at once (restarts under a wait: `restart.rs`). PostgreSQL only: an embedded file cannot
/// go away, and MariaDB has no per-database switch to refuse connections.
async fn postgres_outage_with_no_wait_answers_503_at_once_and_the_service_recovers(
    backend: Backend,
) {
    let server = Server::start(backend, &[("WEBSESSIONS_DATABASE_WAIT", "0")]).await;
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
