//! What every endpoint family shares: the actors' services, the edge settings, and the steps
//! every family takes the same way (who presents what, who may act).

use std::sync::Arc;

use async_trait::async_trait;
use poem::Request;
use websessions_domain::{
    AccessError, LoginRequired, Me, Presented, SelfService, SessionAdmin, SessionHolder,
    SessionPolicy, Superuser, UserAdmin,
};

use super::edge::{self, EdgeSettings};
use crate::metrics::Metrics;

/// Whether the service can reach its database.
#[async_trait]
pub trait Readiness: Send + Sync {
    async fn ready(&self) -> bool;
}

/// What every endpoint works with.
pub struct Context {
    pub holder: Arc<dyn SessionHolder>,
    pub me: Arc<dyn SelfService>,
    pub admin: Arc<dyn SessionAdmin>,
    pub users: Arc<dyn UserAdmin>,
    pub readiness: Arc<dyn Readiness>,
    pub edge: Arc<EdgeSettings>,
    pub policy: SessionPolicy,
    pub metrics: Arc<Metrics>,
    /// Whether the sign-in and account pages are served (SPEC section 10).
    pub portal: bool,
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
    /// The presented credential (bearer or cookie) and client address.
    pub(crate) fn presented(&self, req: &Request) -> Presented {
        edge::presented(req, &self.edge)
    }

    /// The presented session's logged-in user.
    pub(crate) async fn me(&self, req: &Request) -> Result<Me, LoginRequired> {
        self.me.me(&self.presented(req)).await
    }

    /// The presented session's user as a superuser.
    pub(crate) async fn superuser(&self, req: &Request) -> Result<Superuser, AccessError> {
        self.admin.authorize(&self.presented(req)).await
    }
}
