//! Process exit (`sched:sched_process_exit`) and kernel-side connection close
//! (`sock:inet_sock_set_state` → TCP_CLOSE), which also covers sockets a process never closed.

use agent_common::{EXEC_PATH, EventHeader, Tuple, kind, syscall};
use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
        bpf_probe_read_kernel_str_bytes,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use super::{config, reserve, select, selected, submit};
use crate::maps::{LIVE_SOCKS, NAMED, SOCKS};

const TCP_FIN_WAIT1: i32 = 4;
const TCP_CLOSE: i32 = 7;
const TCP_LAST_ACK: i32 = 9;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    match try_process_exit(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_process_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: `group_dead` (bool) is at offset 32 in this tracepoint's format.
    let group_dead: u8 = unsafe { field(ctx, 32) };
    let cfg = config();
    let tgid = (pid_tgid >> 32) as u32;
    if group_dead == 0 {
        return Ok(());
    }
    // The pid may be reused: the next process with it is described afresh.
    let _ = NAMED.remove(&tgid);
    if !selected(cfg, tgid) {
        return Ok(());
    }
    emit_lifecycle(tgid, pid_tgid as u32, -1, 0, kind::EXIT, syscall::EXIT, 0);
    Ok(())
}

/// A process ran a new program (`sched:sched_process_exec`, in that process). Under selection
/// by executable path, a process not selected yet is selected at once, provisionally, and its
/// exec is reported with the program's path: the agent keeps it if the path matches a glob
/// and unselects it (dropping what it sent meanwhile) if not. A client that connects as soon
/// as it starts is traced from its first request.
#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let cfg = config();
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    // A new program, a new environment: described afresh at its first connection.
    let _ = NAMED.remove(&tgid);
    if cfg.exec_notify == 0 {
        return 0;
    }
    if tgid != cfg.self_pid && !selected(cfg, tgid) {
        emit_exec(&ctx, tgid, pid_tgid as u32);
    }
    0
}

/// Select the process and write the exec record: a lifecycle header whose payload is the
/// `filename` the program was started with (`__data_loc char[]` at offset 8: length in the
/// high half, offset in the low). Without room in the ring the process is left alone: nobody
/// would hear of it to unselect it.
fn emit_exec(ctx: &TracePointContext, pid: u32, tid: u32) {
    let Some(mut entry) = reserve::<EXEC_PATH>() else {
        return;
    };
    select(pid);
    let rec: *mut super::Rec<EXEC_PATH> = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved record; `loc` is this tracepoint's first field, and the
    // string it locates lies inside the record, read through a checked kernel read.
    unsafe {
        let loc: u32 = field(ctx, 8);
        let path = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        let copied =
            bpf_probe_read_kernel_str_bytes(path, &mut (*rec).data).map_or(0, |s| s.len() as u32);
        let now = bpf_ktime_get_ns();
        (*rec).header = EventHeader {
            start_ns: now,
            end_ns: now,
            sock_id: 0,
            pid,
            tid,
            fd: -1,
            len: 0,
            copied,
            tail_len: 0,
            kind: kind::EXEC,
            syscall: syscall::EXEC,
            tuple: Tuple::default(),
            tail: [0; agent_common::TAIL_LEN],
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
            sock_lost: 0,
            ring_lost: super::ring_lost(),
            goroutine: 0,
        };
    }
    submit(entry);
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    match try_sock_state(&ctx) {
        Ok(()) | Err(_) => 0,
    }
}

fn try_sock_state(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: offsets from events/sock/inet_sock_set_state/format (newstate: int at 20,
    // skaddr: pointer at 8).
    let newstate: i32 = unsafe { field(ctx, 20) };
    // The local side closing (or shutting down its writes), and the end of the connection.
    if newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK && newstate != TCP_CLOSE {
        return Ok(());
    }
    let skaddr: u64 = unsafe { field(ctx, 8) };
    // This may run in softirq context, where the current task is unrelated: the owner comes
    // from the map filled when the socket was first seen.
    let Some(key) = (unsafe { LIVE_SOCKS.get(&skaddr) }).copied() else {
        return Ok(());
    };
    // The fd may be gone without a close(2) that Sonde sees (exec, process exit): its cached
    // entry must not vouch for whatever gets that fd number next.
    let mut lost = agent_common::LOST_UNKNOWN;
    if let Some(info) = SOCKS.get_ptr_mut(&key) {
        // SAFETY: a map value; a concurrent reader at worst walks the fd table once more.
        unsafe {
            if (*info).sk == skaddr {
                (*info).closing = 1;
                lost = (*info).lost;
            }
        }
    }
    if newstate != TCP_CLOSE {
        return Ok(());
    }
    let _ = LIVE_SOCKS.remove(&skaddr);
    let owner = (key >> 32) as u32;
    emit_lifecycle(owner, 0, -1, skaddr, kind::CLOSE, syscall::CLOSE, lost);
    Ok(())
}

/// A field of the tracepoint record, loaded straight from the context (this fires for every
/// TCP state change on the host; `read_at` would cost a helper call per field).
///
/// # Safety
/// `offset` must be a field of this tracepoint's record, aligned to `T`'s size.
#[inline(always)]
unsafe fn field<T: Copy>(ctx: &TracePointContext, offset: usize) -> T {
    // SAFETY: per the caller; the verifier checks context accesses.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(offset) as *const T) }
}

fn emit_lifecycle(pid: u32, tid: u32, fd: i32, sk: u64, k: u8, sc: u8, sock_lost: u32) {
    let Some(mut entry) = reserve::<0>() else {
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    entry.write(super::Rec {
        header: EventHeader {
            start_ns: now,
            end_ns: now,
            sock_id: sk,
            pid,
            tid,
            fd,
            len: 0,
            copied: 0,
            tail_len: 0,
            kind: k,
            syscall: sc,
            tuple: Tuple::default(),
            tail: [0; agent_common::TAIL_LEN],
            comm: if tid == 0 {
                [0; 16]
            } else {
                bpf_get_current_comm().unwrap_or([0; 16])
            },
            sock_lost,
            ring_lost: super::ring_lost(),
            goroutine: 0,
        },
        data: [],
    });
    submit(entry);
}
