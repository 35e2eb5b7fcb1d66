//! Syscall exit tracepoints. Only exits are hooked: a syscall's arguments are still in the
//! task's saved user registers when it returns, so no per-thread map carries them from entry
//! to exit (that map's insert and delete were most of a traced syscall's cost). The exit
//! classifies the fd as an inet stream socket and copies a bounded prefix (and a short tail)
//! of the buffer. `ret` is at offset 16 of every sys_exit record
//! (/sys/kernel/tracing/events/syscalls/*/format).

use agent_common::{
    BODY_PREFIX, Config, EventHeader, MAX_DATA, SMALL_BUF, TAIL_LEN, kind, syscall,
};
use aya_ebpf::{
    EbpfContext as _,
    helpers::generated as gen_helpers,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_probe_read_user_buf,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use super::{
    Rec, Sock, config, forget_fd, note_loss, reserve, select, selected, socket_of_fd, submit,
};
use crate::maps::{LIVE_SOCKS, PORTS, SOCKS};

/// iovecs looked at to find a vectored call's last bytes (hyper writes a whole chunked
/// response as one writev of 2 + 3 per chunk iovecs).
const MAX_TAIL_IOVS: u64 = 32;
const RET: usize = 16;
/// The first argument in a sys_enter record.
const ARG0: usize = 16;
const EINPROGRESS: i64 = -115;

/// A returning syscall: its first three arguments and which syscall it was. (Its time is read
/// when a record is written: most calls of a selected process turn out not to be on a socket.)
#[derive(Clone, Copy)]
pub struct Call {
    /// User buffer, iovec array, msghdr or sockaddr pointer, depending on `syscall`.
    pub ptr: u64,
    /// The third argument: the iovec count for readv/writev.
    pub arg2: u64,
    pub fd: i32,
    pub syscall: u8,
    /// Go's goroutine register at the call ([`EventHeader::goroutine`]).
    pub goroutine: u64,
}

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

macro_rules! exit {
    ($name:ident, $sc:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            try_exit(&ctx, $sc);
            0
        }
    };
}

exit!(sys_exit_read, syscall::READ);
exit!(sys_exit_write, syscall::WRITE);
exit!(sys_exit_readv, syscall::READV);
exit!(sys_exit_writev, syscall::WRITEV);
exit!(sys_exit_recvfrom, syscall::RECVFROM);
exit!(sys_exit_sendto, syscall::SENDTO);
exit!(sys_exit_recvmsg, syscall::RECVMSG);
exit!(sys_exit_sendmsg, syscall::SENDMSG);
exit!(sys_exit_sendfile64, syscall::SENDFILE);
exit!(sys_exit_accept, syscall::ACCEPT);
exit!(sys_exit_accept4, syscall::ACCEPT);
exit!(sys_exit_connect, syscall::CONNECT);
exit!(sys_exit_dup2, syscall::DUP);
exit!(sys_exit_dup3, syscall::DUP);

/// A close is handled at its entry, while the fd still names the socket: once the kernel has
/// released the number, another thread of the process can get it for a new socket before
/// this close's exit runs, and the cached entry (still the old socket's) would vouch for the
/// new connection's first records, and the late close would then end the new connection.
/// (A close that fails still releases the fd on Linux, except for a number that was not
/// open, which has no entry.)
#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    if !selected(cfg, (pid_tgid >> 32) as u32) {
        return 0;
    }
    // SAFETY: `args[0]` (the fd) is at offset 16 of every sys_enter record.
    let fd = unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(ARG0) as *const u64) };
    closed(
        pid_tgid,
        &Call {
            ptr: 0,
            arg2: 0,
            fd: fd as i32,
            syscall: syscall::CLOSE,
            goroutine: 0,
        },
    );
    0
}

/// The return value, loaded straight from the tracepoint record (tracepoint programs may read
/// their context directly; `read_at` would cost a helper call).
#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: `RET` is the 8-byte-aligned `ret` field of every sys_exit record; the verifier
    // checks context accesses.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(RET) as *const i64) }
}

