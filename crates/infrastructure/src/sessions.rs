//! `SessionRepository` on SeaORM. Every write that could race is a conditional
//! `UPDATE ... WHERE still valid`, never a read followed by a write.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait,
    FromQueryResult, JoinType, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, RelationTrait,
    Statement, TransactionTrait, UpdateMany,
};
use time::OffsetDateTime;
use websessions_domain::ports::{
    LoginOutcome, LoginTarget, LoginWrite, NewSession, SessionRepository, Sweep,
};
use websessions_domain::{
    ClientIp, Cutoffs, InfraError, SessionData, SessionId, SessionKind, SessionQuery,
    SessionRecord, SessionUser, TokenHash, UserId, Username,
};

use crate::entity::{sessions, users};
use crate::error::{corrupt, infra};
use crate::recognition::{self, Recognition};

/// Sessions stored with SeaORM; on PostgreSQL and MySQL/MariaDB, recognition runs on
/// connections of its own (see `recognition`).
#[derive(Clone, Debug)]
pub struct SeaSessions {
    db: DatabaseConnection,
    recognition: Option<Arc<dyn Recognition>>,
}

impl SeaSessions {
    /// On PostgreSQL and MySQL/MariaDB, recognition gets its own connections, opened as needed
    /// up to the pool's size and with its acquire timeout (so the service holds at most twice
    /// that many).
    pub fn new(db: DatabaseConnection) -> Self {
        let recognition = recognition::for_database(&db);
        Self { db, recognition }
    }

    /// Closes recognition's connections (the shared pool is closed with its
    /// `DatabaseConnection`).
    pub async fn close(&self) {
        if let Some(recognition) = &self.recognition {
            recognition.close().await;
        }
    }
}

pub(crate) fn unix(at: OffsetDateTime) -> i64 {
    at.unix_timestamp()
}

pub(crate) fn from_unix(seconds: i64) -> Result<OffsetDateTime, InfraError> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|_| corrupt("timestamp"))
}

pub(crate) fn hash_bytes(hash: &TokenHash) -> Vec<u8> {
    hash.as_bytes().to_vec()
}

/// Still holds a token and admitted by `cutoffs` (R2, minus the checks done in memory).
pub(crate) fn valid(cutoffs: Cutoffs) -> Condition {
    let mut condition = Condition::all()
        .add(sessions::Column::TokenHash.is_not_null())
        .add(sessions::Column::LastActivityAt.gte(unix(cutoffs.idle)));
    if let Some(absolute) = cutoffs.absolute {
        let since = unix(absolute);
        condition = condition.add(
            Condition::any()
                .add(sessions::Column::CreatedAt.gte(since))
                .add(sessions::Column::AuthenticatedAt.gte(since)),
        );
    }
    condition
}

/// Live but no longer admitted by `cutoffs`: what maintenance deletes as expired (R8).
fn expired(cutoffs: Cutoffs) -> Condition {
    let mut timed_out =
        Condition::any().add(sessions::Column::LastActivityAt.lt(unix(cutoffs.idle)));
    if let Some(absolute) = cutoffs.absolute {
        let since = unix(absolute);
        timed_out = timed_out.add(
            Condition::all()
                .add(sessions::Column::CreatedAt.lt(since))
                .add(
                    Condition::any()
                        .add(sessions::Column::AuthenticatedAt.is_null())
                        .add(sessions::Column::AuthenticatedAt.lt(since)),
                ),
        );
    }
    Condition::all()
        .add(sessions::Column::TokenHash.is_not_null())
        .add(timed_out)
}

/// Wipes token, user and client state (R6): the credential can never be valid again.
pub(crate) fn ending(update: UpdateMany<sessions::Entity>) -> UpdateMany<sessions::Entity> {
    update
        .col_expr(sessions::Column::TokenHash, Expr::value(None::<Vec<u8>>))
        .col_expr(sessions::Column::UserId, Expr::value(None::<i64>))
        .col_expr(sessions::Column::Data, Expr::value("{}"))
}

/// Ends the live sessions of `user` except `except`, in `db` (possibly a transaction).
pub(crate) async fn end_for_user_in<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    except: Option<SessionId>,
) -> Result<u64, InfraError> {
    let mut filter = Condition::all()
        .add(sessions::Column::UserId.eq(user.0))
        .add(sessions::Column::TokenHash.is_not_null());
    if let Some(except) = except {
        filter = filter.add(sessions::Column::Id.ne(except.get()));
    }
    let result = ending(sessions::Entity::update_many())
        .filter(filter)
        .exec(db)
        .await
        .map_err(infra)?;
    Ok(result.rows_affected)
}

