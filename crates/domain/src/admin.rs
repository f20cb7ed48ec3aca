//! Administration of sessions, for superusers (R8, R10): list, count, revoke, purge. Every
//! operation takes the `Superuser` that `authorize` (or the command line) vouches for.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::{AccessError, EndSessionError, InfraError};
use crate::model::{EndCause, PurgeReport, SessionQuery, SessionRecord, Superuser};
use crate::ports::Sweep;
use crate::service::{Presented, Sessions};
use crate::value::{SessionId, Username};

/// The largest page of sessions an operator can ask for.
pub const MAX_PAGE: u64 = 500;

/// Which valid sessions an operator lists, by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionFilter {
    /// Only this user's (a username; one naming no account matches nothing).
    pub user: Option<String>,
    /// Only those active at or after this time.
    pub active_since: Option<OffsetDateTime>,
    /// Only ids greater than this: the `next` of the previous page.
    pub after: Option<SessionId>,
    /// 1 to `MAX_PAGE`.
    pub limit: u64,
}

/// A page of valid sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<SessionRecord>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<SessionId>,
}

/// What a superuser can do with every session.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SessionAdmin: Send + Sync {
    /// The presented session's user, when a superuser (recognition counts as activity).
    async fn authorize(&self, presented: &Presented) -> Result<Superuser, AccessError>;

    /// R10: a page of valid sessions matching `filter`.
    async fn sessions(&self, by: &Superuser, filter: SessionFilter) -> Result<Page, InfraError>;

    /// R10: sessions active at or after `since`.
    async fn count_active_since(
        &self,
        by: &Superuser,
        since: OffsetDateTime,
    ) -> Result<u64, InfraError>;

    /// Ends any valid session by id.
    async fn revoke(&self, by: &Superuser, id: SessionId) -> Result<(), EndSessionError>;

    /// R8: maintenance now, over the whole backlog.
    async fn purge(&self, by: &Superuser) -> Result<PurgeReport, InfraError>;
}

#[async_trait]
impl SessionAdmin for Sessions {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn authorize(&self, presented: &Presented) -> Result<Superuser, AccessError> {
        let me = self.logged_in(presented).await?;
        Superuser::of(&me.session).ok_or(AccessError::NotSuperuser)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn sessions(&self, _by: &Superuser, filter: SessionFilter) -> Result<Page, InfraError> {
        let user = match filter.user {
            Some(name) => {
                let found = match Username::parse(&name) {
                    Ok(username) => self.ports.users.find_by_username(&username).await?,
                    Err(_) => None,
                };
                match found {
                    Some(user) => Some(user.id),
                    None => {
                        return Ok(Page {
                            items: Vec::new(),
                            next: None,
                        });
                    }
                }
            }
            None => None,
        };
        let limit = filter.limit.clamp(1, MAX_PAGE);
        let query = SessionQuery {
            user,
            active_since: filter.active_since,
            after: filter.after,
            // One more than asked tells whether there is a next page.
            limit: limit + 1,
        };
        let cutoffs = self.policy.cutoffs(self.ports.clock.now());
        let mut items = self.ports.sessions.list(query, cutoffs).await?;
        let more = items.len() as u64 > limit;
        items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let next = if more {
            items.last().map(|s| s.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn count_active_since(
        &self,
        _by: &Superuser,
        since: OffsetDateTime,
    ) -> Result<u64, InfraError> {
        self.ports.sessions.count_active_since(since).await
    }

    #[tracing::instrument(level = "debug", skip_all, fields(id = %id))]
    async fn revoke(&self, _by: &Superuser, id: SessionId) -> Result<(), EndSessionError> {
        let cutoffs = self.policy.cutoffs(self.ports.clock.now());
        if self.ports.sessions.end_by_id(id, None, cutoffs).await? {
            self.ended(EndCause::Revoked, 1);
            Ok(())
        } else {
            Err(EndSessionError::NotFound)
        }
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(&self, _by: &Superuser) -> Result<PurgeReport, InfraError> {
        self.sweep(Sweep::All).await
    }
}
