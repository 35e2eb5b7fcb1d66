//! The reference tracer of `cargo xtask bench overhead --reference`: the least a
//! syscall-tracepoint HTTP tracer does, after shared/research/kernel-floor.md's config C3, so
//! that Sonde's capture is compared with it side by side on the same run.
//!
//! On the 12 syscalls' entry and exit, plus the sock and sched tracepoints (26 attachments):
//! - entry of a target process: keep `(fd, second argument)` per thread in a hash map;
//! - exit: take it back out; for read/write/recvfrom/sendto/readv/writev that moved bytes,
//!   reserve a 1,048-byte ring record, copy up to 1 KiB of the buffer (the first iovec for the
//!   vectored calls) and submit it without a wake-up;
//! - `inet_sock_set_state`: remember each socket's state, forget it at TCP_CLOSE;
//! - `sched_process_exit`: drop the thread's entry.
//!
//! It knows nothing of sockets, HTTP or connections: userspace only drains the ring.
#![cfg_attr(target_arch = "bpf", no_std, no_main)]

#[cfg(target_arch = "bpf")]
mod programs {
    use aya_ebpf::{
        EbpfContext as _,
        bindings::BPF_RB_NO_WAKEUP,
        helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user, bpf_probe_read_user_buf},
        macros::{map, tracepoint},
        maps::{HashMap, RingBuf},
        programs::TracePointContext,
    };

    const COPY: usize = 1024;
    const TCP_CLOSE: u32 = 7;

    /// Processes to trace (tgid), filled by userspace.
    #[map]
    static TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(64, 0);

    /// `(fd, second argument)` of the syscall each thread is in.
    #[map]
    static INFLIGHT: HashMap<u64, [u64; 2]> = HashMap::with_max_entries(16_384, 0);

    /// Socket state by `struct sock *`.
    #[map]
    static SOCK_STATE: HashMap<u64, u32> = HashMap::with_max_entries(16_384, 0);

    #[map]
    static RING: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

    #[repr(C)]
    struct Event {
        pid_tgid: u64,
        fd: u64,
        len: u64,
        data: [u8; COPY],
    }

    fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
        // SAFETY: tracepoint programs may read their record; the verifier checks the bounds.
        unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset) as *const T) }
    }

    fn target(pid_tgid: u64) -> bool {
        // SAFETY: read-only lookup.
        unsafe { TARGETS.get(&((pid_tgid >> 32) as u32)).is_some() }
    }

    /// Every sys_enter_*: `fd` is the first argument (offset 16), the buffer, iovec array,
    /// msghdr or sockaddr the second (offset 24).
    #[tracepoint]
    pub fn reference_enter(ctx: TracePointContext) -> u32 {
        let id = bpf_get_current_pid_tgid();
        if target(id) {
            let args: [u64; 2] = [field(&ctx, 16), field(&ctx, 24)];
            let _ = INFLIGHT.insert(&id, &args, 0);
        }
        0
    }

    /// sys_enter_close, whose record ends after `fd`.
    #[tracepoint]
    pub fn reference_enter_fd(ctx: TracePointContext) -> u32 {
        let id = bpf_get_current_pid_tgid();
        if target(id) {
            let args: [u64; 2] = [field(&ctx, 16), 0];
            let _ = INFLIGHT.insert(&id, &args, 0);
        }
        0
    }

    /// Exit of accept, accept4, connect, recvmsg, sendmsg and close: no copy.
    #[tracepoint]
    pub fn reference_exit(_ctx: TracePointContext) -> u32 {
        let _ = take();
        0
    }

    /// Exit of read, write, recvfrom and sendto.
    #[tracepoint]
    pub fn reference_exit_flat(ctx: TracePointContext) -> u32 {
        if let Some((id, [fd, buf])) = take() {
            copy(id, fd, buf, field(&ctx, 16));
        }
        0
    }

    /// Exit of readv and writev: the first iovec.
    #[tracepoint]
    pub fn reference_exit_iov(ctx: TracePointContext) -> u32 {
        if let Some((id, [fd, iov])) = take() {
            // SAFETY: checked user read of struct iovec { void *iov_base; size_t iov_len; }.
            if let Ok([base, _]) = unsafe { bpf_probe_read_user(iov as *const [u64; 2]) } {
                copy(id, fd, base, field(&ctx, 16));
            }
        }
        0
    }

    #[inline(always)]
    fn take() -> Option<(u64, [u64; 2])> {
        let id = bpf_get_current_pid_tgid();
        if !target(id) {
            return None;
        }
        // SAFETY: read-only lookup; the value is copied out before the delete.
        let args = unsafe { *INFLIGHT.get(&id)? };
        let _ = INFLIGHT.remove(&id);
        Some((id, args))
    }

    #[inline(always)]
    fn copy(id: u64, fd: u64, buf: u64, ret: i64) {
        if ret <= 0 {
            return;
        }
        let Some(mut entry) = RING.reserve::<Event>(0) else {
            return;
        };
        let n = (ret as usize).min(COPY);
        let e = entry.as_mut_ptr();
        // SAFETY: `e` is the reserved record; `n` is bounded by its data field.
        unsafe {
            (*e).pid_tgid = id;
            (*e).fd = fd;
            (*e).len = n as u64;
            let _ = bpf_probe_read_user_buf(buf as *const u8, &mut (&mut (*e).data)[..n]);
        }
        entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    }

    /// sock:inet_sock_set_state: `skaddr` at offset 8, `newstate` at offset 20.
    #[tracepoint]
    pub fn reference_sock(ctx: TracePointContext) -> u32 {
        let sk: u64 = field(&ctx, 8);
        let state: u32 = field(&ctx, 20);
        if state == TCP_CLOSE {
            let _ = SOCK_STATE.remove(&sk);
        } else {
            let _ = SOCK_STATE.insert(&sk, &state, 0);
        }
        0
    }

    #[tracepoint]
    pub fn reference_exit_task(_ctx: TracePointContext) -> u32 {
        let id = bpf_get_current_pid_tgid();
        if target(id) {
            let _ = INFLIGHT.remove(&id);
        }
        0
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }

    #[unsafe(link_section = "license")]
    #[unsafe(no_mangle)]
    static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
