//! Administration of user accounts (`/v1/admin/users`), for superusers and so for operators:
//! create, list, show, delete, reset a password, unlock, disable, enable, end a user's
//! sessions. Each operation needs a superuser's session: 401 without a logged-in one, 403 for
//! other users.

use std::sync::Arc;

use poem::Request;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use time::OffsetDateTime;
use websessions_domain::{
    AccessError, CreateUserError, InfraError, LockoutState, Password, ResetPasswordError, User,
    UserError,
};

use super::body::{BodyRefusal, JsonBody};
use super::context::Context;
use super::problem::{Refused, refusals};
use super::security::RequiredSession;
use super::wire::{AdminTag, Ended};

/// A user account, with its lockout state: the failed logins since the last successful one or
/// the last unlock, and the lock while it is in force (else null). A disabled user cannot log
/// in and has no sessions; `last_login_at` is null until the first login.
#[derive(Object, Debug)]
pub struct UserView {
    pub username: String,
    pub superuser: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
    pub failure_count: u32,
    #[oai(nullable)]
    pub locked_until: Option<OffsetDateTime>,
}

impl UserView {
    fn new(user: &User, lockout: LockoutState) -> Self {
        Self {
            username: user.username.to_string(),
            superuser: user.superuser,
            disabled: user.disabled,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            password_changed_at: user.password_changed_at,
            failure_count: lockout.failure_count,
            locked_until: lockout.locked_until,
        }
    }
}

/// The users, by username.
#[derive(Object, Debug)]
pub struct UserList {
    pub items: Vec<UserSummary>,
}

/// A user account in a list.
#[derive(Object, Debug)]
pub struct UserSummary {
    pub username: String,
    pub superuser: bool,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
    #[oai(nullable)]
    pub last_login_at: Option<OffsetDateTime>,
    pub password_changed_at: OffsetDateTime,
}

impl From<&User> for UserSummary {
    fn from(user: &User) -> Self {
        Self {
            username: user.username.to_string(),
            superuser: user.superuser,
            disabled: user.disabled,
            created_at: user.created_at,
            last_login_at: user.last_login_at,
            password_changed_at: user.password_changed_at,
        }
    }
}

/// A new user: a username of 1 to 191 characters of letters, digits and `, _ - { } . @`, and
/// a password of 10 to 1024 characters.
#[derive(Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    #[oai(validator(min_length = 1, max_length = 191, pattern = r"^[A-Za-z0-9,_{}.@-]+$"))]
    pub username: String,
    #[oai(validator(min_length = 10, max_length = 1024))]
    pub password: String,
    #[oai(default)]
    #[serde(default)]
    pub superuser: bool,
}

/// A password set by an operator: 10 to 1024 characters.
#[derive(Object, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPasswordRequest {
    #[oai(validator(min_length = 10, max_length = 1024))]
    pub new_password: String,
}

#[derive(ApiResponse)]
pub(crate) enum CreatedUser {
    /// The new user.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

#[derive(ApiResponse)]
pub(crate) enum UsersAnswer {
    /// The users.
    #[oai(status = 200)]
    Ok(Json<UserList>),
}

#[derive(ApiResponse)]
pub(crate) enum UserAnswer {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<UserView>),
}

refusals! {
    /// Listing users.
    UsersRefusal = AccessError | InfraError;
    /// Creating a user.
    CreateRefusal = AccessError | BodyRefusal | CreateUserError;
    /// Reading or acting on a named user.
    UserRefusal = AccessError | UserError;
    /// Resetting a user's password.
    ResetRefusal = AccessError | BodyRefusal | ResetPasswordError;
}

/// User account endpoints.
#[derive(Debug)]
pub struct UsersApi;

