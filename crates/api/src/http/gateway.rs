//! The gateway's question (SPEC section 9): who is this request's caller? A reverse proxy
//! (nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`) asks `GET /v1/auth` on
//! every request it protects and passes the identity headers on to its application. It touches
//! the session like `GET /v1/session` (R2, R3) and changes nothing else; the guard answers every
//! method like GET, reads no body, and exempts it from R12 and the body bound.

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::{ApiResponse, OpenApi, Tags};

use websessions_domain::{AccessError, LoginRequired};

use super::context::Context;
use super::problem::{Refused, refusals};
use super::security::RequiredSession;

#[derive(Tags)]
enum Tag {
    /// Forward authentication for a reverse proxy.
    Gateway,
}

/// A logged-in caller.
#[derive(ApiResponse)]
pub(crate) enum Authenticated {
    /// The caller is a logged-in user; who, in the headers.
    #[oai(status = 204)]
    NoContent(
        /// The username.
        #[oai(header = "X-Websessions-User")]
        String,
        /// The session's id.
        #[oai(header = "X-Websessions-Session")]
        i64,
        /// Whether the user is a superuser.
        #[oai(header = "X-Websessions-Superuser")]
        bool,
    ),
}

refusals! {
    /// Asking who the caller is.
    AuthRefusal = LoginRequired | AccessError;
}

/// The gateway's endpoint.
#[derive(Debug)]
pub struct GatewayApi;

#[OpenApi]
impl GatewayApi {
    /// Who is the caller?
    ///
    /// For a gateway's forward authentication: 204 with the caller's identity in
    /// `X-Websessions-User`, `X-Websessions-Session` and `X-Websessions-Superuser` when the
    /// request presents a valid session of a logged-in user (recognition counts as activity);
    /// 401 otherwise (no session, or an anonymous one). With `superuser=true`, a logged-in user
    /// who is not a superuser gets 403. Every other method is answered exactly like GET; no
    /// body is read.
    #[oai(
        path = "/v1/auth",
        method = "get",
        tag = "Tag::Gateway",
        operation_id = "auth"
    )]
    async fn auth(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        /// Only superusers pass.
        superuser: Query<Option<bool>>,
        _auth: RequiredSession,
    ) -> Result<Authenticated, Refused<AuthRefusal>> {
        let me = ctx.me(req).await?;
        if superuser.0 == Some(true) && !me.user.superuser {
            return Err(AccessError::NotSuperuser.into());
        }
        Ok(Authenticated::NoContent(
            me.user.username.to_string(),
            me.session.id.get(),
            me.user.superuser,
        ))
    }
}
