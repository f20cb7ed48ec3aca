//! Prometheus metrics: the domain's `Events` port, plus request latency by route. Exposed as
//! text at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use websessions_domain::audit::AuditEvent;
use websessions_domain::ports::Events;
use websessions_domain::{EndCause, LimitedAction, LoginResult, PurgeReport, SessionKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

/// Every value comes from a fixed set: the route templates, a fixed set of methods, and the
/// statuses this server answers with (SPEC section 4: no label value from client input).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

type Latency = Family<RequestLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// Every metric of the service, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    logins: Family<ResultLabel, Counter>,
    lockouts: Counter,
    started: Family<KindLabel, Counter>,
    ended: Family<CauseLabel, Counter>,
    purged: Counter,
    rate_limited: Family<ActionLabel, Counter>,
    shed: Counter,
    audited: Family<EventLabel, Counter>,
    database_wait: Histogram,
    latency: Latency,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let logins = Family::<ResultLabel, Counter>::default();
        let lockouts = Counter::default();
        let started = Family::<KindLabel, Counter>::default();
        let ended = Family::<CauseLabel, Counter>::default();
        let purged = Counter::default();
        let rate_limited = Family::<ActionLabel, Counter>::default();
        let shed = Counter::default();
        let audited = Family::<EventLabel, Counter>::default();
        // 25 ms (one backoff) .. ~51 s, past the longest wait (60 s) in the +Inf bucket.
        let database_wait = Histogram::new(exponential_buckets(0.025, 2.0, 12));
        let latency: Latency = Family::new_with_constructor(latency_histogram);
        // Counter names get `_total` appended when encoded.
        registry.register(
            "websessions_logins",
            "Login attempts by result: success, bad_credentials, locked",
            logins.clone(),
        );
        registry.register(
            "websessions_lockouts",
            "Lockouts started by failed logins",
            lockouts.clone(),
        );
        registry.register(
            "websessions_sessions_started",
            "Sessions created, by kind: browser, api",
            started.clone(),
        );
        registry.register(
            "websessions_sessions_ended",
            "Sessions ended, by cause: logout, expired, revoked, replaced, password_change",
            ended.clone(),
        );
        registry.register(
            "websessions_purged_rows",
            "Rows deleted by maintenance (sessions, lockouts and audit records past retention)",
            purged.clone(),
        );
        registry.register(
            "websessions_rate_limited",
            "Requests refused by a per-address limit, by action: session_start, login",
            rate_limited.clone(),
        );
        registry.register(
            "websessions_shed",
            "Logins and password changes refused because password hashing was saturated",
            shed.clone(),
        );
        registry.register(
            "websessions_audit_records",
            "Audit records committed (R19), by event",
            audited.clone(),
        );
        registry.register(
            "websessions_database_wait_seconds",
            "How long requests waited for an unreachable database (each wait, whatever its end)",
            database_wait.clone(),
        );
        registry.register(
            "websessions_http_request_duration_seconds",
            "HTTP request latency by route template, method and status",
            latency.clone(),
        );
        Self {
            registry,
            logins,
            lockouts,
            started,
            ended,
            purged,
            rate_limited,
            shed,
            audited,
            database_wait,
            latency,
        }
    }

    /// Records how long one request waited for the database.
    pub fn observe_database_wait(&self, seconds: f64) {
        self.database_wait.observe(seconds);
    }

    /// Records one request's latency.
    pub fn observe_request(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        self.latency
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method,
                status,
            })
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

impl Events for Metrics {
    fn login(&self, result: LoginResult) {
        self.logins
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
    }

    fn lockout_started(&self) {
        self.lockouts.inc();
    }

    fn session_started(&self, kind: SessionKind) {
        self.started
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
    }

    fn sessions_ended(&self, cause: EndCause, count: u64) {
        self.ended
            .get_or_create(&CauseLabel {
                cause: cause.as_str(),
            })
            .inc_by(count);
    }

    fn purged(&self, report: PurgeReport) {
        self.purged.inc_by(report.total());
    }

    fn rate_limited(&self, action: LimitedAction) {
        self.rate_limited
            .get_or_create(&ActionLabel {
                action: action.as_str(),
            })
            .inc();
    }

    fn shed(&self) {
        self.shed.inc();
    }

    fn audited(&self, event: AuditEvent) {
        self.audited
            .get_or_create(&EventLabel {
                event: event.as_str(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_the_specified_series() {
        let metrics = Metrics::new();
        metrics.login(LoginResult::Success);
        metrics.login(LoginResult::Success);
        metrics.login(LoginResult::Locked);
        metrics.lockout_started();
        metrics.session_started(SessionKind::Api);
        metrics.sessions_ended(EndCause::Replaced, 3);
        metrics.purged(PurgeReport {
            expired_sessions: 1,
            expired_lockouts: 2,
            orphan_failures: 4,
            audit_records: 8,
        });
        metrics.audited(AuditEvent::LoginFailed);
        metrics.rate_limited(LimitedAction::Login);
        metrics.shed();
        metrics.observe_request("/v1/session", "GET", 200, 0.001);
        metrics.observe_database_wait(2.0);
        let text = metrics.render();
        for line in [
            "websessions_logins_total{result=\"success\"} 2",
            "websessions_logins_total{result=\"locked\"} 1",
            "websessions_lockouts_total 1",
            "websessions_sessions_started_total{kind=\"api\"} 1",
            "websessions_sessions_ended_total{cause=\"replaced\"} 3",
            "websessions_purged_rows_total 15",
            "websessions_audit_records_total{event=\"login_failed\"} 1",
            "websessions_rate_limited_total{action=\"login\"} 1",
            "websessions_shed_total 1",
            "websessions_database_wait_seconds_count 1",
            "websessions_database_wait_seconds_bucket{le=\"3.2\"} 1",
            "websessions_database_wait_seconds_bucket{le=\"1.6\"} 0",
            "websessions_http_request_duration_seconds_count{route=\"/v1/session\",method=\"GET\",status=\"200\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