/// What recognition reads: the session without its client state, and its user's identity
/// (never the password hash).
#[derive(Debug, FromQueryResult)]
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

/// The hot path's one statement, prebuilt per backend (no query building per request).
pub(crate) const FIND_COLUMNS: &str = "SELECT s.id, s.token_hash, s.ip_address, s.kind, s.user_id, \
     s.created_at, s.authenticated_at, s.last_activity_at, u.username, u.superuser \
     FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = ";

/// `FIND_COLUMNS` with its positional parameter (MySQL and SQLite).
pub(crate) static FIND_POSITIONAL: LazyLock<String> = LazyLock::new(|| format!("{FIND_COLUMNS}?"));

fn record(row: SessionRow) -> Result<SessionRecord, InfraError> {
    let user = match (row.user_id, row.username) {
        (Some(id), Some(username)) => Some(SessionUser {
            id: UserId(id),
            username: Username::parse(&username).map_err(|_| corrupt("username"))?,
            superuser: row.superuser.unwrap_or(false),
        }),
        _ => None,
    };
    Ok(SessionRecord {
        id: SessionId::new(row.id).ok_or_else(|| corrupt("session id"))?,
        token_hash: row
            .token_hash
            .map(|bytes| TokenHash::from_slice(&bytes).ok_or_else(|| corrupt("token hash")))
            .transpose()?,
        ip_address: ClientIp::new(row.ip_address.parse().map_err(|_| corrupt("ip address"))?),
        kind: SessionKind::parse(&row.kind).ok_or_else(|| corrupt("session kind"))?,
        user,
        created_at: from_unix(row.created_at)?,
        authenticated_at: row.authenticated_at.map(from_unix).transpose()?,
        last_activity_at: from_unix(row.last_activity_at)?,
    })
}

async fn insert<C: ConnectionTrait>(
    db: &C,
    session: &NewSession,
    user: Option<UserId>,
) -> Result<SessionId, InfraError> {
    let now = unix(session.now);
    let row = sessions::ActiveModel {
        token_hash: Set(Some(hash_bytes(&session.token_hash))),
        ip_address: Set(session.ip_address.to_string()),
        user_id: Set(user.map(|u| u.0)),
        kind: Set(session.kind.as_str().to_owned()),
        created_at: Set(now),
        authenticated_at: Set(user.map(|_| now)),
        last_activity_at: Set(now),
        data: Set("{}".to_owned()),
        ..Default::default()
    };
    let id = sessions::Entity::insert(row)
        .exec(db)
        .await
        .map_err(infra)?
        .last_insert_id;
    SessionId::new(id).ok_or_else(|| corrupt("session id"))
}

/// Writes `column = value` on the session only while it still holds `hash`, is valid under
/// `cutoffs` and, when `ip` is given, was created from it; whether it did.
async fn write_while_valid(
    db: &DatabaseConnection,
    (id, hash, cutoffs, ip): (SessionId, &TokenHash, Cutoffs, Option<ClientIp>),
    column: sessions::Column,
    value: sea_orm::Value,
) -> Result<bool, InfraError> {
    let mut update = sessions::Entity::update_many()
        .col_expr(column, Expr::value(value))
        .filter(by_id_and_hash(id, hash))
        .filter(valid(cutoffs));
    if let Some(ip) = ip {
        update = update.filter(sessions::Column::IpAddress.eq(ip.to_string()));
    }
    Ok(update.exec(db).await.map_err(infra)?.rows_affected == 1)
}

pub(crate) fn by_id_and_hash(id: SessionId, hash: &TokenHash) -> Condition {
    Condition::all()
        .add(sessions::Column::Id.eq(id.get()))
        .add(sessions::Column::TokenHash.eq(hash_bytes(hash)))
}

