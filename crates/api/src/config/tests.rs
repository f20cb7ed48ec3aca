//! The configuration's defaults, bounds and one-line refusals.

use std::num::NonZeroU32;

use clap::Parser;

use super::*;

#[derive(Parser, Debug)]
struct Probe {
    #[command(flatten)]
    args: ConfigArgs,
}

/// The settings from `flags`, parsed and validated, or the one-line refusal.
fn parse(flags: &[&str]) -> Result<Config, ConfigError> {
    let mut argv = vec!["websessions"];
    argv.extend_from_slice(flags);
    match Probe::try_parse_from(argv) {
        Ok(probe) => probe.args.validate(),
        Err(error) => Err(ConfigError::from_clap::<Probe>(&error).expect("a value's refusal")),
    }
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
    assert_eq!(
        config.edge,
        EdgeBounds {
            header_timeout: StdDuration::from_secs(10),
            body_timeout: StdDuration::from_secs(10),
            idle_connection_timeout: StdDuration::from_secs(60),
            max_connections: None,
        }
    );
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
}

#[test]
fn the_database_password_never_shows() {
    let config = parse(&["--database-url", "postgres://app:s3cret@db:5432/ws?x=1"]).unwrap();
    let shown = format!("{config:?} {}", config.database_url);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("postgres://app:[redacted]@db:5432/ws?x=1"));
    let url = DatabaseUrl::parse("mysql://u:s3cret@h/d").unwrap();
    let said = url.redact_in("cannot connect to mysql://u:s3cret@h/d (password s3cret)");
    assert!(!said.contains("s3cret"), "{said}");
    assert_eq!(
        DatabaseUrl::parse("sqlite://websessions.db?mode=rwc")
            .unwrap()
            .to_string(),
        "sqlite://websessions.db?mode=rwc"
    );
    // A refused URL is never quoted: it may hold a password.
    let refused = parse(&["--database-url", "ftp://u:s3cret@h"]).unwrap_err();
    assert!(!refused.to_string().contains("s3cret"), "{refused}");
}

#[test]
fn each_bad_value_names_its_variable_in_one_line() {
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
        (
            &["--database-url", "mongodb://x"],
            "WEBSESSIONS_DATABASE_URL",
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
        (&["--header-timeout", "0"], "WEBSESSIONS_HEADER_TIMEOUT"),
        (&["--header-timeout", "301s"], "WEBSESSIONS_HEADER_TIMEOUT"),
        (&["--body-timeout", "500ms"], "WEBSESSIONS_BODY_TIMEOUT"),
        (&["--body-timeout", "6min"], "WEBSESSIONS_BODY_TIMEOUT"),
        (
            &["--idle-connection-timeout", "2h"],
            "WEBSESSIONS_IDLE_CONNECTION_TIMEOUT",
        ),
        (
            &[
                "--header-timeout",
                "30s",
                "--idle-connection-timeout",
                "20s",
            ],
            "WEBSESSIONS_IDLE_CONNECTION_TIMEOUT",
        ),
        (&["--max-connections", "0"], "WEBSESSIONS_MAX_CONNECTIONS"),
        (
            &["--max-connections", "1000001"],
            "WEBSESSIONS_MAX_CONNECTIONS",
        ),
    ] {
        let error = parse(flags).unwrap_err();
        assert_eq!(error.variable, variable, "{flags:?}");
        let line = error.to_string();
        assert!(line.starts_with(&format!("invalid {variable}: ")), "{line}");
        assert_eq!(line.lines().count(), 1, "{line}");
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

#[test]
fn every_setting_is_named_once_by_its_variable() {
    let command = ConfigArgs::augment_args(clap::Command::new("websessions"));
    for arg in command.get_arguments() {
        let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        let expected = format!("WEBSESSIONS_{}", arg.get_id().as_str().to_ascii_uppercase());
        assert_eq!(env.as_deref(), Some(expected.as_str()), "{}", arg.get_id());
        assert_eq!(variable(arg.get_id().as_str()), expected);
    }
}
