//! One connection's state machine: request and response byte streams → exchanges → spans.
//!
//! Each direction is a small stream parser: at a head boundary (`Head`), inside a body
//! (`Body`), or out of sync (`Lost`, waiting for a record that starts with a head). Requests
//! queue in FIFO order (pipelining); each response head pairs with the oldest request.
use std::collections::VecDeque;

use super::{Stats, TrackerConfig};
use crate::ebpf::record::{Data, Direction, Role, Tuple};
use crate::protocol::http1::chunked::{Chunked, Step, ends_with_last_chunk};
use crate::protocol::http1::{
    Parse, close_truncated_head, looks_like_request, parse_request_head,
    starts_with_method_and_space,
};
use crate::span::assemble::{Exchange, HeadCaller};
use crate::span::{HttpSpan, SpanKind};

/// What the tracker does with a connection's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Http,
    /// Not HTTP/1.x (another protocol, TLS, an upgraded or tunnelled connection): skipped.
    Opaque,
    /// Filtered out by the capture_server / capture_client settings.
    Ignored,
}

/// Why a connection's state is being torn down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EndReason {
    /// The process closed the fd (or the kernel closed a socket it still had a record of).
    Close,
    /// The kernel closed the socket after the process's close was lost.
    KernelClose,
    ProcessExit,
    Timeout,
    Evicted,
    /// A new socket took the same (pid, fd): the close was missed.
    Replaced,
    /// A new request arrived on the connection (only ends unframed responses).
    NextRequest,
}

/// How a response body without usable framing ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unframed {
    /// No length and not chunked: the body runs to the close.
    UntilClose,
    /// Chunk framing was lost (uncopied bytes crossed a chunk boundary, or bad framing).
    LostFraming,
    /// The head was cut off before its framing headers could be read.
    TruncatedHead,
}

#[derive(Clone, Debug)]
enum Body {
    Length(u64),
    Chunked(Chunked),
    Unframed(Unframed),
}

#[derive(Clone, Debug)]
enum Side {
    /// At a head boundary (possibly with a partial head buffered).
    Head,
    Body(Body),
    /// Out of sync; resynchronise at a record that starts with a head.
    Lost,
}

/// A head split across records, buffered until complete (only ever the head, never a body).
#[derive(Debug, Default)]
struct HeadBuf {
    bytes: Vec<u8>,
    start_unix_ns: u64,
    caller: HeadCaller,
}

/// Most requests queued on one connection without a response (pipelining depth); beyond
/// this the oldest is dropped, which keeps memory bounded when responses are never seen.
pub(super) const MAX_PIPELINE: usize = 16;

/// How long a connection must be quiet before a response with lost framing is taken as
/// finished (its end time is still its last byte).
pub const QUIET_FLUSH_NS: u64 = 2_000_000_000;

/// A head parse with the borrow of the input released.
#[expect(
    clippy::large_enum_variant,
    reason = "transient: lives on the stack for one parse"
)]
enum Parsed {
    Complete(Exchange, Option<Body>, usize),
    Partial,
    NotHttp,
    Invalid,
}

/// What happened to the bytes offered to a head parser.
enum HeadStep {
    /// A head ended after this many bytes of the offered chunk.
    Consumed(usize),
    /// Stop processing this record (buffered, or the side lost sync).
    Stop,
}

/// Shared, per-call context: configuration, counters, output, and a scratch buffer.
pub(super) struct Ctx<'a> {
    pub cfg: &'a TrackerConfig,
    pub stats: &'a mut Stats,
    pub out: &'a mut Vec<HttpSpan>,
    pub scratch: &'a mut Vec<u8>,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub role: Option<Role>,
    pub mode: Mode,
    /// The accept/connect was seen, so the first bytes are the protocol's first bytes.
    pub opened: bool,
    http_seen: bool,
    pub tuple: Tuple,
    pub pid: u32,
    pub last_unix_ns: u64,
    req: Side,
    req_buf: HeadBuf,
    /// The request whose body is still arriving is the newest pending exchange.
    req_body_pending: bool,
    resp: Side,
    resp_buf: HeadBuf,
    pending: VecDeque<Exchange>,
    /// The kernel's count of this socket's lost records, as of the last record seen.
    sock_lost: u32,
    /// The kernel's host-wide count of lost records, as of the last record seen.
    pub ring_lost_seen: u32,
}

