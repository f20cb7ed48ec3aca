//! The configuration's value parsers, each with its value's bounds: clap runs them on flags,
//! variables and defaults alike, so a value is checked once, where it is read.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use time::Duration;
use websessions_domain::{Rate, TokenLength};

use super::{Limit, Proxies};
use crate::http::{Origin, SameSite, TrustedOrigins};
use crate::telemetry::LogFormat;

const DURATION_HINT: &str = "expected a duration such as 90s, 30m or 12h";

/// A humantime duration (`90s`, `30m`, `12h`; `0` and `0s` are zero).
pub(super) fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let parsed = humantime::parse_duration(text).map_err(|e| format!("{e}; {DURATION_HINT}"))?;
    Duration::try_from(parsed).map_err(|_| "too long".to_owned())
}

/// A duration from `low` to `high`.
pub(super) fn duration_between(
    low: Duration,
    high: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let value = duration(text)?;
        if value < low || value > high {
            return Err(format!(
                "must be {} to {}",
                humantime::format_duration(low.unsigned_abs()),
                humantime::format_duration(high.unsigned_abs())
            ));
        }
        Ok(value)
    }
}

/// A whole number from `low` to `high`.
pub(super) fn whole<T>(
    low: T,
    high: T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy + Send + Sync + 'static,
{
    move |text| {
        text.trim()
            .parse::<T>()
            .ok()
            .filter(|n| *n >= low && *n <= high)
            .ok_or_else(|| format!("expected a whole number from {low} to {high}"))
    }
}

pub(super) fn boolean(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub(super) fn socket_address(text: &str) -> Result<SocketAddr, String> {
    text.trim()
        .parse()
        .map_err(|_| "expected an address such as 127.0.0.1:8080".into())
}

pub(super) fn token_length(text: &str) -> Result<TokenLength, String> {
    let bytes = whole::<usize>(TokenLength::MIN, TokenLength::MAX)(text)?;
    TokenLength::new(bytes).map_err(|e| e.to_string())
}

fn list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty())
}

pub(super) fn proxies(text: &str) -> Result<Proxies, String> {
    list(text)
        .map(|entry| {
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!("{entry:?}: expected an IP address or CIDR such as 10.0.0.0/8")
                })
        })
        .collect::<Result<_, _>>()
        .map(Proxies)
}

pub(super) fn origins(text: &str) -> Result<TrustedOrigins, String> {
    list(text)
        .map(|entry| {
            Origin::parse(entry).ok_or_else(|| {
                format!("{entry:?}: expected an origin such as https://app.example.com")
            })
        })
        .collect::<Result<_, _>>()
        .map(TrustedOrigins::new)
}

pub(super) fn log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim() {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        _ => Err("expected pretty or json".into()),
    }
}

pub(super) fn same_site(text: &str) -> Result<SameSite, String> {
    match text.trim() {
        "lax" => Ok(SameSite::Lax),
        "strict" => Ok(SameSite::Strict),
        _ => Err("expected lax or strict".into()),
    }
}

/// RFC 6265's cookie-name: a token (visible ASCII without separators).
pub(super) fn cookie_name(text: &str) -> Result<String, String> {
    let name = text.trim();
    let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        return Err("expected a cookie name (letters, digits, - and _)".into());
    }
    Ok(name.to_owned())
}

pub(super) fn rate(text: &str) -> Result<Limit, String> {
    Rate::parse(text).map(Limit).map_err(|e| e.to_string())
}
