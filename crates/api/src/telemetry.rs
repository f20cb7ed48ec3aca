//! Logs via tracing, `pretty` or `json`, filtered by `RUST_LOG` (default `info`). Nothing
//! logged carries a token, credential or password: the types that hold them redact `Debug`
//! and the request log names only method, path and status.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber; logs go to standard error, so standard output stays for
/// command results (`purge`, `openapi`).
pub fn init(format: LogFormat) {
    // SQL statements (sea_orm, sqlx) carry bound values such as token hashes: quiet by default.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sea_orm=warn,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
