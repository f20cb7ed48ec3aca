//! Administration end to end: the operator's commands, the superuser's routes, self-service, paging, user management and the metrics.

use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_migrations::MigratorTrait;
use websessions_tests::{Backend, TestDb};

use crate::contract::SendChecked;
use crate::server::{Server, cookie_header};
use crate::support::*;

websessions_tests::on! {
    every backend: [
        operator_commands_set_passwords_unlock_and_purge,
        anyone_but_a_superuser_is_refused_every_admin_route,
        users_list_and_end_their_own_sessions_only,
        an_operators_reset_and_a_users_deletion_kill_every_old_credential,
        admin_paging_returns_every_session_exactly_once,
        admin_user_management_and_lockout_state,
        metrics_move_by_exactly_the_expected_amounts,
    ];
    postgres as migrations_on_postgres needs postgres: [two_processes_started_together_migrate_once];
    mysql as migrations_on_mysql needs mysql: [two_processes_started_together_migrate_once];
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

async fn metrics_move_by_exactly_the_expected_amounts(backend: Backend) {
    let settings = [("WEBSESSIONS_LOCKOUT_THRESHOLD", "2")];
    let server = Server::start(backend, &settings).await;
    server.create_user("alice", PASSWORD);
    let read = || metrics(&server);
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

/// SPEC section 7: processes started together on a fresh database migrate once.
async fn two_processes_started_together_migrate_once(backend: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    for _ in 0..3 {
        let db = TestDb::unmigrated(backend).await;
        let children: Vec<_> = (0..2)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_websessions"))
                    .arg("migrate")
                    .env("WEBSESSIONS_DATABASE_URL", &db.url)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let applied = db
            .conn
            .query_one_raw(Statement::from_string(
                db.conn.get_database_backend(),
                "SELECT COUNT(*) AS n FROM seaql_migrations",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get::<i64>("", "n")
            .unwrap();
        assert_eq!(
            applied as usize,
            websessions_migrations::Migrator::migrations().len(),
            "each migration applied once"
        );
        db.drop().await;
    }
}
