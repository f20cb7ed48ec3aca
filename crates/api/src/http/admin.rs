//! Administration of sessions (`/v1/admin/sessions`), for superusers: list, count, revoke,
//! purge; and the audit trail (`/v1/admin/audit`, R19). Each operation needs a superuser's
//! session: 401 without a logged-in one, 403 for other users. User accounts are `users`'.

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use time::OffsetDateTime;
use websessions_domain::audit::{AuditEvent, AuditFilter, AuditRecord, Detail};
use websessions_domain::{AccessError, EndSessionError, InfraError, SessionFilter, SessionId};

use super::context::Context;
use super::problem::{Refused, refusals};
use super::security::RequiredSession;
use super::wire::{AdminTag, Ended, SessionView, session_id};

/// A page of valid sessions, by id.
#[derive(Object, Debug)]
pub struct SessionPage {
    pub items: Vec<SessionView>,
    /// Pass as `after` for the next page; null on the last page.
    #[oai(nullable)]
    pub next: Option<i64>,
}

/// How many sessions.
#[derive(Object, Debug)]
pub struct Count {
    pub count: u64,
}

/// How many rows maintenance deleted.
#[derive(Object, Debug)]
pub struct Deleted {
    pub deleted: u64,
}

/// An audit record's event (R19).
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum EventName {
    LoginSucceeded,
    LoginPending,
    LoginFailed,
    LockStarted,
    Unlocked,
    Logout,
    SessionsEnded,
    PasswordChanged,
    PasswordReset,
    UserCreated,
    UserDeleted,
    UserDisabled,
    UserEnabled,
    SecondFactorEnrolled,
    SecondFactorRemoved,
    RecoveryCodesGenerated,
    RecoveryCodeUsed,
    FactorsReset,
}

impl EventName {
    fn event(self) -> AuditEvent {
        AuditEvent::ALL[self as usize]
    }

    fn of(event: AuditEvent) -> Self {
        Self::ALL[AuditEvent::ALL
            .iter()
            .position(|e| *e == event)
            .unwrap_or_default()]
    }

    const ALL: [Self; 18] = [
        Self::LoginSucceeded,
        Self::LoginPending,
        Self::LoginFailed,
        Self::LockStarted,
        Self::Unlocked,
        Self::Logout,
        Self::SessionsEnded,
        Self::PasswordChanged,
        Self::PasswordReset,
        Self::UserCreated,
        Self::UserDeleted,
        Self::UserDisabled,
        Self::UserEnabled,
        Self::SecondFactorEnrolled,
        Self::SecondFactorRemoved,
        Self::RecoveryCodesGenerated,
        Self::RecoveryCodeUsed,
        Self::FactorsReset,
    ];
}

/// An audit record's details; each is present only for the events it belongs to.
#[derive(Object, Debug, Default, PartialEq, Eq)]
pub struct AuditDetails {
    /// `login_failed`: `bad_credentials`, `disabled` or `second_factor`.
    #[oai(skip_serializing_if_is_none)]
    pub reason: Option<String>,
    /// `login_failed` of a password change's current password: `password_change`.
    #[oai(skip_serializing_if_is_none)]
    pub during: Option<String>,
    /// `sessions_ended`: `logout`, `expired`, `revoked`, `replaced` or `password_change`.
    #[oai(skip_serializing_if_is_none)]
    pub cause: Option<String>,
    /// `sessions_ended`: how many sessions ended.
    #[oai(skip_serializing_if_is_none)]
    pub count: Option<u64>,
    /// `login_succeeded`: the session's kind, `browser` or `api`.
    #[oai(skip_serializing_if_is_none)]
    pub kind: Option<String>,
    /// `lock_started`: the failure count that started the lock.
    #[oai(skip_serializing_if_is_none)]
    pub failures: Option<u64>,
    /// `lock_started`: when the lock ends (RFC 3339).
    #[oai(skip_serializing_if_is_none)]
    pub until: Option<String>,
    /// `user_created`: whether the user is a superuser, `true` or `false`.
    #[oai(skip_serializing_if_is_none)]
    pub superuser: Option<String>,
}

