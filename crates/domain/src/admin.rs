//! Administration of sessions, for superusers (R8, R10): list, count, revoke, purge. Every
//! operation takes the `Superuser` that `authorize` (or the command line) vouches for.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditFilter, AuditPage, MAX_AUDIT_PAGE, Stored};
use crate::error::{AccessError, EndSessionError, InfraError};
use crate::model::{EndCause, PurgeReport, SessionQuery, SessionRecord, Superuser};
use crate::ports::{Owner, Sweep};
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

    /// R19: a page of audit records matching `filter`, in sequence order.
    async fn audit(&self, by: &Superuser, filter: AuditFilter) -> Result<AuditPage, InfraError>;
}

#[async_trait]
impl SessionAdmin for Sessions {
    #[tracing::instrument(level = "debug", skip_all)]
    async fn authorize(&self, presented: &Presented) -> Result<Superuser, AccessError> {
        let me = self.logged_in(presented).await?;
        let by = Superuser::of(&me.session).ok_or(AccessError::NotSuperuser)?;
        Ok(by.from_client(me.client))
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
    async fn revoke(&self, by: &Superuser, id: SessionId) -> Result<(), EndSessionError> {
        // The row's user is read first, so a user's session is recorded as it ends (R19); the
        // ending names that owner, so a session a login bound meanwhile is read again.
        for _ in 0..2 {
            let cutoffs = self.policy.cutoffs(self.ports.clock.now());
            let Some(session) = self.ports.sessions.find(id).await? else {
                break;
            };
            let (owner, record) = match &session.user {
                Some(user) => {
                    let record = self
                        .ended_record(EndCause::Revoked, &user.username, 1, by.client())
                        .actor(by.actor())
                        .session(id);
                    (Owner::User(user.id), Some(record))
                }
                None => (Owner::Nobody, None),
            };
            let audited = record.clone();
            if self
                .ports
                .sessions
                .end_by_id(id, owner, cutoffs, record)
                .await?
            {
                self.ended(EndCause::Revoked, 1);
                self.audited(&audited);
                return Ok(());
            }
        }
        Err(EndSessionError::NotFound)
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn purge(&self, by: &Superuser) -> Result<PurgeReport, InfraError> {
        self.sweep(Sweep::All, by.actor()).await
    }

    #[tracing::instrument(level = "debug", skip_all)]
    async fn audit(&self, _by: &Superuser, filter: AuditFilter) -> Result<AuditPage, InfraError> {
        // A record keeps no control character (they are replaced when recorded), and some
        // databases refuse one in a query: such a name matches nothing.
        if filter
            .username
            .as_deref()
            .is_some_and(|name| name.chars().any(char::is_control))
        {
            return Ok(AuditPage {
                items: Vec::new(),
                next: None,
            });
        }
        let limit = filter.limit.clamp(1, MAX_AUDIT_PAGE);
        // One more than asked tells whether there is a next page.
        let query = AuditFilter {
            limit: limit + 1,
            ..filter
        };
        let stored = self.ports.audit.page(&query).await?;
        let more = stored.len() as u64 > limit;
        let mut items = Vec::with_capacity(stored.len());
        for record in stored
            .into_iter()
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
        {
            match record {
                Stored::Record(record) => items.push(*record),
                // A record that could not have been written was changed: say so rather
                // than hide it (`websessions audit verify` names it too).
                Stored::Unreadable { seq } => {
                    return Err(InfraError::Unexpected(anyhow::anyhow!(
                        "audit record {seq} is unreadable: run `websessions audit verify`"
                    )));
                }
            }
        }
        let next = if more {
            items.last().map(|r| r.seq)
        } else {
            None
        };
        Ok(AuditPage { items, next })
    }
}
