//! The sessions table's vocabulary, in one place: how times and token hashes are stored, R2's
//! validity translated once into a SeaQuery condition (the domain's `Cutoffs::admits`), the
//! condition naming a presented session, what maintenance deletes (split so that each part
//! walks an index), the columns a session is read with, and the mapping of a row back to a
//! `SessionRecord`. Every statement on the table, the hot path's prebuilt ones included, is
//! built from these.

use sea_orm::{
    ColumnTrait, Condition, EntityTrait, FromQueryResult, JoinType, QuerySelect, RelationTrait,
    Select, Value,
};
use time::OffsetDateTime;
use websessions_domain::ports::{Target, UserSessions};
use websessions_domain::{
    ClientIp, Cutoffs, InfraError, SessionId, SessionKind, SessionRecord, SessionUser, TokenHash,
    UserId, Username,
};

use crate::entity::{sessions, users};
use crate::error::corrupt;

/// Timestamps are stored as whole Unix seconds.
pub(crate) fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

pub(crate) fn from_unix(seconds: i64) -> Result<OffsetDateTime, InfraError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| corrupt("timestamp"))
}

pub(crate) fn hash_bytes(hash: &TokenHash) -> Vec<u8> {
    hash.as_bytes().to_vec()
}

/// The values a condition compares with: a request's own, or the markers a prebuilt statement
/// is rendered with (see `hot_path`).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Bound {
    pub(crate) id: Value,
    pub(crate) token_hash: Value,
    pub(crate) idle: Value,
    pub(crate) absolute: Option<Value>,
    pub(crate) ip: Option<Value>,
}

impl Bound {
    pub(crate) fn of(target: &Target) -> Self {
        Self {
            id: target.id.get().into(),
            token_hash: hash_bytes(&target.token_hash).into(),
            idle: unix(target.cutoffs.idle).into(),
            absolute: target.cutoffs.absolute.map(|at| unix(at).into()),
            ip: target.ip.map(|ip| ip.to_string().into()),
        }
    }
}

/// One of R2's time limits, as the table stores it: idle (`last_activity_at >= idle`) and,
/// when set, absolute (the later of `created_at` and `authenticated_at` `>= absolute`;
/// `authenticated_at` is never earlier than `created_at`, and NULL compares as false). Validity
/// (`valid`) is every limit holding; expiry (`expired`, what maintenance deletes) is any limit
/// broken: both come from `limits`, so they cannot drift apart.
enum Limit {
    Idle(Value),
    Absolute(Value),
}

fn limits(idle: Value, absolute: Option<Value>) -> impl Iterator<Item = Limit> {
    std::iter::once(Limit::Idle(idle)).chain(absolute.map(Limit::Absolute))
}

impl Limit {
    fn holds(self) -> Condition {
        use sessions::Column::{AuthenticatedAt, CreatedAt, LastActivityAt};
        match self {
            Self::Idle(idle) => Condition::all().add(LastActivityAt.gte(idle)),
            Self::Absolute(since) => Condition::any()
                .add(CreatedAt.gte(since.clone()))
                .add(AuthenticatedAt.gte(since)),
        }
    }

    /// The rows that break the limit, in parts that each walk an index in its order
    /// (`last_activity_at`; `(authenticated_at, created_at)` for the two absolute parts, an
    /// anonymous session's and a logged-in one's), so that no statement scans the table and
    /// each batch reads only what it deletes.
    fn broken(self) -> Vec<(Condition, Vec<sessions::Column>)> {
        use sessions::Column::{AuthenticatedAt, CreatedAt, LastActivityAt};
        match self {
            Self::Idle(idle) => vec![(
                Condition::all().add(LastActivityAt.lt(idle)),
                vec![LastActivityAt],
            )],
            Self::Absolute(since) => vec![
                (
                    Condition::all()
                        .add(AuthenticatedAt.is_null())
                        .add(CreatedAt.lt(since.clone())),
                    vec![AuthenticatedAt, CreatedAt],
                ),
                (
                    Condition::all().add(AuthenticatedAt.lt(since)),
                    vec![AuthenticatedAt, CreatedAt],
                ),
            ],
        }
    }
}

/// R2's validity, translated (the domain's `Cutoffs::admits`): every limit holds.
pub(crate) fn valid(idle: Value, absolute: Option<Value>) -> Condition {
    limits(idle, absolute).fold(Condition::all(), |all, limit| all.add(limit.holds()))
}

