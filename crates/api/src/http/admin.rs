//! Administration of sessions (`/v1/admin/sessions`), for superusers: list, count, revoke,
//! purge. Each operation needs a superuser's session: 401 without a logged-in one, 403 for
//! other users. User accounts are `users`'.

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
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
}
