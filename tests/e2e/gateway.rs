//! Behind a real gateway, and more than one server (SPEC section 9): real nginx (the
//! configuration in `tests/gateway/nginx.conf`) in front of a small application that echoes
//! the identity headers it receives, protected with `auth_request /v1/auth`, and two real
//! `websessions` processes on one database, all on loopback. They run when
//! `WEBSESSIONS_TEST_NGINX` names an nginx binary (`.ci/run` installs Debian's); otherwise
//! they are reported as ignored. Every process they start, they stop by its PID.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::{cookie_header, set_cookie};
use crate::support::{BAD_CREDENTIALS, PASSWORD, guesses, sample, samples};

use crate::nginx::{CLIENT, Gateway, OTHER, TEMPLATE, client_from};

websessions_tests::on! {
    postgres needs postgres, nginx: [
        the_gateway_protects_the_application_and_passes_the_identity,
        a_stolen_cookie_with_a_forged_forwarded_for_is_sent_to_sign_in,
        a_session_ended_through_one_process_is_refused_at_once_by_both,
        concurrent_browser_logins_over_both_processes_leave_one_valid_session,
        a_burst_of_wrong_guesses_over_both_processes_gets_threshold_verifications,
        housekeeping_in_both_processes_deletes_each_row_once,
        a_rolling_restart_under_load_through_nginx_fails_no_request,
    ];
    mysql needs mysql, nginx: [
        the_gateway_protects_the_application_and_passes_the_identity,
        a_stolen_cookie_with_a_forged_forwarded_for_is_sent_to_sign_in,
        a_session_ended_through_one_process_is_refused_at_once_by_both,
        concurrent_browser_logins_over_both_processes_leave_one_valid_session,
        housekeeping_in_both_processes_deletes_each_row_once,
    ];
}

async fn the_gateway_protects_the_application_and_passes_the_identity(backend: Backend) {
    let gateway = Gateway::start(backend, &[]).await;
    let page = gateway.nginx.url("/reports/2026?x=1");
    // Without a session, and with a forged identity, the application is never reached.
    for forged in [None, Some("root")] {
        let mut request = gateway.http.get(&page);
        if let Some(user) = forged {
            request = request.header("x-websessions-user", user);
        }
        let resp = request.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND);
        assert_eq!(
            resp.headers()["location"],
            "/login?return_to=/reports/2026?x=1"
        );
    }
    assert_eq!(gateway.application.hits(), 0);
    let anonymous = gateway
        .http
        .post(gateway.nginx.url("/v1/session"))
        .send_checked()
        .await
        .unwrap();
    let anonymous = set_cookie(anonymous.headers()).unwrap().0;
    let resp = gateway
        .http
        .get(&page)
        .header("cookie", cookie_header(&anonymous))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FOUND,
        "an anonymous session is no user"
    );

    let alice = gateway.browser_login("alice").await;
    let resp = gateway
        .http
        .get(&page)
        .header("cookie", cookie_header(&alice))
        .header("x-websessions-user", "root")
        .header("X-WEBSESSIONS-SUPERUSER", "true")
        .header("x-websessions-assurance", "2")
        .header("x-websessions-reason", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["path"], "/reports/2026");
    assert_eq!(seen["user"], "alice", "the forged header was replaced");
    assert_eq!(seen["superuser"], "false");
    assert_eq!(seen["session"], alice.split('.').next().unwrap());
    assert_eq!(
        seen["reason"],
        Value::Null,
        "a client's own header never passes"
    );
    assert_ne!(seen["assurance"], "2", "a client's own header never passes");
    // The application is told the original Host and the client's address.
    assert_eq!(seen["host"], format!("127.0.0.1:{}", gateway.port()));
    assert_eq!(seen["forwarded_for"], CLIENT.to_string());
    assert_eq!(gateway.application.hits(), 1);
    // A client's own X-Forwarded-For is kept, with its address appended.
    let resp = gateway
        .http
        .get(&page)
        .header("cookie", cookie_header(&alice))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["forwarded_for"], format!("198.51.100.7, {CLIENT}"));
    // A browser write through nginx keeps its Host, so R12 lets a same-origin one through.
    let resp = gateway
        .http
        .put(gateway.nginx.url("/v1/session/data"))
        .header("cookie", cookie_header(&alice))
        .header("origin", &gateway.nginx.base)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"k": "v"}))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cross = gateway
        .http
        .put(gateway.nginx.url("/v1/session/data"))
        .header("cookie", cookie_header(&alice))
        .header("origin", "http://evil.example")
        .json(&json!({"k": "v"}))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
}

