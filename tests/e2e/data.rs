//! Client state (R13) and text end to end: the state survives a login and not a logout, usernames compare byte for byte, any Unicode is stored.

use reqwest::StatusCode;
use serde_json::{Value, json};
use websessions_tests::Backend;

use crate::contract::SendChecked;
use crate::server::cookie_header;
use crate::support::*;

websessions_tests::on! {
    every backend: [
        session_data_survives_login_and_is_wiped_by_logout,
        usernames_compare_byte_for_byte_and_client_state_holds_any_unicode,
    ];
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
