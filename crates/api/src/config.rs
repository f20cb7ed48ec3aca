//! Configuration (SPEC §5): every `WEBSESSIONS_*` variable is also a flag of every command,
//! named once, in its `#[arg]`. Each value is parsed by its own typed parser (`value_parser`),
//! which holds that value's bounds; the bounds of the session rules live with the rules, in
//! the domain (`SessionPolicy::new`, `LockoutPolicy::new`, `TokenLength::new`), and
//! `ConfigArgs::validate` applies them. A bad value stops any command with exit code 2 and one
//! line naming the variable (`ConfigError`, whose variable name is read from the `#[arg]`).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use clap::{ArgAction, Args, CommandFactory};
use ipnet::IpNet;
use time::Duration;
use websessions_domain::policy::MAX_SETTING;
use websessions_domain::{
    LockoutPolicy, PolicyError, Rate, SessionPolicy, SessionSettings, TokenLength,
};

use self::parsers::{
    boolean, cookie_name, duration, duration_between, log_format, origins, proxies, rate,
    same_site, socket_address, token_length, whole,
};
use crate::http::{CookieSettings, SameSite, TrustedOrigins};
use crate::telemetry::LogFormat;

/// The settings, as given by flags or the environment, each parsed and within its own bounds.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// Database URL: sqlite://FILE?mode=rwc, postgres://... or mysql://...
    #[arg(long, env = "WEBSESSIONS_DATABASE_URL", default_value = "sqlite://websessions.db?mode=rwc",
        global = true, hide_env_values = true, value_parser = DatabaseUrl::parse)]
    pub database_url: DatabaseUrl,
    /// Largest number of database connections the server holds (1 to 1000).
    #[arg(long, env = "WEBSESSIONS_DATABASE_MAX_CONNECTIONS", default_value = "10", global = true,
        value_parser = whole::<u32>(1, 1000))]
    pub database_max_connections: u32,
    /// How long a request waits for an unreachable database before answering 503 (0 to 60 s;
    /// 0: at once).
    #[arg(long, env = "WEBSESSIONS_DATABASE_WAIT", default_value = "5s", global = true,
        value_parser = duration_between(Duration::ZERO, Duration::minutes(1)))]
    pub database_wait: Duration,
    /// Address to listen on.
    #[arg(long, env = "WEBSESSIONS_LISTEN", default_value = "127.0.0.1:8080", global = true,
        value_parser = socket_address)]
    pub listen: SocketAddr,
    /// Idle timeout (CamCOPS's SESSION_TIMEOUT_MINUTES).
    #[arg(long, env = "WEBSESSIONS_IDLE_TIMEOUT", default_value = "30m", global = true,
        value_parser = duration)]
    pub idle_timeout: Duration,
    /// Absolute timeout since login or creation; 0 = none, else at least the idle timeout.
    #[arg(long, env = "WEBSESSIONS_ABSOLUTE_TIMEOUT", default_value = "12h", global = true,
        value_parser = duration)]
    pub absolute_timeout: Duration,
    /// Whether a session is valid only from the IP address it was created from.
    #[arg(long, env = "WEBSESSIONS_CHECK_IP", default_value = "true", global = true,
        value_parser = boolean, action = ArgAction::Set)]
    pub check_ip: bool,
    /// Skip the last-activity write while the stored value is younger than this (0 = always).
    #[arg(long, env = "WEBSESSIONS_TOUCH_INTERVAL", default_value = "15s", global = true,
        value_parser = duration)]
    pub touch_interval: Duration,
    /// Random bytes per token, 16 to 64.
    #[arg(long, env = "WEBSESSIONS_TOKEN_BYTES", default_value = "16", global = true,
        value_parser = token_length)]
    pub token_bytes: TokenLength,
    /// Failed logins per lock (at least 1).
    #[arg(long, env = "WEBSESSIONS_LOCKOUT_THRESHOLD", default_value = "10", global = true,
        value_parser = whole::<u32>(0, u32::MAX))]
    pub lockout_threshold: u32,
    /// Lock duration per multiple of the threshold.
    #[arg(long, env = "WEBSESSIONS_LOCKOUT_INCREMENT", default_value = "10m", global = true,
        value_parser = duration)]
    pub lockout_increment: Duration,
    /// A browser login ends the user's other browser sessions.
    #[arg(long, env = "WEBSESSIONS_SINGLE_BROWSER_SESSION", default_value = "true",
        global = true, value_parser = boolean, action = ArgAction::Set)]
    pub single_browser_session: bool,
    /// How often the server runs maintenance (1 s to 365 days).
    #[arg(long, env = "WEBSESSIONS_HOUSEKEEPING_INTERVAL", default_value = "60s", global = true,
        value_parser = duration_between(Duration::SECOND, MAX_SETTING))]
    pub housekeeping_interval: Duration,
    /// How long audit records are kept (R19); 0 keeps them all.
    #[arg(long, env = "WEBSESSIONS_AUDIT_RETENTION", default_value = "400d", global = true,
        value_parser = duration_between(Duration::ZERO, Duration::days(100 * 365)))]
    pub audit_retention: Duration,
    /// Name of the session cookie.
    #[arg(long, env = "WEBSESSIONS_COOKIE_NAME", default_value = "__Host-websession",
        global = true, value_parser = cookie_name)]
    pub cookie_name: String,
    /// Whether the cookie carries `Secure` (a `__Host-` name requires it).
    #[arg(long, env = "WEBSESSIONS_COOKIE_SECURE", default_value = "true", global = true,
        value_parser = boolean, action = ArgAction::Set)]
    pub cookie_secure: bool,
    /// SameSite attribute of the cookie: lax or strict.
    #[arg(long, env = "WEBSESSIONS_COOKIE_SAMESITE", default_value = "lax", global = true,
        value_parser = same_site)]
    pub cookie_samesite: SameSite,
    /// Comma-separated CIDRs of proxies whose X-Forwarded-For is believed.
    #[arg(long, env = "WEBSESSIONS_TRUSTED_PROXIES", default_value = "", global = true,
        value_parser = proxies)]
    pub trusted_proxies: Proxies,
    /// Comma-separated origins (scheme://host[:port]) allowed to send browser writes (R12) and
    /// to be returned to after a sign-in.
    #[arg(long, env = "WEBSESSIONS_TRUSTED_ORIGINS", default_value = "", global = true,
        value_parser = origins)]
    pub trusted_origins: TrustedOrigins,
    /// Log format: pretty or json.
    #[arg(long, env = "WEBSESSIONS_LOG_FORMAT", default_value = "pretty", global = true,
        value_parser = log_format)]
    pub log_format: LogFormat,
    /// New anonymous sessions per client address: N/s, N/min or N/h, or 0 for no limit.
    #[arg(long, env = "WEBSESSIONS_SESSION_START_LIMIT", default_value = "600/min",
        global = true, value_parser = rate)]
    pub session_start_limit: Limit,
    /// Login attempts per client address: N/s, N/min or N/h, or 0 for no limit.
    #[arg(long, env = "WEBSESSIONS_LOGIN_LIMIT", default_value = "120/min", global = true,
        value_parser = rate)]
    pub login_limit: Limit,
    /// Password checks that may wait for a hashing thread (1 to 100000); beyond, 503.
    #[arg(long, env = "WEBSESSIONS_MAX_PENDING_HASHES", default_value = "64", global = true,
        value_parser = whole::<usize>(1, 100_000))]
    pub max_pending_hashes: usize,
    /// How long a request's head may take to arrive, from its first byte (R16; 1 s to 300 s).
    #[arg(long, env = "WEBSESSIONS_HEADER_TIMEOUT", default_value = "10s", global = true,
        value_parser = duration_between(Duration::SECOND, Duration::seconds(300)))]
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive, from its head (R16; 1 s to 300 s).
    #[arg(long, env = "WEBSESSIONS_BODY_TIMEOUT", default_value = "10s", global = true,
        value_parser = duration_between(Duration::SECOND, Duration::seconds(300)))]
    pub body_timeout: Duration,
    /// How long a connection may stay open with no request (R16; from the header timeout to
    /// 1 h).
    #[arg(long, env = "WEBSESSIONS_IDLE_CONNECTION_TIMEOUT", default_value = "60s",
        global = true, value_parser = duration_between(Duration::SECOND, Duration::HOUR))]
    pub idle_connection_timeout: Duration,
    /// Open connections at most (R16; 1 to 1000000). Unset: 10000, or fewer where the
    /// open-file limit allows fewer.
    #[arg(long, env = "WEBSESSIONS_MAX_CONNECTIONS", global = true,
        value_parser = whole::<usize>(1, 1_000_000))]
    pub max_connections: Option<usize>,
    /// Whether the sign-in and account pages are served (`/login`, `/account`).
    #[arg(long, env = "WEBSESSIONS_PORTAL", default_value = "true", global = true,
        value_parser = boolean, action = ArgAction::Set)]
    pub portal: bool,
}

