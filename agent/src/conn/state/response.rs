//! The response side of a connection: pairs response heads with the oldest pending request,
//! follows the body to its end, and finishes exchanges into spans (also on close/timeout).
use super::{
    Body, ChunkOutcome, Conn, Ctx, EndReason, HeadStep, Mode, Side, Unframed, consume_chunked,
    record_ends_chunked,
};
use crate::ebpf::record::Data;
use crate::protocol::http1::chunked::Chunked;
use crate::protocol::http1::{
    Parse, close_truncated_head, looks_like_response, parse_response_head,
};
use crate::span::SpanKind;

/// What a response head said, with the borrow of the input released.
struct Status {
    code: u16,
    chunked: bool,
    content_length: Option<u64>,
}

enum Parsed {
    Complete(Status, usize),
    Partial,
    Bad { invalid: bool },
}

impl Conn {
    pub(super) fn on_response_bytes(
        &mut self,
        d: &Data,
        known: &[u8],
        total: usize,
        ctx: &mut Ctx<'_>,
    ) {
        let mut pos = 0usize;
        loop {
            match &mut self.resp {
                Side::Lost => {
                    if pos != 0 || !looks_like_response(known) {
                        if pos == 0 {
                            ctx.stats.non_http_skipped += 1;
                        }
                        return;
                    }
                    self.resp = Side::Head;
                }
                Side::Head => {
                    if pos >= known.len() {
                        if pos < total {
                            // Uncopied bytes after a complete response can only hold
                            // further (pipelined) responses: which requests they answered
                            // is unknown, so drop those rather than mispair them.
                            ctx.stats.lost_sync += 1;
                            ctx.stats.aborted_exchanges += self.pending.len() as u64;
                            ctx.stats.skipped(self.pid, self.pending.len() as u64);
                            self.pending.clear();
                            self.req_body_pending = false;
                            self.resp = Side::Lost;
                        }
                        return;
                    }
                    match self.response_head(d, &known[pos..], known.len() < total, ctx) {
                        HeadStep::Consumed(n) if n > 0 => pos += n,
                        HeadStep::Consumed(_) => return,
                        HeadStep::Stop => return,
                    }
                }
                Side::Body(body) => {
                    let queued = self.pending.len();
                    let Some(front) = self.pending.front_mut() else {
                        self.resp = Side::Lost;
                        return;
                    };
                    let prev_last = front.response_last_unix_ns;
                    front.response_last_unix_ns = d.end_unix_ns;
                    match body {
                        Body::Length(left) => {
                            let n = (*left).min((total - pos) as u64);
                            *left -= n;
                            pos += n as usize;
                            if *left > 0 {
                                return;
                            }
                            self.finish_front(d.end_unix_ns, None, ctx);
                            self.resp = Side::Head;
                        }
                        Body::Chunked(c) => {
                            match consume_chunked(c, known, &mut pos, total, d, ctx.stats) {
                                ChunkOutcome::More => return,
                                outcome @ (ChunkOutcome::Done | ChunkOutcome::DoneSizeUnknown) => {
                                    front.response_body_size =
                                        matches!(outcome, ChunkOutcome::Done)
                                            .then_some(c.data_bytes);
                                    self.finish_front(d.end_unix_ns, None, ctx);
                                    self.resp = Side::Head;
                                }
                                ChunkOutcome::Lost => {
                                    ctx.stats.chunk_framing_lost += 1;
                                    front.response_body_size = None;
                                    self.resp = Side::Body(Body::Unframed(Unframed::LostFraming));
                                    return;
                                }
                            }
                        }
                        Body::Unframed(why) => {
                            let why = *why;
                            if why != Unframed::UntilClose
                                && pos == 0
                                && queued >= 2
                                && matches!(parse_response_head(known), Parse::Complete(..))
                            {
                                // Pipelined: the next response's head ends this one.
                                ctx.stats.ended_by_next_response += 1;
                                self.finish_front(prev_last, None, ctx);
                                self.resp = Side::Head;
                                continue;
                            }
                            if why == Unframed::UntilClose {
                                let size = front.response_body_size.unwrap_or(0);
                                front.response_body_size = Some(size + (total - pos) as u64);
                            } else if pos == 0 && record_ends_chunked(d, known, total) {
                                // Framing was lost, but this record ends with the last chunk.
                                ctx.stats.ended_by_last_chunk += 1;
                                self.finish_front(d.end_unix_ns, None, ctx);
                                self.resp = Side::Head;
                            }
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Parses (or buffers) a response head starting at `chunk`.
    fn response_head(
        &mut self,
        d: &Data,
        chunk: &[u8],
        truncated: bool,
        ctx: &mut Ctx<'_>,
    ) -> HeadStep {
        let prev_len = self.resp_buf.bytes.len();
        let buffered = prev_len > 0;
        if buffered {
            self.resp_buf.bytes.extend_from_slice(chunk);
        }
        let input: &[u8] = if buffered {
            &self.resp_buf.bytes
        } else {
            chunk
        };
        let input_len = input.len();
        let mut parsed = match parse_response_head(input) {
            Parse::Complete(head, consumed) => Parsed::Complete(
                Status {
                    code: head.status,
                    chunked: head.headers.chunked,
                    content_length: head.headers.content_length,
                },
                consumed.saturating_sub(prev_len),
            ),
            Parse::Partial => Parsed::Partial,
            Parse::NotHttp => Parsed::Bad { invalid: false },
            Parse::Invalid(_) => Parsed::Bad { invalid: true },
        };
        let mut salvaged = false;
        if matches!(parsed, Parsed::Partial) && (truncated || input_len > ctx.cfg.max_head_bytes) {
            // Cut off or oversized: the status line is still worth a span; the framing
            // headers may be missing, so the body ends at the next request or the close.
            if input_len > ctx.cfg.max_head_bytes {
                ctx.stats.oversized_heads += 1;
            } else {
                ctx.stats.truncated_heads += 1;
            }
            let input: &[u8] = if buffered {
                &self.resp_buf.bytes
            } else {
                chunk
            };
            let limit = input.len().min(ctx.cfg.max_head_bytes);
            parsed = Parsed::Bad { invalid: true };
            if close_truncated_head(&input[..limit], ctx.scratch)
                && let Parse::Complete(head, _) = parse_response_head(ctx.scratch)
            {
                salvaged = true;
                let status = Status {
                    code: head.status,
                    chunked: false,
                    content_length: None,
                };
                parsed = Parsed::Complete(status, 0);
            }
        }
        match parsed {
            Parsed::Partial => {
                if !buffered {
                    self.resp_buf.bytes.extend_from_slice(chunk);
                }
                HeadStep::Stop
            }
            Parsed::Bad { invalid } => {
                if invalid {
                    ctx.stats.parse_errors += 1;
                } else {
                    ctx.stats.non_http_skipped += 1;
                    if self.opened && !self.http_seen {
                        ctx.stats.non_http_connections += 1;
                        self.mode = Mode::Opaque;
                    }
                }
                self.resp_buf.bytes.clear();
                if self.pending.pop_front().is_some() {
                    ctx.stats.aborted_exchanges += 1;
                    ctx.stats.skipped(self.pid, 1);
                }
                self.resp = Side::Lost;
                HeadStep::Stop
            }
            Parsed::Complete(status, used) => {
                self.resp_buf.bytes.clear();
                self.on_response_head(d, status, used, salvaged, ctx)
            }
        }
    }

    fn on_response_head(
        &mut self,
        d: &Data,
        status: Status,
        used: usize,
        salvaged: bool,
        ctx: &mut Ctx<'_>,
    ) -> HeadStep {
        let Some(front) = self.pending.front_mut() else {
            // A response to a request we never saw (joined mid-exchange).
            ctx.stats.orphan_responses += 1;
            self.resp = Side::Lost;
            return HeadStep::Stop;
        };
        let code = status.code;
        if (100..200).contains(&code) && code != 101 {
            // Interim (100 Continue, 103 Early Hints): the final response follows.
            ctx.stats.interim_responses += 1;
            return if salvaged {
                self.resp = Side::Lost;
                HeadStep::Stop
            } else {
                HeadStep::Consumed(used)
            };
        }
        front.status = Some(code);
        front.response_last_unix_ns = d.end_unix_ns;
        if code == 101 || (front.is_connect() && (200..300).contains(&code)) {
            // Upgraded (WebSocket, h2c) or tunnelled: the rest is not HTTP/1.x.
            front.response_body_size = Some(0);
            self.finish_front(d.end_unix_ns, None, ctx);
            ctx.stats.upgraded_connections += 1;
            self.mode = Mode::Opaque;
            return HeadStep::Stop;
        }
        let body = if front.response_has_no_body(code) {
            None
        } else if salvaged {
            front.response_body_size = None;
            Some(Body::Unframed(Unframed::TruncatedHead))
        } else if status.chunked {
            Some(Body::Chunked(Chunked::new()))
        } else if let Some(n) = status.content_length {
            front.response_body_size = Some(n);
            (n > 0).then_some(Body::Length(n))
        } else {
            front.response_body_size = Some(0);
            Some(Body::Unframed(Unframed::UntilClose))
        };
        if let Some(body) = body {
            self.resp = Side::Body(body);
            if salvaged {
                return HeadStep::Stop;
            }
        } else {
            front.response_body_size.get_or_insert(0);
            self.finish_front(d.end_unix_ns, None, ctx);
            self.resp = if salvaged { Side::Lost } else { Side::Head };
            if salvaged {
                return HeadStep::Stop;
            }
        }
        HeadStep::Consumed(used)
    }

    /// Finishes the oldest pending exchange into a span.
    fn finish_front(&mut self, end_unix_ns: u64, error: Option<&str>, ctx: &mut Ctx<'_>) {
        if self.pending.len() == 1 {
            self.req_body_pending = false;
        }
        if let Some(ex) = self.pending.pop_front() {
            ctx.out.push(ex.into_span(end_unix_ns, &self.tuple, error));
            ctx.stats.spans += 1;
        }
    }

    /// Ends a response with lost framing (not one delimited by the close) once the
    /// connection has been quiet for `QUIET_FLUSH_NS`.
    pub(in crate::conn) fn flush_quiet(&mut self, now_unix_ns: u64, ctx: &mut Ctx<'_>) {
        let lost = matches!(
            self.resp,
            Side::Body(Body::Unframed(
                Unframed::LostFraming | Unframed::TruncatedHead
            ))
        );
        if lost && now_unix_ns.saturating_sub(self.last_unix_ns) > super::QUIET_FLUSH_NS {
            self.finish_unframed(EndReason::Timeout, ctx);
        }
    }

    /// Ends a response whose body had no usable framing (close-delimited, lost chunk
    /// framing, truncated head), if one is in progress. Its end is the last response byte.
    pub(super) fn finish_unframed(&mut self, reason: EndReason, ctx: &mut Ctx<'_>) {
        if !matches!(self.resp, Side::Body(Body::Unframed(_))) {
            return;
        }
        let Some(front) = self.pending.front() else {
            self.resp = Side::Head;
            return;
        };
        let end = front.response_last_unix_ns;
        match reason {
            EndReason::NextRequest => ctx.stats.ended_by_next_request += 1,
            EndReason::Timeout | EndReason::Evicted => ctx.stats.ended_by_timeout += 1,
            EndReason::Close
            | EndReason::KernelClose
            | EndReason::ProcessExit
            | EndReason::Replaced => ctx.stats.ended_by_close += 1,
        }
        self.finish_front(end, None, ctx);
        self.resp = Side::Head;
    }

    /// Tears the connection down: finishes what can be finished, reports client requests
    /// left without a response as errors, drops server requests that never got one.
    pub(in crate::conn) fn end(&mut self, now_unix_ns: u64, reason: EndReason, ctx: &mut Ctx<'_>) {
        self.finish_unframed(reason, ctx);
        let error = match reason {
            EndReason::Timeout => "timeout",
            _ => "connection_closed",
        };
        let end = match reason {
            EndReason::Replaced | EndReason::Evicted => self.last_unix_ns,
            _ => now_unix_ns.max(self.last_unix_ns),
        };
        while let Some(ex) = self.pending.front() {
            let reportable = reason != EndReason::Evicted
                && (ex.kind == SpanKind::Client || ex.status.is_some());
            if reportable {
                self.finish_front(end, Some(error), ctx);
            } else {
                self.pending.pop_front();
                ctx.stats.aborted_exchanges += 1;
                ctx.stats.skipped(self.pid, 1);
            }
        }
    }
}
