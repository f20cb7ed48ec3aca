//! The HTTP server: routes, the OpenAPI document, and the middleware every request passes.
//! It depends on the domain's `SessionService`, never on a concrete adapter.

mod account;
mod api;
mod edge;
mod model;
mod problem;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

use poem::PathPattern;
use poem::http::{HeaderValue, StatusCode, header};
use poem::middleware::CookieJarManager;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::OpenApiService;

use crate::metrics::Metrics;

pub use account::AccountApi;
pub use api::{Context, Readiness, SessionApi};
pub use edge::EdgeSettings;
pub use problem::{ApiError, Problem};

/// Largest request body accepted on `/v1` (R13's 16 KiB bounds every body).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The API's endpoints, as one OpenAPI service.
pub type Apis = (SessionApi, AccountApi);

/// The OpenAPI service over `ctx`; its document is the one committed in `openapi/`.
pub fn openapi(ctx: Arc<Context>) -> OpenApiService<Apis, ()> {
    let apis = (SessionApi { ctx: ctx.clone() }, AccountApi { ctx });
    OpenApiService::new(apis, "websessions", env!("CARGO_PKG_VERSION")).description(
        "Server-side web sessions: start, recognise, log into and out of sessions; list \
             and end one's own sessions; superusers manage every session and user account. \
             Browsers hold the credential in an HttpOnly cookie; API clients send it as \
             `Authorization: Bearer <id>.<token>`. Errors are RFC 9457 problem details, and \
             every /v1 answer carries `Cache-Control: no-store`.",
    )
}

/// The whole application: the API, its document at `/openapi.json` and `/docs`.
pub fn app(ctx: Arc<Context>) -> impl Endpoint {
    let edge = ctx.edge.clone();
    let metrics = ctx.metrics.clone();
    let service = openapi(ctx);
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    Route::new()
        .nest("/", service)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        // The documented cookie security scheme reads the cookie jar; the credential itself
        // is read from the raw headers (edge.rs).
        .with(CookieJarManager::new())
        .around(move |endpoint, req| guard(endpoint, req, edge.clone(), metrics.clone()))
}

fn problem_response(error: ApiError) -> Response {
    error.into_response()
}

/// Every request: R12 and the body bound on `/v1`; poem's own errors (unknown route, bad
/// JSON, ...) become problem details; `/v1` answers get `Cache-Control: no-store`; latency
/// goes to the metrics, and one debug log line per request, without query, headers or body.
async fn guard<E: Endpoint>(
    endpoint: Arc<E>,
    mut req: Request,
    edge: Arc<EdgeSettings>,
    metrics: Arc<Metrics>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let v1 = path == "/v1" || path.starts_with("/v1/");
    let mut response = if v1 && edge::is_refused_cross_site(&req, &edge) {
        problem_response(ApiError::forbidden(
            "cross-site request with the session cookie refused",
        ))
    } else if v1 && let Err(error) = bound_body(&mut req).await {
        problem_response(error)
    } else {
        match endpoint.call(req).await {
            Ok(output) => output.into_response(),
            // A handler's `Err(ApiError)` arrives as an error built from its response: keep
            // it. Anything else (unknown route, unparsable JSON, ...) becomes a problem.
            Err(error) if error.is_from_response() => {
                let pattern = error.data::<PathPattern>().cloned();
                let mut response = error.into_response();
                if let Some(pattern) = pattern {
                    response.set_data(pattern);
                }
                response
            }
            Err(error) => problem_response(ApiError::for_status(error.status())),
        }
    };
    if v1 {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    // The route template, never the raw path: ids and usernames stay out of label values.
    let route = response
        .data::<PathPattern>()
        .map_or("unmatched", |pattern| &pattern.0);
    metrics.observe_request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    // Per-request lines are debug: at the hot path's rates they would cost more than the
    // request; the latency histogram counts every request, and failures log where they occur.
    tracing::debug!(
        %method,
        path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    Ok(response)
}

/// Reads the body into memory, refusing more than `MAX_BODY_BYTES` whether or not a
/// `Content-Length` announced it.
async fn bound_body(req: &mut Request) -> Result<(), ApiError> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let bytes = req
        .take_body()
        .into_bytes_limit(MAX_BODY_BYTES)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => {
                ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            _ => ApiError::bad_request("the request body could not be read"),
        })?;
    req.set_body(bytes);
    Ok(())
}
