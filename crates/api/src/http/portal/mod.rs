//! The built-in pages (SPEC section 10): `GET /login` and `GET /account`, rendered on the
//! server from `templates/`, with one stylesheet and one script of their own under `/portal/`
//! (`assets/`). The script calls the `/v1` endpoints with `fetch` like any other client: the
//! pages have no second code path for R5-R7, and no page route accepts a POST. Every page
//! carries a Content-Security-Policy that allows only its own script and style and no
//! framing, and `Cache-Control: no-store`, so no page of the account shows from a cache after
//! sign-out.

mod return_to;

use std::sync::Arc;

use askama::Template;
use poem::http::{HeaderValue, StatusCode, header};
use poem::web::Data;
use poem::{EndpointExt, IntoResponse, Request, Response, Route, get, handler};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use websessions_domain::{LoginRequired, SessionRecord};

use super::context::Context;

/// What the pages may load and do: their own script, style and API, nothing else, in no
/// frame.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

const STYLESHEET: &str = include_str!("../../../assets/portal.css");
const SCRIPT: &str = include_str!("../../../assets/portal.js");

/// `routes` with the pages' routes added (when the portal is on).
pub(super) fn with_pages(routes: Route, ctx: Arc<Context>) -> Route {
    routes
        .at("/login", get(login_page).data(ctx.clone()))
        .at("/account", get(account_page).data(ctx))
        .at("/portal/portal.css", get(stylesheet))
        .at("/portal/portal.js", get(script))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    return_to: String,
}

/// One row of the account page's list.
struct SessionRow {
    id: String,
    kind: &'static str,
    address: String,
    started: String,
    active: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    username: String,
    sessions: Vec<SessionRow>,
}

#[derive(Template)]
#[template(path = "unavailable.html")]
struct UnavailablePage;

/// `GET /login`: the sign-in form, which goes to the validated `return_to` on success.
#[handler]
fn login_page(req: &Request, Data(ctx): Data<&Arc<Context>>) -> Response {
    let requested = req.uri().query().and_then(return_to::from_query);
    let page = LoginPage {
        return_to: return_to::destination(requested.as_deref(), &ctx.edge.trusted_origins),
    };
    render(&page, StatusCode::OK)
}

/// `GET /account`: the signed-in user's sessions and actions; without a logged-in session, a
/// redirect to sign in.
#[handler]
async fn account_page(req: &Request, Data(ctx): Data<&Arc<Context>>) -> Response {
    let presented = ctx.presented(req);
    let me = match ctx.me.me(&presented).await {
        Ok(me) => me,
        Err(LoginRequired::NoSession | LoginRequired::NotLoggedIn) => {
            return see_other("/login?return_to=/account");
        }
        Err(LoginRequired::Infra(error)) => return unavailable(&error),
    };
    let sessions = match ctx.me.my_sessions(&me).await {
        Ok(sessions) => sessions,
        Err(error) => return unavailable(&error),
    };
    let page = AccountPage {
        username: me.user.username.as_str().to_owned(),
        sessions: sessions
            .iter()
            .map(|record| row(record, record.id == me.session.id))
            .collect(),
    };
    render(&page, StatusCode::OK)
}

fn row(record: &SessionRecord, current: bool) -> SessionRow {
    SessionRow {
        id: record.id.to_string(),
        kind: record.kind.as_str(),
        address: record.ip_address.to_string(),
        started: when(record.authenticated_at.unwrap_or(record.created_at)),
        active: when(record.last_activity_at),
        current,
    }
}

/// A time as the page shows it: UTC, to the minute.
fn when(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .map(|text| format!("{} UTC", text.get(..16).unwrap_or(&text).replace('T', " ")))
        .unwrap_or_default()
}

fn unavailable(error: &websessions_domain::InfraError) -> Response {
    tracing::warn!(error = %error, "account page: database unavailable");
    let mut response = render(&UnavailablePage, StatusCode::SERVICE_UNAVAILABLE);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// A page with the headers every page carries.
fn render(page: &impl Template, status: StatusCode) -> Response {
    let Ok(html) = page.render() else {
        tracing::error!("a page failed to render");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut response = Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .body(html);
    page_headers(&mut response);
    response
}

fn see_other(location: &'static str) -> Response {
    let mut response = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location)
        .finish();
    page_headers(&mut response);
    response
}

fn page_headers(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, PAGE_POLICY),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // `return_to` in the address is nobody else's business.
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[handler]
fn stylesheet() -> Response {
    asset(STYLESHEET, "text/css; charset=utf-8")
}

#[handler]
fn script() -> Response {
    asset(SCRIPT, "text/javascript; charset=utf-8")
}

/// The pages' own files: revalidated on every use, so a new binary's are used at once.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .body(body)
}
