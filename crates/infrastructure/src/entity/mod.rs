//! SeaORM entities of the tables `migrations/` creates. Timestamps are Unix seconds.

pub mod account_lockouts;
pub mod audit_chain;
pub mod audit_records;
pub mod login_failures;
pub mod sessions;
pub mod users;
