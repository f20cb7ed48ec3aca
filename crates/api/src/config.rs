//! Configuration (SPEC §5): every `WEBSESSIONS_*` variable is also a flag. Values are read as
//! text and validated here, so that a bad one stops any command with one line naming the
//! variable (exit code 2).

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration as StdDuration;

use clap::Args;
use ipnet::IpNet;
use time::Duration;
use websessions_domain::{LockoutPolicy, PolicyError, SessionPolicy, SessionSettings, TokenLength};
use websessions_infrastructure::Rate;

use crate::http::{Origin, TrustedOrigins};

/// The raw settings, as given by flags or the environment.
#[derive(Args, Clone)]
pub struct ConfigArgs {
    /// Database URL: sqlite://FILE?mode=rwc, postgres://... or mysql://...
    #[arg(
        long,
        env = "WEBSESSIONS_DATABASE_URL",
        default_value = "sqlite://websessions.db?mode=rwc",
        global = true,
        hide_env_values = true
    )]
    pub database_url: String,
    /// Largest number of database connections the server holds.
    #[arg(
        long,
        env = "WEBSESSIONS_DATABASE_MAX_CONNECTIONS",
        default_value = "10",
        global = true
    )]
    pub database_max_connections: String,
    /// How long a request waits for an unreachable database before answering 503 (0 to 60 s;
    /// 0: at once).
    #[arg(
        long,
        env = "WEBSESSIONS_DATABASE_WAIT",
        default_value = "5s",
        global = true
    )]
    pub database_wait: String,
    /// Address to listen on.
    #[arg(
        long,
        env = "WEBSESSIONS_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: String,
    /// Idle timeout (CamCOPS's SESSION_TIMEOUT_MINUTES).
    #[arg(
        long,
        env = "WEBSESSIONS_IDLE_TIMEOUT",
        default_value = "30m",
        global = true
    )]
    pub idle_timeout: String,
    /// Absolute timeout since login or creation; 0 = none, else at least the idle timeout.
    #[arg(
        long,
        env = "WEBSESSIONS_ABSOLUTE_TIMEOUT",
        default_value = "12h",
        global = true
    )]
    pub absolute_timeout: String,
    /// Whether a session is valid only from the IP address it was created from.
    #[arg(
        long,
        env = "WEBSESSIONS_CHECK_IP",
        default_value = "true",
        global = true
    )]
    pub check_ip: String,
    /// Skip the last-activity write while the stored value is younger than this (0 = always).
    #[arg(
        long,
        env = "WEBSESSIONS_TOUCH_INTERVAL",
        default_value = "15s",
        global = true
    )]
    pub touch_interval: String,
    /// Random bytes per token, 16 to 64.
    #[arg(
        long,
        env = "WEBSESSIONS_TOKEN_BYTES",
        default_value = "16",
        global = true
    )]
    pub token_bytes: String,
    /// Failed logins per lock (at least 1).
    #[arg(
        long,
        env = "WEBSESSIONS_LOCKOUT_THRESHOLD",
        default_value = "10",
        global = true
    )]
    pub lockout_threshold: String,
    /// Lock duration per multiple of the threshold.
    #[arg(
        long,
        env = "WEBSESSIONS_LOCKOUT_INCREMENT",
        default_value = "10m",
        global = true
    )]
    pub lockout_increment: String,
    /// A browser login ends the user's other browser sessions.
    #[arg(
        long,
        env = "WEBSESSIONS_SINGLE_BROWSER_SESSION",
        default_value = "true",
        global = true
    )]
    pub single_browser_session: String,
    /// How often the server runs maintenance.
    #[arg(
        long,
        env = "WEBSESSIONS_HOUSEKEEPING_INTERVAL",
        default_value = "60s",
        global = true
    )]
    pub housekeeping_interval: String,
    /// Name of the session cookie.
    #[arg(
        long,
        env = "WEBSESSIONS_COOKIE_NAME",
        default_value = "__Host-websession",
        global = true
    )]
    pub cookie_name: String,
    /// Whether the cookie carries `Secure` (a `__Host-` name requires it).
    #[arg(
        long,
        env = "WEBSESSIONS_COOKIE_SECURE",
        default_value = "true",
        global = true
    )]
    pub cookie_secure: String,
    /// SameSite attribute of the cookie: lax or strict.
    #[arg(
        long,
        env = "WEBSESSIONS_COOKIE_SAMESITE",
        default_value = "lax",
        global = true
    )]
    pub cookie_samesite: String,
    /// Comma-separated CIDRs of proxies whose X-Forwarded-For is believed.
    #[arg(
        long,
        env = "WEBSESSIONS_TRUSTED_PROXIES",
        default_value = "",
        global = true
    )]
    pub trusted_proxies: String,
    /// Comma-separated origins (https://host[:port] or host[:port]) allowed cross-site.
    #[arg(
        long,
        env = "WEBSESSIONS_TRUSTED_ORIGINS",
        default_value = "",
        global = true
    )]
    pub trusted_origins: String,
    /// Log format: pretty or json.
    #[arg(
        long,
        env = "WEBSESSIONS_LOG_FORMAT",
        default_value = "pretty",
        global = true
    )]
    pub log_format: String,
    /// New anonymous sessions per client address: N/s, N/min or N/h, or 0 for no limit.
    #[arg(
        long,
        env = "WEBSESSIONS_SESSION_START_LIMIT",
        default_value = "600/min",
        global = true
    )]
    pub session_start_limit: String,
    /// Login attempts per client address: N/s, N/min or N/h, or 0 for no limit.
    #[arg(
        long,
        env = "WEBSESSIONS_LOGIN_LIMIT",
        default_value = "120/min",
        global = true
    )]
    pub login_limit: String,
    /// Password checks that may wait for a hashing thread (at least 1); beyond, 503.
    #[arg(
        long,
        env = "WEBSESSIONS_MAX_PENDING_HASHES",
        default_value = "64",
        global = true
    )]
    pub max_pending_hashes: String,
    /// Whether the sign-in and account pages are served (`/login`, `/account`).
    #[arg(
        long,
        env = "WEBSESSIONS_PORTAL",
        default_value = "true",
        global = true
    )]
    pub portal: String,
}

