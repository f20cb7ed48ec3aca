//! websessions' API layer: configuration, the command line, telemetry and the poem-openapi
//! HTTP server. It talks to the rules only through `websessions_domain::SessionService`;
//! `main.rs` is the composition root and the only place that names concrete adapters.

pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod server;
pub mod telemetry;