impl Conn {
    pub fn new(
        pid: u32,
        role: Option<Role>,
        mode: Mode,
        tuple: Tuple,
        now: u64,
        sock_lost: u32,
    ) -> Self {
        Self {
            role,
            mode,
            opened: role.is_some(),
            http_seen: false,
            tuple,
            pid,
            last_unix_ns: now,
            req: Side::Head,
            req_buf: HeadBuf::default(),
            req_body_pending: false,
            resp: Side::Head,
            resp_buf: HeadBuf::default(),
            pending: VecDeque::new(),
            sock_lost,
            ring_lost_seen: 0,
        }
    }

    /// Checks a record's count of the socket's lost records against the last one seen. When
    /// it moved, records of this connection are missing: the exchanges in flight may be
    /// missing their request, their response or a part of either, and the next bytes may be
    /// anywhere in a message. They are dropped (counted), and both directions wait for a
    /// record that starts with a head, so that no request is paired with another's response.
    pub fn check_loss(&mut self, sock_lost: u32, ctx: &mut Ctx<'_>) {
        if sock_lost == self.sock_lost {
            return;
        }
        self.sock_lost = sock_lost;
        ctx.stats.ring_loss_resyncs += 1;
        self.drop_in_flight(ctx);
    }

    /// Drops the exchanges in flight (records of this connection may be missing) and waits
    /// for the next head on both sides.
    pub fn drop_in_flight(&mut self, ctx: &mut Ctx<'_>) {
        ctx.stats.ring_loss_exchanges += self.pending.len() as u64;
        ctx.stats.skipped(self.pid, self.pending.len() as u64);
        self.pending.clear();
        self.req_buf.bytes.clear();
        self.resp_buf.bytes.clear();
        self.req_body_pending = false;
        self.req = Side::Lost;
        self.resp = Side::Lost;
    }

    /// Exchanges waiting for (or receiving) a response.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one data record.
    pub fn on_data(&mut self, d: &Data, ctx: &mut Ctx<'_>) {
        self.check_loss(d.sock_lost, ctx);
        self.ring_lost_seen = d.ring_lost;
        self.last_unix_ns = self.last_unix_ns.max(d.end_unix_ns);
        self.tuple = d.tuple;
        match self.mode {
            Mode::Http => {}
            Mode::Opaque => {
                ctx.stats.non_http_skipped += 1;
                return;
            }
            Mode::Ignored => return,
        }
        let total = d.len as usize;
        let known = &d.bytes[..d.bytes.len().min(total)];
        let role = match self.role {
            Some(role) => role,
            None => {
                // Seen mid-life: the first request head decides which side we are on.
                let head = parse_request_head(known);
                let plausible = match head {
                    Parse::Complete(..) => true,
                    Parse::Partial => starts_with_method_and_space(known),
                    Parse::NotHttp | Parse::Invalid(_) => false,
                };
                if !plausible {
                    ctx.stats.non_http_skipped += 1;
                    return;
                }
                let role = match d.direction {
                    Direction::Read => Role::Server,
                    Direction::Write => Role::Client,
                };
                self.role = Some(role);
                if !allowed(ctx.cfg, role) {
                    ctx.stats.role_filtered += 1;
                    self.mode = Mode::Ignored;
                    return;
                }
                role
            }
        };
        let request_side = matches!(
            (role, d.direction),
            (Role::Server, Direction::Read) | (Role::Client, Direction::Write)
        );
        if total == 0 {
            // A zero-length read is end-of-file: the peer closed its side.
            if !request_side && d.direction == Direction::Read {
                self.finish_unframed(EndReason::Close, ctx);
            }
            return;
        }
        if request_side {
            self.on_request_bytes(d, known, total, role, ctx);
        } else {
            self.on_response_bytes(d, known, total, ctx);
        }
    }