impl fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigArgs")
            .field("database_url", &redacted(&self.database_url))
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// `text` with `url`, and the password in it, replaced by their redacted forms.
pub fn redacted_in(text: &str, url: &str) -> String {
    let text = text.replace(url, &redacted(url));
    match password(url) {
        Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
        _ => text,
    }
}

/// The password part of `scheme://user:password@host/...`.
fn password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let credentials = authority.rsplit_once('@')?.0;
    credentials.split_once(':').map(|(_, password)| password)
}

/// A database URL with its password replaced, for anything that prints it.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
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
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// A setting that failed validation; `Display` is the one line an operator sees.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

fn bad(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

/// SameSite attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How the session cookie is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
}

/// R14's limits; `None` is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub session_start: Option<Rate>,
    pub login: Option<Rate>,
}

/// Validated configuration. `Debug` never shows the database password.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub database_wait: StdDuration,
    pub listen: SocketAddr,
    pub policy: SessionPolicy,
    pub lockout: LockoutPolicy,
    pub housekeeping_interval: StdDuration,
    pub cookie: CookieSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub trusted_origins: TrustedOrigins,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub max_pending_hashes: usize,
    pub portal: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &redacted(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_wait", &self.database_wait)
            .field("listen", &self.listen)
            .field("policy", &self.policy)
            .field("lockout", &self.lockout)
            .field("housekeeping_interval", &self.housekeeping_interval)
            .field("cookie", &self.cookie)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("trusted_origins", &self.trusted_origins)
            .field("log_format", &self.log_format)
            .field("limits", &self.limits)
            .field("max_pending_hashes", &self.max_pending_hashes)
            .field("portal", &self.portal)
            .finish()
    }
}

const DURATION_HINT: &str = "expected a duration such as 90s, 30m or 12h";

