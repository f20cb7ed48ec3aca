//! The websessions schema, one migration set for SQLite, PostgreSQL and MySQL/MariaDB.
//!
//! Timestamps are stored as whole Unix seconds (BIGINT) so that comparisons behave the same on
//! every backend and no time zone setting of a server can shift them.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_schema;
mod m20261127_000001_harden;
mod m20261208_000001_provisional_locks;

/// Applies the migrations in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_schema::Migration),
            Box::new(m20261127_000001_harden::Migration),
            Box::new(m20261208_000001_provisional_locks::Migration),
        ]
    }
}
