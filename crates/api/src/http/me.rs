//! Self-service (`/v1/me`): a logged-in user sees and ends their own sessions (OWASP ASVS 5.0
//! chapter 7).

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};
use time::OffsetDateTime;
use websessions_domain::{EndSessionError, InfraError, LoginRequired};

use super::context::Context;
use super::problem::{Refused, refusals};
use super::security::RequiredSession;
use super::wire::{Ended, Kind, session_id};

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

refusals! {
    /// Reading or acting on all of one's own sessions.
    MineRefusal = LoginRequired | InfraError;
    /// Ending one of one's own sessions by id.
    EndMineRefusal = LoginRequired | EndSessionError;
}

/// Self-service endpoints.
#[derive(Debug)]
pub struct MeApi;

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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<MySessionsAnswer, Refused<MineRefusal>> {
        let me = ctx.me(req).await?;
        let items = ctx
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        id: Path<i64>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<EndMineRefusal>> {
        let me = ctx.me(req).await?;
        let id = session_id(id.0)?;
        ctx.me.end_my_session(&me, id).await?;
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
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<MineRefusal>> {
        let me = ctx.me(req).await?;
        ctx.me.end_my_other_sessions(&me).await?;
        Ok(Ended::NoContent)
    }
}
