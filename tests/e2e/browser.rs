//! The built-in pages in a real browser (SPEC section 10, R12, section 4's cookie): headless
//! Chromium driven over WebDriver (chromedriver), against the real binary on
//! `http://a.localhost:PORT` (Chromium resolves `*.localhost` to loopback and treats it as a
//! secure context) with the default `__Host-websession` Secure cookie. They run when
//! `WEBSESSIONS_TEST_CHROMEDRIVER` names a chromedriver (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver`); otherwise they are reported as ignored. A failed test
//! leaves a screenshot of every step in `target/tmp/browser/<test>/`. With
//! `WEBSESSIONS_UPDATE_SCREENSHOTS=1` they also write the README's pictures of the pages into
//! `tests/browser/screenshots/` (CI never does).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use websessions_tests::Backend;

use fantoccini::Locator;

use crate::chromium::{Browser, PATIENCE, Page, requests_to};
use crate::contract::SendChecked;
use crate::nginx::Gateway;
use crate::server::{COOKIE, Server};
use crate::support::{PASSWORD, api_login};

websessions_tests::on! {
    sqlite needs chromedriver: [
        sign_in_lands_on_return_to_and_a_hostile_one_on_the_account_page,
        the_session_cookie_is_invisible_to_scripts_and_has_the_specified_attributes,
        the_account_page_lists_both_sessions_and_ends_the_other_for_good,
        pages_of_other_origins_cannot_write_with_the_cookie_nor_sign_anyone_in,
        after_sign_out_the_back_button_shows_no_account_page,
    ];
    postgres needs chromedriver, nginx, postgres: [
        through_nginx_sign_in_reaches_the_application_and_sign_out_is_refused,
    ];
}

/// A server with alice, and its address as the browser reaches it.
async fn site(backend: Backend) -> (Server, String) {
    let server = Server::start(backend, &[]).await;
    server.create_user("alice", PASSWORD);
    let base = format!("http://a.localhost:{}", server.port());
    (server, base)
}

async fn sign_in_lands_on_return_to_and_a_hostile_one_on_the_account_page(backend: Backend) {
    let (server, base) = site(backend).await;
    let mut browser = Browser::open("sign_in").await;
    browser.goto(&format!("{base}/login")).await;
    browser.picture("login").await;
    // A path on this site is where the browser goes.
    browser.sign_in(&base, Some("/account?from=sign-in")).await;
    browser.wait_for_path("/account?from=sign-in").await;
    assert_eq!(browser.text("#username").await, "alice");
    // Anything else goes to the account page.
    for hostile in [
        "https://evil.example/",
        "//evil.example",
        "javascript:alert(1)",
    ] {
        browser.sign_in(&base, Some(hostile)).await;
        let url = browser.wait_for_path("/account").await;
        assert_eq!(url.host_str(), Some("a.localhost"), "{hostile}");
        assert_eq!(url.query(), None, "{hostile}");
    }
    // A wrong password shows the one message, and stays.
    browser.goto(&format!("{base}/login")).await;
    browser.submit_sign_in("wrong").await;
    browser.wait_for_count("#message:not([hidden])", 1).await;
    assert_eq!(
        browser.text("#message").await,
        "The username or password is not right."
    );
    assert_eq!(browser.url().await.path(), "/login");
    browser.close().await;
    drop(server);
}

async fn the_session_cookie_is_invisible_to_scripts_and_has_the_specified_attributes(
    backend: Backend,
) {
    let (server, base) = site(backend).await;
    let mut browser = Browser::open("cookie").await;
    browser.sign_in(&base, None).await;
    browser.wait_for_path("/account").await;
    let visible = browser
        .client()
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert!(
        !visible.as_str().unwrap_or_default().contains("websession"),
        "{visible}"
    );
    let cookies = browser.client().get_all_cookies().await.unwrap();
    let cookie = cookies
        .iter()
        .find(|c| c.name() == COOKIE)
        .unwrap_or_else(|| panic!("no {COOKIE} among {cookies:?}"));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(format!("{:?}", cookie.same_site()), "Some(Lax)");
    assert_eq!(cookie.path(), Some("/"));
    // Host-only (no Domain attribute) and a session cookie (no Max-Age or Expires).
    assert_eq!(cookie.domain(), Some("a.localhost"));
    assert!(cookie.expires().is_none() && cookie.max_age().is_none());
    browser.close().await;
    drop(server);
}

