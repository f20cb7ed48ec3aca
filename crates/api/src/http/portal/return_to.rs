//! Where a sign-in sends the browser (SPEC section 10): `return_to` when it is a path on this
//! site, or an http(s) URL whose origin is in `trusted_origins`; `/account` for anything else,
//! so the sign-in page is no open redirect.

use percent_encoding::percent_decode_str;

use crate::http::{Origin, TrustedOrigins};

/// Where a sign-in goes when `return_to` is missing or refused.
pub const DEFAULT: &str = "/account";

/// Longer than any URL worth returning to.
const MAX_LENGTH: usize = 2048;

/// `return_to` from a query string. The parameter's value runs to the end of the query, so
/// that a gateway may append the original address unencoded (`/login?return_to=$request_uri`
/// in nginx, which has no URL encoder) and keep its own query. Such an address (it starts with
/// `/`, `http://` or `https://`) is taken as it is, since decoding would change it (`a+b`,
/// `C%23`, `%2F` in its query); any other value is form-encoded, as a browser writes it, and
/// is decoded once.
pub fn from_query(query: &str) -> Option<String> {
    let start = if query.starts_with("return_to=") {
        0
    } else {
        query.find("&return_to=")? + 1
    };
    let raw = &query[start + "return_to=".len()..];
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    if raw.starts_with('/') || lower.starts_with("http://") || lower.starts_with("https://") {
        return Some(raw.to_owned());
    }
    percent_decode_str(&raw.replace('+', " "))
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

/// The destination for `requested` (already decoded), given the normalised trusted origins.
pub fn destination(requested: Option<&str>, trusted_origins: &TrustedOrigins) -> String {
    requested
        .filter(|target| is_allowed(target, trusted_origins))
        .unwrap_or(DEFAULT)
        .to_owned()
}

fn is_allowed(target: &str, trusted_origins: &TrustedOrigins) -> bool {
    if target.len() > MAX_LENGTH
        || target
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return false;
    }
    if let Some(rest) = target.strip_prefix('/') {
        // `//host` and `/\host` are other hosts to a browser; `\` is refused above.
        return !rest.starts_with('/');
    }
    is_trusted_url(target, trusted_origins)
}

/// An absolute http(s) URL whose `scheme://host[:port]` is a trusted origin (the scheme
/// too: `http://` on a trusted `https://` origin's port is refused).
fn is_trusted_url(target: &str, trusted_origins: &TrustedOrigins) -> bool {
    let Some((scheme, rest)) = target.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    Origin::parse(&format!("{scheme}://{authority}"))
        .is_some_and(|origin| trusted_origins.contains(&origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> TrustedOrigins {
        TrustedOrigins::new(vec![
            Origin::parse("https://app.example:443").unwrap(),
            Origin::parse("http://a.localhost:8080").unwrap(),
        ])
    }

    fn goes_to(target: &str) -> String {
        destination(Some(target), &trusted())
    }

    #[test]
    fn paths_on_this_site_are_kept() {
        for path in [
            "/",
            "/account",
            "/app/page?x=1&y=2#part",
            "/%2F%2Fevil.example",
            "/a/b//c",
        ] {
            assert_eq!(goes_to(path), path);
        }
    }

    #[test]
    fn urls_of_trusted_origins_are_kept() {
        for url in [
            "https://app.example/after",
            "HTTPS://APP.EXAMPLE:443/after?x=1",
            "http://a.localhost:8080/",
            "http://a.localhost:8080",
        ] {
            assert_eq!(goes_to(url), url);
        }
    }

    #[test]
    fn every_other_form_goes_to_the_account_page() {
        for hostile in [
            "https://evil.example/",
            "//evil.example",
            "//evil.example/account",
            "/\\evil.example",
            "\\\\evil.example",
            "/account\\..\\x",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "https://app.example@evil.example/",
            "https://app.example.evil.example/",
            "https://app.example:444/",
            "http://app.example/",
            "http://app.example:443/x",
            "https://a.localhost:8080/x",
            "ftp://app.example/",
            "https:/app.example",
            "/account\n",
            "/acc\tount",
            "/ account",
            " /account",
            "/account\u{a0}",
            "/\u{7f}",
            "account",
            "",
            "evil.example",
        ] {
            assert_eq!(goes_to(hostile), DEFAULT, "{hostile:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_LENGTH));
        assert_eq!(goes_to(&long), DEFAULT);
        assert_eq!(destination(None, &trusted()), DEFAULT);
        // Without trusted origins only paths are kept.
        assert_eq!(
            destination(Some("https://app.example/"), &TrustedOrigins::default()),
            DEFAULT
        );
    }

    #[test]
    fn the_parameter_runs_to_the_end_of_the_query_and_an_encoded_one_is_decoded_once() {
        // As a gateway appends it: taken as it is.
        let raws = [
            "/app?x=1&y=2",
            "/search?q=a+b",
            "/files/a%20b.pdf",
            "/wiki/C%23",
            "/a?next=%2Fhome%3Fx%3D1",
            "HTTPS://app.example/a%20b",
        ];
        for raw in raws {
            let query = format!("return_to={raw}");
            assert_eq!(from_query(&query).as_deref(), Some(raw));
        }
        assert_eq!(
            destination(Some("/search?q=a+b"), &TrustedOrigins::default()),
            "/search?q=a+b"
        );
        // As a browser encodes it: decoded once.
        let decoded = from_query("a=1&return_to=%2Fapp%3Fx%3D1");
        assert_eq!(decoded.as_deref(), Some("/app?x=1"));
        assert_eq!(from_query("return_to=%2F%2532").as_deref(), Some("/%32"));
        assert_eq!(from_query("return_to=%2Fa+b").as_deref(), Some("/a b"));
        assert_eq!(from_query("xreturn_to=/app"), None);
        assert_eq!(from_query("a=1"), None);
        assert_eq!(from_query("return_to=%FF"), None);
        // Decoded, then validated: an encoded `//` is another host.
        let decoded = from_query("return_to=%2F%2Fevil.example");
        assert_eq!(
            destination(decoded.as_deref(), &TrustedOrigins::default()),
            DEFAULT
        );
    }
}