/// `valid` at the cutoffs of an instant.
pub(crate) fn valid_at(cutoffs: Cutoffs) -> Condition {
    valid(
        unix(cutoffs.idle).into(),
        cutoffs.absolute.map(|at| unix(at).into()),
    )
}

/// The row a presented session names, while it still holds the token, is valid and (with the
/// address check) was created from the address.
pub(crate) fn matching(bound: Bound) -> Condition {
    let mut condition = Condition::all()
        .add(sessions::Column::Id.eq(bound.id))
        .add(sessions::Column::TokenHash.eq(bound.token_hash))
        .add(valid(bound.idle, bound.absolute));
    if let Some(ip) = bound.ip {
        condition = condition.add(sessions::Column::IpAddress.eq(ip));
    }
    condition
}

/// `matching` for a request's target.
pub(crate) fn matches(target: &Target) -> Condition {
    matching(Bound::of(target))
}

/// The valid sessions of a user that a multi-row ending names.
pub(crate) fn user_sessions(which: &UserSessions) -> Condition {
    let mut condition = Condition::all()
        .add(sessions::Column::UserId.eq(which.user.0))
        .add(valid_at(which.cutoffs));
    if let Some(kind) = which.kind {
        condition = condition.add(sessions::Column::Kind.eq(kind.as_str()));
    }
    if let Some(except) = which.except {
        condition = condition.add(sessions::Column::Id.ne(except.get()));
    }
    condition
}

/// What maintenance deletes (R8): the sessions that break any of R2's limits at `cutoffs`,
/// each part paired with the index columns its batches follow.
pub(crate) fn expired(cutoffs: Cutoffs) -> Vec<(Condition, Vec<sessions::Column>)> {
    limits(
        unix(cutoffs.idle).into(),
        cutoffs.absolute.map(|at| unix(at).into()),
    )
    .flat_map(Limit::broken)
    .collect()
}

/// The columns a session is read with (never its client state).
pub(crate) const RECORD_COLUMNS: [sessions::Column; 8] = [
    sessions::Column::Id,
    sessions::Column::TokenHash,
    sessions::Column::IpAddress,
    sessions::Column::Kind,
    sessions::Column::UserId,
    sessions::Column::CreatedAt,
    sessions::Column::AuthenticatedAt,
    sessions::Column::LastActivityAt,
];

/// Sessions with their user's identity (never the password hash), one indexed join.
pub(crate) fn select_records() -> Select<sessions::Entity> {
    sessions::Entity::find()
        .select_only()
        .columns(RECORD_COLUMNS)
        .column(users::Column::Username)
        .column(users::Column::Superuser)
        .join(JoinType::LeftJoin, sessions::Relation::User.def())
}

/// A session row as `RECORD_COLUMNS` and the user's identity read it.
#[derive(Clone, Debug, FromQueryResult)]
pub(crate) struct SessionRow {
    pub(crate) id: i64,
    pub(crate) token_hash: Option<Vec<u8>>,
    pub(crate) ip_address: String,
    pub(crate) kind: String,
    pub(crate) user_id: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) authenticated_at: Option<i64>,
    pub(crate) last_activity_at: i64,
    pub(crate) username: Option<String>,
    pub(crate) superuser: Option<bool>,
}

impl SessionRow {
    pub(crate) fn into_record(self) -> Result<SessionRecord, InfraError> {
        let user = match (self.user_id, self.username) {
            (Some(id), Some(username)) => Some(SessionUser {
                id: UserId(id),
                username: Username::parse(&username).map_err(|_| corrupt("username"))?,
                superuser: self.superuser.unwrap_or(false),
            }),
            _ => None,
        };
        let token_hash = self
            .token_hash
            .as_deref()
            .and_then(TokenHash::from_slice)
            .ok_or_else(|| corrupt("token hash"))?;
        Ok(SessionRecord {
            id: SessionId::new(self.id).ok_or_else(|| corrupt("session id"))?,
            token_hash,
            ip_address: ClientIp::new(self.ip_address.parse().map_err(|_| corrupt("ip address"))?),
            kind: SessionKind::parse(&self.kind).ok_or_else(|| corrupt("session kind"))?,
            user,
            created_at: from_unix(self.created_at)?,
            authenticated_at: self.authenticated_at.map(from_unix).transpose()?,
            last_activity_at: from_unix(self.last_activity_at)?,
        })
    }
}