async fn the_account_page_lists_both_sessions_and_ends_the_other_for_good(backend: Backend) {
    let (server, base) = site(backend).await;
    let mut browser = Browser::open("account").await;
    browser.sign_in(&base, None).await;
    browser.wait_for_path("/account").await;
    // The same user as an API client: a browser sign-in from elsewhere would end the first
    // browser session (R5e).
    let credential = api_login(&server, "alice", PASSWORD).await;
    let other = credential.split('.').next().unwrap().to_owned();
    browser.goto(&format!("{base}/account")).await;
    assert_eq!(browser.count("#sessions li").await, 2);
    assert_eq!(browser.count("#sessions li.current").await, 1);
    let current = browser
        .client()
        .find(Locator::Css("#sessions li.current"))
        .await
        .unwrap()
        .attr("data-session")
        .await
        .unwrap();
    assert_ne!(current.as_deref(), Some(other.as_str()));
    browser.picture("account").await;
    browser
        .click(&format!("button[data-end=\"{other}\"]"))
        .await;
    browser.wait_for_count("#sessions li", 1).await;
    browser.snap("ended the other").await;
    let refused = server
        .http
        .get(server.url("/v1/session"))
        .bearer_auth(&credential)
        .send_checked()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // And the page's own session lives on.
    browser.goto(&format!("{base}/account")).await;
    assert_eq!(browser.count("#sessions li.current").await, 1);
    browser.close().await;
    drop(server);
}