/// Deletes rows matching `condition`, `batch` at a time: each batch picks ids, then deletes
/// those ids while they still match, so no statement holds long locks and a row that became
/// valid meanwhile is kept. After each full batch it pauses as long as the batch took, so a
/// large backlog takes at most about half of the database's time from recognition (measured:
/// purging 1 million rows flat out tripled recognition's p99); a single batch never waits.
async fn delete_in_batches(
    db: &DatabaseConnection,
    condition: Condition,
    batch: u64,
    sweep: Sweep,
) -> Result<u64, InfraError> {
    let mut deleted = 0;
    let mut previous: Option<std::time::Duration> = None;
    loop {
        if let Some(took) = previous {
            tokio::time::sleep(took).await;
        }
        let started = std::time::Instant::now();
        let ids: Vec<i64> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(condition.clone())
            .order_by_asc(sessions::Column::Id)
            .limit(batch)
            .into_tuple()
            .all(db)
            .await
            .map_err(infra)?;
        if ids.is_empty() {
            return Ok(deleted);
        }
        let picked = ids.len() as u64;
        deleted += sessions::Entity::delete_many()
            .filter(sessions::Column::Id.is_in(ids))
            .filter(condition.clone())
            .exec(db)
            .await
            .map_err(infra)?
            .rows_affected;
        if picked < batch || sweep == Sweep::OneBatch {
            return Ok(deleted);
        }
        previous = Some(started.elapsed());
    }
}

#[async_trait]
impl SessionRepository for SeaSessions {
    async fn create(&self, session: NewSession) -> Result<SessionId, InfraError> {
        insert(&self.db, &session, None).await
    }

    async fn find(&self, id: SessionId) -> Result<Option<SessionRecord>, InfraError> {
        if let Some(recognition) = &self.recognition {
            return recognition.find(id).await?.map(record).transpose();
        }
        // Only SQLite gets here: the server backends recognise on connections of their own.
        let backend = self.db.get_database_backend();
        let statement =
            Statement::from_sql_and_values(backend, &*FIND_POSITIONAL, [id.get().into()]);
        SessionRow::find_by_statement(statement)
            .one(&self.db)
            .await
            .map_err(infra)?
            .map(record)
            .transpose()
    }

    async fn touch(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        cutoffs: Cutoffs,
        now: OffsetDateTime,
    ) -> Result<bool, InfraError> {
        if let Some(recognition) = &self.recognition {
            let target = (id, &token_hash, cutoffs, None);
            return recognition.touch(target, unix(now)).await;
        }
        let target = (id, &token_hash, cutoffs, None);
        let last_activity = sessions::Column::LastActivityAt;
        write_while_valid(&self.db, target, last_activity, unix(now).into()).await
    }