#[OpenApi]
impl UsersApi {
    /// Create a user
    ///
    /// 409 when the name is taken (names compare byte for byte). Needs a superuser.
    #[oai(
        path = "/v1/admin/users",
        method = "post",
        tag = "AdminTag::Admin",
        operation_id = "createUser"
    )]
    async fn create_user(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        body: JsonBody<NewUserRequest>,
        _auth: RequiredSession,
    ) -> Result<CreatedUser, Refused<CreateRefusal>> {
        let by = ctx.superuser(req).await?;
        let NewUserRequest {
            username,
            password,
            superuser,
        } = body.parse()?;
        let password = Password::new(password);
        let user = ctx
            .users
            .create_user(&by, &username, password, superuser)
            .await?;
        let view = UserView::new(&user, LockoutState::default());
        Ok(CreatedUser::Created(Json(view)))
    }

    /// List users
    ///
    /// Needs a superuser.
    #[oai(
        path = "/v1/admin/users",
        method = "get",
        tag = "AdminTag::Admin",
        operation_id = "listUsers"
    )]
    async fn users(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        _auth: RequiredSession,
    ) -> Result<UsersAnswer, Refused<UsersRefusal>> {
        let by = ctx.superuser(req).await?;
        let users = ctx.users.users(&by).await?;
        let items = users.iter().map(UserSummary::from).collect();
        Ok(UsersAnswer::Ok(Json(UserList { items })))
    }

    /// Show a user
    ///
    /// The account with its failure count and lock. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username",
        method = "get",
        tag = "AdminTag::Admin",
        operation_id = "getUser"
    )]
    async fn user(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<UserAnswer, Refused<UserRefusal>> {
        let by = ctx.superuser(req).await?;
        let (user, lockout) = ctx.users.user(&by, &username.0).await?;
        Ok(UserAnswer::Ok(Json(UserView::new(&user, lockout))))
    }

    /// Delete a user
    ///
    /// The user's sessions end with it. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username",
        method = "delete",
        tag = "AdminTag::Admin",
        operation_id = "deleteUser"
    )]
    async fn delete_user(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = ctx.superuser(req).await?;
        ctx.users.delete_user(&by, &username.0).await?;
        Ok(Ended::NoContent)
    }

    /// Reset a user's password
    ///
    /// Ends every session of the user. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/password",
        method = "put",
        tag = "AdminTag::Admin",
        operation_id = "resetPassword"
    )]
    async fn reset_password(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        body: JsonBody<NewPasswordRequest>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<ResetRefusal>> {
        let by = ctx.superuser(req).await?;
        let password = Password::new(body.parse()?.new_password);
        ctx.users.reset_password(&by, &username.0, password).await?;
        Ok(Ended::NoContent)
    }

    /// Unlock a username
    ///
    /// Clears its failed logins and lock. Works for names without an account too, since
    /// failures are counted for any username. Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/unlock",
        method = "post",
        tag = "AdminTag::Admin",
        operation_id = "unlockUser"
    )]
    async fn unlock(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = ctx.superuser(req).await?;
        ctx.users.unlock(&by, &username.0).await?;
        Ok(Ended::NoContent)
    }

    /// Disable a user
    ///
    /// Ends the user's sessions; logins are refused until the user is enabled. Needs a
    /// superuser.
    #[oai(
        path = "/v1/admin/users/:username/disable",
        method = "post",
        tag = "AdminTag::Admin",
        operation_id = "disableUser"
    )]
    async fn disable(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = ctx.superuser(req).await?;
        ctx.users.set_disabled(&by, &username.0, true).await?;
        Ok(Ended::NoContent)
    }

    /// Enable a user
    ///
    /// Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/enable",
        method = "post",
        tag = "AdminTag::Admin",
        operation_id = "enableUser"
    )]
    async fn enable(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = ctx.superuser(req).await?;
        ctx.users.set_disabled(&by, &username.0, false).await?;
        Ok(Ended::NoContent)
    }

    /// End a user's sessions
    ///
    /// Needs a superuser.
    #[oai(
        path = "/v1/admin/users/:username/sessions",
        method = "delete",
        tag = "AdminTag::Admin",
        operation_id = "endUserSessions"
    )]
    async fn end_user_sessions(
        &self,
        ctx: Data<&Arc<Context>>,
        req: &Request,
        username: Path<String>,
        _auth: RequiredSession,
    ) -> Result<Ended, Refused<UserRefusal>> {
        let by = ctx.superuser(req).await?;
        ctx.users.end_user_sessions(&by, &username.0).await?;
        Ok(Ended::NoContent)
    }
}
