//! What every request passes, as named steps: R12's refusal of cross-site writes and the
//! 16 KiB body bound (both before any handler: the first checks of R5f), the handler, the
//! translation of poem's own errors into problems, the clearing of a session cookie that was
//! refused as no session, `Cache-Control: no-store` on `/v1`, the request's span (W3C trace
//! context in and out, `trace`), and the latency metric and debug log line. `GET /v1/auth`, the gateway's question, changes nothing but the touch and reads
//! no body: it is exempt from R12 and the body bound (SPEC section 9). What the guard can
//! refuse an operation with is declared once (`statuses`), from the same predicates it runs.

use std::sync::Arc;
use std::time::Instant;

use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};
use tracing::Instrument;

use super::edge::{self, Carrier, EdgeSettings};
use super::problem::{Refusal, Refuse, SessionRefused, refuse};
use super::trace::{TRACEPARENT, Trace};
use crate::metrics::Metrics;

/// Largest request body accepted on `/v1` (R13's 16 KiB bounds every body).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The gateway's endpoint (SPEC section 9).
pub const AUTH_PATH: &str = "/v1/auth";

fn is_v1(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
}

/// Whether R12 and the body bound apply to requests on `path`: `/v1`, but the gateway's
/// question.
fn is_guarded(path: &str) -> bool {
    is_v1(path) && path != AUTH_PATH
}

/// Whether the guard reads (and bounds) a request body of `method`.
fn has_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

/// What the guard refuses before any handler runs.
#[derive(Debug)]
enum GuardRefusal {
    /// R12.
    CrossSite,
    /// A body over `MAX_BODY_BYTES`.
    TooLarge,
    /// A body that could not be read.
    Unreadable,
    /// A body that did not arrive within the body timeout (R16).
    Late,
}

refuse! {
    GuardRefusal {
        Self::CrossSite => FORBIDDEN(
            "a browser's state-changing request from another origin was refused (R12)"
        ),
        Self::TooLarge => PAYLOAD_TOO_LARGE("the body is larger than 16 KiB"),
        Self::Unreadable => BAD_REQUEST("the request body could not be read"),
        Self::Late => REQUEST_TIMEOUT("the request body did not arrive in time"),
    }
}

/// Every status an operation at `path` with `method` can get before its handler runs: R12's
/// 403 for a state-changing method, the body bound's 413, 400 and (R16) 408 where a body is
/// read, and 400
/// for a parameter poem cannot parse when the operation has parameters (`respond`).
pub fn statuses(method: &Method, path: &str, has_parameters: bool) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    if is_guarded(path) && edge::is_state_changing(method) {
        statuses.push(StatusCode::FORBIDDEN);
    }
    if is_guarded(path) && has_body(method) {
        statuses.extend([
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::BAD_REQUEST,
            StatusCode::REQUEST_TIMEOUT,
        ]);
    }
    if has_parameters {
        statuses.push(StatusCode::BAD_REQUEST);
    }
    statuses
}

/// Every request, start to finish.
pub(super) async fn guard<E: Endpoint>(
    endpoint: Arc<E>,
    mut req: Request,
    edge: Arc<EdgeSettings>,
    metrics: Arc<Metrics>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // One span per request, debug like the line that ends it: disabled, it costs nothing.
    let trace = Trace::of(&req);
    let span = tracing::debug_span!(
        "request",
        %method,
        route = tracing::field::Empty,
        status = tracing::field::Empty,
        request_id = %trace.span_id,
        trace_id = %trace.trace_id,
    );
    let v1 = is_v1(&path);
    if path == AUTH_PATH {
        // The gateway's question is answered alike whatever the method (SPEC section 9).
        req.set_method(Method::GET);
    }
    let carrier = edge::carrier(&req, &edge);
    let work = async {
        match admit(&mut req, &edge, &path).await {
            Err(refused) => refused.refusal().into_response(),
            Ok(()) => respond(endpoint.as_ref(), req).await,
        }
    };
    // Only a span that is on wraps the work: a wrapper costs every request even when off.
    let mut response = if span.is_disabled() {
        work.await
    } else {
        work.instrument(span.clone()).await
    };
    if response.data::<SessionRefused>().is_some()
        && carrier == Carrier::Cookie
        && let Ok(clear) = HeaderValue::try_from(edge::clear_cookie(&edge.cookie))
    {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    if v1 {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(traceparent) = trace.header() {
        response.headers_mut().insert(TRACEPARENT, traceparent);
    }
    let route = route(&response);
    metrics.observe_request(
        route,
        method_label(&method),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    // Per-request lines are debug: at the hot path's rates they would cost more than the
    // request; the latency histogram counts every request, and failures log where they occur.
    span.record("route", route);
    span.record("status", response.status().as_u16());
    span.in_scope(|| {
        tracing::debug!(
            path,
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    });
    Ok(response)
}

/// R12, then the body bound, where `statuses` says they apply.
async fn admit(req: &mut Request, edge: &EdgeSettings, path: &str) -> Result<(), GuardRefusal> {
    if !is_guarded(path) {
        return Ok(());
    }
    if edge::is_refused_cross_site(req, edge) {
        return Err(GuardRefusal::CrossSite);
    }
    if has_body(req.method()) {
        bound_body(req).await?;
    }
    Ok(())
}

/// Reads the body into memory, refusing more than `MAX_BODY_BYTES` whether or not a
/// `Content-Length` announced it.
async fn bound_body(req: &mut Request) -> Result<(), GuardRefusal> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(GuardRefusal::TooLarge);
    }
    let bytes = req
        .take_body()
        .into_bytes_limit(MAX_BODY_BYTES)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => GuardRefusal::TooLarge,
            poem::error::ReadBodyError::Io(error)
                if error.kind() == std::io::ErrorKind::TimedOut =>
            {
                GuardRefusal::Late
            }
            _ => GuardRefusal::Unreadable,
        })?;
    req.set_body(bytes);
    Ok(())
}

/// The endpoint's answer. A handler's refusal arrives as an error built from its response
/// and is kept; poem's own errors (unknown route, wrong method, a parameter of the wrong
/// form) become problems whose detail never echoes client input.
async fn respond<E: Endpoint>(endpoint: &E, req: Request) -> Response {
    match endpoint.call(req).await {
        Ok(output) => output.into_response(),
        Err(error) if error.is_from_response() => {
            let pattern = error.data::<PathPattern>().cloned();
            let mut response = error.into_response();
            if let Some(pattern) = pattern {
                response.set_data(pattern);
            }
            response
        }
        Err(error) => {
            let pattern = error.data::<PathPattern>().cloned();
            let mut response = Refusal::for_status(error.status()).into_response();
            if let Some(pattern) = pattern {
                response.set_data(pattern);
            }
            response
        }
    }
}

/// The method as a metric label: one of a fixed set, never client input.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The matched path template, or `unmatched`: ids and usernames never become a metric's
/// label value or a span's route.
fn route(response: &Response) -> &str {
    response
        .data::<PathPattern>()
        .map(|pattern| pattern.0.as_ref())
        .filter(|pattern| !pattern.is_empty())
        .unwrap_or("unmatched")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_come_from_a_fixed_set() {
        for (method, label) in [
            (Method::GET, "GET"),
            (Method::DELETE, "DELETE"),
            (Method::from_bytes(b"ZZ000").unwrap(), "other"),
            (Method::from_bytes(b"PROPFIND").unwrap(), "other"),
        ] {
            assert_eq!(method_label(&method), label);
        }
    }
}
