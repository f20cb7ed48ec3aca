//! `SessionRepository` on SeaORM: the sessions table in one folder. `table` is its vocabulary
//! (R2's condition translated once, the row mapping), `hot_path` recognition's prebuilt
//! statements, and this adapter everything else. Every write that could race is conditional
//! (`... WHERE still valid`), never a read followed by a write. Ending a session deletes its
//! row.

mod hot_path;
pub(crate) mod table;

use std::sync::Arc;

use async_trait::async_trait;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use time::OffsetDateTime;
use websessions_domain::ports::{NewSession, SessionRepository, Sweep, Target};
use websessions_domain::{
    Cutoffs, InfraError, SessionData, SessionId, SessionQuery, SessionRecord, TokenHash, UserId,
};

use self::hot_path::HotPath;
use self::table::{SessionRow, hash_bytes, matches, select_records, unix, valid_at};
use crate::batches::Batches;
use crate::entity::sessions;
use crate::error::{corrupt, infra};

/// Sessions stored with SeaORM; recognition runs on the hot path chosen for the database.
#[derive(Clone, Debug)]
pub struct SeaSessions {
    db: DatabaseConnection,
    hot_path: Arc<dyn HotPath>,
}

impl SeaSessions {
    /// On PostgreSQL and MySQL/MariaDB, recognition gets its own connections, opened as needed
    /// up to the pool's size and with its acquire timeout (so the service holds at most twice
    /// that many).
    ///
    /// # Errors
    /// When the hot path's statements cannot be rendered for the database (a defect).
    pub fn new(db: DatabaseConnection) -> Result<Self, InfraError> {
        let hot_path = hot_path::for_database(&db)?;
        Ok(Self { db, hot_path })
    }

    /// Closes recognition's own connections (the shared pool is closed with its
    /// `DatabaseConnection`).
    pub async fn close(&self) {
        self.hot_path.close().await;
    }
}

/// Inserts a session row in `db` (possibly a transaction).
pub(crate) async fn insert<C: ConnectionTrait>(
    db: &C,
    session: NewSession,
) -> Result<SessionId, InfraError> {
    let now = unix(session.now);
    let row = sessions::ActiveModel {
        token_hash: Set(Some(hash_bytes(&session.token_hash))),
        ip_address: Set(session.ip_address.to_string()),
        user_id: Set(session.user.map(|u| u.0)),
        kind: Set(session.kind.as_str().to_owned()),
        created_at: Set(now),
        authenticated_at: Set(session.user.map(|_| now)),
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

#[async_trait]
impl SessionRepository for SeaSessions {
    async fn create(&self, session: NewSession) -> Result<SessionId, InfraError> {
        insert(&self.db, session).await
    }

    async fn find(&self, id: SessionId) -> Result<Option<SessionRecord>, InfraError> {
        let row = self.hot_path.find(id).await?;
        row.map(SessionRow::into_record).transpose()
    }

    async fn touch(&self, target: &Target, now: OffsetDateTime) -> Result<bool, InfraError> {
        self.hot_path.touch(target, now).await
    }

    async fn touch_and_find(
        &self,
        target: &Target,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>, InfraError> {
        let row = self.hot_path.touch_and_find(target, now).await?;
        row.map(SessionRow::into_record).transpose()
    }

    async fn end(&self, target: &Target) -> Result<bool, InfraError> {
        let result = sessions::Entity::delete_many()
            .filter(matches(target))
            .exec(&self.db)
            .await
            .map_err(infra)?;
        Ok(result.rows_affected == 1)
    }

    async fn end_by_id(
        &self,
        id: SessionId,
        owner: Option<UserId>,
        cutoffs: Cutoffs,
    ) -> Result<bool, InfraError> {
        let mut delete = sessions::Entity::delete_many()
            .filter(sessions::Column::Id.eq(id.get()))
            .filter(valid_at(cutoffs));
        if let Some(owner) = owner {
            delete = delete.filter(sessions::Column::UserId.eq(owner.0));
        }
        let result = delete.exec(&self.db).await.map_err(infra)?;
        Ok(result.rows_affected == 1)
    }

    async fn data(
        &self,
        id: SessionId,
        token_hash: TokenHash,
    ) -> Result<Option<SessionData>, InfraError> {
        let text: Option<String> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Data)
            .filter(sessions::Column::Id.eq(id.get()))
            .filter(sessions::Column::TokenHash.eq(hash_bytes(&token_hash)))
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

    async fn set_data(&self, target: &Target, data: SessionData) -> Result<bool, InfraError> {
        let text = serde_json::Value::Object(data.into_object()).to_string();
        let result = sessions::Entity::update_many()
            .col_expr(sessions::Column::Data, Expr::value(text))
            .filter(matches(target))
            .exec(&self.db)
            .await
            .map_err(infra)?;
        Ok(result.rows_affected == 1)
    }

    async fn list(
        &self,
        query: SessionQuery,
        cutoffs: Cutoffs,
    ) -> Result<Vec<SessionRecord>, InfraError> {
        let mut select = select_records().filter(valid_at(cutoffs));
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
            .map(SessionRow::into_record)
            .collect()
    }

    async fn count_active_since(&self, since: OffsetDateTime) -> Result<u64, InfraError> {
        sessions::Entity::find()
            .filter(sessions::Column::LastActivityAt.gte(unix(since)))
            .count(&self.db)
            .await
            .map_err(infra)
    }

    async fn purge(&self, cutoffs: Cutoffs, batch: u64, sweep: Sweep) -> Result<u64, InfraError> {
        let mut deleted = 0;
        for (condition, order) in table::expired(cutoffs) {
            let expired = Batches::<sessions::Entity> {
                key: sessions::Column::Id,
                order,
                condition,
            };
            deleted += expired.delete::<i64>(&self.db, batch, sweep).await?;
        }
        Ok(deleted)
    }
}