/// The finding that R11 and the recipe close (SPEC section 9): a cookie stolen from a user who
/// signed in from `CLIENT` is used from `OTHER` with `X-Forwarded-For` naming `CLIENT`. nginx
/// appends the real address, websessions reads from the right, and the session, bound to
/// `CLIENT`, is not recognised: the thief is sent to sign in and the application never sees
/// the request.
async fn a_stolen_cookie_with_a_forged_forwarded_for_is_sent_to_sign_in(backend: Backend) {
    let gateway = Gateway::start(backend, &[]).await;
    let page = gateway.nginx.url("/reports");
    // Junk a client prepends changes nothing: the session is bound to the client's address.
    let resp = gateway
        .http
        .post(gateway.nginx.url("/v1/session/login"))
        .header("x-forwarded-for", "junk")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let alice = set_cookie(resp.headers()).unwrap().0;
    let view: Value = resp.json().await.unwrap();
    assert_eq!(view["ip_address"], CLIENT.to_string());
    let from = |http: &reqwest::Client, forged: Option<reqwest::header::HeaderValue>| {
        let mut request = http.get(&page).header("cookie", cookie_header(&alice));
        if let Some(forged) = forged {
            request = request.header("x-forwarded-for", forged);
        }
        request.send()
    };
    let resp = from(&gateway.http, None).await.unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the user reaches the application"
    );
    let thief = client_from(OTHER);
    let text = |value: String| reqwest::header::HeaderValue::try_from(value).ok();
    for forged in [
        None,
        text(CLIENT.to_string()),
        text(format!("203.0.113.1, {CLIENT}")),
        text(format!("{CLIENT}, 127.0.0.1")),
        // A byte that is not text, which nginx puts on one line with the thief's address.
        reqwest::header::HeaderValue::from_bytes(b"\xe9").ok(),
        reqwest::header::HeaderValue::from_bytes(
            &[CLIENT.to_string().as_bytes(), b", \xe9"].concat(),
        )
        .ok(),
    ] {
        let resp = from(&thief, forged.clone()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "forged: {forged:?}");
        assert!(
            resp.headers()["location"]
                .to_str()
                .unwrap()
                .starts_with("/login?return_to="),
            "forged: {forged:?}"
        );
        // Asked directly, through the API, it is no session either.
        let resp = thief
            .get(gateway.nginx.url("/v1/session"))
            .header("cookie", cookie_header(&alice))
            .header("x-forwarded-for", CLIENT.to_string())
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(gateway.application.hits(), 1, "only the user reached it");
    // Whatever junk a client sends, it is recorded at its own address, never nginx's.
    for junk in [&b"\xe9"[..], b"unknown", b"127.0.0.1"] {
        let resp = thief
            .post(gateway.nginx.url("/v1/session"))
            .header(
                "x-forwarded-for",
                reqwest::header::HeaderValue::from_bytes(junk).unwrap(),
            )
            .send_checked()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let view: Value = resp.json().await.unwrap();
        assert_eq!(view["ip_address"], OTHER.to_string(), "{junk:?}");
    }
    // The user's own session was not disturbed by the attempts.
    let resp = from(&gateway.http, None).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The audit trail keeps each client's own address: never nginx's, never a forged one
    // (R19, R11).
    let resp = thief
        .post(gateway.nginx.url("/v1/session/login"))
        .header("x-forwarded-for", CLIENT.to_string())
        .json(&json!({"username": "alice", "password": "a guess at hers"}))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let printed = gateway.servers[0].command(&["audit", "--json"], "");
    assert!(printed.status.success());
    let records: Vec<Value> = String::from_utf8(printed.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let address = |event: &str| {
        let record = records.iter().find(|r| r["event"] == event).unwrap();
        record["client_ip"].clone()
    };
    assert_eq!(address("login_succeeded"), CLIENT.to_string());
    assert_eq!(address("login_failed"), OTHER.to_string());
}

async fn a_session_ended_through_one_process_is_refused_at_once_by_both(backend: Backend) {
    use reqwest::Method;
    let gateway = Gateway::start(backend, &[]).await;
    let root = {
        let resp = gateway
            .http
            .post(gateway.servers[0].url("/v1/session/login"))
            .json(&json!({"username": "root", "password": PASSWORD, "client": "api"}))
            .send_checked()
            .await
            .unwrap();
        resp.json::<Value>().await.unwrap()["credential"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Each ending is sent to one process; the credential was issued by nginx's choice.
    type Ending = (Method, &'static str, Option<Value>);
    let endings: [(&str, Ending); 4] = [
        ("logout", (Method::POST, "/v1/session/logout", None)),
        (
            "revocation",
            (Method::DELETE, "/v1/admin/sessions/{id}", None),
        ),
        (
            "password change",
            (
                Method::PUT,
                "/v1/session/password",
                Some(json!({"current_password": PASSWORD, "new_password": PASSWORD})),
            ),
        ),
        (
            "disabling",
            (Method::POST, "/v1/admin/users/alice/disable", None),
        ),
    ];
    for (round, (what, (method, path, body))) in endings.into_iter().enumerate() {
        for ender in 0..2 {
            let alice = gateway.browser_login("alice").await;
            assert_eq!(gateway.valid_on_both(&alice).await, [true, true]);
            let id = alice.split('.').next().unwrap();
            let path = path.replace("{id}", id);
            let mut request = gateway
                .http
                .request(method.clone(), gateway.servers[ender].url(&path));
            request = match what {
                "logout" | "password change" => request.header("cookie", cookie_header(&alice)),
                _ => request.bearer_auth(&root),
            };
            if let Some(body) = &body {
                request = request.json(body);
            }
            let resp = request.send_checked().await.unwrap();
            assert!(resp.status().is_success(), "{what}: {}", resp.status());
            assert_eq!(
                gateway.valid_on_both(&alice).await,
                [false, false],
                "round {round}: after {what} through process {ender}"
            );
            if what == "disabling" {
                let enable = gateway.servers[1 - ender].url("/v1/admin/users/alice/enable");
                let resp = gateway
                    .http
                    .post(enable)
                    .bearer_auth(&root)
                    .send_checked()
                    .await;
                assert_eq!(resp.unwrap().status(), StatusCode::NO_CONTENT);
            }
        }
    }
}

async fn concurrent_browser_logins_over_both_processes_leave_one_valid_session(backend: Backend) {
    let settings = [("WEBSESSIONS_LOCKOUT_THRESHOLD", "100")];
    let gateway = Arc::new(Gateway::start(backend, &settings).await);
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (gateway, barrier) = (gateway.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                gateway.browser_login("alice").await
            })
        })
        .collect();
    let mut issued = Vec::new();
    for task in tasks {
        issued.push(task.await.unwrap());
    }
    let mut valid = 0;
    for credential in &issued {
        let both = gateway.valid_on_both(credential).await;
        assert_eq!(both[0], both[1], "the processes disagree");
        valid += usize::from(both[0]);
    }
    assert_eq!(valid, 1, "exactly one browser session may survive (R5e)");
}

async fn a_burst_of_wrong_guesses_over_both_processes_gets_threshold_verifications(
    backend: Backend,
) {
    let gateway = Arc::new(Gateway::start(backend, &[]).await);
    let before = gateway.sum(BAD_CREDENTIALS).await;
    // Half straight to each process, half through nginx's round robin.
    let urls = [
        gateway.servers[0].url("/v1/session/login"),
        gateway.servers[1].url("/v1/session/login"),
        gateway.nginx.url("/v1/session/login"),
        gateway.nginx.url("/v1/session/login"),
    ];
    let statuses = guesses(&gateway.http, &urls, 40).await;
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let locked = statuses
        .iter()
        .filter(|s| **s == StatusCode::LOCKED)
        .count();
    assert_eq!((refused, locked), (10, 30), "{statuses:?}");
    assert_eq!(gateway.sum(BAD_CREDENTIALS).await - before, 10.0);
}

async fn housekeeping_in_both_processes_deletes_each_row_once(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    const ROWS: i64 = 100_000;
    let gateway = Gateway::start(backend, &[("WEBSESSIONS_HOUSEKEEPING_INTERVAL", "1s")]).await;
    let db = &gateway.db.as_ref().unwrap().conn;
    let backend = db.get_database_backend();
    let old = time::OffsetDateTime::now_utc().unix_timestamp() - 7200;
    // 100,000 sessions idle for two hours, in batches of 10,000 rows per statement.
    for start in (0..ROWS).step_by(10_000) {
        let rows: Vec<String> = (start..start + 10_000)
            .map(|n| {
                let hash = match backend {
                    sea_orm::DbBackend::Postgres => format!("decode('{n:064x}', 'hex')"),
                    _ => format!("X'{n:064x}'"),
                };
                format!("({hash}, '127.0.0.1', 'browser', {old}, {old}, '{{}}')")
            })
            .collect();
        let sql = format!(
            "INSERT INTO sessions (token_hash, ip_address, kind, created_at, last_activity_at, data) VALUES {}",
            rows.join(", ")
        );
        db.execute_raw(Statement::from_string(backend, sql))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let purged = gateway.sum("websessions_purged_rows_total").await;
        if purged >= ROWS as f64 {
            assert_eq!(purged, ROWS as f64, "each row deleted once, by one process");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "housekeeping stalled at {purged}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = db
        .query_one_raw(Statement::from_string(
            backend,
            "SELECT COUNT(*) AS n FROM sessions",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(left, 0);
    let logs = gateway.logs();
    for bad in ["\"level\":\"ERROR\"", "\"level\":\"WARN\"", "deadlock"] {
        assert!(!logs.contains(bad), "{bad} in the logs:\n{logs}");
    }
    // Both processes took part.
    for server in &gateway.servers {
        let text = gateway
            .http
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap();
        let purged = sample(
            &samples(&text.text().await.unwrap()),
            "websessions_purged_rows_total",
        );
        assert!(purged > 0.0, "a process purged nothing");
    }
}

async fn a_rolling_restart_under_load_through_nginx_fails_no_request(backend: Backend) {
    let mut gateway = Gateway::start(backend, &[]).await;
    let alice = gateway.browser_login("alice").await;
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (http, stop) = (gateway.http.clone(), stop.clone());
            let (url, cookie) = (gateway.nginx.url("/v1/session"), cookie_header(&alice));
            tokio::spawn(async move {
                let mut answers: Vec<Result<StatusCode, String>> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let answer = http.get(&url).header("cookie", &cookie).send().await;
                    answers.push(answer.map(|r| r.status()).map_err(|e| e.to_string()));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    gateway.restart(0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gateway.restart(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for task in load {
        for answer in task.await.unwrap() {
            total += 1;
            assert_eq!(
                answer,
                Ok(StatusCode::OK),
                "a request failed during the restart"
            );
        }
    }
    assert!(
        total > 100,
        "only {total} requests: the load proved nothing"
    );
    assert!(
        gateway.valid_on_both(&alice).await == [true, true],
        "the session survived the restarts"
    );
}

/// The README shows operators the very file the gateway tests run.
#[test]
fn the_readme_shows_the_recipe_the_tests_run() {
    let readme = include_str!("../../README.md");
    let shown = format!("```nginx\n{TEMPLATE}```\n");
    assert!(
        readme.contains(&shown),
        "README.md's nginx block differs from tests/gateway/nginx.conf"
    );
}
