//! What every endpoint family shares: the actors' services, the edge settings, and the steps
//! every family takes the same way (who presents what, who may act).

use std::sync::Arc;

use async_trait::async_trait;
use poem::Request;
use websessions_domain::{
    AccessError, Me, Presented, SelfService, SessionAdmin, SessionHolder, SessionPolicy, Superuser,
    UserAdmin,
};

use super::edge::{self, Carrier, EdgeSettings};
use super::problem::Refusal;
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
    /// The presented credential (bearer or cookie) and client address, and how it came.
    pub(crate) fn presented(&self, req: &Request) -> (Presented, Carrier) {
        edge::presented(req, &self.edge)
    }

    /// 401 for a request without a valid session, clearing the cookie when the invalid
    /// credential came in one.
    pub(crate) fn no_session(&self, carrier: Carrier) -> Refusal {
        let refusal = Refusal::no_session();
        match carrier {
            Carrier::Cookie => refusal.clearing(edge::clear_cookie(&self.edge.cookie)),
            Carrier::None | Carrier::Bearer => refusal,
        }
    }

    fn refuse_access(&self, error: AccessError, carrier: Carrier) -> Refusal {
        match error {
            AccessError::NoSession => self.no_session(carrier),
            other => other.into(),
        }
    }

    /// The presented session's logged-in user (401 otherwise).
    pub(crate) async fn me(&self, req: &Request) -> Result<Me, Refusal> {
        let (presented, carrier) = self.presented(req);
        self.me
            .me(&presented)
            .await
            .map_err(|e| self.refuse_access(e, carrier))
    }

    /// The presented session's user as a superuser (401 without a logged-in session, 403
    /// for other users).
    pub(crate) async fn superuser(&self, req: &Request) -> Result<Superuser, Refusal> {
        let (presented, carrier) = self.presented(req);
        self.admin
            .authorize(&presented)
            .await
            .map_err(|e| self.refuse_access(e, carrier))
    }
}
