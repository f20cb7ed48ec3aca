//! W3C Trace Context for a request: the trace it belongs to (an incoming `traceparent`'s, or a
//! new one), this request's own id within it, and the `traceparent` it answers with, so that
//! a gateway's trace can be followed into websessions' logs and back. Ids are random but not
//! secret: they identify log lines, never a session.

use std::fmt::Write as _;

use poem::Request;
use poem::http::HeaderValue;

/// The header both ways.
pub const TRACEPARENT: &str = "traceparent";

/// A request's place in a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// This request's span: 16 lower-case hex digits, also its request id.
    pub span_id: String,
    /// The incoming trace flags, or `01` (sampled) for a trace of our own.
    flags: String,
}

impl Trace {
    /// The trace of `req`'s valid `traceparent`, or a new one; a new span either way.
    pub fn of(req: &Request) -> Self {
        let incoming = req
            .headers()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse);
        let (trace_id, flags) = incoming.unwrap_or_else(|| (hex(16), "01".to_owned()));
        Self {
            trace_id,
            span_id: hex(8),
            flags,
        }
    }

    /// The `traceparent` this request answers with: its trace, and its own span.
    pub fn header(&self) -> Option<HeaderValue> {
        let text = format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags);
        HeaderValue::try_from(text).ok()
    }
}

/// `bytes` random bytes as lower-case hex, never all zeros (an invalid id).
fn hex(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes * 2);
    for _ in 0..bytes {
        let _ = write!(text, "{:02x}", fastrand::u8(..));
    }
    if text.bytes().all(|b| b == b'0') {
        text.replace_range(text.len() - 1.., "1");
    }
    text
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The trace id and flags of a valid `traceparent` (`version-traceid-parentid-flags`, lower-case
/// hex; a later version may add fields after the flags, version 00 may not); `None` for
/// anything else, which starts a trace of our own.
fn parse(text: &str) -> Option<(String, String)> {
    let mut parts = text.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let valid = is_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && is_hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && is_hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && is_hex(flags, 2);
    valid.then(|| (trace_id.to_owned(), flags.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_span_of_our_own() {
        assert_eq!(
            parse(VALID),
            Some(("4bf92f3577b34da6a3ce929d0e0e4736".into(), "01".into()))
        );
        let req = Request::builder().header(TRACEPARENT, VALID).finish();
        let trace = Trace::of(&req);
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(is_hex(&trace.span_id, 16));
        let answer = trace.header().unwrap();
        let answer = answer.to_str().unwrap();
        assert!(answer.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(
            !answer.contains("00f067aa0ba902b7"),
            "our own span, not the caller's"
        );
        assert!(parse(answer).is_some());
    }

    #[test]
    fn anything_else_starts_a_trace_of_our_own() {
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        let trace = Trace::of(&Request::builder().header(TRACEPARENT, "junk").finish());
        assert!(is_hex(&trace.trace_id, 32));
        assert_ne!(trace.trace_id, Trace::of(&Request::default()).trace_id);
    }
}
