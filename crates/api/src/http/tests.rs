//! Status codes, headers and body shapes of the real routes over mocked actor services, and the
//! committed document's drift test.

use std::sync::Arc;

use async_trait::async_trait;
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use websessions_domain::admin::MockSessionAdmin;
use websessions_domain::fixtures;
use websessions_domain::holder::MockSessionHolder;
use websessions_domain::me::MockSelfService;
use websessions_domain::users::MockUserAdmin;
use websessions_domain::{
    AccessError, ChangePasswordError, Credential, InfraError, Issued, LoginError, LoginPass,
    LoginRequired, Page, PasswordPolicyError, RateLimited, RetryAfter, Saturated, SessionData,
    SessionId, SessionKind, SessionPolicy, SessionRecord, Superuser, Token, TokenLength,
};

use super::{Context, CookieSettings, EdgeSettings, Readiness, SameSite, app, openapi};
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

fn edge(cookie: &str) -> EdgeSettings {
    EdgeSettings {
        cookie: CookieSettings {
            name: cookie.into(),
            secure: true,
            same_site: SameSite::Lax,
        },
        trusted_proxies: vec![],
        trusted_origins: Default::default(),
        token_length: TokenLength::default(),
    }
}

/// The actors' mocks; an actor without expectations panics when called.
#[derive(Default)]
struct Mocks {
    holder: MockSessionHolder,
    me: MockSelfService,
    admin: MockSessionAdmin,
    users: MockUserAdmin,
}

impl Mocks {
    fn context(self, ready: bool, cookie: &str) -> Arc<Context> {
        Arc::new(Context {
            holder: Arc::new(self.holder),
            me: Arc::new(self.me),
            admin: Arc::new(self.admin),
            users: Arc::new(self.users),
            readiness: Arc::new(Ready(ready)),
            edge: Arc::new(edge(cookie)),
            policy: SessionPolicy::default(),
            metrics: Arc::new(Metrics::new()),
            portal: true,
        })
    }

    fn client(self) -> TestClient<impl poem::Endpoint> {
        TestClient::new(app(self.context(true, COOKIE)))
    }

    /// Every login passes its address's limit.
    fn admitting(mut self) -> Self {
        self.holder
            .expect_admit_login()
            .returning(|_| Ok(LoginPass::granted()));
        self
    }
}

fn credential(id: i64, n: u8) -> Credential {
    Credential::new(SessionId::new(id).unwrap(), Token::from_bytes(vec![n; 16]))
}

fn record(id: i64, user: Option<&str>, kind: SessionKind) -> SessionRecord {
    SessionRecord {
        kind,
        user: user.map(|name| fixtures::user(1, name, false)),
        authenticated_at: user.map(|_| NOW),
        ..fixtures::session(id, 1, NOW)
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

fn login_body(json: serde_json::Value) -> String {
    json.to_string()
}

#[tokio::test]
async fn r4_start_without_a_session_answers_201_with_the_specified_cookie() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_start().returning(|_| {
        Ok(Issued {
            session: record(5, None, SessionKind::Browser),
            credential: Some(credential(5, 1)),
        })
    });
    let resp = mocks.client().post("/v1/session").send().await;
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
    assert_eq!(view["authenticated_at"], serde_json::Value::Null);
    assert_eq!(view["created_at"], "2026-05-01T10:00:00Z");
    assert_eq!(view["idle_expires_at"], "2026-05-01T10:30:00Z");
    assert_eq!(view["absolute_expires_at"], "2026-05-01T22:00:00Z");
    assert!(
        view.get("credential").is_none(),
        "a browser never gets the token in a body"
    );
}

#[tokio::test]
async fn r4_start_with_a_valid_session_answers_200_without_a_cookie() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_start().returning(|presented| {
        assert_eq!(presented.credential, Some(credential(5, 1)));
        Ok(Issued {
            session: record(5, None, SessionKind::Browser),
            credential: None,
        })
    });
    let resp = mocks
        .client()
        .post("/v1/session")
        .header("cookie", format!("{COOKIE}={}", credential(5, 1).expose()))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    assert_eq!(header(&resp, "set-cookie"), None);
}

#[tokio::test]
async fn r14_a_start_over_the_address_limit_is_429_with_retry_after() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_start().returning(|_| {
        let wait = RetryAfter::after(std::time::Duration::from_millis(2500));
        Err(RateLimited(wait).into())
    });
    let resp = mocks.client().post("/v1/session").send().await;
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("3"));
    assert_problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
}

