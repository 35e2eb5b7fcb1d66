//! Syscall tracepoints: entry stashes the arguments per thread, exit classifies the fd as an
//! inet stream socket and copies a bounded prefix (and a short tail) of the buffer.
//! Argument offsets come from /sys/kernel/tracing/events/syscalls/*/format: args start at 16,
//! 8 bytes each; `ret` is at 16.

use agent_common::{Config, EventHeader, InFlight, MAX_DATA, TAIL_LEN, Tuple, kind, syscall};
use aya_ebpf::{
    EbpfContext as _,
    helpers::generated as gen_helpers,
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_buf,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use super::{config, emit, forget_fd, record_size, scratch, selected, socket_of_fd};
use crate::maps::{INFLIGHT, LIVE_SOCKS, PIDS, PORTS};

const ARG0: usize = 16;
const ARG1: usize = 24;
const ARG2: usize = 32;
/// iovecs looked at to find a vectored write's last bytes (hyper writes a whole chunked
/// response as one writev of 2 + 3 per chunk iovecs).
const MAX_TAIL_IOVS: u64 = 32;
const RET: usize = 16;
const EINPROGRESS: i64 = -115;

/// How the second syscall argument points at the bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Buf {
    /// A plain buffer (read, write, recvfrom, sendto).
    Flat,
    /// An iovec array (readv, writev).
    Iov,
    /// A msghdr (recvmsg, sendmsg).
    Msg,
    /// No user buffer to copy (sendfile).
    None,
}

const fn buf_of(sc: u8) -> Buf {
    match sc {
        syscall::READ | syscall::WRITE | syscall::RECVFROM | syscall::SENDTO => Buf::Flat,
        syscall::READV | syscall::WRITEV => Buf::Iov,
        syscall::RECVMSG | syscall::SENDMSG => Buf::Msg,
        _ => Buf::None,
    }
}

const fn kind_of(sc: u8) -> u8 {
    match sc {
        syscall::READ | syscall::READV | syscall::RECVFROM | syscall::RECVMSG => kind::READ,
        _ => kind::WRITE,
    }
}

macro_rules! enter_exit {
    ($enter:ident, $exit:ident, $sc:expr) => {
        #[tracepoint]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            match try_enter(&ctx, $sc) {
                Ok(()) | Err(_) => 0,
            }
        }
        #[tracepoint]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            match try_exit(&ctx, $sc) {
                Ok(()) | Err(_) => 0,
            }
        }
    };
}

