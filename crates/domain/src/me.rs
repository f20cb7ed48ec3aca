//! Self-service: a logged-in user sees and ends their own sessions.

use async_trait::async_trait;

use crate::audit::Client;
use crate::error::{EndSessionError, InfraError, LoginRequired};
use crate::model::{EndCause, SessionQuery, SessionRecord, SessionUser};
use crate::ports::Owner;
use crate::service::{Presented, Sessions};
use crate::value::SessionId;

/// At most this many of one's own sessions are listed (a person has a handful; API clients
/// that log in without ever logging out could have more).
pub const MY_SESSIONS_LIMIT: u64 = 500;

/// A logged-in user acting on their own sessions, through `session`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    pub session: SessionRecord,
    pub user: SessionUser,
    /// Where the request came from (R19's records).
    pub client: Client,
}

/// What a logged-in user can do with their own sessions.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SelfService: Send + Sync {
    /// The presented session's user (recognition counts as activity, R3).
    async fn me(&self, presented: &Presented) -> Result<Me, LoginRequired>;

    /// The user's valid sessions, by id.
    async fn my_sessions(&self, me: &Me) -> Result<Vec<SessionRecord>, InfraError>;

    /// Ends one of the user's valid sessions. Someone else's id, an unknown id and an
    /// expired session are alike `NotFound`, so ids cannot be probed.
    async fn end_my_session(&self, me: &Me, id: SessionId) -> Result<(), EndSessionError>;

    /// Ends every session of the user but the current one; how many ended.
    async fn end_my_other_sessions(&self, me: &Me) -> Result<u64, InfraError>;
}

impl Sessions {
    /// The presented valid session and its logged-in user.
    pub(crate) async fn logged_in(&self, presented: &Presented) -> Result<Me, LoginRequired> {
        let now = self.ports.clock.now();
        let Some(proven) = self.recognise_at(presented, now).await? else {
            return Err(LoginRequired::NoSession);
        };
        let user = proven
            .record
            .user
            .clone()
            .ok_or(LoginRequired::NotLoggedIn)?;
        Ok(Me {
            session: proven.record,
            user,
            client: presented.client(),
        })
    }
}

#[async_trait]
impl SelfService for Sessions {
    // The hot path (recognition): no span of its own, since an instrumented future costs a
    // poll wrapper and its size on every request even with spans off; the request's span
    // and the batched read's cover it.
    async fn me(&self, presented: &Presented) -> Result<Me, LoginRequired> {
        self.logged_in(presented).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn my_sessions(&self, me: &Me) -> Result<Vec<SessionRecord>, InfraError> {
        let query = SessionQuery {
            user: Some(me.user.id),
            active_since: None,
            after: None,
            limit: MY_SESSIONS_LIMIT,
        };
        let cutoffs = self.policy.cutoffs(self.ports.clock.now());
        self.ports.sessions.list(query, cutoffs).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %id))]
    async fn end_my_session(&self, me: &Me, id: SessionId) -> Result<(), EndSessionError> {
        let cutoffs = self.policy.cutoffs(self.ports.clock.now());
        let name = me.user.username.as_str();
        let record = self
            .ended_record(EndCause::Revoked, &me.user.username, 1, &me.client)
            .actor(name)
            .session(id);
        let owner = Owner::User(me.user.id);
        if self
            .ports
            .sessions
            .end_by_id(id, owner, cutoffs, Some(record.clone()))
            .await?
        {
            self.ended(EndCause::Revoked, 1);
            self.audited([&record]);
            Ok(())
        } else {
            Err(EndSessionError::NotFound)
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn end_my_other_sessions(&self, me: &Me) -> Result<u64, InfraError> {
        let except = Some(me.session.id);
        let by = (me.user.username.as_str(), &me.client);
        let ended = self
            .end_sessions_of(&me.user.username, me.user.id, except, by)
            .await?;
        Ok(ended.unwrap_or(0))
    }
}
