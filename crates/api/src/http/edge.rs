//! What a request presents at the edge: its credential (cookie or bearer), its client IP
//! (R11), whether it is a refused cross-site request (R12); and the cookie it gets back.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use poem::Request;
use poem::http::{Method, header};
use websessions_domain::{ClientIp, Credential, Presented, TokenLength};

use crate::config::{CookieSettings, SameSite, normalise_host, normalise_origin, origin_of};

/// The settings the edge needs.
#[derive(Clone, Debug)]
pub struct EdgeSettings {
    pub cookie: CookieSettings,
    pub trusted_proxies: Vec<IpNet>,
    pub trusted_origins: Vec<String>,
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

/// The presented credential and where it came from. With an `Authorization` header, that
/// header alone counts and any cookie is ignored; anything unparsable is no credential (R2).
pub fn presented(req: &Request, settings: &EdgeSettings) -> (Presented, Carrier) {
    let ip = client_ip(req, settings);
    let parse = |text: &str| Credential::parse(text, settings.token_length).ok();
    let (credential, carrier) = if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let credential = value.to_str().ok().and_then(|text| {
            let (scheme, rest) = text.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| parse(rest.trim()))?
        });
        (credential, Carrier::Bearer)
    } else if let Some(value) = cookie(req, &settings.cookie.name) {
        (parse(value), Carrier::Cookie)
    } else {
        (None, Carrier::None)
    };
    (Presented { credential, ip }, carrier)
}

fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|net| net.contains(&ip))
}

/// R11: the TCP peer, unless it is a trusted proxy; then the right-most `X-Forwarded-For`
/// entry that is not a trusted proxy (all trusted: the left-most). A header with any entry
/// that is not an IP address is ignored.
pub fn client_ip(req: &Request, settings: &EdgeSettings) -> ClientIp {
    let peer = req
        .remote_addr()
        .as_socket_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |addr| {
            addr.ip().to_canonical()
        });
    if !trusted(peer, &settings.trusted_proxies) {
        return ClientIp::new(peer);
    }
    let hops: Option<Vec<IpAddr>> = req
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .map(|value| value.to_str().ok())
        .collect::<Option<Vec<_>>>()
        .and_then(|values| {
            values
                .iter()
                .flat_map(|value| value.split(','))
                .map(|entry| {
                    entry
                        .trim()
                        .parse::<IpAddr>()
                        .ok()
                        .map(|ip| ip.to_canonical())
                })
                .collect()
        });
    let chosen = match hops.as_deref() {
        None | Some([]) => peer,
        Some(hops) => hops
            .iter()
            .rev()
            .find(|ip| !trusted(**ip, &settings.trusted_proxies))
            .or(hops.first())
            .copied()
            .unwrap_or(peer),
    };
    ClientIp::new(chosen)
}

