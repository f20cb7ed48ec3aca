//! What every request passes, as named steps: R12's refusal of cross-site writes and the
//! 16 KiB body bound (both before any handler, in R5f's order), the handler, the translation
//! of poem's own errors into problems, `Cache-Control: no-store` on `/v1`, and the latency
//! metric and debug log line. `GET /v1/auth`, the gateway's question, changes nothing but the
//! touch and reads no body: it is exempt from R12 and the body bound (SPEC section 9).

use std::sync::Arc;
use std::time::Instant;

use poem::http::{HeaderValue, Method, header};
use poem::{Endpoint, IntoResponse, PathPattern, Request, Response};

use super::edge::{self, EdgeSettings};
use super::problem::Refusal;
use crate::metrics::Metrics;

/// Largest request body accepted on `/v1` (R13's 16 KiB bounds every body).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The gateway's endpoint (SPEC section 9).
pub const AUTH_PATH: &str = "/v1/auth";

fn is_v1(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/")
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
    let v1 = is_v1(&path);
    if path == AUTH_PATH {
        // The gateway's question is answered alike whatever the method (SPEC section 9).
        req.set_method(Method::GET);
    }
    let mut response = match admit(&mut req, &edge, v1 && path != AUTH_PATH).await {
        Err(refusal) => refusal.into_response(),
        Ok(()) => respond(endpoint.as_ref(), req).await,
    };
    if v1 {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    record(&metrics, &response, &method, started);
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

/// R12, then the body bound, for a `/v1` request that `checked` says they apply to.
async fn admit(req: &mut Request, edge: &EdgeSettings, checked: bool) -> Result<(), Refusal> {
    if !checked {
        return Ok(());
    }
    if edge::is_refused_cross_site(req, edge) {
        return Err(Refusal::forbidden(
            "cross-site request with the session cookie refused",
        ));
    }
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        bound_body(req).await?;
    }
    Ok(())
}

/// Reads the body into memory, refusing more than `MAX_BODY_BYTES` whether or not a
/// `Content-Length` announced it.
async fn bound_body(req: &mut Request) -> Result<(), Refusal> {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(Refusal::too_large());
    }
    let bytes = req
        .take_body()
        .into_bytes_limit(MAX_BODY_BYTES)
        .await
        .map_err(|error| match error {
            poem::error::ReadBodyError::PayloadTooLarge => Refusal::too_large(),
            _ => Refusal::bad_request("the request body could not be read"),
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

/// One observation of the latency histogram. The route is the matched path template, or
/// `unmatched`: ids and usernames never become label values.
fn record(metrics: &Metrics, response: &Response, method: &Method, started: Instant) {
    let route = response
        .data::<PathPattern>()
        .map(|pattern| pattern.0.as_ref())
        .filter(|pattern| !pattern.is_empty())
        .unwrap_or("unmatched");
    metrics.observe_request(
        route,
        method_label(method),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
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