/// A domain bound, named by the variable that broke it.
fn refused(error: PolicyError) -> ConfigError {
    let variable = match error {
        PolicyError::IdleTimeout => "WEBSESSIONS_IDLE_TIMEOUT",
        PolicyError::AbsoluteTimeout => "WEBSESSIONS_ABSOLUTE_TIMEOUT",
        PolicyError::TouchInterval => "WEBSESSIONS_TOUCH_INTERVAL",
        PolicyError::LockoutThreshold => "WEBSESSIONS_LOCKOUT_THRESHOLD",
        PolicyError::LockoutIncrement => "WEBSESSIONS_LOCKOUT_INCREMENT",
    };
    bad(variable, error.to_string())
}

fn duration(variable: &'static str, text: &str) -> Result<Duration, ConfigError> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let parsed = humantime::parse_duration(text)
        .map_err(|e| bad(variable, format!("{text:?}: {e}; {DURATION_HINT}")))?;
    Duration::try_from(parsed).map_err(|_| bad(variable, format!("{text:?} is too long")))
}

fn boolean(variable: &'static str, text: &str) -> Result<bool, ConfigError> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(bad(variable, format!("{other:?}: expected true or false"))),
    }
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// A whole number from `text` within `range`, or a refusal naming `variable`.
fn whole<T>(
    variable: &'static str,
    text: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display,
{
    text.trim()
        .parse::<T>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| {
            bad(
                variable,
                format!(
                    "{text:?}: expected a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            )
        })
}

/// An R14 limit: `N/s`, `N/min` or `N/h` with N >= 1, or `0` for none.
fn limit(variable: &'static str, text: &str) -> Result<Option<Rate>, ConfigError> {
    let text = text.trim();
    if text == "0" {
        return Ok(None);
    }
    let hint = || {
        bad(
            variable,
            format!("{text:?}: expected N/s, N/min or N/h (N >= 1), or 0"),
        )
    };
    let (count, per) = text.split_once('/').ok_or_else(hint)?;
    let count = count
        .trim()
        .parse::<u32>()
        .ok()
        .and_then(NonZeroU32::new)
        .ok_or_else(hint)?;
    let period = match per.trim() {
        "s" => StdDuration::from_secs(1),
        "min" => StdDuration::from_secs(60),
        "h" => StdDuration::from_secs(3600),
        _ => return Err(hint()),
    };
    Ok(Some(Rate { count, period }))
}

impl ConfigArgs {
    /// Validates every setting, in SPEC section 5's bounds; the first bad one is reported.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        Ok(Config {
            database_url: self.database_url()?,
            database_max_connections: whole(
                "WEBSESSIONS_DATABASE_MAX_CONNECTIONS",
                &self.database_max_connections,
                1..=1000,
            )?,
            database_wait: self.database_wait()?,
            listen: self.listen()?,
            policy: self.session_policy()?,
            lockout: self.lockout()?,
            housekeeping_interval: self.housekeeping_interval()?,
            cookie: self.cookie()?,
            trusted_proxies: self.trusted_proxies()?,
            trusted_origins: self.trusted_origins()?,
            log_format: self.log_format()?,
            limits: Limits {
                session_start: limit("WEBSESSIONS_SESSION_START_LIMIT", &self.session_start_limit)?,
                login: limit("WEBSESSIONS_LOGIN_LIMIT", &self.login_limit)?,
            },
            max_pending_hashes: whole(
                "WEBSESSIONS_MAX_PENDING_HASHES",
                &self.max_pending_hashes,
                1..=100_000,
            )?,
            portal: boolean("WEBSESSIONS_PORTAL", &self.portal)?,
        })
    }

    /// A URL of a database websessions can open; the line naming a bad one never shows it (it
    /// may hold a password).
    fn database_url(&self) -> Result<String, ConfigError> {
        let url = self.database_url.trim();
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("sqlite" | "postgres" | "postgresql" | "mysql") => Ok(url.to_owned()),
            _ => Err(bad(
                "WEBSESSIONS_DATABASE_URL",
                "expected sqlite://FILE?mode=rwc, postgres://... or mysql://...",
            )),
        }
    }

    fn listen(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.trim().parse().map_err(|_| {
            bad(
                "WEBSESSIONS_LISTEN",
                format!(
                    "{:?}: expected an address such as 127.0.0.1:8080",
                    self.listen
                ),
            )
        })
    }

    /// R2-R5's settings, within the domain's bounds (idle 1 s to 365 days; absolute 0 or
    /// from the idle timeout to 365 days; the touch interval below the idle timeout).
    fn session_policy(&self) -> Result<SessionPolicy, ConfigError> {
        let absolute = duration("WEBSESSIONS_ABSOLUTE_TIMEOUT", &self.absolute_timeout)?;
        let settings = SessionSettings {
            idle_timeout: duration("WEBSESSIONS_IDLE_TIMEOUT", &self.idle_timeout)?,
            absolute_timeout: (!absolute.is_zero()).then_some(absolute),
            check_ip: boolean("WEBSESSIONS_CHECK_IP", &self.check_ip)?,
            touch_interval: duration("WEBSESSIONS_TOUCH_INTERVAL", &self.touch_interval)?,
            token_length: TokenLength::new(whole(
                "WEBSESSIONS_TOKEN_BYTES",
                &self.token_bytes,
                TokenLength::MIN..=TokenLength::MAX,
            )?)
            .map_err(|e| bad("WEBSESSIONS_TOKEN_BYTES", e.to_string()))?,
            single_browser_session: boolean(
                "WEBSESSIONS_SINGLE_BROWSER_SESSION",
                &self.single_browser_session,
            )?,
        };
        SessionPolicy::new(settings).map_err(refused)
    }

    fn lockout(&self) -> Result<LockoutPolicy, ConfigError> {
        let threshold = whole(
            "WEBSESSIONS_LOCKOUT_THRESHOLD",
            &self.lockout_threshold,
            1..=u32::MAX,
        )?;
        let increment = duration("WEBSESSIONS_LOCKOUT_INCREMENT", &self.lockout_increment)?;
        LockoutPolicy::new(threshold, increment).map_err(refused)
    }

    fn database_wait(&self) -> Result<StdDuration, ConfigError> {
        const VARIABLE: &str = "WEBSESSIONS_DATABASE_WAIT";
        let wait = duration(VARIABLE, &self.database_wait)?;
        if wait.is_negative() || wait > Duration::minutes(1) {
            return Err(bad(VARIABLE, "must be 0 to 60 s"));
        }
        Ok(wait.unsigned_abs())
    }

    fn housekeeping_interval(&self) -> Result<StdDuration, ConfigError> {
        const VARIABLE: &str = "WEBSESSIONS_HOUSEKEEPING_INTERVAL";
        let interval = duration(VARIABLE, &self.housekeeping_interval)?;
        if interval < Duration::SECOND || interval > websessions_domain::policy::MAX_SETTING {
            return Err(bad(VARIABLE, "must be 1 s to 365 days"));
        }
        Ok(interval.unsigned_abs())
    }

    fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        list(&self.trusted_proxies)
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        bad(
                            "WEBSESSIONS_TRUSTED_PROXIES",
                            format!("{entry:?}: expected an IP address or CIDR such as 10.0.0.0/8"),
                        )
                    })
            })
            .collect()
    }

    fn trusted_origins(&self) -> Result<TrustedOrigins, ConfigError> {
        list(&self.trusted_origins)
            .map(|entry| {
                Origin::parse(entry).ok_or_else(|| {
                    bad(
                        "WEBSESSIONS_TRUSTED_ORIGINS",
                        format!("{entry:?}: expected an origin such as https://app.example.com"),
                    )
                })
            })
            .collect::<Result<_, _>>()
            .map(TrustedOrigins::new)
    }

    fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.log_format.trim() {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            other => Err(bad(
                "WEBSESSIONS_LOG_FORMAT",
                format!("{other:?}: expected pretty or json"),
            )),
        }
    }

    fn cookie(&self) -> Result<CookieSettings, ConfigError> {
        let name = self.cookie_name.trim();
        // RFC 6265 cookie-name: a token (visible ASCII without separators).
        let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if name.is_empty() || !name.chars().all(token_char) {
            return Err(bad(
                "WEBSESSIONS_COOKIE_NAME",
                format!("{name:?}: expected a cookie name (letters, digits, - and _)"),
            ));
        }
        let secure = boolean("WEBSESSIONS_COOKIE_SECURE", &self.cookie_secure)?;
        if !secure && name.starts_with("__Host-") {
            return Err(bad(
                "WEBSESSIONS_COOKIE_SECURE",
                "false is not allowed with a __Host- cookie name (browsers would drop the cookie); \
                 set WEBSESSIONS_COOKIE_NAME too",
            ));
        }
        let same_site = match self.cookie_samesite.trim() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            other => {
                return Err(bad(
                    "WEBSESSIONS_COOKIE_SAMESITE",
                    format!("{other:?}: expected lax or strict"),
                ));
            }
        };
        Ok(CookieSettings {
            name: name.to_owned(),
            secure,
            same_site,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Probe {
        #[command(flatten)]
        args: ConfigArgs,
    }

    fn config_args(flags: &[&str]) -> ConfigArgs {
        let mut argv = vec!["websessions"];
        argv.extend_from_slice(flags);
        Probe::try_parse_from(argv).unwrap().args
    }

    fn parse(flags: &[&str]) -> Result<Config, ConfigError> {
        config_args(flags).validate()
    }

    #[test]
    fn defaults_are_the_specified_ones() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.policy, SessionPolicy::default());
        assert_eq!(config.lockout, LockoutPolicy::default());
        assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.housekeeping_interval, StdDuration::from_secs(60));
        assert_eq!(config.cookie.name, "__Host-websession");
        assert!(config.cookie.secure);
        assert_eq!(config.cookie.same_site, SameSite::Lax);
        assert_eq!(config.log_format, LogFormat::Pretty);
        let per_minute = |n| {
            Some(Rate {
                count: NonZeroU32::new(n).unwrap(),
                period: StdDuration::from_secs(60),
            })
        };
        assert_eq!(config.limits.session_start, per_minute(600));
        assert_eq!(config.limits.login, per_minute(120));
        assert_eq!(config.max_pending_hashes, 64);
        assert_eq!(config.database_wait, StdDuration::from_secs(5));
        assert!(config.portal);
        let at_once = parse(&["--database-wait", "0"]).unwrap();
        assert_eq!(at_once.database_wait, StdDuration::ZERO);
    }

    #[test]
    fn limits_take_n_per_second_minute_or_hour_or_zero() {
        let config = parse(&["--login-limit", "5/s", "--session-start-limit", "0"]).unwrap();
        assert_eq!(config.limits.session_start, None);
        let login = config.limits.login.unwrap();
        assert_eq!(
            (login.count.get(), login.period),
            (5, StdDuration::from_secs(1))
        );
        let hourly = parse(&["--login-limit", "1/h"])
            .unwrap()
            .limits
            .login
            .unwrap();
        assert_eq!(hourly.period, StdDuration::from_secs(3600));
    }

    #[test]
    fn the_database_password_never_shows_in_debug_output() {
        let config = parse(&["--database-url", "postgres://app:s3cret@db:5432/ws?x=1"]).unwrap();
        let shown = format!(
            "{config:?} {:?}",
            config_args(&["--database-url", "mysql://u:s3cret@h/d"])
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:[redacted]@db:5432/ws?x=1"));
        assert_eq!(
            redacted("sqlite://websessions.db?mode=rwc"),
            "sqlite://websessions.db?mode=rwc"
        );
        assert_eq!(redacted("postgres://app@db/ws"), "postgres://app@db/ws");
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        for (flags, variable) in [
            (&["--idle-timeout", "soon"][..], "WEBSESSIONS_IDLE_TIMEOUT"),
            (&["--idle-timeout", "0"], "WEBSESSIONS_IDLE_TIMEOUT"),
            (
                &["--absolute-timeout", "10m"],
                "WEBSESSIONS_ABSOLUTE_TIMEOUT",
            ),
            (&["--check-ip", "yes"], "WEBSESSIONS_CHECK_IP"),
            (&["--token-bytes", "8"], "WEBSESSIONS_TOKEN_BYTES"),
            (
                &["--lockout-threshold", "0"],
                "WEBSESSIONS_LOCKOUT_THRESHOLD",
            ),
            (
                &["--housekeeping-interval", "0s"],
                "WEBSESSIONS_HOUSEKEEPING_INTERVAL",
            ),
            (&["--cookie-secure", "false"], "WEBSESSIONS_COOKIE_SECURE"),
            (
                &["--cookie-samesite", "none"],
                "WEBSESSIONS_COOKIE_SAMESITE",
            ),
            (&["--cookie-name", "a;b"], "WEBSESSIONS_COOKIE_NAME"),
            (
                &["--trusted-proxies", "10.0.0.0/33"],
                "WEBSESSIONS_TRUSTED_PROXIES",
            ),
            (
                &["--trusted-origins", "ftp://x"],
                "WEBSESSIONS_TRUSTED_ORIGINS",
            ),
            (&["--listen", "localhost"], "WEBSESSIONS_LISTEN"),
            (&["--log-format", "xml"], "WEBSESSIONS_LOG_FORMAT"),
            (
                &["--database-max-connections", "0"],
                "WEBSESSIONS_DATABASE_MAX_CONNECTIONS",
            ),
            (&["--idle-timeout", "366days"], "WEBSESSIONS_IDLE_TIMEOUT"),
            (
                &["--absolute-timeout", "366days"],
                "WEBSESSIONS_ABSOLUTE_TIMEOUT",
            ),
            (&["--touch-interval", "30m"], "WEBSESSIONS_TOUCH_INTERVAL"),
            (
                &["--idle-timeout", "10s", "--absolute-timeout", "0"],
                "WEBSESSIONS_TOUCH_INTERVAL",
            ),
            (
                &["--lockout-increment", "0"],
                "WEBSESSIONS_LOCKOUT_INCREMENT",
            ),
            (
                &["--lockout-increment", "400days"],
                "WEBSESSIONS_LOCKOUT_INCREMENT",
            ),
            (
                &["--idle-timeout", "9999999999999999s"],
                "WEBSESSIONS_IDLE_TIMEOUT",
            ),
            (&["--login-limit", "10"], "WEBSESSIONS_LOGIN_LIMIT"),
            (&["--login-limit", "0/min"], "WEBSESSIONS_LOGIN_LIMIT"),
            (
                &["--session-start-limit", "5/day"],
                "WEBSESSIONS_SESSION_START_LIMIT",
            ),
            (
                &["--max-pending-hashes", "0"],
                "WEBSESSIONS_MAX_PENDING_HASHES",
            ),
            (
                &["--housekeeping-interval", "400days"],
                "WEBSESSIONS_HOUSEKEEPING_INTERVAL",
            ),
            (&["--database-wait", "61s"], "WEBSESSIONS_DATABASE_WAIT"),
            (&["--portal", "no"], "WEBSESSIONS_PORTAL"),
            (&["--database-wait", "soon"], "WEBSESSIONS_DATABASE_WAIT"),
        ] {
            let error = parse(flags).unwrap_err();
            assert_eq!(error.variable, variable, "{flags:?}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid {variable}: "))
            );
        }
    }

    #[test]
    fn zero_absolute_timeout_means_none_and_zero_touch_interval_is_allowed() {
        let config = parse(&["--absolute-timeout", "0", "--touch-interval", "0s"]).unwrap();
        assert_eq!(config.policy.absolute_timeout(), None);
        assert_eq!(config.policy.touch_interval(), Duration::ZERO);
    }

    #[test]
    fn insecure_cookies_need_a_name_without_the_host_prefix() {
        let config = parse(&["--cookie-secure", "false", "--cookie-name", "ws"]).unwrap();
        assert!(!config.cookie.secure);
    }

    #[test]
    fn proxies_take_cidrs_and_plain_addresses_and_origins_are_normalised() {
        let config = parse(&[
            "--trusted-proxies",
            "10.0.0.0/8, ::1",
            "--trusted-origins",
            "https://App.Example.com,http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(config.trusted_proxies.len(), 2);
        let origins: Vec<String> = config
            .trusted_origins
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            origins,
            ["https://app.example.com:443", "http://localhost:3000"]
        );
    }
}
