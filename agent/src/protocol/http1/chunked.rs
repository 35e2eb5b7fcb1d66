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

/// Longest end of a size line (after its digits) that `Chunked::finish_across` accepts in
/// bytes it did not see.
const MAX_LINE_REST: u64 = 4;

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

    /// Ends the body across `unseen` bytes that were moved but not copied, the last of which
    /// a record's final bytes showed to be the last-chunk marker (`\r\n0\r\n\r\n`). Returns
    /// whether the data bytes are then known exactly; when false, the decoder is left as it
    /// was and the body's size is unknown (the unseen bytes may hide chunk boundaries).
    ///
    /// Exact when the bytes before the marker (the gap) can only be the rest of the current
    /// chunk: its remaining data, or the end of its size line (1 to 4 bytes: `\n`, `\r\n`,
    /// a short extension) and its data. Any other split of the gap needs more bytes: one more
    /// hidden chunk at least 5 (LF, size digit, LF, one data byte, plus the size line's end),
    /// one more hex digit in the size at least 15 times the chunk's size.
    pub fn finish_across(&mut self, unseen: u64) -> bool {
        let marker = LAST_CHUNK.len() as u64;
        if unseen < marker {
            // The marker began in the copied bytes: the unseen ones are its known end.
            let mut c = self.clone();
            let from = (marker - unseen) as usize;
            if c.feed(&LAST_CHUNK[from..]) == Step::Done(LAST_CHUNK.len() - from) {
                *self = c;
                return true;
            }
            return false;
        }
        let gap = unseen - marker;
        let rest_of_line = |value: u64| {
            (value > 0 && gap > value && gap - value <= MAX_LINE_REST).then_some(value)
        };
        let data = match self.state {
            State::Data(left) => (gap == left).then_some(left),
            State::DataCr => (gap == 0).then_some(0),
            State::Size { value, digits } if digits > 0 => rest_of_line(value),
            State::Ext { value } => rest_of_line(value),
            State::SizeLf { value } => (value > 0 && gap == value + 1).then_some(value),
            _ => None,
        };
        let Some(data) = data else {
            return false;
        };
        self.data_bytes += data;
        self.state = State::Done;
        true
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

    /// `fed` is copied, then `unseen` bytes are not, and the record ends with the marker.
    #[rstest]
    // Node's `res.end(body)` as one writev: head + size digits in the copied first iovec.
    #[case::node_writev_size_digits(b"5", 14, Some(5))]
    #[case::node_writev_5000(b"1388", 5009, Some(5000))]
    #[case::size_line_ended_lf_only(b"5", 13, Some(5))]
    #[case::size_line_with_extension(b"5", 16, Some(5))]
    #[case::after_extension_start(b"5;a=b", 13, Some(5))]
    #[case::after_size_cr(b"5\r", 13, Some(5))]
    // A read larger than the copy, inside the last chunk's data (chunked request bodies).
    #[case::inside_data(b"1388\r\nabc", 5004, Some(5000))]
    #[case::at_data_end(b"3\r\nabc", 7, Some(3))]
    #[case::marker_partly_copied(b"3\r\nabc\r\n0", 4, Some(3))]
    #[case::marker_all_but_one(b"3\r\nabc\r\n0\r\n\r", 1, Some(3))]
    // The head's CRLF and the unseen `0\r\n\r\n` make the marker: an empty body.
    #[case::empty_body_unseen(b"", 5, Some(0))]
    // The gap could hide more chunks, digits or a longer extension: unknown, never a guess.
    #[case::streamed_many_chunks(b"3e8", 5030 + 7, None)]
    #[case::gap_longer_than_chunk(b"3\r\nab", 12, None)]
    #[case::gap_shorter_than_chunk(b"3\r\na", 7, None)]
    #[case::rest_of_line_too_long(b"5", 5 + 5 + 7, None)]
    #[case::no_rest_of_line(b"5", 12, None)]
    #[case::leading_zero_may_continue(b"0", 14, None)]
    #[case::at_size_start(b"3\r\nabc\r\n", 20, None)]
    #[case::size_lf_needs_exactly_lf(b"5\r", 14, None)]
    #[case::in_trailers(b"0\r\nX: 1", 9, None)]
    #[case::marker_does_not_fit(b"3\r\nab", 4, None)]
    fn finishes_across_unseen_bytes(
        #[case] fed: &[u8],
        #[case] unseen: u64,
        #[case] data: Option<u64>,
    ) {
        let mut c = Chunked::new();
        assert_eq!(c.feed(fed), Step::NeedMore);
        let before = c.clone();
        let exact = c.finish_across(unseen);
        assert_eq!(exact.then_some(c.data_bytes), data);
        if exact {
            assert!(c.is_done());
        } else {
            assert_eq!(c, before, "left as it was");
        }
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
