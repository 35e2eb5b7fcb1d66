//! Chunked transfer-coding framing: a streaming decoder that follows chunk boundaries over
//! the copied bytes and can skip bytes it never saw while it stays inside a chunk.

/// Where the decoder is inside the chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex chunk size (`digits` so far).
    Size {
        value: u64,
        digits: u8,
    },
    /// Skipping a chunk extension (`;name=value`) or whitespace after the size.
    Ext {
        value: u64,
    },
    /// Saw CR after the size line; LF must follow.
    SizeLf {
        value: u64,
    },
    /// Inside chunk data; this many bytes left.
    Data(u64),
    /// After chunk data; CR (or a bare LF) must follow.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    TrailerLine,
    /// Saw CR of the final blank line.
    EndLf,
    Done,
}

/// Result of feeding bytes to the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// All bytes were consumed and the body is not finished.
    NeedMore,
    /// The body ended after this many of the fed bytes.
    Done(usize),
    /// The bytes break the chunked grammar.
    Invalid(&'static str),
}

/// Streaming chunked-body decoder. Counts data bytes but keeps none of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    /// Chunk data bytes seen (or skipped in sync) so far.
    pub data_bytes: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

/// The last-chunk marker that ends a body without trailers, preceded by the CRLF that ends
/// the previous chunk's data.
const LAST_CHUNK: &[u8] = b"\r\n0\r\n\r\n";

/// Whether a buffer's final bytes end a chunked body (`...\r\n0\r\n\r\n`, or the buffer is
/// exactly `0\r\n\r\n`). Used when framing was lost or the middle of a buffer was not copied.
pub fn ends_with_last_chunk(tail: &[u8]) -> bool {
    tail.ends_with(LAST_CHUNK) || tail == &LAST_CHUNK[2..]
}