    fn on_request_bytes(
        &mut self,
        d: &Data,
        known: &[u8],
        total: usize,
        role: Role,
        ctx: &mut Ctx<'_>,
    ) {
        let mut pos = 0usize;
        loop {
            match &mut self.req {
                Side::Lost => {
                    if pos != 0 || !looks_like_request(known) {
                        if pos == 0 {
                            ctx.stats.non_http_skipped += 1;
                        }
                        return;
                    }
                    self.req = Side::Head;
                }
                Side::Head => {
                    if pos >= known.len() {
                        if pos < total {
                            ctx.stats.lost_sync += 1;
                            self.req = Side::Lost;
                        }
                        return;
                    }
                    let truncated = known.len() < total;
                    match self.request_head(d, &known[pos..], pos == 0, truncated, role, ctx) {
                        HeadStep::Consumed(n) if n > 0 => pos += n,
                        HeadStep::Consumed(_) => return,
                        HeadStep::Stop => return,
                    }
                }
                Side::Body(Body::Length(left)) => {
                    let n = (*left).min((total - pos) as u64);
                    *left -= n;
                    pos += n as usize;
                    if *left > 0 {
                        return;
                    }
                    self.req = Side::Head;
                    self.req_body_pending = false;
                }
                Side::Body(Body::Chunked(c)) => {
                    match consume_chunked(c, known, &mut pos, total, d, ctx.stats) {
                        ChunkOutcome::More => return,
                        outcome @ (ChunkOutcome::Done | ChunkOutcome::DoneSizeUnknown) => {
                            let size =
                                matches!(outcome, ChunkOutcome::Done).then_some(c.data_bytes);
                            if self.req_body_pending
                                && let Some(back) = self.pending.back_mut()
                            {
                                back.request_body_size = size;
                            }
                            self.req_body_pending = false;
                            self.req = Side::Head;
                        }
                        ChunkOutcome::Lost => {
                            ctx.stats.chunk_framing_lost += 1;
                            self.req_body_pending = false;
                            self.req = Side::Lost;
                            return;
                        }
                    }
                }
                Side::Body(Body::Unframed(_)) => {
                    self.req = Side::Lost;
                    return;
                }
            }
        }
    }

    /// Parses (or buffers) a request head starting at `chunk`.
    fn request_head(
        &mut self,
        d: &Data,
        chunk: &[u8],
        at_record_start: bool,
        truncated: bool,
        role: Role,
        ctx: &mut Ctx<'_>,
    ) -> HeadStep {
        let prev_len = self.req_buf.bytes.len();
        let buffered = prev_len > 0;
        if buffered {
            self.req_buf.bytes.extend_from_slice(chunk);
        }
        let here = HeadCaller {
            tid: d.tid,
            goroutine: d.goroutine,
            ring_lost: d.ring_lost,
        };
        let (kind, start, caller) = match (buffered, role) {
            // A request read in parts is served by whoever read its end: Go's server reads a
            // keep-alive connection's next first byte on a background goroutine, the rest on
            // the connection's own, which runs the handler.
            (true, Role::Server) => (SpanKind::Server, self.req_buf.start_unix_ns, here),
            (true, Role::Client) => (
                SpanKind::Client,
                self.req_buf.start_unix_ns,
                self.req_buf.caller,
            ),
            // A blocking read starts waiting before the bytes arrive: use its return.
            (false, Role::Server) => (SpanKind::Server, d.end_unix_ns, here),
            (false, Role::Client) => (SpanKind::Client, d.start_unix_ns, here),
        };
        let input: &[u8] = if buffered { &self.req_buf.bytes } else { chunk };
        let input_len = input.len();
        let parsed = match parse_request_head(input) {
            Parse::Complete(head, consumed) => {
                let framing = if head.headers.chunked {
                    Some(Body::Chunked(Chunked::new()))
                } else {
                    head.headers
                        .content_length
                        .filter(|&n| n > 0)
                        .map(Body::Length)
                };
                let ex = Exchange::from_request(&head, kind, start, self.pid, caller);
                Parsed::Complete(ex, framing, consumed.saturating_sub(prev_len))
            }
            Parse::Partial => Parsed::Partial,
            Parse::NotHttp => Parsed::NotHttp,
            Parse::Invalid(_) => Parsed::Invalid,
        };
        match parsed {
            Parsed::Complete(ex, framing, used) => {
                self.req_buf.bytes.clear();
                if at_record_start || buffered {
                    // A new request ends a response that had no usable framing.
                    self.finish_unframed(EndReason::NextRequest, ctx);
                }
                self.push_request(ex, ctx);
                self.req_body_pending = framing.is_some();
                self.req = framing.map_or(Side::Head, Side::Body);
                HeadStep::Consumed(used)
            }
            Parsed::Partial if input_len > ctx.cfg.max_head_bytes => {
                ctx.stats.oversized_heads += 1;
                self.req_buf.bytes.clear();
                self.req = Side::Lost;
                HeadStep::Stop
            }
            Parsed::Partial if truncated => {
                // The copied prefix ended inside the head: keep what the complete lines say.
                ctx.stats.truncated_heads += 1;
                let input: &[u8] = if buffered { &self.req_buf.bytes } else { chunk };
                let mut salvaged = None;
                if close_truncated_head(input, ctx.scratch)
                    && let Parse::Complete(head, _) = parse_request_head(ctx.scratch)
                {
                    salvaged = Some(Exchange::from_request(&head, kind, start, self.pid, caller));
                }
                self.req_buf.bytes.clear();
                if let Some(mut ex) = salvaged {
                    ex.request_body_size = None;
                    self.finish_unframed(EndReason::NextRequest, ctx);
                    self.push_request(ex, ctx);
                }
                self.req_body_pending = false;
                self.req = Side::Lost;
                HeadStep::Stop
            }
            Parsed::Partial => {
                if !buffered {
                    self.req_buf.bytes.extend_from_slice(chunk);
                    self.req_buf.start_unix_ns = start;
                    self.req_buf.caller = caller;
                }
                HeadStep::Stop
            }
            Parsed::NotHttp | Parsed::Invalid => {
                if matches!(parsed, Parsed::Invalid) {
                    ctx.stats.parse_errors += 1;
                } else {
                    ctx.stats.non_http_skipped += 1;
                    if self.opened && !self.http_seen {
                        ctx.stats.non_http_connections += 1;
                        self.mode = Mode::Opaque;
                    }
                }
                self.req_buf.bytes.clear();
                self.req = Side::Lost;
                HeadStep::Stop
            }
        }
    }

