//! What a request presents at the edge: its credential (cookie or bearer), its client IP
//! (R11), whether it is a refused cross-site request (R12); and the cookie it gets back.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use poem::Request;
use poem::http::{Method, header};
use websessions_domain::{ClientIp, Credential, Presented, TokenLength};

use super::origin::{Origin, TrustedOrigins};

/// SameSite attribute of the session cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
}

/// How the session cookie is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSettings {
    pub name: String,
    pub secure: bool,
    pub same_site: SameSite,
}

/// The settings the edge needs.
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    pub cookie: CookieSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub trusted_origins: TrustedOrigins,
    pub token_length: TokenLength,
}

/// The value of the cookie called `name`, the first when there are several.
fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// How the credential was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    None,
    Cookie,
    Bearer,
}

/// How `req` presents its credential, without parsing it.
pub fn carrier(req: &Request, settings: &EdgeSettings) -> Carrier {
    if req.headers().contains_key(header::AUTHORIZATION) {
        Carrier::Bearer
    } else if cookie(req, &settings.cookie.name).is_some() {
        Carrier::Cookie
    } else {
        Carrier::None
    }
}

/// The text of an `Authorization: Bearer` header.
fn bearer(req: &Request) -> Option<&str> {
    let text = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = text.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
}

/// The presented credential. With an `Authorization` header, that header alone counts and
/// any cookie is ignored; anything unparsable is no credential (R2).
pub fn presented(req: &Request, settings: &EdgeSettings) -> Presented {
    let text = match carrier(req, settings) {
        Carrier::Bearer => bearer(req),
        Carrier::Cookie => cookie(req, &settings.cookie.name),
        Carrier::None => None,
    };
    // Only a request that may change state copies its user agent, for the audit records it
    // may write (R19); recognition copies nothing.
    let user_agent = (!req.method().is_safe())
        .then(|| req.headers().get(header::USER_AGENT))
        .flatten()
        .map(|agent| String::from_utf8_lossy(agent.as_bytes()).into_owned());
    Presented {
        credential: text.and_then(|text| Credential::parse(text, settings.token_length).ok()),
        ip: client_ip(req, settings),
        user_agent,
    }
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(&ip))
}

/// R11: the TCP peer, unless it is a trusted proxy. Then `X-Forwarded-For` (every such
/// header, in order, as one list) is read from the right, one entry at a time: trusted
/// proxies are skipped, and the first entry that is not one is the client. Entries to its left
/// are never read, so nothing a client prepends can change its address. When that entry is not
/// an IP address, the client is the hop to its right (the last trusted proxy, or the peer);
/// when every entry is a trusted proxy, the left-most.
pub fn client_ip(req: &Request, settings: &EdgeSettings) -> ClientIp {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| {
            addr.ip().to_canonical()
        });
    let proxies = &settings.trusted_proxies;
    if !trusted(peer, proxies) {
        return ClientIp::new(peer);
    }
    // Split as bytes: an entry that is not text is one entry that is not an address, and
    // never spoils the entries to its right (a proxy appends to the client's line).
    let entries: Vec<&[u8]> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|value| value.as_bytes().split(|byte| *byte == b','))
        .collect();
    let mut right_hop = peer;
    for entry in entries.iter().rev() {
        let address = std::str::from_utf8(entry)
            .ok()
            .and_then(|text| text.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical());
        match address {
            Some(ip) if trusted(ip, proxies) => right_hop = ip,
            Some(ip) => return ClientIp::new(ip),
            None => return ClientIp::new(right_hop),
        }
    }
    ClientIp::new(right_hop)
}

