//! The benchmark's peer: `GET /` answers who the session's user is, read with tower-sessions
//! 0.14 in its default configuration (the session is loaded from the store when the handler
//! first reads it: one row per request; nothing is written back unless it changed).
//!
//! `peer seed URL N` creates N sessions (user `bench`, expiring in a day) and prints their
//! cookie values, one per line; `peer serve URL PORT` serves. The pool has 10 connections
//! and the runtime tokio's default worker threads, as websessions; SQLite runs in WAL mode
//! with synchronous=NORMAL and a 10 s busy timeout, as websessions.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::{Session, SessionManagerLayer, SessionStore};
use tower_sessions_sqlx_store::sqlx::postgres::PgPoolOptions;
use tower_sessions_sqlx_store::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

const POOL: u32 = 10;

async fn whoami(session: Session) -> Json<Value> {
    let user: Option<String> = session.get("user").await.ok().flatten();
    Json(json!({ "id": session.id().map(|id| id.to_string()), "user": user }))
}

async fn seed<S: SessionStore>(store: S, n: usize) {
    for _ in 0..n {
        let mut record = Record {
            id: Id::default(),
            data: HashMap::from([("user".to_owned(), json!("bench"))]),
            expiry_date: OffsetDateTime::now_utc() + time::Duration::days(1),
        };
        store.create(&mut record).await.expect("create a session");
        println!("{}", record.id);
    }
}

async fn serve<S: SessionStore + Clone>(store: S, port: u16) {
    let sessions = SessionManagerLayer::new(store).with_secure(false);
    let app = Router::new().route("/", get(whoami)).layer(sessions);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    axum::serve(listener, app).await.expect("serve");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (command, url, arg) = match args.as_slice() {
        [_, command, url, arg] => (command.as_str(), url.as_str(), arg.as_str()),
        _ => panic!("usage: peer seed URL N | peer serve URL PORT"),
    };
    if url.starts_with("postgres") {
        let pool = PgPoolOptions::new()
            .max_connections(POOL)
            .connect(url)
            .await
            .expect("connect");
        let store = PostgresStore::new(pool);
        store.migrate().await.expect("migrate");
        match command {
            "seed" => seed(store, arg.parse().expect("N")).await,
            _ => serve(store, arg.parse().expect("PORT")).await,
        }
    } else {
        let options = SqliteConnectOptions::from_str(url)
            .expect("a SQLite URL")
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(POOL)
            .connect_with(options)
            .await
            .expect("connect");
        let store = SqliteStore::new(pool);
        store.migrate().await.expect("migrate");
        match command {
            "seed" => seed(store, arg.parse().expect("N")).await,
            _ => serve(store, arg.parse().expect("PORT")).await,
        }
    }
}
