//! Logs via tracing, `pretty` or `json`, filtered by `RUST_LOG` (default `info`). Nothing
//! logged carries a token, credential, password or hash: the types that hold them redact
//! `Debug`, every instrumented operation skips its arguments and names only ids, and the
//! request span names only method, route, status and its ids.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the global subscriber; logs go to standard error, so standard output stays for
/// command results (`purge`, `openapi`). JSON lines carry the spans they happened in (the
/// request's method, route, status, request id and trace id, then each layer's operation),
/// so `RUST_LOG=debug` follows one request from the edge to its SQL statements (`sqlx::query`,
/// which logs a statement's text, never its bound values).
pub fn init(format: LogFormat) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // SeaORM's own statement log writes the bound values (token and password hashes) into the
    // text: never shown, whatever RUST_LOG says.
    if let Ok(quiet) = "sea_orm=warn".parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_span_list(true)
            .with_current_span(false)
            .init(),
    }
}
