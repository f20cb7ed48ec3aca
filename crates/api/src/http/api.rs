//! The session holder's endpoints (SPEC §4) and the health checks.

use std::sync::Arc;

use async_trait::async_trait;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::payload::PlainText;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme, Tags, auth};
use websessions_domain::{
    Issued, LoginAttempt, Password, Presented, SessionKind, SessionPolicy, SessionRecord,
    SessionService, SessionUser,
};

use crate::metrics::Metrics;

use super::edge::{Carrier, EdgeSettings, clear_cookie, presented, set_cookie};
use super::model::{Health, Kind, LoginRequest, PasswordChange, SessionView};
use super::problem::ApiError;

/// Whether the service can reach its database.
#[async_trait]
pub trait Readiness: Send + Sync {
    async fn ready(&self) -> bool;
}

#[derive(Tags)]
pub(crate) enum Tag {
    /// Starting, recognising, logging into and out of a session.
    Session,
    /// Liveness, readiness and metrics for operators.
    Operations,
}

/// The session cookie a browser holds (its name is the default; operators may change it).
#[derive(SecurityScheme)]
#[oai(ty = "api_key", key_name = "__Host-websession", key_in = "cookie")]
pub(crate) struct SessionCookie(#[allow(dead_code)] auth::ApiKey);

/// `Authorization: Bearer <id>.<token>`, as returned to API clients at login.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub(crate) struct SessionBearer(#[allow(dead_code)] auth::Bearer);

/// Documents the two ways to present a session. Every endpoint also answers without one
/// (with 401 where a session is needed), so the credential is read by the handlers and this
/// parameter never refuses a request.
#[derive(SecurityScheme)]
#[allow(dead_code)]
pub(crate) enum SessionAuth {
    Cookie(SessionCookie),
    Bearer(SessionBearer),
    #[oai(fallback)]
    None,
}

/// A session answer, with the cookie that hands a browser its new credential.
#[derive(ApiResponse)]
pub(crate) enum SessionAnswer {
    /// The session.
    #[oai(status = 200)]
    Ok(
        Json<SessionView>,
        /// The browser's new session cookie, after a login or password change.
        #[oai(header = "Set-Cookie")]
        Option<String>,
    ),
    /// A new anonymous browser session; its credential is in the cookie.
    #[oai(status = 201)]
    Created(
        Json<SessionView>,
        /// The session cookie.
        #[oai(header = "Set-Cookie")]
        String,
    ),
}

/// An empty answer.
#[derive(ApiResponse)]
pub(crate) enum Done {
    /// Done; the session cookie is cleared.
    #[oai(status = 204)]
    NoContent(
        /// Clears the session cookie.
        #[oai(header = "Set-Cookie")]
        String,
    ),
}

/// The session's client state.
#[derive(ApiResponse)]
pub(crate) enum DataAnswer {
    /// The JSON object.
    #[oai(status = 200)]
    Ok(Json<serde_json::Value>),
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

/// Liveness or readiness.
#[derive(ApiResponse)]
pub(crate) enum HealthAnswer {
    /// Up.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// The database cannot be reached.
    #[oai(status = 503)]
    Unavailable(Json<Health>),
}

pub(crate) type Answer<T> = Result<T, ApiError>;

/// What every endpoint works with.
pub struct Context {
    pub service: Arc<dyn SessionService>,
    pub readiness: Arc<dyn Readiness>,
    pub edge: Arc<EdgeSettings>,
    pub policy: SessionPolicy,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("edge", &self.edge)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn presented(&self, req: &Request) -> (Presented, Carrier) {
        presented(req, &self.edge)
    }

    /// 401, clearing the cookie when the invalid credential came in one.
    pub(crate) fn no_session(&self, carrier: Carrier) -> ApiError {
        ApiError::no_session((carrier == Carrier::Cookie).then(|| clear_cookie(&self.edge.cookie)))
    }

    /// The presented valid session of a logged-in user (401 otherwise).
    pub(crate) async fn logged_in(&self, req: &Request) -> Answer<(SessionRecord, SessionUser)> {
        let (presented, carrier) = self.presented(req);
        let record = self
            .service
            .recognise(&presented)
            .await?
            .ok_or_else(|| self.no_session(carrier))?;
        let user = record
            .user
            .clone()
            .ok_or_else(|| ApiError::unauthorized("a logged-in session is needed", None))?;
        Ok((record, user))
    }

    /// The presented valid session of a superuser (401 without one, 403 for other users).
    pub(crate) async fn superuser(&self, req: &Request) -> Answer<SessionUser> {
        let (_, user) = self.logged_in(req).await?;
        if user.superuser {
            Ok(user)
        } else {
            Err(ApiError::forbidden("a superuser is needed"))
        }
    }

    fn view(&self, issued: &Issued, kind: SessionKind) -> SessionAnswer {
        let mut view = SessionView::new(&issued.session, &self.policy);
        let cookie = match (&issued.credential, kind) {
            (Some(credential), SessionKind::Browser) => {
                Some(set_cookie(&self.edge.cookie, credential))
            }
            (Some(credential), SessionKind::Api) => {
                view.credential = Some(credential.expose());
                None
            }
            (None, _) => None,
        };
        SessionAnswer::Ok(Json(view), cookie)
    }
}

/// The session holder's API, health and metrics.
#[derive(Debug)]
pub struct SessionApi {
    pub ctx: Arc<Context>,
}

#[OpenApi]
impl SessionApi {
    /// Start a session
    ///
    /// Returns the presented session when it is valid (200); otherwise creates an anonymous
    /// browser session bound to the client's address and sets its cookie (201).
    #[oai(path = "/v1/session", method = "post", tag = "Tag::Session")]
    async fn start(&self, req: &Request, _auth: SessionAuth) -> Answer<SessionAnswer> {
        let (presented, _) = self.ctx.presented(req);
        let issued = self.ctx.service.start(&presented).await?;
        let view = Json(SessionView::new(&issued.session, &self.ctx.policy));
        Ok(match &issued.credential {
            Some(credential) => {
                SessionAnswer::Created(view, set_cookie(&self.ctx.edge.cookie, credential))
            }
            None => SessionAnswer::Ok(view, None),
        })
    }

    /// Recognise the session
    ///
    /// The presented session, when valid; recognition counts as activity. This is the call
    /// a gateway makes on every request. It never creates a session.
    #[oai(path = "/v1/session", method = "get", tag = "Tag::Session")]
    async fn current(&self, req: &Request, _auth: SessionAuth) -> Answer<SessionAnswer> {
        let (presented, carrier) = self.ctx.presented(req);
        match self.ctx.service.recognise(&presented).await? {
            Some(record) => Ok(SessionAnswer::Ok(
                Json(SessionView::new(&record, &self.ctx.policy)),
                None,
            )),
            None => Err(self.ctx.no_session(carrier)),
        }
    }

    /// Log in
    ///
    /// Binds the user to the presented session (when it is anonymous or already theirs and
    /// of the same kind) or to a new one, and rotates its token: the previous credential
    /// stops working. A browser gets the new credential in the cookie, an API client as
    /// `credential` in the body. Unknown user, wrong password and disabled account get the
    /// same 401. After repeated failures the username is locked (423 with Retry-After), and
    /// then even the right password is refused until the lock ends.
    #[oai(path = "/v1/session/login", method = "post", tag = "Tag::Session")]
    async fn login(
        &self,
        req: &Request,
        body: Json<LoginRequest>,
        _auth: SessionAuth,
    ) -> Answer<SessionAnswer> {
        let (presented, _) = self.ctx.presented(req);
        let LoginRequest {
            username,
            password,
            client,
        } = body.0;
        let kind = client.unwrap_or(Kind::Browser).into();
        let attempt = LoginAttempt {
            username,
            password: Password::new(password),
            kind,
        };
        let issued = self.ctx.service.login(&presented, attempt).await?;
        Ok(self.ctx.view(&issued, kind))
    }

    /// Log out
    ///
    /// Ends the presented session for good and clears the cookie. Answers 204 also when no
    /// valid session was presented.
    #[oai(path = "/v1/session/logout", method = "post", tag = "Tag::Session")]
    async fn logout(&self, req: &Request, _auth: SessionAuth) -> Answer<Done> {
        let (presented, _) = self.ctx.presented(req);
        self.ctx.service.logout(&presented).await?;
        Ok(Done::NoContent(clear_cookie(&self.ctx.edge.cookie)))
    }

    /// Read the client state
    ///
    /// The session's JSON object (empty until set). It survives login and is wiped by
    /// logout.
    #[oai(path = "/v1/session/data", method = "get", tag = "Tag::Session")]
    async fn data(&self, req: &Request, _auth: SessionAuth) -> Answer<DataAnswer> {
        let (presented, carrier) = self.ctx.presented(req);
        match self.ctx.service.data(&presented).await? {
            Some(data) => Ok(DataAnswer::Ok(Json(serde_json::Value::Object(
                data.into_object(),
            )))),
            None => Err(self.ctx.no_session(carrier)),
        }
    }

    /// Replace the client state
    ///
    /// Stores a JSON object of at most 16 KiB (the request body) as the session's state and
    /// answers with it.
    #[oai(path = "/v1/session/data", method = "put", tag = "Tag::Session")]
    async fn set_data(
        &self,
        req: &Request,
        body: Json<serde_json::Value>,
        _auth: SessionAuth,
    ) -> Answer<DataAnswer> {
        let (presented, carrier) = self.ctx.presented(req);
        let serde_json::Value::Object(object) = body.0 else {
            return Err(ApiError::unprocessable(
                "session data must be a JSON object",
            ));
        };
        match self.ctx.service.set_data(&presented, object).await {
            Ok(data) => Ok(DataAnswer::Ok(Json(serde_json::Value::Object(
                data.into_object(),
            )))),
            Err(websessions_domain::SetDataError::NoSession) => Err(self.ctx.no_session(carrier)),
            Err(other) => Err(other.into()),
        }
    }

    /// Change one's own password
    ///
    /// Needs the current password (a wrong one answers 403 and counts as a failed login).
    /// Rotates this session's credential (a browser gets a new cookie, an API client the new
    /// `credential`) and ends every other session of the user.
    #[oai(path = "/v1/session/password", method = "put", tag = "Tag::Session")]
    async fn change_password(
        &self,
        req: &Request,
        body: Json<PasswordChange>,
        _auth: SessionAuth,
    ) -> Answer<SessionAnswer> {
        let (presented, _) = self.ctx.presented(req);
        let PasswordChange {
            current_password,
            new_password,
        } = body.0;
        let issued = self
            .ctx
            .service
            .change_password(
                &presented,
                Password::new(current_password),
                Password::new(new_password),
            )
            .await?;
        Ok(self.ctx.view(&issued, issued.session.kind))
    }

    /// Liveness
    ///
    /// 200 while the process serves requests.
    #[oai(path = "/health/live", method = "get", tag = "Tag::Operations")]
    async fn live(&self) -> HealthAnswer {
        HealthAnswer::Ok(Json(Health {
            status: "ok".into(),
        }))
    }

    /// Metrics
    ///
    /// Prometheus text exposition: logins by result, lockouts, sessions started by kind and
    /// ended by cause, rows purged, and request latency by route.
    #[oai(path = "/metrics", method = "get", tag = "Tag::Operations")]
    async fn metrics(&self) -> MetricsAnswer {
        MetricsAnswer::Ok(PlainText(self.ctx.metrics.render()))
    }

    /// Readiness
    ///
    /// 200 while the database answers; 503 while it does not.
    #[oai(path = "/health/ready", method = "get", tag = "Tag::Operations")]
    async fn ready(&self) -> HealthAnswer {
        if self.ctx.readiness.ready().await {
            HealthAnswer::Ok(Json(Health {
                status: "ok".into(),
            }))
        } else {
            HealthAnswer::Unavailable(Json(Health {
                status: "unavailable".into(),
            }))
        }
    }
}
