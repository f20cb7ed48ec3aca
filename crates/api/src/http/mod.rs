//! The HTTP server: one file per endpoint family (`session`, `gateway`, `me`, `admin`,
//! `users`, `health`) and the wire types they share (`wire`), the context every handler takes
//! from the request (`context`), the middleware every request passes (`guard`, with its trace
//! context, `trace`), the edge rules R11/R12 and the cookie (`edge`, `origin`), refusals and
//! how each operation's statuses follow from its error types (`problem`, `refusals`), strict
//! request bodies (`body`), documented security (`security`), and the one pass over the
//! generated document (`document`). It depends on the domain's actor traits, never on a
//! concrete adapter, and never on the configuration (`config` depends on it).

mod admin;
mod body;
mod context;
mod document;
mod edge;
mod gateway;
mod guard;
mod health;
mod me;
mod origin;
mod portal;
mod problem;
mod refusals;
mod security;
mod session;
#[cfg(test)]
mod tests;
mod trace;
mod users;
mod wire;

use std::sync::Arc;

use bytes::Bytes;
use poem::{Endpoint, EndpointExt, Route, endpoint::make_sync};
use poem_openapi::{LicenseObject, OpenApiService};

pub use admin::AdminApi;
pub use context::{Context, Readiness};
pub use edge::{CookieSettings, EdgeSettings, SameSite};
pub use gateway::GatewayApi;
pub use guard::MAX_BODY_BYTES;
pub use health::HealthApi;
pub use me::MeApi;
pub use origin::{Origin, TrustedOrigins};
pub use problem::{Problem, Refusal};
pub use session::SessionApi;
pub use users::UsersApi;

/// The API's endpoint families, as one OpenAPI service. They hold nothing: each handler takes
/// the `Context` from the request's data, so the document needs no services to be written.
pub type Apis = (SessionApi, GatewayApi, MeApi, AdminApi, UsersApi, HealthApi);

fn service() -> OpenApiService<Apis, ()> {
    let apis = (SessionApi, GatewayApi, MeApi, AdminApi, UsersApi, HealthApi);
    OpenApiService::new(apis, "websessions", env!("CARGO_PKG_VERSION"))
        .license(
            LicenseObject::new("GPL-3.0-or-later").url("https://www.gnu.org/licenses/gpl-3.0.html"),
        )
        .description(
            "Server-side web sessions: start, recognise, log into and out of sessions; list \
             and end one's own sessions; superusers manage every session and user account. \
             Browsers hold the credential in an HttpOnly cookie; API clients send it as \
             `Authorization: Bearer <id>.<token>`. Errors are RFC 9457 problem details, and \
             every /v1 answer carries `Cache-Control: no-store`.",
        )
}

/// The OpenAPI document, naming `cookie_name`: the one committed in `openapi/` (with the
/// default cookie name), served at `/openapi.json` and printed by `websessions openapi`. It
/// needs no database and no services.
pub fn openapi(cookie_name: &str) -> String {
    document::finish(&service().spec(), cookie_name)
}

/// The whole application: the API, its document at `/openapi.json` and `/docs`, and the
/// sign-in and account pages when the portal is on (SPEC section 10).
pub fn app(ctx: Arc<Context>) -> impl Endpoint {
    let edge = ctx.edge.clone();
    let metrics = ctx.metrics.clone();
    let service = service();
    let generated = service.spec();
    let finished = document::finish(&generated, &edge.cookie.name);
    // The interactive page embeds the document: the finished one, in place of the generated.
    // Both are built once and answered as shared bytes: a response holds a reference, not a
    // copy, so streams that never read their answers cost no memory each (R16).
    let docs = Bytes::from(service.swagger_ui_html().replacen(&generated, &finished, 1));
    let finished = Bytes::from(finished);
    let mut routes = Route::new();
    if ctx.portal {
        routes = portal::with_pages(routes, ctx.clone());
    }
    routes
        .nest("/", service.data(ctx))
        .at("/openapi.json", shared(finished, "application/json"))
        .at("/docs", shared(docs, "text/html; charset=utf-8"))
        .around(detached)
        .around(move |endpoint, req| guard::guard(endpoint, req, edge.clone(), metrics.clone()))
}

/// R19: a request that may change state runs to its end on a task of its own, so a client
/// that goes away (a closed connection, a reset stream) cannot cut a change off from its
/// audit record, or leave a login counted but never answered for. Reading requests run in
/// place.
async fn detached<E: Endpoint + 'static>(
    endpoint: Arc<E>,
    req: poem::Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse as _;
    use tracing::Instrument as _;
    if req.method().is_safe() {
        return endpoint
            .call(req)
            .await
            .map(|answer| answer.into_response());
    }
    let span = tracing::Span::current();
    let work = async move {
        endpoint
            .call(req)
            .await
            .map(|answer| answer.into_response())
    };
    match tokio::spawn(work.instrument(span)).await {
        Ok(answer) => answer,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(poem::Error::from_status(
            poem::http::StatusCode::SERVICE_UNAVAILABLE,
        )),
    }
}

/// An endpoint answering the same bytes to every request, without copying them.
fn shared(body: Bytes, content_type: &'static str) -> impl Endpoint<Output = poem::Response> {
    make_sync(move |_| {
        poem::Response::builder()
            .content_type(content_type)
            .body(body.clone())
    })
}