impl fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigArgs")
            .field("database_url", &self.database_url)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// A database URL websessions can open. `Debug` and `Display` never show its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// A URL of SQLite, PostgreSQL or MySQL/MariaDB; the refusal never quotes it (it may hold
    /// a password).
    pub fn parse(text: &str) -> Result<Self, String> {
        let url = text.trim();
        match url.split_once("://").map(|(scheme, _)| scheme) {
            Some("sqlite" | "postgres" | "postgresql" | "mysql") => Ok(Self(url.to_owned())),
            _ => Err("expected sqlite://FILE?mode=rwc, postgres://... or mysql://...".into()),
        }
    }

    /// The URL itself, for the driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with this URL, and the password in it, replaced by their redacted forms.
    pub fn redact_in(&self, text: &str) -> String {
        let text = text.replace(&self.0, &self.to_string());
        match password(&self.0) {
            Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
            _ => text,
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The URL with its password replaced.
impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = &self.0;
        let Some((scheme, rest)) = url.split_once("://") else {
            return f.write_str(url);
        };
        let (authority, tail) = rest
            .find(['/', '?'])
            .map_or((rest, ""), |i| rest.split_at(i));
        match authority.rsplit_once('@') {
            Some((credentials, host)) => {
                let user = credentials
                    .split_once(':')
                    .map_or(credentials, |(user, _)| user);
                let hidden = if credentials.contains(':') {
                    ":[redacted]"
                } else {
                    ""
                };
                write!(f, "{scheme}://{user}{hidden}@{host}{tail}")
            }
            None => f.write_str(url),
        }
    }
}

