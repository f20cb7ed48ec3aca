//! R19's audit trail: the records, each linked to its predecessor by hash, and the chain's two
//! ends in one row (the head, which every append locks; the anchor, the last record retention
//! deleted). Indexes serve the admin API's filters and retention's walk by time.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuditRecords {
    Table,
    Seq,
    At,
    Event,
    Username,
    Actor,
    SessionId,
    ClientIp,
    UserAgent,
    Details,
    PrevHash,
    Hash,
}

#[derive(DeriveIden)]
enum AuditChain {
    Table,
    Id,
    AnchorSeq,
    AnchorHash,
    HeadSeq,
    HeadHash,
}

/// As the users' table: a utf8mb4 index within MySQL's key length limit.
const NAME_LEN: u32 = 191;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditRecords::Table)
                    .col(big_integer(AuditRecords::Seq).primary_key())
                    .col(big_integer(AuditRecords::At))
                    .col(string_len(AuditRecords::Event, 32))
                    .col(string_len_null(AuditRecords::Username, NAME_LEN))
                    .col(string_len_null(AuditRecords::Actor, NAME_LEN))
                    .col(big_integer_null(AuditRecords::SessionId))
                    .col(string_len_null(AuditRecords::ClientIp, 45))
                    .col(string_len_null(AuditRecords::UserAgent, 256))
                    .col(text(AuditRecords::Details))
                    .col(var_binary(AuditRecords::PrevHash, 32))
                    .col(var_binary(AuditRecords::Hash, 32))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("idx_audit_records_at", AuditRecords::At),
            ("idx_audit_records_username", AuditRecords::Username),
            ("idx_audit_records_event", AuditRecords::Event),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(AuditRecords::Table)
                        .col(column)
                        .col(AuditRecords::Seq)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(AuditChain::Table)
                    .col(integer(AuditChain::Id).primary_key())
                    .col(big_integer(AuditChain::AnchorSeq))
                    .col(var_binary(AuditChain::AnchorHash, 32))
                    .col(big_integer(AuditChain::HeadSeq))
                    .col(var_binary(AuditChain::HeadHash, 32))
                    .to_owned(),
            )
            .await?;
        let genesis = vec![0u8; 32];
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(AuditChain::Table)
                    .columns([
                        AuditChain::Id,
                        AuditChain::AnchorSeq,
                        AuditChain::AnchorHash,
                        AuditChain::HeadSeq,
                        AuditChain::HeadHash,
                    ])
                    .values_panic([
                        1.into(),
                        0i64.into(),
                        genesis.clone().into(),
                        0i64.into(),
                        genesis.into(),
                    ])
                    .to_owned(),
            )
            .await?;
        // Usernames as typed and user agents: any text, compared byte for byte.
        crate::utf8mb4_bin(manager, &["audit_records", "audit_chain"]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditChain::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AuditRecords::Table).to_owned())
            .await
    }
}