/// The syscall's first three arguments, from the user registers the kernel saved at entry
/// (the syscall leaves them untouched; only the return register changes), and Go's goroutine
/// register.
#[inline(always)]
fn args() -> Option<[u64; 4]> {
    // SAFETY: the helpers return the current task and its saved registers; the read is checked.
    unsafe {
        let regs = gen_helpers::bpf_task_pt_regs(bpf_get_current_task_btf()) as *const u8;
        regs_args(regs)
    }
}

/// x86-64: `struct pt_regs` keeps r14 (Go's goroutine) at 8 and dx, si, di at 96, 104, 112.
/// `regs` is a BTF pointer: the verifier checks each load against the kernel's `struct
/// pt_regs` and turns it into a fault-tolerant load, cheaper than a `bpf_probe_read_kernel`
/// call.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
unsafe fn regs_args(regs: *const u8) -> Option<[u64; 4]> {
    // SAFETY: `regs` is the task's pt_regs (never null); the offsets are fields of it.
    unsafe {
        let r = regs as *const u64;
        Some([
            core::ptr::read_volatile(r.add(14)),
            core::ptr::read_volatile(r.add(13)),
            core::ptr::read_volatile(r.add(12)),
            core::ptr::read_volatile(r.add(1)),
        ])
    }
}

/// arm64: x0 is overwritten by the return value; its entry value is kept in `orig_x0` (272).
/// Go keeps its goroutine in x28 (224).
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
unsafe fn regs_args(regs: *const u8) -> Option<[u64; 4]> {
    // SAFETY: `regs` is the task's pt_regs; bpf_probe_read_kernel checks the addresses.
    unsafe {
        use aya_ebpf::helpers::bpf_probe_read_kernel;
        let x0: u64 = bpf_probe_read_kernel(regs.add(272) as *const u64).ok()?;
        let [x1, x2]: [u64; 2] = bpf_probe_read_kernel(regs.add(8) as *const [u64; 2]).ok()?;
        let g: u64 = bpf_probe_read_kernel(regs.add(224) as *const u64).ok()?;
        Some([x0, x1, x2, g])
    }
}

#[cfg(not(any(bpf_target_arch = "x86_64", bpf_target_arch = "aarch64")))]
compile_error!("syscall argument registers are known for x86_64 and aarch64 only");

fn try_exit(ctx: &TracePointContext, sc: u8) {
    // Failed calls first: they are common (EAGAIN on every non-blocking socket) and cheapest
    // to drop.
    let ret = ret(ctx);
    let ok = match sc {
        syscall::ACCEPT => ret >= 0,
        syscall::CONNECT => ret == 0 || ret == EINPROGRESS,
        syscall::DUP => ret >= 0,
        _ => ret > 0,
    };
    if !ok {
        return;
    }
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // An accept by an unselected process may select it (by its local port).
    let may_select = sc == syscall::ACCEPT && cfg.port_select != 0 && cfg.capture_server != 0;
    if !may_select && !selected(cfg, tgid) {
        return;
    }
    let Some([a0, a1, a2, g]) = args() else {
        return;
    };
    let call = Call {
        ptr: a1,
        arg2: a2,
        fd: a0 as i32,
        syscall: sc,
        goroutine: g,
    };
    match sc {
        syscall::ACCEPT | syscall::CONNECT => {
            let (on, fd, k) = if sc == syscall::ACCEPT {
                (cfg.capture_server, ret as i32, kind::ACCEPT)
            } else {
                (cfg.capture_client, call.fd, kind::CONNECT)
            };
            // The process's naming records follow its first connection's (userspace builds
            // its resource again when they arrive). Called from here, not from
            // `lifecycle`: the two frames together would pass the 512-byte stack.
            if on != 0 && lifecycle(cfg, pid_tgid, fd, &call, k) {
                super::process::describe(cfg, pid_tgid);
            }
        }
        // dup2/dup3 closed whatever `newfd` (the second argument) held.
        syscall::DUP => closed(
            pid_tgid,
            &Call {
                fd: a1 as i32,
                ..call
            },
        ),
        _ => data(cfg, pid_tgid, &call, ret as u64),
    }
}