/// The password part of `scheme://user:password@host/...`.
fn password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let credentials = authority.rsplit_once('@')?.0;
    credentials.split_once(':').map(|(_, password)| password)
}

/// The trusted proxies (R11).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxies(pub Vec<IpNet>);

/// An R14 limit; `None` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<Rate>);

/// A setting that failed validation; `Display` is the one line an operator sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

/// The variable of the setting whose field is `id`, as its `#[arg]` names it.
fn variable(id: &str) -> String {
    ConfigArgs::augment_args(clap::Command::new("websessions"))
        .get_arguments()
        .find(|arg| arg.get_id() == id)
        .and_then(|arg| arg.get_env())
        .map_or_else(|| id.to_owned(), |env| env.to_string_lossy().into_owned())
}

/// The error for the setting whose field is `id`.
fn refused(id: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable(id),
        reason: reason.into(),
    }
}

impl ConfigError {
    /// The one line for a value clap's parsing refused (a typed parser's, which names the
    /// value and why); `None` for clap's other errors (an unknown flag, `--help`), which clap
    /// reports itself.
    pub fn from_clap<C: CommandFactory>(error: &clap::Error) -> Option<Self> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        if !matches!(
            error.kind(),
            ErrorKind::ValueValidation | ErrorKind::InvalidValue
        ) {
            return None;
        }
        let ContextValue::String(flag) = error.get(ContextKind::InvalidArg)? else {
            return None;
        };
        // `--idle-timeout <IDLE_TIMEOUT>`: the long name, then the argument's.
        let long = flag.trim_start_matches('-').split([' ', '=']).next()?;
        let command = C::command();
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))?;
        let reason = std::error::Error::source(error)
            .map(ToString::to_string)
            .unwrap_or_else(|| "not a valid value".to_owned());
        let value = match error.get(ContextKind::InvalidValue) {
            Some(ContextValue::String(value)) if arg.get_id() != "database_url" => {
                format!("{value:?}: ")
            }
            _ => String::new(),
        };
        Some(Self {
            variable: arg.get_env().map_or_else(
                || arg.get_id().to_string(),
                |env| env.to_string_lossy().into_owned(),
            ),
            reason: format!("{value}{reason}"),
        })
    }
}

/// R14's limits; `None` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub session_start: Option<Rate>,
    pub login: Option<Rate>,
}