/// A security event in the audit trail (R19). `prev_hash` and `hash` link it into the chain
/// (the README says how to check it); never a password, token, code, secret or hash of one.
#[derive(Object, Debug)]
pub struct AuditRecordView {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub event: EventName,
    /// The username concerned (as typed, for failures).
    #[oai(nullable)]
    pub username: Option<String>,
    /// Who acted: a superuser, `cli`, or the user.
    #[oai(nullable)]
    pub actor: Option<String>,
    #[oai(nullable)]
    pub session_id: Option<i64>,
    #[oai(nullable)]
    pub client_ip: Option<String>,
    /// Cut to 256 characters.
    #[oai(nullable)]
    pub user_agent: Option<String>,
    pub details: AuditDetails,
    /// The predecessor's hash, 64 hexadecimal digits.
    pub prev_hash: String,
    /// SHA-256 of `prev_hash` and the record's canonical content, 64 hexadecimal digits.
    pub hash: String,
}

impl AuditRecordView {
    fn new(record: AuditRecord) -> Self {
        let entry = record.entry;
        let mut details = AuditDetails::default();
        for (key, value) in entry.details {
            match (key.as_str(), value) {
                ("reason", Detail::Text(text)) => details.reason = Some(text),
                ("during", Detail::Text(text)) => details.during = Some(text),
                ("cause", Detail::Text(text)) => details.cause = Some(text),
                ("count", Detail::Count(count)) => details.count = Some(count),
                ("kind", Detail::Text(text)) => details.kind = Some(text),
                ("failures", Detail::Count(count)) => details.failures = Some(count),
                ("until", Detail::Text(text)) => details.until = Some(text),
                ("superuser", Detail::Text(text)) => details.superuser = Some(text),
                _ => {}
            }
        }
        Self {
            seq: record.seq,
            at: entry.at,
            event: EventName::of(entry.event),
            username: entry.username,
            actor: entry.actor,
            session_id: entry.session_id,
            client_ip: entry.client_ip,
            user_agent: entry.user_agent,
            details,
            prev_hash: record.prev_hash.hex(),
            hash: record.hash.hex(),
        }
    }
}

/// A page of audit records, by sequence number.
#[derive(Object, Debug)]
pub struct AuditRecordPage {
    pub items: Vec<AuditRecordView>,
    /// Pass as `after` for the next page; null on the last page.
    #[oai(nullable)]
    pub next: Option<u64>,
}

#[derive(ApiResponse)]
pub(crate) enum AuditAnswer {
    /// A page of audit records, oldest first.
    #[oai(status = 200)]
    Ok(Json<AuditRecordPage>),
}

#[derive(ApiResponse)]
pub(crate) enum PageAnswer {
    /// A page of valid sessions, by id.
    #[oai(status = 200)]
    Ok(Json<SessionPage>),
}

#[derive(ApiResponse)]
pub(crate) enum CountAnswer {
    /// The count.
    #[oai(status = 200)]
    Ok(Json<Count>),
}

#[derive(ApiResponse)]
pub(crate) enum PurgeAnswer {
    /// What maintenance deleted.
    #[oai(status = 200)]
    Ok(Json<Deleted>),
}

refusals! {
    /// Reading or acting on every session.
    AdminRefusal = AccessError | InfraError;
    /// Ending a session by id.
    RevokeRefusal = AccessError | EndSessionError;
}

/// The default page size of `listSessions`.
const DEFAULT_PAGE: u64 = 100;

/// Superuser endpoints.
#[derive(Debug)]
pub struct AdminApi;