async fn pages_of_other_origins_cannot_write_with_the_cookie_nor_sign_anyone_in(backend: Backend) {
    let (server, base) = site(backend).await;
    let mut browser = Browser::open("cross_site").await;
    browser.sign_in(&base, None).await;
    browser.wait_for_path("/account").await;
    // The page asks who the browser is (a read: R12 lets it through, and the server's log
    // says whether the cookie came along), then posts a logout.
    let whoami = format!("{base}/v1/session");
    let logout = format!("{base}/v1/session/logout");
    let attack = format!(
        "<!doctype html><title>loading</title><script>
         const send = {{credentials: 'include', mode: 'no-cors'}};
         fetch({whoami:?}, send)
           .then(() => fetch({logout:?}, {{...send, method: 'POST'}}))
           .then(() => {{ document.title = 'sent'; }}, () => {{ document.title = 'failed'; }});
         </script>"
    );
    let evil = Page::serve(attack).await;

    // Same site, another origin: Chromium sends the Lax cookie (the read is recognised) and
    // `Sec-Fetch-Site: same-site`; R12 refuses the logout, which did reach the server.
    browser
        .goto(&format!("http://evil.a.localhost:{}/", evil.port))
        .await;
    browser.wait_for_title("sent").await;
    assert_eq!(
        requests_to(&server, "/v1/session"),
        [("GET".to_owned(), 200)],
        "the cookie went along"
    );
    let seen = requests_to(&server, "/v1/session/logout");
    assert_eq!(seen, [("POST".to_owned(), 403)], "{}", server.logs());
    browser.goto(&format!("{base}/account")).await;
    assert_eq!(browser.text("#username").await, "alice", "still signed in");

    // Another site: Chromium keeps the cookie home (the read is anonymous); the logout is
    // refused as well (R12 holds with or without the cookie), and the session survives.
    browser
        .goto(&format!("http://127.0.0.1:{}/", evil.port))
        .await;
    browser.wait_for_title("sent").await;
    let reads = requests_to(&server, "/v1/session");
    assert_eq!(reads.len(), 2, "the second read reached the server");
    assert_eq!(reads[1].1, 401, "it carried no cookie");
    let seen = requests_to(&server, "/v1/session/logout");
    assert_eq!(seen.len(), 2, "the second logout reached the server");
    assert_eq!(seen[1].1, 403);
    browser.goto(&format!("{base}/account")).await;
    assert_eq!(browser.text("#username").await, "alice", "still signed in");

    // A form on another site that posts a sign-in (as text/plain, the only body a form can
    // send that looks like JSON) signs nobody in: R12 refuses it, and login takes only
    // application/json anyway.
    browser.click("#sign-out").await;
    browser.wait_for_path("/login").await;
    let login = format!("{base}/v1/session/login");
    let form = format!(
        "<!doctype html><title>form</title>
         <form method='post' enctype='text/plain' action={login:?}>
         <input type='hidden' name='{{\"username\":\"alice\",\"password\":\"{PASSWORD}\",\"client\":\"browser\",\"x\":\"' value='\"}}'>
         </form><script>document.forms[0].submit();</script>"
    );
    let forger = Page::serve(form).await;
    browser
        .goto(&format!("http://127.0.0.1:{}/", forger.port))
        .await;
    let deadline = Instant::now() + PATIENCE;
    while requests_to(&server, "/v1/session/login")
        .iter()
        .all(|(_, status)| *status != 403 && *status != 415)
    {
        assert!(Instant::now() < deadline, "the form's post never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.goto(&format!("{base}/account")).await;
    browser.wait_for_path("/login?return_to=/account").await;
    let cookies = browser.client().get_all_cookies().await.unwrap();
    assert!(
        cookies.iter().all(|c| c.name() != COOKIE),
        "signed in by another site: {cookies:?}"
    );
    browser.close().await;
    drop((evil, forger, server));
}

async fn after_sign_out_the_back_button_shows_no_account_page(backend: Backend) {
    let (server, base) = site(backend).await;
    let mut browser = Browser::open("back_button").await;
    browser.sign_in(&base, None).await;
    browser.wait_for_path("/account").await;
    browser.click("#sign-out").await;
    browser.wait_for_path("/login").await;
    browser.client().back().await.unwrap();
    // The account page is asked for again (never shown from a cache), and sends the browser
    // to sign in.
    browser.wait_for_path("/login?return_to=/account").await;
    assert_eq!(browser.count("#sessions").await, 0);
    assert_eq!(browser.count("#sign-in").await, 1);
    let asked = requests_to(&server, "/account");
    assert_eq!(
        asked.last().map(|(_, status)| *status),
        Some(303),
        "{asked:?}"
    );
    browser.close().await;
    drop(server);
}

/// Through nginx (`tests/gateway/nginx.conf`): the application sends the browser to sign in,
/// back to the application, which learns who it is; after signing out it is refused again.
async fn through_nginx_sign_in_reaches_the_application_and_sign_out_is_refused(backend: Backend) {
    let gateway = Gateway::start(backend, &[]).await;
    let base = format!("http://a.localhost:{}", gateway.port());
    let mut browser = Browser::open("nginx").await;
    browser.goto(&format!("{base}/app/page?x=1")).await;
    browser
        .wait_for_path("/login?return_to=/app/page?x=1")
        .await;
    browser.sign_in(&base, Some("/app/page?x=1")).await;
    browser.wait_for_path("/app/page?x=1").await;
    // Chromium shows a JSON answer as text in a `pre`.
    let body = browser.text("pre").await;
    let echoed: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{body}"));
    assert_eq!(echoed["user"], "alice", "{body}");
    browser.goto(&format!("{base}/account")).await;
    browser.click("#sign-out").await;
    browser.wait_for_path("/login").await;
    browser.goto(&format!("{base}/app/page?x=1")).await;
    browser
        .wait_for_path("/login?return_to=/app/page?x=1")
        .await;
    browser.close().await;
    drop(gateway);
}
