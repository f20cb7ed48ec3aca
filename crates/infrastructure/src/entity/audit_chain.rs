use sea_orm::entity::prelude::*;

/// The audit chain's two ends: one row, `id = 1`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_chain")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i32,
    pub anchor_seq: i64,
    pub anchor_hash: Vec<u8>,
    pub head_seq: i64,
    pub head_hash: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