#[OpenApi]
impl AdminApi {
    /// List sessions
    ///
    /// Valid sessions by id, optionally only a user's (`user` is a username; one naming no
    /// account matches nothing) or only those active since a time. Keyset paging: pass the
    /// previous page's `next` as `after`. Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions",
        method = "get",
        tag = "AdminTag::Admin",
        operation_id = "listSessions"
    )]
    // poem-openapi takes each query parameter as an argument of its own.
    #[allow(clippy::too_many_arguments)]
    async fn sessions(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        /// Only this user's sessions (a username).
        user: Query<Option<String>>,
        /// Only sessions active at or after this time (RFC 3339).
        active_since: Query<Option<OffsetDateTime>>,
        /// Page size, 1 to 500 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u64>>,
        /// Only ids greater than this: the `next` of the previous page.
        after: Query<Option<i64>>,
        _auth: RequiredSession,
    ) -> Result<PageAnswer, Refused<AdminRefusal>> {
        let by = ctx.superuser(req).await?;
        let filter = SessionFilter {
            user: user.0,
            active_since: active_since.0,
            after: after.0.and_then(SessionId::new),
            limit: limit.0.unwrap_or(DEFAULT_PAGE),
        };
        let page = ctx.admin.sessions(&by, filter).await?;
        let items = page
            .items
            .iter()
            .map(|s| SessionView::new(s, &ctx.policy))
            .collect();
        let next = page.next.map(SessionId::get);
        Ok(PageAnswer::Ok(Json(SessionPage { items, next })))
    }

    /// Count active sessions
    ///
    /// Sessions whose last activity is at or after `active_since` (R10). Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions/count",
        method = "get",
        tag = "AdminTag::Admin",
        operation_id = "countActiveSessions"
    )]
    async fn count(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        /// RFC 3339 time.
        active_since: Query<OffsetDateTime>,
        _auth: RequiredSession,
    ) -> Result<CountAnswer, Refused<AdminRefusal>> {
        let by = ctx.superuser(req).await?;
        let count = ctx.admin.count_active_since(&by, active_since.0).await?;
        Ok(CountAnswer::Ok(Json(Count { count })))
    }

    /// End a session
    ///
    /// Ends any valid session by id; 404 when there is none. Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions/:id",
        method = "delete",
        tag = "AdminTag::Admin",
        operation_id = "revokeSession"
    )]
    async fn revoke(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        id: Path<i64>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<RevokeRefusal>> {
        let by = ctx.superuser(req).await?;
        ctx.admin.revoke(&by, session_id(id.0)?).await?;
        Ok(Ended::NoContent)
    }

    /// Run maintenance
    ///
    /// Deletes expired sessions, expired lockouts and the failures of usernames without an
    /// account now, in bounded batches. Needs a superuser.
    #[oai(
        path = "/v1/admin/sessions/purge",
        method = "post",
        tag = "AdminTag::Admin",
        operation_id = "purge"
    )]
    async fn purge(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<PurgeAnswer, Refused<AdminRefusal>> {
        let by = ctx.superuser(req).await?;
        let report = ctx.admin.purge(&by).await?;
        Ok(PurgeAnswer::Ok(Json(Deleted {
            deleted: report.total(),
        })))
    }

    /// List audit records
    ///
    /// The audit trail's security events (R19) by sequence number, oldest first, optionally
    /// only a username's (as recorded: typed, for failures), only one event's, or only those
    /// in a time range. Keyset paging: pass the previous page's `next` as `after`. Needs a
    /// superuser.
    #[oai(
        path = "/v1/admin/audit",
        method = "get",
        tag = "AdminTag::Admin",
        operation_id = "listAuditRecords"
    )]
    // poem-openapi takes each query parameter as an argument of its own.
    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        /// Only records naming this username.
        user: Query<Option<String>>,
        /// Only records of this event.
        event: Query<Option<EventName>>,
        /// Only records at or after this time (RFC 3339).
        since: Query<Option<OffsetDateTime>>,
        /// Only records before this time (RFC 3339).
        until: Query<Option<OffsetDateTime>>,
        /// Page size, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u64>>,
        /// Only records after this sequence number: the `next` of the previous page.
        after: Query<Option<u64>>,
        _auth: RequiredSession,
    ) -> Result<AuditAnswer, Refused<AdminRefusal>> {
        let by = ctx.superuser(req).await?;
        let filter = AuditFilter {
            username: user.0,
            event: event.0.map(EventName::event),
            since: since.0,
            until: until.0,
            after: after.0,
            limit: limit.0.unwrap_or(DEFAULT_PAGE),
        };
        let page = ctx.admin.audit(&by, filter).await?;
        let items = page.items.into_iter().map(AuditRecordView::new).collect();
        Ok(AuditAnswer::Ok(Json(AuditRecordPage {
            items,
            next: page.next,
        })))
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;

    use super::*;

    #[test]
    fn r19_every_event_has_its_wire_name_in_the_same_place() {
        for (n, event) in AuditEvent::ALL.into_iter().enumerate() {
            let name = EventName::of(event);
            assert_eq!(name, EventName::ALL[n]);
            assert_eq!(name.event(), event);
            assert_eq!(name.to_json(), Some(serde_json::json!(event.as_str())));
        }
    }
}
