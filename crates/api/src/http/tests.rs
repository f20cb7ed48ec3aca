//! Status codes, headers and body shapes of the real routes over a mocked `SessionService`.

use std::sync::Arc;

use async_trait::async_trait;
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use websessions_domain::service::MockSessionService;
use websessions_domain::{
    ChangePasswordError, ClientIp, Credential, InfraError, Issued, LoginError, PasswordPolicyError,
    RetryAfter, SessionData, SessionId, SessionKind, SessionPolicy, SessionRecord, SessionUser,
    Token, TokenLength, UserId, Username,
};

use super::{Context, EdgeSettings, Readiness, app, openapi};
use crate::config::{CookieSettings, SameSite};
use crate::metrics::Metrics;

const NOW: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);
const COOKIE: &str = "__Host-websession";

struct Ready(bool);

#[async_trait]
impl Readiness for Ready {
    async fn ready(&self) -> bool {
        self.0
    }
}

fn edge() -> EdgeSettings {
    EdgeSettings {
        cookie: CookieSettings {
            name: COOKIE.into(),
            secure: true,
            same_site: SameSite::Lax,
        },
        trusted_proxies: vec![],
        trusted_origins: vec![],
        token_length: TokenLength::default(),
    }
}

fn api(service: MockSessionService, ready: bool) -> Arc<Context> {
    Arc::new(Context {
        service: Arc::new(service),
        readiness: Arc::new(Ready(ready)),
        edge: Arc::new(edge()),
        policy: SessionPolicy::default(),
        metrics: Arc::new(Metrics::new()),
    })
}

fn client(service: MockSessionService) -> TestClient<impl poem::Endpoint> {
    TestClient::new(app(api(service, true)))
}

fn credential(id: i64, n: u8) -> Credential {
    Credential::new(SessionId::new(id).unwrap(), Token::from_bytes(vec![n; 16]))
}

fn record(id: i64, user: Option<&str>, kind: SessionKind) -> SessionRecord {
    SessionRecord {
        id: SessionId::new(id).unwrap(),
        token_hash: None,
        ip_address: ClientIp::new("192.0.2.1".parse().unwrap()),
        kind,
        user: user.map(|name| SessionUser {
            id: UserId(1),
            username: Username::parse(name).unwrap(),
            superuser: false,
        }),
        created_at: NOW,
        authenticated_at: user.map(|_| NOW),
        last_activity_at: NOW,
    }
}

