//! Go's HTTP client, seen from two uprobes: which goroutine asks for a request to be sent,
//! and which goroutine writes it. In Go a request is written by the pooled connection's own
//! writer goroutine, not by the goroutine that made it (a handler, in a server): these two
//! facts let userspace find the handler a client request was made for, where the thread
//! tells nothing (goroutines move between threads).
//!
//! Both functions are entered with Go's register ABI (Go 1.17+): integer arguments in rax,
//! rbx, ... (the receiver first), and the running goroutine in r14. Only function entries
//! are probed: a return probe breaks Go's stack growth.

use agent_common::{EventHeader, Tuple, kind};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::uprobe,
    programs::ProbeContext,
};

use super::{Rec, config, reserve, ring_lost, selected, submit};

/// `net/http.(*Transport).roundTrip(req *Request)`, on the goroutine that makes the request:
/// the request is the second argument.
#[uprobe]
pub fn go_round_trip(ctx: ProbeContext) -> u32 {
    let (_, req, g) = go_regs(&ctx);
    go_call(kind::GO_ROUND_TRIP, req, g);
    0
}

/// `net/http.(*Request).write`, on the goroutine that writes the request: the receiver.
#[uprobe]
pub fn go_write_request(ctx: ProbeContext) -> u32 {
    let (req, _, g) = go_regs(&ctx);
    go_call(kind::GO_WRITE_REQUEST, req, g);
    0
}

#[inline(always)]
fn go_call(k: u8, req: u64, goroutine: u64) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !selected(config(), (pid_tgid >> 32) as u32) {
        return;
    }
    let Some(mut entry) = reserve::<0>() else {
        return;
    };
    let rec: *mut Rec<0> = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved record; every header field is written before submit.
    unsafe {
        let now = bpf_ktime_get_ns();
        core::ptr::addr_of_mut!((*rec).header).write(EventHeader {
            start_ns: now,
            end_ns: now,
            sock_id: req,
            pid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            fd: -1,
            len: 0,
            copied: 0,
            tail_len: 0,
            kind: k,
            syscall: 0,
            tuple: Tuple::default(),
            tail: [0; agent_common::TAIL_LEN],
            comm: [0; 16],
            sock_lost: 0,
            ring_lost: ring_lost(),
            goroutine,
        });
    }
    submit(entry);
}

/// The first two integer arguments and the goroutine register of Go's ABI: rax, rbx, r14.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
fn go_regs(ctx: &ProbeContext) -> (u64, u64, u64) {
    // SAFETY: `regs` is the probe's context, a `struct pt_regs`; the verifier checks the
    // context loads.
    unsafe { ((*ctx.regs).rax, (*ctx.regs).rbx, (*ctx.regs).r14) }
}

/// arm64: x0, x1 and x28.
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
fn go_regs(ctx: &ProbeContext) -> (u64, u64, u64) {
    // SAFETY: as above.
    unsafe {
        (
            (*ctx.regs).regs[0],
            (*ctx.regs).regs[1],
            (*ctx.regs).regs[28],
        )
    }
}
