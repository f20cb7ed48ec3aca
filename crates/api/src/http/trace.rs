//! W3C Trace Context for a request: the trace it belongs to (an incoming `traceparent`'s, or a
//! new one), this request's own id within it, and the `traceparent` it answers with, so that
//! a gateway's trace can be followed into websessions' logs and back. Ids are random but not
//! secret: they identify log lines, never a session. Every request pays for this, so the ids
//! stay numbers until a log line or the answer's header needs their text.

use std::fmt;

use poem::Request;
use poem::http::{HeaderName, HeaderValue};

/// The header both ways.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A trace's id: 128 bits, never zero, written as 32 lower-case hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceId(u128);

/// A span's id (this request's, also its request id): 64 bits, never zero, 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanId(u64);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A request's place in a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trace {
    pub trace_id: TraceId,
    /// This request's span.
    pub span_id: SpanId,
    /// The incoming trace flags, or `01` (sampled) for a trace of our own.
    flags: u8,
}

impl Trace {
    /// The trace of `req`'s valid `traceparent`, or a new one; a new span either way.
    pub fn of(req: &Request) -> Self {
        let incoming = req
            .headers()
            .get(TRACEPARENT)
            .and_then(|value| value.to_str().ok())
            .and_then(parse);
        let (trace_id, flags) = incoming.unwrap_or_else(|| (TraceId(fastrand::u128(1..)), 0x01));
        Self {
            trace_id,
            span_id: SpanId(fastrand::u64(1..)),
            flags,
        }
    }

    /// The `traceparent` this request answers with: its trace, and its own span.
    pub fn header(&self) -> Option<HeaderValue> {
        // `00-` 32 hex `-` 16 hex `-` 2 hex.
        let mut text = [0u8; 55];
        text[..3].copy_from_slice(b"00-");
        hex(&self.trace_id.0.to_be_bytes(), &mut text[3..35]);
        text[35] = b'-';
        hex(&self.span_id.0.to_be_bytes(), &mut text[36..52]);
        text[52] = b'-';
        hex(&[self.flags], &mut text[53..55]);
        HeaderValue::from_bytes(&text).ok()
    }
}

/// `bytes` as lower-case hex into `out` (twice as long).
fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The trace id and flags of a valid `traceparent` (`version-traceid-parentid-flags`, lower-case
/// hex; a later version may add fields after the flags, version 00 may not); `None` for
/// anything else, which starts a trace of our own.
fn parse(text: &str) -> Option<(TraceId, u8)> {
    let mut parts = text.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let valid = is_hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && is_hex(trace_id, 32)
        && is_hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && is_hex(flags, 2);
    if !valid {
        return None;
    }
    let trace_id = u128::from_str_radix(trace_id, 16)
        .ok()
        .filter(|id| *id != 0)?;
    Some((TraceId(trace_id), u8::from_str_radix(flags, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_span_of_our_own() {
        let (trace_id, flags) = parse(VALID).unwrap();
        assert_eq!(trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(flags, 1);
        let req = Request::builder().header(TRACEPARENT, VALID).finish();
        let trace = Trace::of(&req);
        assert_eq!(trace.trace_id, trace_id);
        let answer = trace.header().unwrap();
        let answer = answer.to_str().unwrap();
        assert_eq!(
            answer,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", trace.span_id)
        );
        assert!(is_hex(&trace.span_id.to_string(), 16));
        assert!(
            !answer.contains("00f067aa0ba902b7"),
            "our own span, not the caller's"
        );
        assert_eq!(parse(answer).map(|(id, _)| id), Some(trace_id));
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
        assert!(is_hex(&trace.trace_id.to_string(), 32));
        assert_ne!(trace.trace_id, Trace::of(&Request::default()).trace_id);
        let header = trace.header().unwrap();
        assert!(parse(header.to_str().unwrap()).is_some(), "{header:?}");
    }
}
