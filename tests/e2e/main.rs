//! End-to-end: the real `websessions` binary, a real database (SQLite always; PostgreSQL and
//! MariaDB when `WEBSESSIONS_TEST_POSTGRES_URL` / `WEBSESSIONS_TEST_MYSQL_URL` are set), real
//! HTTP; real nginx and Chromium where the machine has them. Each test starts its own server on
//! a free port with a fresh database. By topic: the session holder's lifecycle (`session`),
//! logins and lockout (`lockout`), administration (`admin`), limits and hostile input
//! (`limits`), client state (`data`), the audit trail's command (`audit`), the edge's bounds on connections (`edge`), the gateway
//! (`gateway`), database restarts (`restart`), the pages in a browser (`browser`), and the
//! document proved by third-party tools (`tools`); what they share is in `support`, `server`
//! and `contract`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod audit;
mod browser;
mod chromium;
mod contract;
mod data;
mod edge;
mod gateway;
mod limits;
mod lockout;
mod nginx;
mod restart;
mod server;
mod session;
mod support;
mod tools;