/// The methods R12 concerns: the ones that change state.
pub fn is_state_changing(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Where a browser says a request comes from (R12).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Provenance {
    /// This site, or typed by the user.
    Here,
    /// Another site, or another origin of this site.
    Foreign,
}

/// R12: a state-changing request without a Bearer credential is refused when a browser says
/// it comes from elsewhere and its `Origin` is not trusted (a browser attaches cached Basic or
/// Digest credentials to another site's form by itself, never a Bearer one), with the session cookie or
/// without it: without it, another site's form could still set or clear the cookie (a new
/// anonymous session replacing a signed-in one, a logout). `Sec-Fetch-Site`, when present,
/// alone says where a request comes from (`cross-site` and `same-site` are foreign, as is a
/// value this service does not know; `same-origin` and `none` are not); without it, an
/// `Origin` that does not name the request's `Host` is foreign (`null` or an unparsable one
/// included). Clients that are not browsers send neither header and are not concerned.
pub fn is_refused_cross_site(req: &Request, settings: &EdgeSettings) -> bool {
    if !is_state_changing(req.method()) || bearer(req).is_some() {
        return false;
    }
    // A header a browser sends once: present twice, it says nothing trustworthy.
    let header_text = |name| {
        let mut values = req.headers().get_all(name).iter();
        let first = values.next()?;
        Some(first.to_str().ok().filter(|_| values.next().is_none()))
    };
    let origin = header_text(header::ORIGIN.as_str()).map(|text| text.and_then(Origin::parse));
    let provenance = match header_text("sec-fetch-site") {
        Some(Some(site))
            if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") =>
        {
            Provenance::Here
        }
        Some(_) => Provenance::Foreign,
        None => match &origin {
            None => Provenance::Here,
            Some(None) => Provenance::Foreign,
            Some(Some(origin)) => {
                // The request's own authority (HTTP/2's `:authority`, or an absolute-form
                // target) before `Host`, as HTTP/1.1 says.
                let host = req.uri().authority().map(ToString::to_string).or_else(|| {
                    header_text(header::HOST.as_str())
                        .flatten()
                        .map(str::to_owned)
                });
                if host.is_some_and(|host| origin.is_host(&host)) {
                    Provenance::Here
                } else {
                    Provenance::Foreign
                }
            }
        },
    };
    provenance == Provenance::Foreign
        && !origin
            .flatten()
            .is_some_and(|origin| settings.trusted_origins.contains(&origin))
}

fn attributes(settings: &CookieSettings) -> String {
    let same_site = match settings.same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
    };
    let secure = if settings.secure { "; Secure" } else { "" };
    format!("Path=/; HttpOnly{secure}; SameSite={same_site}")
}

/// The cookie that hands a browser its credential: no Domain, no Max-Age.
pub fn set_cookie(settings: &CookieSettings, credential: &Credential) -> String {
    format!(
        "{}={}; {}",
        settings.name,
        credential.expose(),
        attributes(settings)
    )
}

