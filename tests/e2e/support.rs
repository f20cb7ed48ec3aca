//! What the end-to-end tests share: a server with its users, logins and credentials, the
//! metrics page, and a burst of concurrent wrong guesses.

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::{Server, cookie_header, set_cookie};

pub(crate) const PASSWORD: &str = "correct horse battery";

pub(crate) async fn start(backend: Backend) -> Server {
    Server::start(backend, &[("WEBSESSIONS_COOKIE_SECURE", "true")]).await
}

/// A server on `backend` with the user alice (password `PASSWORD`), created through the CLI.
pub(crate) async fn with_alice(backend: Backend) -> Server {
    let server = start(backend).await;
    server.create_user("alice", PASSWORD);
    server
}

/// POST /v1/session/logout with the cookie.
pub(crate) async fn logout(server: &Server, credential: &str) -> reqwest::Response {
    server
        .http
        .post(server.url("/v1/session/logout"))
        .header("cookie", cookie_header(credential))
        .send_checked()
        .await
        .unwrap()
}

/// POST /v1/session without a credential: the new browser session's credential.
pub(crate) async fn new_session(server: &Server) -> String {
    let resp = server
        .http
        .post(server.url("/v1/session"))
        .send_checked()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    set_cookie(resp.headers()).unwrap().0
}

pub(crate) async fn whoami(
    server: &Server,
    cookie: Option<&str>,
    bearer: Option<&str>,
) -> reqwest::Response {
    let mut req = server.http.get(server.url("/v1/session"));
    if let Some(credential) = cookie {
        req = req.header("cookie", cookie_header(credential));
    }
    if let Some(credential) = bearer {
        req = req.bearer_auth(credential);
    }
    req.send_checked().await.unwrap()
}

pub(crate) async fn is_valid_cookie(server: &Server, credential: &str) -> bool {
    whoami(server, Some(credential), None).await.status() == StatusCode::OK
}

pub(crate) async fn is_valid_bearer(server: &Server, credential: &str) -> bool {
    whoami(server, None, Some(credential)).await.status() == StatusCode::OK
}

pub(crate) async fn login(
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
pub(crate) async fn browser_login(server: &Server, cookie: Option<&str>) -> String {
    let resp = login(server, cookie, "alice", PASSWORD, "browser").await;
    assert_eq!(resp.status(), StatusCode::OK);
    set_cookie(resp.headers()).unwrap().0
}

pub(crate) fn session_id(credential: &str) -> &str {
    credential.split('.').next().unwrap()
}

pub(crate) async fn session_rows(server: &Server) -> i64 {
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

/// What `GET /health/ready` answers.
pub(crate) async fn readiness(server: &Server) -> StatusCode {
    let ready = server.http.get(server.url("/health/ready"));
    ready.send_checked().await.unwrap().status()
}

/// Logs `name` in as an API client; the bearer credential.
pub(crate) async fn api_login(server: &Server, name: &str, password: &str) -> String {
    let resp = login(server, None, name, password, "api").await;
    assert_eq!(resp.status(), StatusCode::OK, "login of {name}");
    resp.json::<Value>().await.unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A superuser `root` and a user `alice`, with root's bearer credential.
pub(crate) async fn with_root_and_alice(backend: Backend) -> (Server, String) {
    let server = with_alice(backend).await;
    server.create_superuser("root", PASSWORD);
    let root = api_login(&server, "root", PASSWORD).await;
    (server, root)
}

pub(crate) async fn call(
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
pub(crate) async fn get_json(server: &Server, path: &str, bearer: &str) -> Value {
    call(server, reqwest::Method::GET, path, Some(bearer), None)
        .await
        .json()
        .await
        .unwrap()
}

/// The value of each `name{labels} value` line of a Prometheus text page.
pub(crate) fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(series, value)| Some((series.to_owned(), value.parse().ok()?)))
        .collect()
}

/// The metrics page as samples.
pub(crate) async fn metrics(server: &Server) -> std::collections::HashMap<String, f64> {
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

pub(crate) fn sample(samples: &std::collections::HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

pub(crate) const BAD_CREDENTIALS: &str = "websessions_logins_total{result=\"bad_credentials\"}";

/// `count` logins of alice with a wrong password, released together, sent round robin to
/// `urls` (`/v1/session/login` on servers or a gateway); each one's status.
pub(crate) async fn guesses(
    http: &reqwest::Client,
    urls: &[String],
    count: usize,
) -> Vec<StatusCode> {
    let attempts = vec![("a wrong guess", "api"); count];
    logins_together(http, urls, &attempts).await
}

/// Logins of alice, one per `(password, client)` of `attempts`, released together, sent round
/// robin to `urls`; each one's status, in `attempts`' order.
pub(crate) async fn logins_together(
    http: &reqwest::Client,
    urls: &[String],
    attempts: &[(&str, &str)],
) -> Vec<StatusCode> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(attempts.len()));
    let tasks: Vec<_> = attempts
        .iter()
        .enumerate()
        .map(|(n, (password, client))| {
            let (http, barrier) = (http.clone(), barrier.clone());
            let url = urls[n % urls.len()].clone();
            let body = json!({"username": "alice", "password": password, "client": client});
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(url)
                    .json(&body)
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
    statuses
}