impl Chunked {
    pub fn new() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            data_bytes: 0,
        }
    }

    /// Whether the terminating chunk and trailers have been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Accounts for `n` bytes that were moved but not copied. Returns false when the
    /// decoder cannot stay in sync (the bytes cross a chunk boundary).
    pub fn skip(&mut self, n: u64) -> bool {
        if n == 0 {
            return true;
        }
        match self.state {
            State::Data(left) if n <= left => {
                self.data_bytes += n;
                self.state = if n == left {
                    State::DataCr
                } else {
                    State::Data(left - n)
                };
                true
            }
            _ => false,
        }
    }

    /// Feeds the next bytes of the body.
    pub fn feed(&mut self, buf: &[u8]) -> Step {
        let mut i = 0;
        while i < buf.len() {
            if let State::Data(left) = self.state {
                let take = left.min((buf.len() - i) as u64);
                self.data_bytes += take;
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data(left - take)
                };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.state = match self.state {
                State::Size { value, digits } => match hex_value(b) {
                    Some(d) => {
                        if digits >= 15 {
                            return Step::Invalid("chunk size too large");
                        }
                        State::Size {
                            value: value * 16 + u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return Step::Invalid("missing chunk size"),
                    None => match b {
                        b';' | b' ' | b'\t' => State::Ext { value },
                        b'\r' => State::SizeLf { value },
                        b'\n' => after_size(value),
                        _ => return Step::Invalid("invalid chunk size"),
                    },
                },
                State::Ext { value } => match b {
                    b'\r' => State::SizeLf { value },
                    b'\n' => after_size(value),
                    _ => State::Ext { value },
                },
                State::SizeLf { value } => match b {
                    b'\n' => after_size(value),
                    _ => return Step::Invalid("missing LF after chunk size"),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => State::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Step::Invalid("missing CRLF after chunk data"),
                },
                State::DataLf => match b {
                    b'\n' => State::Size {
                        value: 0,
                        digits: 0,
                    },
                    _ => return Step::Invalid("missing LF after chunk data"),
                },
                State::TrailerStart => match b {
                    b'\r' => State::EndLf,
                    b'\n' => State::Done,
                    _ => State::TrailerLine,
                },
                State::TrailerLine => match b {
                    b'\n' => State::TrailerStart,
                    _ => State::TrailerLine,
                },
                State::EndLf => match b {
                    b'\n' => State::Done,
                    _ => return Step::Invalid("missing LF after last chunk"),
                },
                State::Data(_) | State::Done => self.state,
            };
            if self.state == State::Done {
                return Step::Done(i);
            }
        }
        Step::NeedMore
    }
}

fn after_size(value: u64) -> State {
    if value == 0 {
        State::TrailerStart
    } else {
        State::Data(value)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn feed_all(parts: &[&str]) -> (Step, u64) {
        let mut c = Chunked::new();
        let mut last = Step::NeedMore;
        for p in parts {
            last = c.feed(p.as_bytes());
            if last != Step::NeedMore {
                break;
            }
        }
        (last, c.data_bytes)
    }

    #[rstest]
    #[case::simple(&["5\r\nhello\r\n0\r\n\r\n"], Step::Done(15), 5)]
    #[case::two_chunks(&["3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"], Step::Done(20), 5)]
    #[case::hex_upper(&["A\r\n0123456789\r\n0\r\n\r\n"], Step::Done(20), 10)]
    #[case::extension(&["3;name=val\r\nabc\r\n0\r\n\r\n"], Step::Done(22), 3)]
    #[case::trailers(&["1\r\na\r\n0\r\nX-Sum: 1\r\n\r\n"], Step::Done(21), 1)]
    #[case::lf_only(&["2\nab\n0\n\n"], Step::Done(8), 2)]
    #[case::split_everywhere(&["1", "0\r", "\n0123456789abcdef", "\r\n", "0\r\n", "\r\n"], Step::Done(2), 16)]
    #[case::trailing_bytes(&["0\r\n\r\nGET / HTTP/1.1\r\n"], Step::Done(5), 0)]
    #[case::empty(&[""], Step::NeedMore, 0)]
    #[case::truncated(&["5\r\nhel"], Step::NeedMore, 3)]
    #[case::garbage_size(&["zz\r\n"], Step::Invalid("missing chunk size"), 0)]
    #[case::bad_after_size(&["5x\r\n"], Step::Invalid("invalid chunk size"), 0)]
    #[case::missing_crlf(&["1\r\naXY"], Step::Invalid("missing CRLF after chunk data"), 1)]
    #[case::too_large(&["ffffffffffffffffff\r\n"], Step::Invalid("chunk size too large"), 0)]
    fn decodes(#[case] parts: &[&str], #[case] step: Step, #[case] data: u64) {
        assert_eq!(feed_all(parts), (step, data));
    }

    #[test]
    fn skip_stays_in_sync_inside_a_chunk() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"10\r\n0123"), Step::NeedMore);
        assert!(c.skip(12));
        assert_eq!(c.feed(b"\r\n0\r\n\r\n"), Step::Done(7));
        assert_eq!(c.data_bytes, 16);
    }

    #[rstest]
    #[case::crosses_boundary(b"4\r\nab", 3)]
    #[case::in_size_line(b"4", 1)]
    fn skip_loses_sync(#[case] fed: &[u8], #[case] n: u64) {
        let mut c = Chunked::new();
        assert_eq!(c.feed(fed), Step::NeedMore);
        assert!(!c.skip(n));
    }

    #[rstest]
    #[case::full(b"abc\r\n0\r\n\r\n", true)]
    #[case::alone(b"0\r\n\r\n", true)]
    #[case::not_end(b"abc\r\n10\r\n\r\n", false)]
    #[case::data_zero(b"abc0\r\n\r\n", false)]
    #[case::empty(b"", false)]
    fn last_chunk_marker(#[case] tail: &[u8], #[case] expected: bool) {
        assert_eq!(ends_with_last_chunk(tail), expected);
    }
}
