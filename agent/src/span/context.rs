//! W3C Trace Context: `traceparent` parse/format, `tracestate` carry, what a request head's
//! headers say (`incoming`), and id generation.
use rand::RngCore;

/// A parsed `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub version: u8,
    pub trace_id: [u8; 16],
    /// The caller's span id (the parent of the receiving span).
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent has the wrong length ({0} bytes)")]
    Length(usize),
    #[error("traceparent field {field} is not lowercase hex of the right length")]
    Field { field: &'static str },
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent {0} is all zeros")]
    ZeroId(&'static str),
}

impl TraceParent {
    /// Parses a `traceparent` value (surrounding spaces and tabs are ignored). Version 00
    /// must be exactly 55 characters; a higher version may carry more fields after a `-`,
    /// which are ignored, as the specification asks.
    pub fn parse(value: &str) -> Result<Self, TraceParentError> {
        let v = value.trim_matches([' ', '\t']).as_bytes();
        if v.len() < 55 {
            return Err(TraceParentError::Length(v.len()));
        }
        let version = hex_byte(&v[0..2]).ok_or(TraceParentError::Field { field: "version" })?;
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return Err(TraceParentError::Length(v.len()));
        }
        if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return Err(TraceParentError::Field { field: "separator" });
        }
        let mut trace_id = [0u8; 16];
        decode_lower_hex(&v[3..35], &mut trace_id)
            .ok_or(TraceParentError::Field { field: "trace-id" })?;
        let mut parent_id = [0u8; 8];
        decode_lower_hex(&v[36..52], &mut parent_id)
            .ok_or(TraceParentError::Field { field: "parent-id" })?;
        let flags = hex_byte(&v[53..55]).ok_or(TraceParentError::Field { field: "flags" })?;
        if trace_id == [0; 16] {
            return Err(TraceParentError::ZeroId("trace-id"));
        }
        if parent_id == [0; 8] {
            return Err(TraceParentError::ZeroId("parent-id"));
        }
        Ok(Self {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Formats as a version-00 `traceparent` value.
    pub fn format(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex::encode(self.trace_id),
            hex::encode(self.parent_id),
            self.flags
        )
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

/// Lowercase hex only: the specification forbids uppercase.
fn decode_lower_hex(src: &[u8], dst: &mut [u8]) -> Option<()> {
    if src.len() != dst.len() * 2 {
        return None;
    }
    for (out, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
        *out = hex_byte(pair)?;
    }
    Some(())
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let nib = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    match pair {
        [hi, lo] => Some(nib(*hi)? << 4 | nib(*lo)?),
        _ => None,
    }
}

/// Longest `tracestate` value carried along; longer ones are dropped (the spec allows
/// 32 members of up to 256 characters; real values are far shorter).
pub const MAX_TRACESTATE: usize = 512;

/// Keeps a `tracestate` value when it is short and plain enough to pass through.
pub fn carry_tracestate(value: &str) -> Option<String> {
    let v = value.trim_matches([' ', '\t']);
    (!v.is_empty() && v.len() <= MAX_TRACESTATE && v.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .then(|| v.to_owned())
}

/// The trace context a request head carried, as its span uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Incoming {
    /// A valid `traceparent`.
    pub parent: Option<TraceParent>,
    /// `tracestate`, kept only with a valid `traceparent` (the specification ties them).
    pub trace_state: Option<String>,
    /// Why a `traceparent` that was present was ignored.
    pub rejected: Option<TraceParentError>,
}

/// Reads the `traceparent` and `tracestate` values of a request head (the first of each,
/// wherever they stand in the head). A malformed or all-zero `traceparent` is ignored, and
/// the reason kept so that it can be counted.
pub fn incoming(traceparent: Option<&str>, tracestate: Option<&str>) -> Incoming {
    let Some(value) = traceparent else {
        return Incoming::default();
    };
    match TraceParent::parse(value) {
        Ok(parent) => Incoming {
            parent: Some(parent),
            trace_state: tracestate.and_then(carry_tracestate),
            rejected: None,
        },
        Err(e) => Incoming {
            rejected: Some(e),
            ..Incoming::default()
        },
    }
}

/// A new random, non-zero trace id.
pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    let mut rng = rand::rng();
    while id == [0; 16] {
        rng.fill_bytes(&mut id);
    }
    id
}

/// A new random, non-zero span id.
pub fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    let mut rng = rand::rng();
    while id == [0; 8] {
        rng.fill_bytes(&mut id);
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let tp = TraceParent::parse(VALID).expect("valid");
        assert_eq!(hex::encode(tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(tp.parent_id), "00f067aa0ba902b7");
        assert_eq!((tp.version, tp.flags, tp.sampled()), (0, 1, true));
        assert_eq!(tp.format(), VALID);
    }

    #[rstest]
    #[case::surrounding_space(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ", 0)]
    #[case::future_version_extra("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what", 1)]
    #[case::future_version_exact("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", 0xcc)]
    fn accepts(#[case] value: &str, #[case] version: u8) {
        assert_eq!(TraceParent::parse(value).map(|t| t.version), Ok(version));
    }

    #[rstest]
    #[case::empty("", TraceParentError::Length(0))]
    #[case::short(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        TraceParentError::Length(54)
    )]
    #[case::v00_long(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
        TraceParentError::Length(57)
    )]
    #[case::future_no_dash(
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        TraceParentError::Length(56)
    )]
    #[case::version_ff(
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        TraceParentError::ForbiddenVersion
    )]
    #[case::uppercase_trace("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", TraceParentError::Field { field: "trace-id" })]
    #[case::uppercase_parent("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", TraceParentError::Field { field: "parent-id" })]
    #[case::bad_separator("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TraceParentError::Field { field: "separator" })]
    #[case::bad_flags("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", TraceParentError::Field { field: "flags" })]
    #[case::zero_trace(
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        TraceParentError::ZeroId("trace-id")
    )]
    #[case::zero_parent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        TraceParentError::ZeroId("parent-id")
    )]
    #[case::non_ascii(
        "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
        TraceParentError::Length(56)
    )]
    fn rejects(#[case] value: &str, #[case] err: TraceParentError) {
        assert_eq!(TraceParent::parse(value), Err(err));
    }

    #[rstest]
    #[case::plain("congo=t61rcWkgMzE", Some("congo=t61rcWkgMzE"))]
    #[case::trimmed("  a=1,b=2 ", Some("a=1,b=2"))]
    #[case::empty("", None)]
    #[case::control("a=\x01", None)]
    fn tracestate(#[case] value: &str, #[case] expected: Option<&str>) {
        assert_eq!(carry_tracestate(value).as_deref(), expected);
        assert_eq!(carry_tracestate(&"a".repeat(MAX_TRACESTATE + 1)), None);
    }

    #[rstest]
    #[case::absent(None, Some("a=1"), None, None, None)]
    #[case::valid(Some(VALID), Some("a=1"), Some(VALID), Some("a=1"), None)]
    #[case::valid_no_state(Some(VALID), None, Some(VALID), None, None)]
    #[case::malformed_drops_state(
        Some("00-xyz"),
        Some("a=1"),
        None,
        None,
        Some(TraceParentError::Length(6))
    )]
    #[case::zero_trace(
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        None,
        None,
        None,
        Some(TraceParentError::ZeroId("trace-id"))
    )]
    #[case::empty_value(Some(""), None, None, None, Some(TraceParentError::Length(0)))]
    fn incoming_context(
        #[case] traceparent: Option<&str>,
        #[case] tracestate: Option<&str>,
        #[case] parent: Option<&str>,
        #[case] state: Option<&str>,
        #[case] rejected: Option<TraceParentError>,
    ) {
        let got = incoming(traceparent, tracestate);
        assert_eq!(got.parent.map(|p| p.format()).as_deref(), parent);
        assert_eq!(got.trace_state.as_deref(), state);
        assert_eq!(got.rejected, rejected);
    }

    /// Feeds a server connection the request `head` cut at `cuts`, answers it, and returns
    /// the span.
    fn server_span_of(head: &[u8], cuts: &[usize]) -> crate::span::HttpSpan {
        use crate::conn::{Tracker, TrackerConfig};
        use crate::ebpf::record::{ConnKey, Data, Direction, Record, Role, Tuple};
        let key = ConnKey {
            pid: 1,
            fd: 3,
            sock_id: 9,
        };
        let tuple = Tuple {
            local: "127.0.0.1:80".parse().expect("addr"),
            remote: "127.0.0.1:5000".parse().expect("addr"),
        };
        let mut tracker = Tracker::new(TrackerConfig::default());
        let mut out = Vec::new();
        tracker.push(
            Record::Open {
                key,
                role: Role::Server,
                tuple,
                unix_ns: 1,
                sock_lost: 0,
                ring_lost: 0,
            },
            &mut out,
        );
        let data = |direction, bytes: &[u8], t: u64| {
            Record::Data(Data {
                key,
                tid: 2,
                goroutine: 0,
                direction,
                tuple,
                start_unix_ns: t,
                end_unix_ns: t + 1,
                len: bytes.len() as u32,
                bytes: bytes.to_vec().into(),
                tail: None,
                sock_lost: 0,
                ring_lost: 0,
            })
        };
        let mut from = 0;
        for (i, &cut) in cuts.iter().chain([&head.len()]).enumerate() {
            tracker.push(
                data(Direction::Read, &head[from..cut], 10 + i as u64),
                &mut out,
            );
            from = cut;
        }
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        tracker.push(data(Direction::Write, ok, 100), &mut out);
        assert_eq!(out.len(), 1, "one span");
        out.remove(0)
    }

    /// The context is read wherever it stands in the head, however the head was split
    /// across reads; a bad one is ignored and its reason kept.
    #[rstest]
    #[case::first_header(format!("traceparent: {VALID}\r\ntracestate: a=1\r\nHost: h\r\n"), Ok(()))]
    #[case::after_a_long_cookie(format!("Cookie: {}\r\nHost: h\r\nTraceParent: {VALID}\r\ntracestate: a=1\r\n", "c".repeat(3000)), Ok(()))]
    #[case::last_header(format!("Host: h\r\ntracestate: a=1\r\ntraceparent: {VALID}\r\n"), Ok(()))]
    #[case::uppercase_value(format!("traceparent: {}\r\ntracestate: a=1\r\n", VALID.to_uppercase()), Err(TraceParentError::Field { field: "trace-id" }))]
    #[case::zero(
        "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n".into(),
        Err(TraceParentError::ZeroId("trace-id"))
    )]
    #[case::truncated(
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7\r\n".into(),
        Err(TraceParentError::Length(52))
    )]
    fn context_anywhere_in_a_head_split_across_reads(
        #[case] headers: String,
        #[case] want: Result<(), TraceParentError>,
    ) {
        let head = format!("GET /x HTTP/1.1\r\n{headers}\r\n").into_bytes();
        let tp = TraceParent::parse(VALID).expect("valid");
        let mut splits: Vec<Vec<usize>> = vec![vec![]];
        splits.extend((1..head.len()).step_by(7).map(|c| vec![c]));
        splits.push(vec![1, head.len() / 2, head.len() - 1]);
        for cuts in splits {
            let span = server_span_of(&head, &cuts);
            match want {
                Ok(()) => {
                    assert_eq!(span.trace_id, tp.trace_id, "cuts {cuts:?}");
                    assert_eq!(span.parent_span_id, Some(tp.parent_id), "cuts {cuts:?}");
                    assert_eq!(span.trace_state.as_deref(), Some("a=1"));
                    assert_eq!(span.link, crate::span::LinkKind::Traceparent);
                    assert_eq!(span.traceparent_rejected, None);
                }
                Err(e) => {
                    assert_eq!(span.parent_span_id, None, "cuts {cuts:?}");
                    assert_eq!(
                        (span.trace_state, span.link),
                        (None, crate::span::LinkKind::None)
                    );
                    assert_eq!(span.traceparent_rejected, Some(e), "cuts {cuts:?}");
                }
            }
        }
    }

    #[test]
    fn generated_ids_are_non_zero_and_distinct() {
        let (a, b) = (new_trace_id(), new_trace_id());
        assert_ne!(a, [0; 16]);
        assert_ne!(a, b);
        assert_ne!(new_span_id(), [0; 8]);
    }
}
