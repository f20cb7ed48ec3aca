//! The session holder's endpoints (SPEC §4) and the health checks.

use std::sync::Arc;

use async_trait::async_trait;
use poem::Request;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, SecurityScheme, Tags, auth};
use websessions_domain::{
    Issued, LoginAttempt, Password, Presented, SessionKind, SessionPolicy, SessionService,
};

use super::edge::{Carrier, EdgeSettings, clear_cookie, presented, set_cookie};
use super::model::{Health, Kind, LoginRequest, PasswordChange, SessionView};
use super::problem::ApiError;

/// Whether the service can reach its database.
#[async_trait]
pub trait Readiness: Send + Sync {
    async fn ready(&self) -> bool;
}

#[derive(Tags)]
enum Tag {
    /// Starting, recognising, logging into and out of a session.
    Session,
    /// Liveness and readiness for orchestrators.
    Health,
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

type Answer<T> = Result<T, ApiError>;

/// The session holder's API.
pub struct SessionApi {
    pub service: Arc<dyn SessionService>,
    pub readiness: Arc<dyn Readiness>,
    pub edge: Arc<EdgeSettings>,
    pub policy: SessionPolicy,
}

impl std::fmt::Debug for SessionApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionApi")
            .field("edge", &self.edge)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SessionApi {
    fn presented(&self, req: &Request) -> (Presented, Carrier) {
        presented(req, &self.edge)
    }

    /// 401, clearing the cookie when the invalid credential came in one.
    fn no_session(&self, carrier: Carrier) -> ApiError {
        ApiError::no_session((carrier == Carrier::Cookie).then(|| clear_cookie(&self.edge.cookie)))
    }

    fn view(&self, issued: &Issued, carrier_kind: SessionKind) -> SessionAnswer {
        let mut view = SessionView::new(&issued.session, &self.policy);
        let cookie = match (&issued.credential, carrier_kind) {
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

#[OpenApi]
impl SessionApi {
    /// Start a session
    ///
    /// Returns the presented session when it is valid (200); otherwise creates an anonymous
    /// browser session bound to the client's address and sets its cookie (201).
    #[oai(path = "/v1/session", method = "post", tag = "Tag::Session")]
    async fn start(&self, req: &Request, _auth: SessionAuth) -> Answer<SessionAnswer> {
        let (presented, _) = self.presented(req);
        let issued = self.service.start(&presented).await?;
        let view = Json(SessionView::new(&issued.session, &self.policy));
        Ok(match &issued.credential {
            Some(credential) => {
                SessionAnswer::Created(view, set_cookie(&self.edge.cookie, credential))
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
        let (presented, carrier) = self.presented(req);
        match self.service.recognise(&presented).await? {
            Some(record) => Ok(SessionAnswer::Ok(
                Json(SessionView::new(&record, &self.policy)),
                None,
            )),
            None => Err(self.no_session(carrier)),
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
        let (presented, _) = self.presented(req);
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
        let issued = self.service.login(&presented, attempt).await?;
        Ok(self.view(&issued, kind))
    }

    /// Log out
    ///
    /// Ends the presented session for good and clears the cookie. Answers 204 also when no
    /// valid session was presented.
    #[oai(path = "/v1/session/logout", method = "post", tag = "Tag::Session")]
    async fn logout(&self, req: &Request, _auth: SessionAuth) -> Answer<Done> {
        let (presented, _) = self.presented(req);
        self.service.logout(&presented).await?;
        Ok(Done::NoContent(clear_cookie(&self.edge.cookie)))
    }

    /// Read the client state
    ///
    /// The session's JSON object (empty until set). It survives login and is wiped by
    /// logout.
    #[oai(path = "/v1/session/data", method = "get", tag = "Tag::Session")]
    async fn data(&self, req: &Request, _auth: SessionAuth) -> Answer<DataAnswer> {
        let (presented, carrier) = self.presented(req);
        match self.service.data(&presented).await? {
            Some(data) => Ok(DataAnswer::Ok(Json(serde_json::Value::Object(
                data.into_object(),
            )))),
            None => Err(self.no_session(carrier)),
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
        let (presented, carrier) = self.presented(req);
        let serde_json::Value::Object(object) = body.0 else {
            return Err(ApiError::unprocessable(
                "session data must be a JSON object",
            ));
        };
        match self.service.set_data(&presented, object).await {
            Ok(data) => Ok(DataAnswer::Ok(Json(serde_json::Value::Object(
                data.into_object(),
            )))),
            Err(websessions_domain::SetDataError::NoSession) => Err(self.no_session(carrier)),
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
        let (presented, _) = self.presented(req);
        let PasswordChange {
            current_password,
            new_password,
        } = body.0;
        let issued = self
            .service
            .change_password(
                &presented,
                Password::new(current_password),
                Password::new(new_password),
            )
            .await?;
        Ok(self.view(&issued, issued.session.kind))
    }

    /// Liveness
    ///
    /// 200 while the process serves requests.
    #[oai(path = "/health/live", method = "get", tag = "Tag::Health")]
    async fn live(&self) -> HealthAnswer {
        HealthAnswer::Ok(Json(Health {
            status: "ok".into(),
        }))
    }

    /// Readiness
    ///
    /// 200 while the database answers; 503 while it does not.
    #[oai(path = "/health/ready", method = "get", tag = "Tag::Health")]
    async fn ready(&self) -> HealthAnswer {
        if self.readiness.ready().await {
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