enter_exit!(sys_enter_read, sys_exit_read, syscall::READ);
enter_exit!(sys_enter_write, sys_exit_write, syscall::WRITE);
enter_exit!(sys_enter_readv, sys_exit_readv, syscall::READV);
enter_exit!(sys_enter_writev, sys_exit_writev, syscall::WRITEV);
enter_exit!(sys_enter_recvfrom, sys_exit_recvfrom, syscall::RECVFROM);
enter_exit!(sys_enter_sendto, sys_exit_sendto, syscall::SENDTO);
enter_exit!(sys_enter_recvmsg, sys_exit_recvmsg, syscall::RECVMSG);
enter_exit!(sys_enter_sendmsg, sys_exit_sendmsg, syscall::SENDMSG);
enter_exit!(sys_enter_sendfile64, sys_exit_sendfile64, syscall::SENDFILE);
enter_exit!(sys_enter_accept, sys_exit_accept, syscall::ACCEPT);
enter_exit!(sys_enter_accept4, sys_exit_accept4, syscall::ACCEPT);
enter_exit!(sys_enter_connect, sys_exit_connect, syscall::CONNECT);

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    match try_close(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

/// A syscall tracepoint field, loaded straight from the context (tracepoint programs may read
/// their record directly; `read_at` would cost a helper call per field).
#[inline(always)]
fn arg(ctx: &TracePointContext, offset: usize) -> u64 {
    // SAFETY: `offset` is a constant 8-byte-aligned field offset of the syscall tracepoint
    // record (see the module doc); the verifier checks context accesses.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset) as *const u64) }
}

fn try_enter(ctx: &TracePointContext, sc: u8) -> Result<(), i64> {
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    // An accept by an unselected process may select it (by its local port, at exit).
    let may_select = sc == syscall::ACCEPT && cfg.port_select != 0;
    if !may_select && !selected(&cfg, (pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let fd = arg(ctx, ARG0);
    let ptr = arg(ctx, ARG1);
    let arg2 = arg(ctx, ARG2);
    let inflight = InFlight {
        start_ns: unsafe { bpf_ktime_get_ns() },
        ptr,
        arg2,
        fd: fd as i32,
        syscall: sc,
        _pad: [0; 3],
    };
    INFLIGHT.insert(&pid_tgid, &inflight, 0).map_err(i64::from)
}

fn try_exit(ctx: &TracePointContext, sc: u8) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let inflight = match unsafe { INFLIGHT.get(&pid_tgid) } {
        Some(v) => *v,
        None => return Ok(()),
    };
    let _ = INFLIGHT.remove(&pid_tgid);
    if inflight.syscall != sc {
        return Ok(());
    }
    let ret = arg(ctx, RET) as i64;
    let cfg = config();
    match sc {
        syscall::ACCEPT => {
            if ret < 0 || cfg.capture_server == 0 {
                return Ok(());
            }
            lifecycle(&cfg, pid_tgid, ret as i32, &inflight, kind::ACCEPT);
        }
        syscall::CONNECT => {
            if (ret != 0 && ret != EINPROGRESS) || cfg.capture_client == 0 {
                return Ok(());
            }
            lifecycle(&cfg, pid_tgid, inflight.fd, &inflight, kind::CONNECT);
        }
        _ => {
            if ret <= 0 {
                return Ok(());
            }
            data(&cfg, pid_tgid, &inflight, ret as u64);
        }
    }
    Ok(())
}

fn try_close(ctx: &TracePointContext) -> Result<(), i64> {
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    if !selected(&cfg, (pid_tgid >> 32) as u32) {
        return Ok(());
    }
    let fd = arg(ctx, ARG0);
    let now = unsafe { bpf_ktime_get_ns() };
    let inflight = InFlight {
        start_ns: now,
        ptr: 0,
        arg2: 0,
        fd: fd as i32,
        syscall: syscall::CLOSE,
        _pad: [0; 3],
    };
    lifecycle(&cfg, pid_tgid, fd as i32, &inflight, kind::CLOSE);
    Ok(())
}

/// Accept, connect or close of an inet stream socket: a record with no payload.
/// Not inlined: its stack frame must not add to the caller's (512 bytes in all).
#[inline(never)]
fn lifecycle(cfg: &Config, pid_tgid: u64, fd: i32, inflight: &InFlight, k: u8) {
    let Some((sk, tuple)) = socket_of_fd(cfg, (pid_tgid >> 32) as u32, fd) else {
        return;
    };
    let tgid = (pid_tgid >> 32) as u32;
    if k == kind::ACCEPT && cfg.port_select != 0 && !selected(cfg, tgid) {
        // SAFETY: read-only lookup of a plain u8 value.
        if unsafe { PORTS.get(&tuple.local_port) }.is_none() {
            return;
        }
        let _ = PIDS.insert(&tgid, &1, 0);
    }
    if k == kind::CLOSE {
        forget_fd(tgid, fd);
        let _ = LIVE_SOCKS.remove(&sk);
    } else {
        let _ = LIVE_SOCKS.insert(&sk, &tgid, 0);
    }
    let Some(ev) = scratch() else { return };
    // SAFETY: `ev` is this CPU's scratch record; nothing else runs on this CPU meanwhile.
    unsafe {
        fill_header(
            core::ptr::addr_of_mut!((*ev).header),
            pid_tgid,
            fd,
            inflight,
            k,
            sk,
            &tuple,
            0,
            0,
        );
    }
    emit(ev, record_size(0), cfg);
}

/// A read or write of `len` bytes: copy a prefix (and a tail for flat buffers).
#[inline(never)]
fn data(cfg: &Config, pid_tgid: u64, inflight: &InFlight, len: u64) {
    let Some((sk, tuple)) = socket_of_fd(cfg, (pid_tgid >> 32) as u32, inflight.fd) else {
        return;
    };
    let (src, cap) = match source(inflight) {
        Some(v) => v,
        None => (0, 0),
    };
    let Some(ev) = scratch() else { return };
    let mut n = if len < cap { len } else { cap };
    if n > cfg.copy_len as u64 {
        n = cfg.copy_len as u64;
    }
    if n > MAX_DATA as u64 {
        n = MAX_DATA as u64;
    }
    let n = n as usize;
    // SAFETY: `ev` is this CPU's scratch record; user reads are checked.
    let copied = unsafe {
        let copied = if n > 0 && n <= MAX_DATA {
            match bpf_probe_read_user_buf(src as *const u8, &mut (&mut (*ev).data)[..n]) {
                Ok(()) => n as u32,
                Err(_) => 0,
            }
        } else {
            0
        };
        let h = core::ptr::addr_of_mut!((*ev).header);
        fill_header(
            h,
            pid_tgid,
            inflight.fd,
            inflight,
            kind_of(inflight.syscall),
            sk,
            &tuple,
            len as u32,
            copied,
        );
        (*h).tail = [0; TAIL_LEN];
        if len > n as u64 && len >= TAIL_LEN as u64 {
            (*h).tail_len = match buf_of(inflight.syscall) {
                Buf::Flat => {
                    let from = ((src + len) - TAIL_LEN as u64) as *const u8;
                    if bpf_probe_read_user_buf(from, &mut (*h).tail).is_ok() {
                        TAIL_LEN as u16
                    } else {
                        0
                    }
                }
                Buf::Iov => iov_tail(inflight.ptr, inflight.arg2, len, &mut (*h).tail),
                _ => 0,
            };
        }
        copied
    };
    emit(ev, record_size(copied as usize), cfg);
}

/// Where the bytes are: (user address, bytes available there).
#[inline(always)]
fn source(inflight: &InFlight) -> Option<(u64, u64)> {
    match buf_of(inflight.syscall) {
        Buf::Flat => Some((inflight.ptr, u64::MAX)),
        Buf::Iov => first_iov(inflight.ptr),
        Buf::Msg => {
            // struct user_msghdr { void *msg_name; int msg_namelen; struct iovec *msg_iov; ... }
            // SAFETY: checked user read.
            let iov: u64 = unsafe { bpf_probe_read_user((inflight.ptr + 16) as *const u64).ok()? };
            first_iov(iov)
        }
        Buf::None => None,
    }
}

/// The last bytes a vectored call moved, right-aligned in `tail`; returns how many are known.
/// Only when `len` exactly fills the (at most `MAX_TAIL_IOVS`) iovecs: a partial write's last
/// bytes are elsewhere. Framers such as hyper and node put a chunked body's closing `\r\n`
/// and `0\r\n\r\n` in iovecs of their own, so when the last iovec is short its last 5
/// bytes and the previous one's last 2 are taken (constant-size reads: the verifier needs them).
#[inline(always)]
fn iov_tail(iov: u64, count: u64, len: u64, tail: &mut [u8; TAIL_LEN]) -> u16 {
    if count == 0 || count > MAX_TAIL_IOVS {
        return 0;
    }
    let mut sum = 0u64;
    for i in 0..MAX_TAIL_IOVS {
        if i >= count {
            break;
        }
        // SAFETY: checked user read of iov[i].iov_len.
        match unsafe { bpf_probe_read_user((iov + i * 16 + 8) as *const u64) } {
            Ok(l) => sum += l,
            Err(_) => return 0,
        }
    }
    if sum != len {
        return 0;
    }
    let Some((base, l)) = first_iov(iov + (count - 1) * 16) else {
        return 0;
    };
    // SAFETY: checked user reads into fixed ranges of `tail`.
    unsafe {
        if l >= TAIL_LEN as u64 {
            let from = (base + l - TAIL_LEN as u64) as *const u8;
            return if bpf_probe_read_user_buf(from, tail).is_ok() {
                TAIL_LEN as u16
            } else {
                0
            };
        }
        if l < 5 || bpf_probe_read_user_buf((base + l - 5) as *const u8, &mut tail[11..16]).is_err()
        {
            return 0;
        }
        if count < 2 {
            return 5;
        }
        let Some((pbase, pl)) = first_iov(iov + (count - 2) * 16) else {
            return 5;
        };
        if pl < 2
            || bpf_probe_read_user_buf((pbase + pl - 2) as *const u8, &mut tail[9..11]).is_err()
        {
            return 5;
        }
        7
    }
}

#[inline(always)]
fn first_iov(ptr: u64) -> Option<(u64, u64)> {
    // SAFETY: checked user read of struct iovec { void *iov_base; size_t iov_len; }.
    let v: [u64; 2] = unsafe { bpf_probe_read_user(ptr as *const [u64; 2]).ok()? };
    Some((v[0], v[1]))
}

/// Write a record header in place (building it on the stack would blow the 512-byte limit).
#[inline(always)]
#[expect(clippy::too_many_arguments, reason = "a flat record header")]
unsafe fn fill_header(
    h: *mut EventHeader,
    pid_tgid: u64,
    fd: i32,
    inflight: &InFlight,
    k: u8,
    sk: u64,
    tuple: &Tuple,
    len: u32,
    copied: u32,
) {
    // SAFETY: the caller owns `h`, inside this CPU's scratch record.
    unsafe {
        (*h).start_ns = inflight.start_ns;
        (*h).end_ns = bpf_ktime_get_ns();
        (*h).sock_id = sk;
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).fd = fd;
        (*h).len = len;
        (*h).copied = copied;
        (*h).tail_len = 0;
        (*h).kind = k;
        (*h).syscall = inflight.syscall;
        (*h).tuple = *tuple;
        // The command name matters only where a connection starts (userspace names short-lived
        // processes from it); data records skip the helper call.
        if k == kind::READ
            || k == kind::WRITE
            || gen_helpers::bpf_get_current_comm((*h).comm.as_mut_ptr().cast(), 16) != 0
        {
            (*h).comm = [0; 16];
        }
    }
}
