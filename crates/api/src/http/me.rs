//! Self-service (`/v1/me`): a logged-in user sees and ends their own sessions (OWASP ASVS 5.0
//! chapter 7).

use std::sync::Arc;

use poem::Request;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use time::OffsetDateTime;
use websessions_domain::SessionId;

use super::context::Context;
use super::problem::{Refusal, Refused, statuses};
use super::security::RequiredSession;
use super::session::Kind;

#[derive(Tags)]
enum Tag {
    /// A logged-in user's own sessions.
    Me,
}

/// One of the caller's own sessions.
#[derive(Object, Debug)]
pub struct MySession {
    pub id: i64,
    pub kind: Kind,
    pub ip_address: String,
    pub created_at: OffsetDateTime,
    pub last_activity_at: OffsetDateTime,
    /// Whether this is the session the request came with.
    pub current: bool,
}

/// The caller's valid sessions, by id.
#[derive(Object, Debug)]
pub struct MySessions {
    pub items: Vec<MySession>,
}

#[derive(ApiResponse)]
pub(crate) enum MySessionsAnswer {
    /// The caller's valid sessions.
    #[oai(status = 200)]
    Ok(Json<MySessions>),
}

#[derive(ApiResponse)]
pub(crate) enum Ended {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

statuses! {
    /// Listing one's own sessions.
    ListStatuses = [UNAUTHORIZED, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE];
    /// Ending one of one's own sessions by id.
    EndOneStatuses = [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, INTERNAL_SERVER_ERROR,
        SERVICE_UNAVAILABLE];
    /// Ending all one's other sessions.
    EndOthersStatuses = [UNAUTHORIZED, FORBIDDEN, INTERNAL_SERVER_ERROR, SERVICE_UNAVAILABLE];
}

/// A session id from a path: one that can name no session is simply not found.
pub(crate) fn session_id(id: i64) -> Result<SessionId, Refusal> {
    SessionId::new(id).ok_or_else(|| Refusal::not_found("no such session"))
}

/// Self-service endpoints.
#[derive(Debug)]
pub struct MeApi {
    pub ctx: Arc<Context>,
}

#[OpenApi]
impl MeApi {
    /// List my sessions
    ///
    /// The logged-in user's valid sessions, marking the one this request came with.
    #[oai(
        path = "/v1/me/sessions",
        method = "get",
        tag = "Tag::Me",
        operation_id = "listMySessions"
    )]
    async fn my_sessions(
        &self,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<MySessionsAnswer, Refused<ListStatuses>> {
        let me = self.ctx.me(req).await?;
        let items = self
            .ctx
            .me
            .my_sessions(&me)
            .await?
            .into_iter()
            .map(|s| MySession {
                id: s.id.get(),
                kind: s.kind.into(),
                ip_address: s.ip_address.to_string(),
                created_at: s.created_at,
                last_activity_at: s.last_activity_at,
                current: s.id == me.session.id,
            })
            .collect();
        Ok(MySessionsAnswer::Ok(Json(MySessions { items })))
    }

    /// End one of my sessions
    ///
    /// Ends one of the logged-in user's own sessions. Someone else's id answers 404, exactly
    /// like an unknown one.
    #[oai(
        path = "/v1/me/sessions/:id",
        method = "delete",
        tag = "Tag::Me",
        operation_id = "endMySession"
    )]
    async fn end_my_session(
        &self,
        req: &Request,
        id: Path<i64>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<EndOneStatuses>> {
        let me = self.ctx.me(req).await?;
        let id = session_id(id.0)?;
        self.ctx.me.end_my_session(&me, id).await?;
        Ok(Ended::NoContent)
    }

    /// End all my other sessions
    ///
    /// Ends every session of the logged-in user except the one this request came with.
    #[oai(
        path = "/v1/me/sessions",
        method = "delete",
        tag = "Tag::Me",
        operation_id = "endMyOtherSessions"
    )]
    async fn end_my_other_sessions(
        &self,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<EndOthersStatuses>> {
        let me = self.ctx.me(req).await?;
        self.ctx.me.end_my_other_sessions(&me).await?;
        Ok(Ended::NoContent)
    }
}
