//! Where the rules report what happened, for the operators' metrics.

use crate::audit::AuditEvent;
use crate::model::{EndCause, LimitedAction, LoginResult, PurgeReport};
use crate::value::SessionKind;

/// Implementations MUST be cheap and MUST NOT fail.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Events: Send + Sync {
    fn login(&self, result: LoginResult);
    /// A lock started by a failed attempt that stands (R9).
    fn lockout_started(&self);
    fn session_started(&self, kind: SessionKind);
    fn sessions_ended(&self, cause: EndCause, count: u64);
    fn purged(&self, report: PurgeReport);
    /// A request refused by a per-address limit (R14).
    fn rate_limited(&self, action: LimitedAction);
    /// A login or password change refused because hashing was saturated (R15).
    fn shed(&self);
    /// An audit record committed (R19).
    fn audited(&self, event: AuditEvent);
}

/// An `Events` that records nothing, for embedders without metrics and for the command line.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEvents;

impl Events for NoEvents {
    fn login(&self, _: LoginResult) {}
    fn lockout_started(&self) {}
    fn session_started(&self, _: SessionKind) {}
    fn sessions_ended(&self, _: EndCause, _: u64) {}
    fn purged(&self, _: PurgeReport) {}
    fn rate_limited(&self, _: LimitedAction) {}
    fn shed(&self) {}
    fn audited(&self, _: AuditEvent) {}
}