#[tokio::test]
async fn recognising_an_invalid_cookie_answers_401_and_clears_it_but_not_for_bearer() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_recognise().returning(|_| Ok(None));
    let client = mocks.client();
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
    let mut mocks = Mocks::default().admitting();
    mocks.holder.expect_login().returning(|_, _, attempt| {
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
    let client = mocks.client();
    let resp = client
        .post("/v1/session/login")
        .body_json(&serde_json::json!({"username": "alice", "password": "pw"}))
        .send()
        .await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    let cookie = header(&resp, "set-cookie").unwrap();
    assert!(cookie.contains(&credential(7, 7).expose()));
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
async fn r5_refused_logins_answer_401_locked_ones_423_and_saturated_ones_503() {
    let mut mocks = Mocks::default().admitting();
    mocks
        .holder
        .expect_login()
        .withf(|_, _, attempt| attempt.username == "alice")
        .returning(|_, _, _| Err(LoginError::InvalidCredentials));
    mocks
        .holder
        .expect_login()
        .withf(|_, _, attempt| attempt.username == "bob")
        .returning(|_, _, _| {
            Err(LoginError::Locked {
                until: NOW + Duration::minutes(10),
                retry_after: RetryAfter::between(NOW, NOW + Duration::minutes(10)),
            })
        });
    mocks
        .holder
        .expect_login()
        .returning(|_, _, _| Err(Saturated.into()));
    let client = mocks.client();
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
    let resp = login("carol").await;
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn r14_the_login_limit_comes_before_the_body_is_read() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_admit_login().returning(|_| {
        Err(RateLimited(RetryAfter::after(
            std::time::Duration::from_secs(30),
        )))
    });
    // No login expectation: the attempt must never reach the rules.
    let client = mocks.client();
    for (content_type, body) in [("application/json", "not json"), ("text/plain", "x")] {
        let resp = client
            .post("/v1/session/login")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await;
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("30"));
        assert_problem(resp, StatusCode::TOO_MANY_REQUESTS).await;
    }
}

#[tokio::test]
async fn malformed_bodies_get_400_415_or_422_and_never_reach_the_rules() {
    let client = Mocks::default().admitting().client();
    for (content_type, body, status) in [
        (
            "application/json",
            "not json".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        ("application/json", "{".to_owned(), StatusCode::BAD_REQUEST),
        (
            "text/plain",
            login_body(serde_json::json!({"username": "a", "password": "b"})),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/x-www-form-urlencoded",
            "username=a&password=b".to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/json",
            login_body(serde_json::json!({"username": "a"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            login_body(serde_json::json!({"username": 5, "password": "b"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            login_body(serde_json::json!({"username": "a", "password": "b", "admin": true})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            login_body(serde_json::json!({"username": "a", "password": "b", "client": "robot"})),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            "[]".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "application/json",
            "null".to_owned(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let resp = client
            .post("/v1/session/login")
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await;
        let problem = assert_problem(resp, status).await;
        assert!(!problem.to_string().contains("\"b\""), "{body}");
    }
    let resp = client.get("/v1/no-such-route").send().await;
    assert_problem(resp, StatusCode::NOT_FOUND).await;
    let resp = client.delete("/v1/session").send().await;
    assert_problem(resp, StatusCode::METHOD_NOT_ALLOWED).await;
    let resp = client.delete("/v1/me/sessions/not-a-number").send().await;
    assert_problem(resp, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn r13_bodies_over_16_kib_are_413_and_non_objects_422() {
    let client = Mocks::default().client();
    let big = format!("{{\"k\":\"{}\"}}", "v".repeat(20 * 1024));
    let resp = client
        .put("/v1/session/data")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    assert_problem(resp, StatusCode::PAYLOAD_TOO_LARGE).await;
    for value in [
        serde_json::json!([1, 2]),
        serde_json::json!("text"),
        serde_json::json!(3),
    ] {
        let resp = client
            .put("/v1/session/data")
            .body_json(&value)
            .send()
            .await;
        assert_problem(resp, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
}

#[tokio::test]
async fn r13_data_is_the_bare_object() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_data().returning(|_| {
        let mut object = serde_json::Map::new();
        object.insert("step".into(), 3.into());
        Ok(Some(SessionData::new(object).unwrap()))
    });
    let resp = mocks.client().get("/v1/session/data").send().await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    assert_eq!(body(resp).await, serde_json::json!({"step": 3}));
}

#[tokio::test]
async fn r12_a_cross_site_post_with_the_cookie_is_403_and_with_bearer_is_allowed() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_logout().times(1).returning(|_| Ok(()));
    let client = mocks.client();
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
async fn r7_password_change_errors_map_to_403_422_423_503_and_401() {
    let mut mocks = Mocks::default();
    let mut outcomes = vec![
        ChangePasswordError::NotLoggedIn,
        Saturated.into(),
        ChangePasswordError::Locked {
            until: NOW,
            retry_after: RetryAfter::between(NOW, NOW + Duration::seconds(9)),
        },
        ChangePasswordError::Policy(PasswordPolicyError),
        ChangePasswordError::WrongPassword,
    ];
    mocks
        .holder
        .expect_change_password()
        .returning(move |_, _, _| Err(outcomes.pop().unwrap()));
    let client = mocks.client();
    for status in [
        StatusCode::FORBIDDEN,
        StatusCode::UNPROCESSABLE_ENTITY,
        StatusCode::LOCKED,
        StatusCode::SERVICE_UNAVAILABLE,
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
async fn database_failures_are_503_with_retry_after_or_an_opaque_500() {
    let mut mocks = Mocks::default();
    mocks.holder.expect_recognise().times(1).returning(|_| {
        Err(InfraError::Unavailable(anyhow::anyhow!(
            "connection refused"
        )))
    });
    mocks
        .holder
        .expect_recognise()
        .returning(|_| Err(InfraError::Unexpected(anyhow::anyhow!("secret detail"))));
    let client = mocks.client();
    let resp = client.get("/v1/session").send().await;
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    assert_problem(resp, StatusCode::SERVICE_UNAVAILABLE).await;
    let problem = assert_problem(
        client.get("/v1/session").send().await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    assert!(!problem.to_string().contains("secret detail"));
}

#[tokio::test]
async fn administration_refuses_anonymous_401_and_other_users_403() {
    let mut mocks = Mocks::default();
    mocks
        .admin
        .expect_authorize()
        .times(1)
        .returning(|_| Err(AccessError::NoSession));
    mocks
        .admin
        .expect_authorize()
        .times(1)
        .returning(|_| Err(AccessError::NotSuperuser));
    mocks
        .admin
        .expect_authorize()
        .returning(|_| Ok(Superuser::operator()));
    mocks
        .admin
        .expect_sessions()
        .withf(|_, filter| filter.limit == 100 && filter.user.as_deref() == Some("alice"))
        .returning(|_, _| {
            Ok(Page {
                items: vec![record(3, Some("alice"), SessionKind::Api)],
                next: None,
            })
        });
    let client = mocks.client();
    let list = || {
        client
            .get("/v1/admin/sessions")
            .query("user", &"alice")
            .header("cookie", format!("{COOKIE}=x"))
            .send()
    };
    let resp = list().await;
    assert!(header(&resp, "set-cookie").unwrap().ends_with("Max-Age=0"));
    assert_problem(resp, StatusCode::UNAUTHORIZED).await;
    assert_problem(list().await, StatusCode::FORBIDDEN).await;
    let resp = list().await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    let page = body(resp).await;
    assert_eq!(page["items"][0]["id"], 3);
    assert_eq!(page["next"], serde_json::Value::Null);
}

#[tokio::test]
async fn readiness_follows_the_database_and_liveness_does_not() {
    let client = TestClient::new(app(Mocks::default().context(false, COOKIE)));
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
    let client = TestClient::new(app(Mocks::default().context(true, COOKIE)));
    client
        .get("/health/ready")
        .send()
        .await
        .assert_status_is_ok();
}

#[tokio::test]
async fn metric_labels_come_from_fixed_sets_whatever_the_client_sends() {
    let ctx = Mocks::default().context(true, COOKIE);
    let metrics = ctx.metrics.clone();
    let client = TestClient::new(app(ctx));
    for n in 0..5 {
        let method = poem::http::Method::from_bytes(format!("ZZ00{n}").as_bytes()).unwrap();
        client.request(method, "/v1/session").send().await;
        client.get(format!("/v1/users/{n}")).send().await;
    }
    let text = metrics.render();
    assert!(!text.contains("ZZ00"), "{text}");
    assert!(!text.contains("/v1/users/"), "{text}");
    assert!(text.contains("method=\"other\""));
    assert!(text.contains("route=\"unmatched\""), "{text}");
}

#[tokio::test]
async fn the_document_and_docs_are_served_naming_the_configured_cookie() {
    let client = TestClient::new(app(Mocks::default().context(true, "sid")));
    let resp = client.get("/openapi.json").send().await;
    assert_eq!(resp.0.status(), StatusCode::OK);
    let document = body(resp).await;
    assert!(document["paths"]["/v1/session/login"]["post"].is_object());
    assert_eq!(
        document["components"]["securitySchemes"]["SessionCookie"]["name"],
        "sid"
    );
    let docs = client.get("/docs").send().await;
    docs.assert_status_is_ok();
    let page = docs.0.into_body().into_string().await.unwrap();
    assert!(
        page.contains("\"name\": \"sid\""),
        "the page embeds the finished document"
    );
}

/// The committed `openapi/openapi.json` must be what the code produces.
#[test]
fn committed_openapi_spec_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = openapi(COOKIE);
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is out of date: regenerate it with \
         `cargo run -p websessions-api -- openapi > openapi/openapi.json` (or `just openapi`)"
    );
}

// ---- the pages (SPEC section 10) ----

fn assert_page_headers(resp: &TestResponse) {
    let policy = header(resp, "content-security-policy").unwrap_or_default();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(header(resp, "cache-control").as_deref(), Some("no-store"));
}

async fn text(resp: TestResponse) -> String {
    resp.0.into_body().into_string().await.unwrap()
}

#[tokio::test]
async fn the_sign_in_page_carries_the_page_policy_and_a_validated_escaped_return_to() {
    let client = Mocks::default().client();
    let resp = client
        .get("/login")
        .query("return_to", &"/app?a=\"><script>alert(1)</script>")
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_page_headers(&resp);
    assert_eq!(
        header(&resp, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    let page = text(resp).await;
    assert!(page.contains("data-return-to=\"/app?a="), "{page}");
    assert!(
        !page.contains("\"><script>"),
        "the target broke out: {page}"
    );
    assert!(page.contains("<label for=\"username\">") && page.contains("type=\"password\""));
    assert!(!page.contains("<script>"), "no inline script: {page}");
    for hostile in [
        "//evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
    ] {
        let resp = client
            .get("/login")
            .query("return_to", &hostile)
            .send()
            .await;
        let page = text(resp).await;
        assert!(page.contains("data-return-to=\"/account\""), "{hostile}");
    }
    for (asset, kind) in [
        ("/portal/portal.js", "text/javascript; charset=utf-8"),
        ("/portal/portal.css", "text/css; charset=utf-8"),
    ] {
        let resp = client.get(asset).send().await;
        resp.assert_status_is_ok();
        assert_eq!(header(&resp, "content-type").as_deref(), Some(kind));
    }
}

#[tokio::test]
async fn the_account_page_sends_anyone_not_signed_in_to_sign_in() {
    for refusal in [LoginRequired::NoSession, LoginRequired::NotLoggedIn] {
        let mut mocks = Mocks::default();
        let answer = std::sync::Mutex::new(Some(refusal));
        mocks
            .me
            .expect_me()
            .returning(move |_| Err(answer.lock().unwrap().take().unwrap()));
        let resp = mocks.client().get("/account").send().await;
        resp.assert_status(StatusCode::SEE_OTHER);
        assert_eq!(
            header(&resp, "location").as_deref(),
            Some("/login?return_to=/account")
        );
        assert_page_headers(&resp);
    }
}

#[tokio::test]
async fn the_account_page_lists_the_users_sessions_and_marks_the_current_one() {
    let mut mocks = Mocks::default();
    let current = record(5, Some("alice"), SessionKind::Browser);
    let user = current.user.clone().unwrap();
    let me = websessions_domain::Me {
        session: current.clone(),
        user,
        client: websessions_domain::audit::Client::default(),
    };
    mocks.me.expect_me().returning(move |_| Ok(me.clone()));
    let other = record(9, Some("alice"), SessionKind::Api);
    mocks
        .me
        .expect_my_sessions()
        .returning(move |_| Ok(vec![current.clone(), other.clone()]));
    let resp = mocks
        .client()
        .get("/account")
        .header("cookie", format!("{COOKIE}={}", credential(5, 1).expose()))
        .send()
        .await;
    resp.assert_status_is_ok();
    assert_page_headers(&resp);
    let page = text(resp).await;
    assert!(
        page.contains("<strong id=\"username\">alice</strong>"),
        "{page}"
    );
    assert!(
        page.contains("data-session=\"5\" class=\"current\""),
        "{page}"
    );
    assert!(page.contains("data-end=\"9\""), "{page}");
    assert!(
        !page.contains("data-end=\"5\""),
        "no button ends the current session"
    );
}

#[tokio::test]
async fn the_account_page_without_its_database_is_a_503_page_not_a_500() {
    let mut mocks = Mocks::default();
    mocks.me.expect_me().returning(|_| {
        Err(LoginRequired::Infra(InfraError::Unavailable(
            anyhow::anyhow!("down"),
        )))
    });
    let resp = mocks.client().get("/account").send().await;
    resp.assert_status(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&resp, "retry-after").as_deref(), Some("1"));
    assert_page_headers(&resp);
}

#[tokio::test]
async fn with_the_portal_off_no_page_route_answers_and_the_api_is_unchanged() {
    let mut ctx = Mocks::default().context(true, COOKIE);
    Arc::get_mut(&mut ctx).unwrap().portal = false;
    let client = TestClient::new(app(ctx));
    for path in [
        "/login",
        "/account",
        "/portal/portal.js",
        "/portal/portal.css",
    ] {
        client
            .get(path)
            .send()
            .await
            .assert_status(StatusCode::NOT_FOUND);
    }
    client
        .get("/health/live")
        .send()
        .await
        .assert_status_is_ok();
    client
        .get("/openapi.json")
        .send()
        .await
        .assert_status_is_ok();
}