/// A closed (or dup2-replaced) fd: the file is gone from the fd table by now, so only a socket
/// remembered in `SOCKS` is reported.
#[inline(never)]
fn closed(pid_tgid: u64, call: &Call) {
    let tgid = (pid_tgid >> 32) as u32;
    let key = super::sock_key(tgid, call.fd);
    // SAFETY: the value is copied out before the entry is removed.
    let Some(info) = (unsafe { SOCKS.get(&key) }).copied() else {
        return;
    };
    forget_fd(tgid, call.fd);
    let _ = LIVE_SOCKS.remove(&info.sk);
    let sock = Sock {
        sk: info.sk,
        tuple: info.tuple,
        lost: info.lost,
    };
    lifecycle_record(pid_tgid, call.fd, call, kind::CLOSE, &sock);
}

/// Accept or connect of an inet stream socket: a record with no payload (an accept on a
/// selected port selects its process). Returns whether the connection is followed.
/// Not inlined: its stack frame must not add to the caller's (512 bytes in all).
#[inline(never)]
fn lifecycle(cfg: &Config, pid_tgid: u64, fd: i32, call: &Call, k: u8) -> bool {
    let Some(sock) = socket_of_fd(cfg, (pid_tgid >> 32) as u32, fd) else {
        return false;
    };
    let tgid = (pid_tgid >> 32) as u32;
    if k == kind::ACCEPT && cfg.port_select != 0 && !selected(cfg, tgid) {
        // SAFETY: read-only lookup of a plain u8 value.
        if unsafe { PORTS.get(&sock.tuple.local_port) }.is_none() {
            return false;
        }
        select(tgid);
    }
    let _ = LIVE_SOCKS.insert(&sock.sk, &super::sock_key(tgid, fd), 0);
    lifecycle_record(pid_tgid, fd, call, k, &sock);
    true
}

/// A record with no payload.
#[inline(always)]
fn lifecycle_record(pid_tgid: u64, fd: i32, call: &Call, k: u8, sock: &Sock) {
    let Some(mut entry) = reserve::<0>() else {
        if k != kind::CLOSE {
            note_loss((pid_tgid >> 32) as u32, fd);
        }
        return;
    };
    let rec: *mut Rec<0> = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved record; every header field is written before submit.
    unsafe {
        fill_header(
            core::ptr::addr_of_mut!((*rec).header),
            pid_tgid,
            fd,
            call,
            k,
            sock,
            0,
            0,
        );
    }
    submit(entry);
}

/// A read or write of `len` bytes: copy a prefix (and the last bytes) into a record of the
/// smallest size class that holds it. A buffer larger than `SMALL_BUF` is copied up to the
/// copy limit only when it starts like an HTTP/1.x head; of anything else (a body, another
/// protocol) only `BODY_PREFIX` bytes are copied: userspace needs a body's length, its
/// first bytes (a chunk-size line) and its last bytes, not its middle.
#[inline(never)]
fn data(cfg: &Config, pid_tgid: u64, call: &Call, len: u64) {
    let Some(sock) = socket_of_fd(cfg, (pid_tgid >> 32) as u32, call.fd) else {
        return;
    };
    let (src, cap) = match source(call) {
        Some(v) => v,
        None => (0, 0),
    };
    let mut n = if len < cap { len } else { cap };
    if n > cfg.copy_len as u64 {
        n = cfg.copy_len as u64;
    }
    if n > SMALL_BUF as u64 && !starts_like_head(src) {
        n = BODY_PREFIX as u64;
    }
    let d = Data {
        pid_tgid,
        call,
        len,
        src,
        n,
        sock: &sock,
    };
    if n == 0 {
        // sendfile, or nothing readable: the header alone.
        fill_data::<0>(&d);
    } else if n <= BODY_PREFIX as u64 {
        fill_data::<BODY_PREFIX>(&d);
    } else if n <= SMALL_BUF as u64 {
        fill_data::<256>(&d);
    } else if n <= 1024 {
        fill_data::<1024>(&d);
    } else {
        fill_data::<MAX_DATA>(&d);
    }
}