    fn push_request(&mut self, ex: Exchange, ctx: &mut Ctx<'_>) {
        self.http_seen = true;
        ctx.stats.requests += 1;
        self.pending.push_back(ex);
        if self.pending.len() > MAX_PIPELINE {
            // Nobody answers: keep memory bounded by dropping the oldest.
            self.pending.pop_front();
            ctx.stats.aborted_exchanges += 1;
            ctx.stats.skipped(self.pid, 1);
            self.resp = Side::Lost;
        }
    }
}

pub(super) fn allowed(cfg: &TrackerConfig, role: Role) -> bool {
    match role {
        Role::Server => cfg.capture_server,
        Role::Client => cfg.capture_client,
    }
}

enum ChunkOutcome {
    More,
    /// The body ended; its data bytes are `Chunked::data_bytes`.
    Done,
    /// The body ended (a record's last bytes are the last-chunk marker), but uncopied bytes
    /// may hide chunk boundaries: its size is unknown (`Stats::chunked_size_unknown`).
    DoneSizeUnknown,
    Lost,
}

/// Runs the chunk decoder over this record's copied bytes from `pos`, then accounts for the
/// bytes that were moved but not copied: in sync while they stay inside one chunk, else the
/// record's tail may still show the terminating `0\r\n\r\n` (with the data bytes known when
/// the unseen ones can only be the rest of one chunk: `Chunked::finish_across`).
fn consume_chunked(
    c: &mut Chunked,
    known: &[u8],
    pos: &mut usize,
    total: usize,
    d: &Data,
    stats: &mut Stats,
) -> ChunkOutcome {
    if *pos < known.len() {
        match c.feed(&known[*pos..]) {
            Step::Done(n) => {
                *pos += n;
                return ChunkOutcome::Done;
            }
            Step::NeedMore => *pos = known.len(),
            Step::Invalid(_) => return ChunkOutcome::Lost,
        }
    }
    if *pos < total {
        let unseen = (total - *pos) as u64;
        *pos = total;
        if c.skip(unseen) {
            return ChunkOutcome::More;
        }
        if d.tail.as_ref().is_some_and(|t| ends_with_last_chunk(t)) {
            stats.ended_by_last_chunk += 1;
            if c.finish_across(unseen) {
                return ChunkOutcome::Done;
            }
            stats.chunked_size_unknown += 1;
            return ChunkOutcome::DoneSizeUnknown;
        }
        return ChunkOutcome::Lost;
    }
    ChunkOutcome::More
}

/// Whether a whole record ends a chunked body, judged from its last bytes.
fn record_ends_chunked(d: &Data, known: &[u8], total: usize) -> bool {
    if known.len() == total {
        ends_with_last_chunk(known)
    } else {
        d.tail.as_ref().is_some_and(|t| ends_with_last_chunk(t))
    }
}

mod response;
