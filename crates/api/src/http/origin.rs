//! Web origins (`scheme://host:port`), parsed once: the trusted origins at start, a browser's
//! `Origin` header per request, and `return_to` targets. R12 compares them with the request's
//! `Host` here and nowhere else.

use std::fmt;

/// The schemes an origin of this service can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(text: &str) -> Option<Self> {
        if text.eq_ignore_ascii_case("http") {
            Some(Self::Http)
        } else if text.eq_ignore_ascii_case("https") {
            Some(Self::Https)
        } else {
            None
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// An http(s) origin: scheme, host in lower case, and port (the scheme's default when the
/// text named none). Two origins are the same when all three are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: Scheme,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]`, optionally with one trailing `/`; `None` for anything else
    /// (`null`, another scheme, a path, user information, a bad port).
    pub fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = Scheme::parse(scheme)?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = authority_parts(authority, scheme.default_port())?;
        Some(Self { scheme, host, port })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host in lower case (an IPv6 literal keeps its brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// R12: whether a request's `Host` (`host[:port]`) names this origin's host and port. A
    /// `Host` without a port means the default port of this origin's scheme: it never
    /// borrows the origin's own port.
    pub fn is_host(&self, host_header: &str) -> bool {
        authority_parts(host_header.trim(), self.scheme.default_port())
            .is_some_and(|(host, port)| host == self.host && port == self.port)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

/// `host[:port]` as the lower-case host and the port (`default_port` when none is named);
/// `None` when malformed.
fn authority_parts(authority: &str, default_port: u16) -> Option<(String, u16)> {
    if authority.is_empty()
        || authority.chars().any(|c| {
            matches!(c, '/' | '\\' | '@' | '?' | '#') || c.is_whitespace() || c.is_control()
        })
    {
        return None;
    }
    // An IPv6 literal keeps its brackets: [::1]:8080.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    if host.is_empty() || (host.starts_with('[') != host.ends_with(']')) {
        return None;
    }
    let port = match port {
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<u16>().ok()?
        }
        Some(_) => return None,
        None => default_port,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The origins listed in `WEBSESSIONS_TRUSTED_ORIGINS`: allowed to send state-changing
/// requests from a browser (R12), and where a sign-in may return to (section 10).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedOrigins(Vec<Origin>);

impl TrustedOrigins {
    pub fn new(origins: Vec<Origin>) -> Self {
        Self(origins)
    }

    /// Whether `origin` is listed: scheme, host and port alike.
    pub fn contains(&self, origin: &Origin) -> bool {
        self.0.contains(origin)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Origin> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_take_the_default_port_of_their_scheme_and_compare_whole() {
        let a = Origin::parse("HTTPS://App.Example").unwrap();
        assert_eq!(a.to_string(), "https://app.example:443");
        assert_eq!(Origin::parse("https://app.example:443/"), Some(a.clone()));
        assert_ne!(Origin::parse("http://app.example:443"), Some(a));
        assert_eq!(
            Origin::parse("http://[::1]:8080").unwrap().to_string(),
            "http://[::1]:8080"
        );
        for bad in [
            "null",
            "",
            "app.example",
            "ftp://app.example",
            "https://",
            "https://a.example/path",
            "https://u@a.example",
            "https://a.example:x",
            "https://a.example:",
            "https://a.example:99999",
            "https://a.example:+1",
            "https://[::1",
            "https://a example",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn r12_a_bare_host_means_the_default_port_of_the_origins_scheme() {
        let origin = |text| Origin::parse(text).unwrap();
        assert!(origin("https://app.example").is_host("App.Example"));
        assert!(origin("https://app.example").is_host("app.example:443"));
        assert!(origin("http://localhost:8080").is_host("localhost:8080"));
        assert!(origin("http://h").is_host("h:80"));
        // A bare Host never borrows the Origin's port.
        assert!(!origin("http://h:9999").is_host("h"));
        assert!(!origin("http://h").is_host("h:9999"));
        assert!(!origin("http://app.example").is_host("app.example:8080"));
        assert!(!origin("https://app.example").is_host("evil.example"));
        assert!(!origin("https://app.example").is_host(""));
        assert!(!origin("https://app.example").is_host("app.example:x"));
        assert!(origin("http://[::1]:8080").is_host("[::1]:8080"));
        assert!(!origin("http://[::1]:8080").is_host("[::1]"));
    }
}