/// What a data record is made of.
struct Data<'a> {
    pid_tgid: u64,
    call: &'a Call,
    len: u64,
    /// Where the bytes start, and how many to copy (at most `N` are).
    src: u64,
    n: u64,
    sock: &'a Sock,
}

/// Whether the bytes at `src` begin like an HTTP/1.x head: a status line (`HTTP/`) or a
/// request line (a method of 3 to 7 capital letters and a space; `PRI * HTTP/2.0`, the
/// HTTP/2 preface, passes too). Unreadable bytes count as a head (copied as before).
#[inline(always)]
fn starts_like_head(src: u64) -> bool {
    // SAFETY: checked user read.
    let Ok(b) = (unsafe { bpf_probe_read_user(src as *const [u8; 8]) }) else {
        return true;
    };
    if b[0] == b'H' && b[1] == b'T' && b[2] == b'T' && b[3] == b'P' && b[4] == b'/' {
        return true;
    }
    let mut i = 0;
    while i < 8 && b[i].is_ascii_uppercase() {
        i += 1;
    }
    // `i & 7` is `i` (below 8 here); the mask spares the index a bounds check.
    (3..8).contains(&i) && b[i & 7] == b' '
}

#[inline(always)]
fn fill_data<const N: usize>(d: &Data<'_>) {
    let Some(mut entry) = reserve::<N>() else {
        note_loss((d.pid_tgid >> 32) as u32, d.call.fd);
        return;
    };
    let rec: *mut Rec<N> = entry.as_mut_ptr();
    let mut n = d.n as usize;
    if n > N {
        n = N;
    }
    // SAFETY: `rec` is the reserved record, `n <= N`; user reads are checked; every header
    // field is written before submit.
    unsafe {
        let copied = if n > 0 {
            match bpf_probe_read_user_buf(d.src as *const u8, &mut (&mut (*rec).data)[..n]) {
                Ok(()) => n as u32,
                Err(_) => 0,
            }
        } else {
            0
        };
        let h = core::ptr::addr_of_mut!((*rec).header);
        fill_header(
            h,
            d.pid_tgid,
            d.call.fd,
            d.call,
            kind_of(d.call.syscall),
            d.sock,
            d.len as u32,
            copied,
        );
        // Only the `tail_len` right-most tail bytes are read by the agent: the rest is left
        // as the ring had it (zeroing cost a memset call per record).
        if d.len > n as u64 && d.len >= TAIL_LEN as u64 {
            (*h).tail_len = match buf_of(d.call.syscall) {
                Buf::Flat => {
                    let from = ((d.src + d.len) - TAIL_LEN as u64) as *const u8;
                    if bpf_probe_read_user_buf(from, &mut (*h).tail).is_ok() {
                        TAIL_LEN as u16
                    } else {
                        0
                    }
                }
                Buf::Iov => iov_tail(d.call.ptr, d.call.arg2, d.len, &mut (*h).tail),
                Buf::Msg => match msg_iovs(d.call.ptr) {
                    Some((iov, count)) => iov_tail(iov, count, d.len, &mut (*h).tail),
                    None => 0,
                },
                Buf::None => 0,
            };
        }
    }
    submit(entry);
}

/// Where the bytes are: (user address, bytes available there).
#[inline(always)]
fn source(call: &Call) -> Option<(u64, u64)> {
    match buf_of(call.syscall) {
        Buf::Flat => Some((call.ptr, u64::MAX)),
        Buf::Iov => first_iov(call.ptr),
        Buf::Msg => first_iov(msg_iovs(call.ptr)?.0),
        Buf::None => None,
    }
}