    async fn touch_and_find(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        cutoffs: Cutoffs,
        ip: Option<ClientIp>,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, InfraError> {
        let target = (id, &token_hash, cutoffs, ip);
        if let Some(recognition) = &self.recognition {
            let row = recognition.touch_and_find(target, unix(now)).await?;
            return row.map(record).transpose();
        }
        // No UPDATE ... RETURNING with a join here: the conditional write, then the read.
        let last_activity = sessions::Column::LastActivityAt;
        let touched = write_while_valid(&self.db, target, last_activity, unix(now).into());
        if touched.await? {
            self.find(id).await
        } else {
            Ok(None)
        }
    }

    async fn login(&self, write: LoginWrite) -> Result<LoginOutcome, InfraError> {
        let txn = self.db.begin().await.map_err(infra)?;
        let now = unix(write.now);
        // Written first: it takes the user's row lock (the database lock on SQLite), so
        // concurrent logins of one user run one after another and each sees the last one's
        // session when it ends the others (R5e).
        users::Entity::update_many()
            .col_expr(users::Column::LastLoginAt, Expr::value(now))
            .filter(users::Column::Id.eq(write.user.0))
            .exec(&txn)
            .await
            .map_err(infra)?;
        let reused = match write.target {
            LoginTarget::Existing { id, token_hash } => {
                let result = sessions::Entity::update_many()
                    .col_expr(sessions::Column::UserId, Expr::value(write.user.0))
                    .col_expr(
                        sessions::Column::TokenHash,
                        Expr::value(hash_bytes(&write.token_hash)),
                    )
                    .col_expr(sessions::Column::AuthenticatedAt, Expr::value(now))
                    .col_expr(sessions::Column::LastActivityAt, Expr::value(now))
                    .filter(by_id_and_hash(id, &token_hash))
                    .filter(valid(write.cutoffs))
                    .exec(&txn)
                    .await
                    .map_err(infra)?;
                (result.rows_affected == 1).then_some(id)
            }
            LoginTarget::New => None,
        };
        let (session, created) = match reused {
            Some(id) => (id, false),
            None => {
                let new = NewSession {
                    token_hash: write.token_hash,
                    ip_address: write.ip_address,
                    kind: write.kind,
                    now: write.now,
                };
                (insert(&txn, &new, Some(write.user)).await?, true)
            }
        };
        let replaced = if write.end_other_browser_sessions {
            ending(sessions::Entity::update_many())
                .filter(sessions::Column::UserId.eq(write.user.0))
                .filter(sessions::Column::Kind.eq(SessionKind::Browser.as_str()))
                .filter(sessions::Column::Id.ne(session.get()))
                .filter(valid(write.cutoffs))
                .exec(&txn)
                .await
                .map_err(infra)?
                .rows_affected
        } else {
            0
        };
        txn.commit().await.map_err(infra)?;
        Ok(LoginOutcome {
            session,
            created,
            replaced,
        })
    }

    async fn end(&self, id: SessionId, token_hash: Option<TokenHash>) -> Result<bool, InfraError> {
        let filter = match token_hash {
            Some(hash) => by_id_and_hash(id, &hash),
            None => Condition::all()
                .add(sessions::Column::Id.eq(id.get()))
                .add(sessions::Column::TokenHash.is_not_null()),
        };
        let result = ending(sessions::Entity::update_many())
            .filter(filter)
            .exec(&self.db)
            .await
            .map_err(infra)?;
        Ok(result.rows_affected == 1)
    }

    async fn end_for_user(
        &self,
        user: UserId,
        except: Option<SessionId>,
    ) -> Result<u64, InfraError> {
        end_for_user_in(&self.db, user, except).await
    }

    async fn data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
    ) -> Result<Option<SessionData>, InfraError> {
        let text: Option<String> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Data)
            .filter(by_id_and_hash(id, &token_hash))
            .into_tuple()
            .one(&self.db)
            .await
            .map_err(infra)?;
        text.map(|text| {
            serde_json::from_str(&text)
                .ok()
                .and_then(|object| SessionData::new(object).ok())
                .ok_or_else(|| corrupt("session data"))
        })
        .transpose()
    }

    async fn set_data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
        cutoffs: Cutoffs,
        data: SessionData,
    ) -> Result<bool, InfraError> {
        let text = serde_json::Value::Object(data.into_object()).to_string();
        let target = (id, &token_hash, cutoffs, None);
        write_while_valid(&self.db, target, sessions::Column::Data, text.into()).await
    }

    async fn list(
        &self,
        query: SessionQuery,
        cutoffs: Cutoffs,
    ) -> Result<Vec<SessionRecord>, InfraError> {
        let mut select = sessions::Entity::find()
            .select_only()
            .columns([
                sessions::Column::Id,
                sessions::Column::TokenHash,
                sessions::Column::IpAddress,
                sessions::Column::Kind,
                sessions::Column::UserId,
                sessions::Column::CreatedAt,
                sessions::Column::AuthenticatedAt,
                sessions::Column::LastActivityAt,
            ])
            .column(users::Column::Username)
            .column(users::Column::Superuser)
            .join(JoinType::LeftJoin, sessions::Relation::User.def())
            .filter(valid(cutoffs));
        if let Some(user) = query.user {
            select = select.filter(sessions::Column::UserId.eq(user.0));
        }
        if let Some(since) = query.active_since {
            select = select.filter(sessions::Column::LastActivityAt.gte(unix(since)));
        }
        if let Some(after) = query.after {
            select = select.filter(sessions::Column::Id.gt(after.get()));
        }
        select
            .order_by_asc(sessions::Column::Id)
            .limit(query.limit)
            .into_model::<SessionRow>()
            .all(&self.db)
            .await
            .map_err(infra)?
            .into_iter()
            .map(record)
            .collect()
    }

    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError> {
        sessions::Entity::find()
            .filter(sessions::Column::TokenHash.is_not_null())
            .filter(sessions::Column::LastActivityAt.gte(unix(since)))
            .count(&self.db)
            .await
            .map_err(infra)
    }

    async fn purge(
        &self,
        cutoffs: Cutoffs,
        batch: u64,
        sweep: Sweep,
    ) -> Result<(u64, u64), InfraError> {
        let ended = Condition::all().add(sessions::Column::TokenHash.is_null());
        let ended = delete_in_batches(&self.db, ended, batch, sweep).await?;
        let expired = delete_in_batches(&self.db, expired(cutoffs), batch, sweep).await?;
        Ok((expired, ended))
    }
}
