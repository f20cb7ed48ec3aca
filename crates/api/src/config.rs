//! Configuration (SPEC §5): every `WEBSESSIONS_*` variable is also a flag. Values are read as
//! text and validated here, so that a bad one stops any command with one line naming the
//! variable (exit code 2).

use std::net::SocketAddr;
use std::time::Duration as StdDuration;

use clap::Args;
use ipnet::IpNet;
use time::Duration;
use websessions_domain::{LockoutPolicy, SessionPolicy, TokenLength};

/// The raw settings, as given by flags or the environment.
#[derive(Args, Clone, Debug)]
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

/// Validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub database_url: String,
    pub database_max_connections: u32,
    pub listen: SocketAddr,
    pub policy: SessionPolicy,
    pub lockout: LockoutPolicy,
    pub housekeeping_interval: StdDuration,
    pub cookie: CookieSettings,
    pub trusted_proxies: Vec<IpNet>,
    /// Normalised `host:port` of each trusted origin.
    pub trusted_origins: Vec<String>,
    pub log_format: LogFormat,
}

const DURATION_HINT: &str = "expected a duration such as 90s, 30m or 12h";

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

/// `host:port` in lower case, the port defaulted from the scheme (80 for http, 443 for https).
pub fn normalise_origin(text: &str) -> Option<String> {
    let (default_port, rest) = match text.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => (Some(80), rest),
            "https" => (Some(443), rest),
            _ => return None,
        },
        None => (None, text),
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
        return None;
    }
    normalise_host(authority, default_port)
}

/// `host[:port]` to `host:port` in lower case; `None` when malformed or the port is missing
/// and there is no default.
pub fn normalise_host(authority: &str, default_port: Option<u16>) -> Option<String> {
    let authority = authority.to_ascii_lowercase();
    // An IPv6 literal keeps its brackets: [::1]:8080.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority.as_str(), None),
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok()?,
        None => default_port?,
    };
    Some(format!("{host}:{port}"))
}

impl ConfigArgs {
    /// Validates every setting; the first bad one is reported.
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let listen = self.listen.trim().parse().map_err(|_| {
            bad(
                "WEBSESSIONS_LISTEN",
                format!(
                    "{:?}: expected an address such as 127.0.0.1:8080",
                    self.listen
                ),
            )
        })?;
        let idle_timeout = duration("WEBSESSIONS_IDLE_TIMEOUT", &self.idle_timeout)?;
        if idle_timeout <= Duration::ZERO {
            return Err(bad("WEBSESSIONS_IDLE_TIMEOUT", "must be more than 0"));
        }
        let absolute = duration("WEBSESSIONS_ABSOLUTE_TIMEOUT", &self.absolute_timeout)?;
        let absolute_timeout = if absolute == Duration::ZERO {
            None
        } else if absolute < idle_timeout {
            return Err(bad(
                "WEBSESSIONS_ABSOLUTE_TIMEOUT",
                "must be 0 (none) or at least WEBSESSIONS_IDLE_TIMEOUT",
            ));
        } else {
            Some(absolute)
        };
        let token_length = self
            .token_bytes
            .trim()
            .parse::<usize>()
            .ok()
            .and_then(|n| TokenLength::new(n).ok())
            .ok_or_else(|| {
                bad(
                    "WEBSESSIONS_TOKEN_BYTES",
                    format!(
                        "{:?}: expected a whole number from 16 to 64",
                        self.token_bytes
                    ),
                )
            })?;
        let threshold = self
            .lockout_threshold
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                bad(
                    "WEBSESSIONS_LOCKOUT_THRESHOLD",
                    format!(
                        "{:?}: expected a whole number of at least 1",
                        self.lockout_threshold
                    ),
                )
            })?;
        let increment = duration("WEBSESSIONS_LOCKOUT_INCREMENT", &self.lockout_increment)?;
        let lockout = LockoutPolicy::new(threshold, increment)
            .ok_or_else(|| bad("WEBSESSIONS_LOCKOUT_THRESHOLD", "must be at least 1"))?;
        let housekeeping = duration(
            "WEBSESSIONS_HOUSEKEEPING_INTERVAL",
            &self.housekeeping_interval,
        )?;
        if housekeeping <= Duration::ZERO {
            return Err(bad(
                "WEBSESSIONS_HOUSEKEEPING_INTERVAL",
                "must be more than 0",
            ));
        }
        let cookie = self.cookie()?;
        let trusted_proxies = list(&self.trusted_proxies)
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
            .collect::<Result<_, _>>()?;
        let trusted_origins = list(&self.trusted_origins)
            .map(|entry| {
                normalise_origin(entry).ok_or_else(|| {
                    bad(
                        "WEBSESSIONS_TRUSTED_ORIGINS",
                        format!("{entry:?}: expected an origin such as https://app.example.com"),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let log_format = match self.log_format.trim() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "WEBSESSIONS_LOG_FORMAT",
                    format!("{other:?}: expected pretty or json"),
                ));
            }
        };
        let database_max_connections = self
            .database_max_connections
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                bad(
                    "WEBSESSIONS_DATABASE_MAX_CONNECTIONS",
                    format!(
                        "{:?}: expected a whole number from 1 to 1000",
                        self.database_max_connections
                    ),
                )
            })?;
        Ok(Config {
            database_url: self.database_url.clone(),
            database_max_connections,
            listen,
            policy: SessionPolicy {
                idle_timeout,
                absolute_timeout,
                check_ip: boolean("WEBSESSIONS_CHECK_IP", &self.check_ip)?,
                touch_interval: duration("WEBSESSIONS_TOUCH_INTERVAL", &self.touch_interval)?,
                token_length,
                single_browser_session: boolean(
                    "WEBSESSIONS_SINGLE_BROWSER_SESSION",
                    &self.single_browser_session,
                )?,
            },
            lockout,
            housekeeping_interval: housekeeping.unsigned_abs(),
            cookie,
            trusted_proxies,
            trusted_origins,
            log_format,
        })
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

    fn parse(flags: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["websessions"];
        argv.extend_from_slice(flags);
        Probe::try_parse_from(argv).unwrap().args.validate()
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
        assert_eq!(config.policy.absolute_timeout, None);
        assert_eq!(config.policy.touch_interval, Duration::ZERO);
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
        assert_eq!(
            config.trusted_origins,
            ["app.example.com:443", "localhost:3000"]
        );
    }

    #[test]
    fn hosts_normalise_with_default_ports_and_ipv6_literals() {
        assert_eq!(
            normalise_host("Example.COM", Some(443)).as_deref(),
            Some("example.com:443")
        );
        assert_eq!(
            normalise_host("[::1]:8080", None).as_deref(),
            Some("[::1]:8080")
        );
        assert_eq!(
            normalise_host("[::1]", Some(80)).as_deref(),
            Some("[::1]:80")
        );
        assert_eq!(normalise_host("host:notaport", None), None);
        assert_eq!(
            normalise_origin("https://a.example/"),
            Some("a.example:443".into())
        );
        assert_eq!(normalise_origin("null"), None);
    }
}