/// R12: a state-changing request with no `Authorization` header is refused when a browser
/// says it comes from another site, with the session cookie or without it: without it, another
/// site's form could still set or clear the cookie (a new anonymous session replacing a
/// signed-in one, a logout). Clients that are not browsers send neither `Sec-Fetch-Site` nor
/// `Origin`, and are not concerned.
pub fn is_refused_cross_site(req: &Request, settings: &EdgeSettings) -> bool {
    let state_changing = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !state_changing || req.headers().contains_key(header::AUTHORIZATION) {
        return false;
    }
    let header_text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    match header_text("sec-fetch-site")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("cross-site" | "same-site") => true,
        _ => header_text("origin").is_some_and(|origin_header| {
            let Some(origin) = normalise_origin(origin_header) else {
                return true; // "null" or garbage: not this site.
            };
            let default_port = origin.rsplit_once(':').and_then(|(_, p)| p.parse().ok());
            let host = header_text("host")
                .map(str::to_owned)
                .or_else(|| req.uri().authority().map(ToString::to_string))
                .and_then(|host| normalise_host(&host, default_port));
            let trusted = origin_of(origin_header)
                .is_some_and(|origin| settings.trusted_origins.contains(&origin));
            host.as_deref() != Some(origin.as_str()) && !trusted
        }),
    }
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
            trusted_origins: vec!["https://partner.example:443".into()],
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
        let (found, carrier) = presented(&req, &settings());
        assert_eq!(found.credential, Some(credential()));
        assert_eq!(carrier, Carrier::Cookie);

        let req = request(
            Method::GET,
            &[("cookie", &cookie), ("authorization", "Bearer nonsense")],
            "192.0.2.1:4000",
        );
        let (found, carrier) = presented(&req, &settings());
        assert_eq!(found.credential, None);
        assert_eq!(carrier, Carrier::Bearer);

        let bearer = format!("bearer {}", credential().expose());
        let req = request(Method::GET, &[("authorization", &bearer)], "192.0.2.1:4000");
        assert_eq!(
            presented(&req, &settings()).0.credential,
            Some(credential())
        );
    }

    #[test]
    fn r11_the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let xff = [("x-forwarded-for", "198.51.100.7, 10.1.1.1")];
        let direct = request(Method::GET, &xff, "192.0.2.1:4000");
        assert_eq!(client_ip(&direct, &settings()).to_string(), "192.0.2.1");
        let proxied = request(Method::GET, &xff, "10.0.0.2:4000");
        assert_eq!(client_ip(&proxied, &settings()).to_string(), "198.51.100.7");
    }

    #[test]
    fn r11_all_trusted_hops_give_the_left_most_and_garbage_is_ignored() {
        let all = [("x-forwarded-for", "10.9.9.9, 10.1.1.1")];
        let req = request(Method::GET, &all, "10.0.0.2:4000");
        assert_eq!(client_ip(&req, &settings()).to_string(), "10.9.9.9");
        let garbage = [("x-forwarded-for", "198.51.100.7, unknown")];
        let req = request(Method::GET, &garbage, "10.0.0.2:4000");
        assert_eq!(client_ip(&req, &settings()).to_string(), "10.0.0.2");
        let mapped = request(Method::GET, &[], "[::ffff:192.0.2.9]:4000");
        assert_eq!(client_ip(&mapped, &settings()).to_string(), "192.0.2.9");
    }

    #[test]
    fn r12_cross_site_fetch_metadata_with_the_cookie_is_refused() {
        let cookie = ("cookie", "__Host-websession=whatever");
        for site in ["cross-site", "same-site"] {
            let req = request(
                Method::POST,
                &[cookie, ("sec-fetch-site", site)],
                "192.0.2.1:1",
            );
            assert!(is_refused_cross_site(&req, &settings()), "{site}");
        }
        let same = request(
            Method::POST,
            &[cookie, ("sec-fetch-site", "same-origin")],
            "192.0.2.1:1",
        );
        assert!(!is_refused_cross_site(&same, &settings()));
        let get = request(
            Method::GET,
            &[cookie, ("sec-fetch-site", "cross-site")],
            "192.0.2.1:1",
        );
        assert!(!is_refused_cross_site(&get, &settings()));
        let bearer = request(
            Method::POST,
            &[
                cookie,
                ("sec-fetch-site", "cross-site"),
                ("authorization", "Bearer x"),
            ],
            "192.0.2.1:1",
        );
        assert!(!is_refused_cross_site(&bearer, &settings()));
        // Without the cookie too: another site's form must not set or clear it.
        let no_cookie = request(
            Method::POST,
            &[("sec-fetch-site", "cross-site")],
            "192.0.2.1:1",
        );
        assert!(is_refused_cross_site(&no_cookie, &settings()));
        let foreign = request(
            Method::POST,
            &[("origin", "https://evil.example"), ("host", "app.example")],
            "192.0.2.1:1",
        );
        assert!(is_refused_cross_site(&foreign, &settings()));
        // A client that is not a browser says neither.
        let plain = request(Method::POST, &[], "192.0.2.1:1");
        assert!(!is_refused_cross_site(&plain, &settings()));
    }

    #[test]
    fn r12_origin_must_match_the_host_or_be_trusted() {
        let cookie = ("cookie", "__Host-websession=whatever");
        let case = |origin: &str, host: &str| {
            let req = request(
                Method::POST,
                &[cookie, ("origin", origin), ("host", host)],
                "192.0.2.1:1",
            );
            is_refused_cross_site(&req, &settings())
        };
        assert!(!case("https://App.example", "app.example"));
        assert!(!case("https://app.example", "app.example:443"));
        assert!(!case("http://localhost:8080", "localhost:8080"));
        assert!(case("https://evil.example", "app.example"));
        assert!(case("http://app.example", "app.example:8080"));
        assert!(case("null", "app.example"));
        assert!(!case("https://partner.example", "app.example"));
        // A trusted origin is a scheme too.
        assert!(case("http://partner.example:443", "app.example"));
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