fn header(resp: &TestResponse, name: &str) -> Option<String> {
    resp.0
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

async fn body(resp: TestResponse) -> serde_json::Value {
    let text = resp.0.into_body().into_string().await.unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Asserts an RFC 9457 problem with `status` and `Cache-Control: no-store`.
async fn assert_problem(resp: TestResponse, status: StatusCode) -> serde_json::Value {
    assert_eq!(resp.0.status(), status);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    let problem = body(resp).await;
    assert_eq!(problem["status"], status.as_u16());
    assert_eq!(problem["type"], "about:blank");
    assert!(problem["title"].is_string() && problem["detail"].is_string());
    problem
}

#[tokio::test]
async fn r4_start_without_a_session_answers_201_with_the_specified_cookie() {
    let mut service = MockSessionService::new();
    service.expect_start().returning(|_| {
        Ok(Issued {
            session: record(5, None, SessionKind::Browser),
            credential: Some(credential(5, 1)),
        })
    });
    let resp = client(service).post("/v1/session").send().await;
    assert_eq!(resp.0.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        header(&resp, "set-cookie").unwrap(),
        format!(
            "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Lax",
            credential(5, 1).expose()
        )
    );
    let view = body(resp).await;
    assert_eq!(view["id"], 5);
    assert_eq!(view["user"], serde_json::Value::Null);
    assert_eq!(view["created_at"], "2026-05-01T10:00:00Z");
    assert_eq!(view["idle_expires_at"], "2026-05-01T10:30:00Z");
    assert!(
        view.get("credential").is_none(),
        "a browser never gets the token in a body"
    );
}

#[tokio::test]
async fn r4_start_with_a_valid_session_answers_200_without_a_cookie() {
    let mut service = MockSessionService::new();
    service.expect_start().returning(|presented| {
        assert_eq!(presented.credential, Some(credential(5, 1)));
        Ok(Issued {
            session: record(5, None, SessionKind::Browser),
            credential: None,
        })
    });
    let resp = client(service)
        .post("/v1/session")
        .header("cookie", format!("{COOKIE}={}", credential(5, 1).expose()))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    assert_eq!(header(&resp, "set-cookie"), None);
}

#[tokio::test]
async fn recognising_an_invalid_cookie_answers_401_and_clears_it_but_not_for_bearer() {
    let mut service = MockSessionService::new();
    service.expect_recognise().returning(|_| Ok(None));
    let client = client(service);
    let resp = client
        .get("/v1/session")
        .header("cookie", format!("{COOKIE}=garbage"))
        .send()
        .await;
    assert_eq!(
        header(&resp, "set-cookie").unwrap(),
        format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0")
    );
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;

    let resp = client
        .get("/v1/session")
        .header("authorization", "Bearer garbage")
        .send()
        .await;
    assert_eq!(header(&resp, "set-cookie"), None);
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn a_browser_login_sets_the_cookie_and_an_api_login_returns_the_credential() {
    let mut service = MockSessionService::new();
    service.expect_login().returning(|_, attempt| {
        let (id, n) = if attempt.kind == SessionKind::Api {
            (8, 8)
        } else {
            (7, 7)
        };
        Ok(Issued {
            session: record(id, Some("alice"), attempt.kind),
            credential: Some(credential(id, n)),
        })
    });
    let client = client(service);
    let resp = client
        .post("/v1/session/login")
        .body_json(&serde_json::json!({"username": "alice", "password": "pw"}))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    assert!(
        header(&resp, "set-cookie")
            .unwrap()
            .contains(&credential(7, 7).expose())
    );
    let view = body(resp).await;
    assert!(view.get("credential").is_none());
    assert_eq!(view["user"]["username"], "alice");

    let resp = client
        .post("/v1/session/login")
        .body_json(&serde_json::json!({"username": "alice", "password": "pw", "client": "api"}))
        .send()
        .await;
    assert_eq!(header(&resp, "set-cookie"), None);
    let view = body(resp).await;
    assert_eq!(view["credential"], credential(8, 8).expose());
    assert_eq!(view["kind"], "api");
}

#[tokio::test]
async fn r5_refused_logins_answer_401_and_locked_ones_423_with_retry_after() {
    let mut service = MockSessionService::new();
    service
        .expect_login()
        .withf(|_, attempt| attempt.username == "alice")
        .returning(|_, _| Err(LoginError::InvalidCredentials));
    service.expect_login().returning(|_, _| {
        Err(LoginError::Locked {
            until: NOW + Duration::minutes(10),
            retry_after: RetryAfter::between(NOW, NOW + Duration::minutes(10)),
        })
    });
    let client = client(service);
    let login = |name: &str| {
        client
            .post("/v1/session/login")
            .body_json(&serde_json::json!({"username": name, "password": "pw"}))
            .send()
    };
    assert_problem(login("alice").await, StatusCode::UNAUTHORIZED).await;
    let resp = login("bob").await;
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("600"));
    assert_problem(resp, StatusCode::LOCKED).await;
}

#[tokio::test]
async fn malformed_bodies_get_a_4xx_problem_and_never_reach_the_service() {
    // No expectations: any call to the service would panic the mock.
    let client = client(MockSessionService::new());
    for body in [
        "not json",
        "{\"username\": \"a\"}",
        "{\"username\": \"a\", \"password\": \"b\", \"admin\": true}",
        "{\"username\": \"a\", \"password\": \"b\", \"client\": \"robot\"}",
        "[]",
    ] {
        let resp = client
            .post("/v1/session/login")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        assert_problem(resp, StatusCode::BAD_REQUEST).await;
    }
    let resp = client.get("/v1/no-such-route").send().await;
    assert_problem(resp, StatusCode::NOT_FOUND).await;
    let resp = client.delete("/v1/session").send().await;
    assert_problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
}

#[tokio::test]
async fn r13_bodies_over_16_kib_are_413_and_non_objects_422() {
    let client = client(MockSessionService::new());
    let big = format!("{{\"k\":\"{}\"}}", "v".repeat(20 * 1024));
    let resp = client
        .put("/v1/session/data")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    assert_problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    let resp = client
        .put("/v1/session/data")
        .body_json(&serde_json::json!([1, 2]))
        .send()
        .await;
    assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test]
async fn r13_data_is_the_bare_object() {
    let mut service = MockSessionService::new();
    service.expect_data().returning(|_| {
        let mut object = serde_json::Map::new();
        object.insert("step".into(), 3.into());
        Ok(Some(SessionData::new(object).unwrap()))
    });
    let resp = client(service).get("/v1/session/data").send().await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    assert_eq!(body(resp).await, serde_json::json!({"step": 3}));
}

#[tokio::test]
async fn r12_a_cross_site_post_with_the_cookie_is_403_and_with_bearer_is_allowed() {
    let mut service = MockSessionService::new();
    service.expect_logout().times(1).returning(|_| Ok(()));
    let client = client(service);
    let resp = client
        .post("/v1/session/logout")
        .header("cookie", format!("{COOKIE}=x"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await;
    assert_problem(resp, StatusCode::FORBIDDEN).await;
    let resp = client
        .post("/v1/session/logout")
        .header("cookie", format!("{COOKIE}=x"))
        .header("sec-fetch-site", "cross-site")
        .header("authorization", "Bearer x")
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::NO_CONTENT);
    assert!(header(&resp, "set-cookie").unwrap().ends_with("Max-Age=0"));
}

#[tokio::test]
async fn r7_password_change_errors_map_to_403_422_and_401() {
    let mut service = MockSessionService::new();
    let mut outcomes = vec![
        ChangePasswordError::NotLoggedIn,
        ChangePasswordError::Policy(PasswordPolicyError),
        ChangePasswordError::WrongPassword,
    ];
    service
        .expect_change_password()
        .returning(move |_, _, _| Err(outcomes.pop().unwrap()));
    let client = client(service);
    for status in [
        StatusCode::FORBIDDEN,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::UNAUTHORIZED,
    ] {
        let resp = client
            .put("/v1/session/password")
            .body_json(&serde_json::json!({"current_password": "a", "new_password": "b"}))
            .send()
            .await;
        assert_problem(resp, status).await;
    }
}

#[tokio::test]
async fn database_failures_are_503_or_an_opaque_500() {
    let mut service = MockSessionService::new();
    service.expect_recognise().times(1).returning(|_| {
        Err(InfraError::Unavailable(anyhow::anyhow!(
            "connection refused"
        )))
    });
    service
        .expect_recognise()
        .returning(|_| Err(InfraError::Unexpected(anyhow::anyhow!("secret detail"))));
    let client = client(service);
    assert_problem(
        client.get("/v1/session").send().await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    let problem = assert_problem(
        client.get("/v1/session").send().await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(!problem.to_string().contains("secret detail"));
}

#[tokio::test]
async fn readiness_follows_the_database_and_liveness_does_not() {
    let client = TestClient::new(app(api(MockSessionService::new(), false)));
    client
        .get("/health/ready")
        .send()
        .await
        .assert_status(StatusCode::SERVICE_UNAVAILABLE);
    client
        .get("/health/live")
        .send()
        .await
        .assert_status_is_ok();
    let client = TestClient::new(app(api(MockSessionService::new(), true)));
    client
        .get("/health/ready")
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn the_spec_and_docs_are_served() {
    let client = client(MockSessionService::new());
    let resp = client.get("/openapi.json").send().await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    let spec = body(resp).await;
    assert!(spec["paths"]["/v1/session/login"]["post"].is_object());
    client.get("/docs").send().await.assert_status_is_ok();
}

/// The committed `openapi/openapi.json` must be what the code produces.
#[test]
fn committed_openapi_spec_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = openapi(api(MockSessionService::new(), true)).spec();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date: regenerate it with \
         `cargo run -p websessions-api -- openapi > openapi/openapi.json` (or `just openapi`)"
    );
}