/// The same cookie, expired.
pub fn clear_cookie(settings: &CookieSettings) -> String {
    format!("{}=; {}; Max-Age=0", settings.name, attributes(settings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use websessions_domain::{SessionId, Token};

    fn settings() -> EdgeSettings {
        EdgeSettings {
            cookie: CookieSettings {
                name: "__Host-websession".into(),
                secure: true,
                same_site: SameSite::Lax,
            },
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            trusted_origins: TrustedOrigins::new(vec![
                Origin::parse("https://partner.example").unwrap(),
            ]),
            token_length: TokenLength::default(),
        }
    }

    fn credential() -> Credential {
        Credential::new(SessionId::new(12).unwrap(), Token::from_bytes(vec![3; 16]))
    }

    fn request(method: Method, headers: &[(&str, &str)], peer: &str) -> Request {
        let mut builder = poem::http::Request::builder()
            .method(method)
            .uri("/v1/session/login");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let (parts, ()) = builder.body(()).unwrap().into_parts();
        let peer = poem::Addr::SocketAddr(peer.parse().unwrap());
        let parts = poem::RequestParts::from((
            parts,
            poem::web::LocalAddr(poem::Addr::Custom("test", "".into())),
            poem::web::RemoteAddr(peer),
            poem::http::uri::Scheme::HTTP,
        ));
        Request::from_parts(parts, poem::Body::empty())
    }

    #[test]
    fn bearer_header_wins_over_the_cookie_even_when_malformed() {
        let cookie = format!("__Host-websession={}", credential().expose());
        let req = request(Method::GET, &[("cookie", &cookie)], "192.0.2.1:4000");
        assert_eq!(presented(&req, &settings()).credential, Some(credential()));
        assert_eq!(carrier(&req, &settings()), Carrier::Cookie);

        let req = request(
            Method::GET,
            &[("cookie", &cookie), ("authorization", "Bearer nonsense")],
            "192.0.2.1:4000",
        );
        assert_eq!(presented(&req, &settings()).credential, None);
        assert_eq!(carrier(&req, &settings()), Carrier::Bearer);

        let bearer = format!("bearer {}", credential().expose());
        let req = request(Method::GET, &[("authorization", &bearer)], "192.0.2.1:4000");
        assert_eq!(presented(&req, &settings()).credential, Some(credential()));
        let basic = format!("Basic {}", credential().expose());
        let req = request(Method::GET, &[("authorization", &basic)], "192.0.2.1:4000");
        assert_eq!(presented(&req, &settings()).credential, None);
    }

    fn client(headers: &[(&str, &str)], peer: &str) -> String {
        client_ip(&request(Method::GET, headers, peer), &settings()).to_string()
    }

    #[test]
    fn r11_the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let xff = [("x-forwarded-for", "198.51.100.7, 10.1.1.1")];
        assert_eq!(client(&xff, "192.0.2.1:4000"), "192.0.2.1");
        assert_eq!(client(&xff, "10.0.0.2:4000"), "198.51.100.7");
        assert_eq!(client(&[], "10.0.0.2:4000"), "10.0.0.2");
        assert_eq!(client(&[], "[::ffff:192.0.2.9]:4000"), "192.0.2.9");
    }

    #[test]
    fn r11_entries_left_of_the_client_are_never_read() {
        // Whatever a client prepends, junk or a forged address, its own address stands.
        for forged in ["junk", "203.0.113.66", "10.5.5.5", "", "x, y, 1.2.3.4"] {
            let value = format!("{forged}, 198.51.100.7");
            assert_eq!(
                client(&[("x-forwarded-for", &value)], "10.0.0.2:1"),
                "198.51.100.7",
                "{value:?}"
            );
        }
        // Several header lines are one list, in order.
        let lines = [
            ("x-forwarded-for", "junk"),
            ("x-forwarded-for", "198.51.100.7, 10.1.1.1"),
        ];
        assert_eq!(client(&lines, "10.0.0.2:1"), "198.51.100.7");
        let mapped = [("x-forwarded-for", " ::ffff:198.51.100.8 ")];
        assert_eq!(client(&mapped, "10.0.0.2:1"), "198.51.100.8");
    }

    #[test]
    fn r11_junk_as_the_client_gives_the_hop_to_its_right() {
        // Junk right after the peer: the peer is the client.
        assert_eq!(
            client(&[("x-forwarded-for", "198.51.100.7, junk")], "10.0.0.2:1"),
            "10.0.0.2"
        );
        // Junk behind a trusted hop: that hop is the client.
        assert_eq!(
            client(&[("x-forwarded-for", "junk, 10.1.1.1")], "10.0.0.2:1"),
            "10.1.1.1"
        );
        assert_eq!(
            client(&[("x-forwarded-for", "198.51.100.7:443")], "10.0.0.2:1"),
            "10.0.0.2"
        );
        assert_eq!(client(&[("x-forwarded-for", "")], "10.0.0.2:1"), "10.0.0.2");
    }

    #[test]
    fn r11_an_entry_that_is_not_text_spoils_no_entry_to_its_right() {
        let mut req = request(Method::GET, &[], "10.0.0.2:1");
        let line = poem::http::HeaderValue::from_bytes(b"\xe9, 198.51.100.7").unwrap();
        req.headers_mut().insert("x-forwarded-for", line);
        assert_eq!(client_ip(&req, &settings()).to_string(), "198.51.100.7");
        let line = poem::http::HeaderValue::from_bytes(b"198.51.100.7, \xe9").unwrap();
        req.headers_mut().insert("x-forwarded-for", line);
        assert_eq!(client_ip(&req, &settings()).to_string(), "10.0.0.2");
    }

    #[test]
    fn r11_all_trusted_hops_give_the_left_most() {
        let all = [("x-forwarded-for", "10.9.9.9, 10.1.1.1")];
        assert_eq!(client(&all, "10.0.0.2:4000"), "10.9.9.9");
    }

    fn refused(method: Method, headers: &[(&str, &str)]) -> bool {
        is_refused_cross_site(&request(method, headers, "192.0.2.1:1"), &settings())
    }

    #[test]
    fn r12_sec_fetch_site_alone_decides_when_present() {
        for cookie in [Some(("cookie", "__Host-websession=whatever")), None] {
            let with = |extra: &[(&str, &str)]| {
                let mut headers: Vec<(&str, &str)> = cookie.into_iter().collect();
                headers.extend_from_slice(extra);
                refused(Method::POST, &headers)
            };
            for foreign in ["cross-site", "same-site", "Cross-Site", "nonsense"] {
                assert!(with(&[("sec-fetch-site", foreign)]), "{foreign}");
                // A matching Origin does not override what the browser said...
                let matching = [
                    ("sec-fetch-site", foreign),
                    ("origin", "https://app.example"),
                    ("host", "app.example"),
                ];
                assert!(with(&matching), "{foreign}");
                // ...but a trusted one lets the request through.
                let trusted = [
                    ("sec-fetch-site", foreign),
                    ("origin", "https://partner.example"),
                ];
                assert!(!with(&trusted), "{foreign}");
            }
            for here in ["same-origin", "none"] {
                assert!(!with(&[("sec-fetch-site", here)]), "{here}");
                // Present, it decides: an Origin that differs from Host is not consulted.
                let differing = [
                    ("sec-fetch-site", here),
                    ("origin", "https://evil.example"),
                    ("host", "app.example"),
                ];
                assert!(!with(&differing), "{here}");
            }
        }
    }

    #[test]
    fn r12_only_state_changing_requests_without_authorization_are_concerned() {
        let foreign = ("sec-fetch-site", "cross-site");
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(refused(method.clone(), &[foreign]), "{method}");
            assert!(!refused(
                method.clone(),
                &[foreign, ("authorization", "Bearer x")]
            ));
            // A browser attaches cached Basic credentials to another site's form by itself.
            for other in ["Basic Zm9vOmJhcg==", "", "Digest x"] {
                assert!(refused(
                    method.clone(),
                    &[foreign, ("authorization", other)]
                ));
            }
        }
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!refused(method, &[foreign]));
        }
        // A client that is not a browser says neither.
        assert!(!refused(Method::POST, &[]));
    }

    #[test]
    fn r12_without_fetch_metadata_the_origin_must_name_the_host() {
        let case =
            |origin: &str, host: &str| refused(Method::POST, &[("origin", origin), ("host", host)]);
        assert!(!case("https://App.example", "app.example"));
        assert!(!case("https://app.example", "app.example:443"));
        assert!(!case("http://localhost:8080", "localhost:8080"));
        assert!(!case("http://h", "h"));
        assert!(case("https://evil.example", "app.example"));
        assert!(case("http://app.example", "app.example:8080"));
        // A bare Host never borrows the Origin's port.
        assert!(case("http://h:9999", "h"));
        assert!(case("http://127.0.0.1:9999", "127.0.0.1"));
        assert!(case("http://h:80", "h:8080"));
        // `null` and unparsable origins are foreign, and cannot be trusted.
        assert!(case("null", "app.example"));
        assert!(case("app.example", "app.example"));
        assert!(case("https://app.example/x", "app.example"));
        // A listed origin passes from anywhere; listed is the scheme and port too.
        assert!(!case("https://partner.example", "app.example"));
        assert!(!case("https://partner.example:443", "app.example"));
        assert!(case("http://partner.example:443", "app.example"));
        assert!(case("https://partner.example:8443", "app.example"));
        // No Origin and no Sec-Fetch-Site: not a browser's cross-site write.
        assert!(!refused(Method::POST, &[("host", "app.example")]));
        // Said twice, an Origin or Sec-Fetch-Site is no answer.
        let twice = [
            ("origin", "https://app.example"),
            ("origin", "https://evil.example"),
            ("host", "app.example"),
        ];
        assert!(refused(Method::POST, &twice));
        let twice = [
            ("sec-fetch-site", "same-origin"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert!(refused(Method::POST, &twice));
    }

    #[test]
    fn cookies_carry_the_specified_attributes() {
        let set = set_cookie(&settings().cookie, &credential());
        assert_eq!(
            set,
            format!(
                "__Host-websession={}; Path=/; HttpOnly; Secure; SameSite=Lax",
                credential().expose()
            )
        );
        assert_eq!(
            clear_cookie(&settings().cookie),
            "__Host-websession=; Path=/; HttpOnly; Secure; SameSite=Lax; Max-Age=0"
        );
    }
}
