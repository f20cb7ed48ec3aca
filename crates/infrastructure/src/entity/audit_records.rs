use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    pub at: i64,
    pub event: String,
    pub username: Option<String>,
    pub actor: Option<String>,
    pub session_id: Option<i64>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The event's details, their canonical JSON object as text (R19).
    #[sea_orm(column_type = "Text")]
    pub details: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
