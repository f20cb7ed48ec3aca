//! Operations: liveness, readiness and the Prometheus metrics.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use super::context::Context;

#[derive(Tags)]
enum Tag {
    /// Liveness, readiness and metrics for operators.
    Operations,
}

/// Liveness or readiness.
#[derive(Object, Debug)]
pub struct Health {
    /// `ok`, or `unavailable` when the database cannot be reached.
    pub status: String,
}

/// Up.
#[derive(ApiResponse)]
pub(crate) enum Live {
    /// The process serves requests.
    #[oai(status = 200)]
    Ok(Json<Health>),
}

/// Ready or not.
#[derive(ApiResponse)]
pub(crate) enum Ready {
    /// The database answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The database cannot be reached.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

/// Prometheus text.
#[derive(ApiResponse)]
pub(crate) enum MetricsAnswer {
    /// The metrics, in Prometheus text format 0.0.4.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

fn health(status: &str) -> Json<Health> {
    Json(Health {
        status: status.into(),
    })
}

/// Health and metrics.
#[derive(Debug)]
pub struct HealthApi;

#[OpenApi]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process serves requests.
    #[oai(
        path = "/health/live",
        method = "get",
        tag = "Tag::Operations",
        operation_id = "live"
    )]
    async fn live(&self) -> Live {
        Live::Ok(health("ok"))
    }

    /// Readiness
    ///
    /// 200 while the database answers; 503 while it does not.
    #[oai(
        path = "/health/ready",
        method = "get",
        tag = "Tag::Operations",
        operation_id = "ready"
    )]
    async fn ready(&self, ctx: Data<&Arc<Context>>) -> Ready {
        if ctx.readiness.ready().await {
            Ready::Ok(health("ok"))
        } else {
            Ready::Unavailable(health("unavailable"))
        }
    }

    /// Metrics
    ///
    /// Prometheus text exposition: logins by result, lockouts, sessions started by kind and
    /// ended by cause, rows purged, requests refused by a per-address limit or shed, and
    /// request latency by route.
    #[oai(
        path = "/metrics",
        method = "get",
        tag = "Tag::Operations",
        operation_id = "metrics"
    )]
    async fn metrics(&self, ctx: Data<&Arc<Context>>) -> MetricsAnswer {
        MetricsAnswer::Ok(PlainText(ctx.metrics.render()))
    }
}
