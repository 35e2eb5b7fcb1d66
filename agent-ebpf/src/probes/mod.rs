//! Shared kernel helpers: process selection, the fd → socket walk, and record emission.
//! The hook entry points live in `syscalls.rs` (per syscall), `sched.rs` (sock/sched) and
//! `golang.rs` (uprobes on Go's HTTP client).

mod golang;
mod process;
mod sched;
mod syscalls;

use agent_common::{Config, EventHeader, SockInfo, Tuple, counter, mode};
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_task, bpf_probe_read_kernel},
    maps::ring_buf::RingBufEntry,
};

use crate::maps::{CONFIG, COUNTERS, EVENTS, LIVE_SOCKS, RING_LOST, SELECTED, SOCKS};

const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;

#[inline(always)]
pub fn config() -> &'static Config {
    // SAFETY: CONFIG is a plain static. The volatile read of its address keeps the compiler
    // from folding the zero initializer that the loader patches, while each field is still
    // loaded only where it is used (copying the whole struct cost loads and stack).
    unsafe { &*core::ptr::read_volatile(&core::ptr::addr_of!(CONFIG)) }
}

/// Is this process one we trace? Never the agent itself.
#[inline(always)]
pub fn selected(cfg: &Config, tgid: u32) -> bool {
    if tgid == cfg.self_pid {
        return false;
    }
    if cfg.mode == mode::ALL {
        return true;
    }
    SELECTED
        .get(tgid >> 6)
        .is_some_and(|word| (*word >> (tgid & 63)) & 1 != 0)
}

/// Select a process (port selection, at its first accept on a selected port).
#[inline(always)]
pub fn select(tgid: u32) {
    if let Some(word) = SELECTED.get_ptr_mut(tgid >> 6) {
        // SAFETY: an aligned u64 inside the map; other CPUs and the agent update it with
        // atomic operations too. (The BPF target has no `AtomicU64::fetch_or`; the intrinsic
        // becomes the BPF atomic OR instruction.)
        unsafe {
            core::intrinsics::atomic_or::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                word,
                1 << (tgid & 63),
            );
        }
    }
}

/// The socket behind `fd` of the current task: `(struct sock *, tuple)`, or `None` when the
/// fd is not an inet stream socket. A socket seen before is answered from `SOCKS` without
/// touching the fd table (the walk is five dependent kernel reads, the most expensive part of
/// a traced syscall). Entries leave when the fd is closed or replaced: close, dup2 and dup3
/// are hooked for that. An fd closed without them (exec closing close-on-exec fds,
/// close_range, process exit) is caught by its connection closing: the sock tracepoint marks
/// the entry, and the next use of that fd number walks the fd table again. (A socket another
/// process still holds does not close, so its entry stays until the number is closed again
/// or the LRU evicts it.)
#[inline(always)]
pub fn socket_of_fd(cfg: &Config, tgid: u32, fd: i32) -> Option<Sock> {
    if cfg.offsets_ok == 0 || fd < 0 {
        return None;
    }
    let key = sock_key(tgid, fd);
    // SAFETY: read-only lookup; the value is copied out.
    let stale = match unsafe { SOCKS.get(&key) } {
        Some(info) if info.closing == 0 => {
            return Some(Sock {
                sk: info.sk,
                tuple: info.tuple,
                lost: info.lost,
            });
        }
        Some(_) => true,
        None => false,
    };
    let found = walk_fd(cfg, fd);
    match found {
        Some((file, sk, t)) => {
            // Only a connected socket's tuple is final: a listener or a socket still
            // connecting without a peer port is walked again next time.
            if t.remote_port != 0 {
                let info = SockInfo {
                    file,
                    sk,
                    tuple: t,
                    closing: 0,
                    lost: 0,
                };
                let _ = SOCKS.insert(&key, &info, 0);
                let _ = LIVE_SOCKS.insert(&sk, &key, 0);
            } else if stale {
                forget_fd(tgid, fd);
            }
            Some(Sock {
                sk,
                tuple: t,
                lost: 0,
            })
        }
        None => {
            if stale {
                forget_fd(tgid, fd);
            }
            None
        }
    }
}

/// A socket fd's identity, as a record reports it.
#[derive(Clone, Copy)]
pub struct Sock {
    /// The `struct sock *`.
    pub sk: u64,
    pub tuple: Tuple,
    /// Records of it lost so far (`SockInfo::lost`).
    pub lost: u32,
}

/// A record of socket `fd` could not be written (the ring was full): count it on the socket,
/// so that its next record tells userspace that something is missing in between. Two CPUs
/// racing here may count one loss for two, which is enough: any change is the signal.
#[inline(always)]
pub fn note_loss(tgid: u32, fd: i32) {
    if let Some(info) = SOCKS.get_ptr_mut(&sock_key(tgid, fd)) {
        // SAFETY: a map value; see above for the race.
        unsafe { (*info).lost = (*info).lost.wrapping_add(1) };
    }
}