/// Validated configuration. `Debug` never shows the database password.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    pub database_wait: StdDuration,
    pub listen: SocketAddr,
    pub policy: SessionPolicy,
    pub lockout: LockoutPolicy,
    pub housekeeping_interval: StdDuration,
    /// `None` keeps every audit record.
    pub audit_retention: Option<Duration>,
    pub cookie: CookieSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub trusted_origins: TrustedOrigins,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub max_pending_hashes: usize,
    pub portal: bool,
    pub edge: EdgeBounds,
}

/// R16's bounds on every connection, as configured; `max_connections` unset is the open-file
/// limit's to decide (`server`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgeBounds {
    pub header_timeout: StdDuration,
    pub body_timeout: StdDuration,
    pub idle_connection_timeout: StdDuration,
    pub max_connections: Option<usize>,
}

impl ConfigArgs {
    /// The settings together: the session rules' bounds (the domain's), and the cookie's name
    /// against its `Secure` flag.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let settings = SessionSettings {
            idle_timeout: self.idle_timeout,
            absolute_timeout: (!self.absolute_timeout.is_zero()).then_some(self.absolute_timeout),
            check_ip: self.check_ip,
            touch_interval: self.touch_interval,
            token_length: self.token_bytes,
            single_browser_session: self.single_browser_session,
        };
        let bound = |error: PolicyError| {
            let id = match error {
                PolicyError::IdleTimeout => "idle_timeout",
                PolicyError::AbsoluteTimeout => "absolute_timeout",
                PolicyError::TouchInterval => "touch_interval",
                PolicyError::LockoutThreshold => "lockout_threshold",
                PolicyError::LockoutIncrement => "lockout_increment",
            };
            refused(id, error.to_string())
        };
        let policy = SessionPolicy::new(settings).map_err(bound)?;
        let lockout =
            LockoutPolicy::new(self.lockout_threshold, self.lockout_increment).map_err(bound)?;
        if !self.cookie_secure && self.cookie_name.starts_with("__Host-") {
            return Err(refused(
                "cookie_secure",
                "false is not allowed with a __Host- cookie name (browsers would drop the \
                 cookie); set WEBSESSIONS_COOKIE_NAME too",
            ));
        }
        if self.idle_connection_timeout < self.header_timeout {
            return Err(refused(
                "idle_connection_timeout",
                "must be at least the header timeout (WEBSESSIONS_HEADER_TIMEOUT)",
            ));
        }
        Ok(Config {
            database_url: self.database_url.clone(),
            database_max_connections: self.database_max_connections,
            database_wait: self.database_wait.unsigned_abs(),
            listen: self.listen,
            policy,
            lockout,
            housekeeping_interval: self.housekeeping_interval.unsigned_abs(),
            audit_retention: (!self.audit_retention.is_zero()).then_some(self.audit_retention),
            cookie: CookieSettings {
                name: self.cookie_name.clone(),
                secure: self.cookie_secure,
                same_site: self.cookie_samesite,
            },
            trusted_proxies: self.trusted_proxies.0.clone(),
            trusted_origins: self.trusted_origins.clone(),
            log_format: self.log_format,
            limits: Limits {
                session_start: self.session_start_limit.0,
                login: self.login_limit.0,
            },
            max_pending_hashes: self.max_pending_hashes,
            portal: self.portal,
            edge: EdgeBounds {
                header_timeout: self.header_timeout.unsigned_abs(),
                body_timeout: self.body_timeout.unsigned_abs(),
                idle_connection_timeout: self.idle_connection_timeout.unsigned_abs(),
                max_connections: self.max_connections,
            },
        })
    }
}

/// Parses the command line and the environment into `C` and its validated configuration; the
/// one line for a bad value (exit 2), or clap's own error.
pub fn parse<C: clap::Parser>(config: impl Fn(&C) -> &ConfigArgs) -> Result<(C, Config), Rejected> {
    let cli = C::try_parse().map_err(|error| match ConfigError::from_clap::<C>(&error) {
        Some(refused) => Rejected::Config(refused),
        None => Rejected::Clap(error),
    })?;
    let validated = config(&cli).validate().map_err(Rejected::Config)?;
    Ok((cli, validated))
}

/// Why the command line was not taken.
#[derive(Debug)]
pub enum Rejected {
    /// A setting's value, named by its variable.
    Config(ConfigError),
    /// Anything else clap reports (an unknown flag, `--help`, `--version`).
    Clap(clap::Error),
}

mod parsers;
#[cfg(test)]
mod tests;