/// The last bytes a vectored call moved, right-aligned in `tail`; returns how many are known.
/// A read fills the iovecs in order and a write sends them in order, so the last byte moved is
/// at offset `len - 1` of their concatenation: the first `MAX_TAIL_IOVS` iovecs are walked to
/// the one that holds it. Up to 16 bytes are taken from there and, when that iovec holds
/// fewer, the rest from the end of the one before (framers such as hyper and node put a
/// chunked body's closing `\r\n` and `0\r\n\r\n` in iovecs of their own; a read can end a
/// few bytes into the next buffer).
#[inline(always)]
fn iov_tail(iov: u64, count: u64, len: u64, tail: &mut [u8; TAIL_LEN]) -> u16 {
    let mut sum = 0u64;
    let mut prev = (0u64, 0u64);
    let mut last = None;
    for i in 0..MAX_TAIL_IOVS {
        if i >= count {
            break;
        }
        let Some((base, l)) = first_iov(iov + i * 16) else {
            return 0;
        };
        if len - sum <= l {
            last = Some((base, len - sum));
            break;
        }
        sum += l;
        prev = (base, l);
    }
    let Some((base, used)) = last else {
        return 0;
    };
    const T: u64 = TAIL_LEN as u64;
    // SAFETY: checked user reads into bounded ranges of `tail`.
    unsafe {
        if used >= T {
            return if bpf_probe_read_user_buf((base + used - T) as *const u8, tail).is_ok() {
                TAIL_LEN as u16
            } else {
                0
            };
        }
        // 1 to 15 bytes in the last iovec (the mask states the bound for the verifier).
        let k = (used as usize) & (TAIL_LEN - 1);
        if k == 0 || bpf_probe_read_user_buf(base as *const u8, &mut tail[TAIL_LEN - k..]).is_err()
        {
            return 0;
        }
        let (pbase, plen) = prev;
        let m = ((TAIL_LEN - k) as u64).min(plen) as usize;
        if m == 0 {
            return k as u16;
        }
        // `m` bytes end where the last iovec's begin: at `TAIL_LEN - k`. The verifier does not
        // relate `m` to `k`, so it is shown bounds it can check: masked start and size (both
        // below 16, inside the 120-byte header whatever their sum). The volatile loads keep
        // the compiler from dropping the masks as redundant.
        let start = core::ptr::read_volatile(&(TAIL_LEN - k - m)) & (TAIL_LEN - 1);
        let size = core::ptr::read_volatile(&m) & (TAIL_LEN - 1);
        let dst = core::slice::from_raw_parts_mut(tail.as_mut_ptr().add(start), size);
        if bpf_probe_read_user_buf((pbase + plen - m as u64) as *const u8, dst).is_err() {
            return k as u16;
        }
        (k + m) as u16
    }
}

/// The iovec array and its length of a `struct user_msghdr` { void *msg_name; int
/// msg_namelen; struct iovec *msg_iov; size_t msg_iovlen; ... }.
#[inline(always)]
fn msg_iovs(msg: u64) -> Option<(u64, u64)> {
    // SAFETY: checked user read of msg_iov and msg_iovlen.
    let v: [u64; 2] = unsafe { bpf_probe_read_user((msg + 16) as *const [u64; 2]).ok()? };
    Some((v[0], v[1]))
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
    call: &Call,
    k: u8,
    sock: &Sock,
    len: u32,
    copied: u32,
) {
    // SAFETY: the caller owns `h`, inside a reserved ring-buffer record.
    unsafe {
        let now = bpf_ktime_get_ns();
        (*h).start_ns = now;
        (*h).end_ns = now;
        (*h).sock_id = sock.sk;
        (*h).pid = (pid_tgid >> 32) as u32;
        (*h).tid = pid_tgid as u32;
        (*h).fd = fd;
        (*h).len = len;
        (*h).copied = copied;
        (*h).tail_len = 0;
        (*h).kind = k;
        (*h).syscall = call.syscall;
        (*h).tuple = sock.tuple;
        (*h).sock_lost = sock.lost;
        (*h).ring_lost = super::ring_lost();
        (*h).goroutine = call.goroutine;
        // The command name matters only where a connection starts (userspace names short-lived
        // processes from it and reads it from no other record): data records leave it alone.
        if k != kind::READ
            && k != kind::WRITE
            && gen_helpers::bpf_get_current_comm((*h).comm.as_mut_ptr().cast(), 16) != 0
        {
            (*h).comm = [0; 16];
        }
    }
}