/// Walk the current task's fd table to `fd`: `(struct file *, struct sock *, tuple)` when it
/// is an inet stream socket.
#[inline(always)]
fn walk_fd(cfg: &Config, fd: i32) -> Option<(u64, u64, Tuple)> {
    let o = &cfg.offsets;
    // SAFETY: every read goes through bpf_probe_read_kernel, which tolerates bad pointers.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        let files: *const u8 = read(task, o.task_files)?;
        let fdt: *const u8 = read(files, o.files_fdt)?;
        let max_fds: u32 = read(fdt, o.fdt_max_fds)?;
        if fd as u32 >= max_fds {
            return None;
        }
        let fd_array: *const u8 = read(fdt, o.fdt_fd)?;
        let file: *const u8 =
            bpf_probe_read_kernel(fd_array.add(fd as usize * 8) as *const *const u8).ok()?;
        if file.is_null() {
            return None;
        }
        let inode: *const u8 = read(file, o.file_inode)?;
        let imode: u16 = read(inode, o.inode_mode)?;
        if imode & S_IFMT != S_IFSOCK {
            return None;
        }
        let socket: *const u8 = read(file, o.file_private_data)?;
        let stype: u16 = read(socket, o.socket_type)?;
        if stype != SOCK_STREAM {
            return None;
        }
        let sk: *const u8 = read(socket, o.socket_sk)?;
        if sk.is_null() {
            return None;
        }
        let family: u16 = read(sk, o.skc_family)?;
        let mut t = Tuple {
            family,
            ..Tuple::default()
        };
        t.local_port = read(sk, o.skc_num)?;
        t.remote_port = u16::from_be(read(sk, o.skc_dport)?);
        if family == AF_INET {
            let l: [u8; 4] = read(sk, o.skc_rcv_saddr)?;
            let r: [u8; 4] = read(sk, o.skc_daddr)?;
            t.local_addr = mapped(l);
            t.remote_addr = mapped(r);
        } else if family == AF_INET6 {
            t.local_addr = read(sk, o.skc_v6_rcv_saddr)?;
            t.remote_addr = read(sk, o.skc_v6_daddr)?;
        } else {
            return None;
        }
        Some((file as u64, sk as u64, t))
    }
}

#[inline(always)]
pub fn sock_key(tgid: u32, fd: i32) -> u64 {
    (u64::from(tgid) << 32) | u64::from(fd as u32)
}

/// Forget a closed fd's socket.
#[inline(always)]
pub fn forget_fd(tgid: u32, fd: i32) {
    let _ = SOCKS.remove(&sock_key(tgid, fd));
}

#[inline(always)]
unsafe fn read<T>(base: *const u8, off: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T).ok() }
}

#[inline(always)]
fn mapped(v4: [u8; 4]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[10] = 0xff;
    a[11] = 0xff;
    a[12] = v4[0];
    a[13] = v4[1];
    a[14] = v4[2];
    a[15] = v4[3];
    a
}

/// A record with room for `N` payload bytes. Records are reserved in the ring buffer itself
/// and filled in place, in one of a few sizes (the verifier wants a constant size per
/// reservation): a 100-byte request takes a 376-byte slot, not the 4 KiB maximum.
#[repr(C)]
pub struct Rec<const N: usize> {
    pub header: EventHeader,
    pub data: [u8; N],
}

/// Reserve a record with `N` payload bytes; a full ring is counted.
#[inline(always)]
pub fn reserve<const N: usize>() -> Option<RingBufEntry<Rec<N>>> {
    let entry = EVENTS.reserve::<Rec<N>>(0);
    if entry.is_none() {
        bump(counter::RINGBUF_FULL);
        if let Some(lost) = RING_LOST.get_ptr_mut(0) {
            // SAFETY: an aligned u32 in the map, updated by every CPU with atomic adds.
            unsafe {
                core::intrinsics::atomic_xadd::<
                    u32,
                    u32,
                    { core::intrinsics::AtomicOrdering::Relaxed },
                >(lost, 1);
            }
        }
    }
    entry
}

/// Records lost host-wide so far (`EventHeader::ring_lost`).
#[inline(always)]
pub fn ring_lost() -> u32 {
    RING_LOST.get(0).copied().unwrap_or(0)
}

/// Hand a filled record to userspace without waking anyone: the agent drains on a short
/// timer and never sleeps on the ring, so a wake-up would only cost this CPU an interrupt.
#[inline(always)]
pub fn submit<const N: usize>(entry: RingBufEntry<Rec<N>>) {
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(ptr) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *ptr += 1 };
    }
}
