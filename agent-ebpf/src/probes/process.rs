//! What names a process, captured while it is surely alive: at its first accept or connect
//! since it started or ran a new program. A client such as curl is usually gone before the
//! agent drains its records, and /proc with it; these records carry its executable's name
//! and its environment (for `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`).

use agent_common::{Config, ENV_MAX, EventHeader, MAX_DATA, Tuple, kind, syscall};
use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel_str_bytes,
    bpf_probe_read_user_buf,
};

use super::{Rec, read, reserve, ring_lost, submit};
use crate::maps::NAMED;

/// Bytes of the executable's file name sent (a dentry name is at most 255).
const EXE_NAME: usize = 256;

/// Send the naming records of the current process once (until it runs a new program): its
/// executable's name, then its environment in one chunk or more.
#[inline(never)]
pub fn describe(cfg: &Config, pid_tgid: u64) {
    let tgid = (pid_tgid >> 32) as u32;
    // SAFETY: read-only lookup.
    if unsafe { NAMED.get(&tgid) }.is_some() {
        return;
    }
    let _ = NAMED.insert(&tgid, &0, 0);
    let o = &cfg.offsets;
    // SAFETY: kernel reads through bpf_probe_read_kernel, which tolerates bad pointers.
    let Some(mm) = (unsafe { read::<*const u8>(bpf_get_current_task() as *const u8, o.task_mm) })
    else {
        return;
    };
    if mm.is_null() {
        return;
    }
    exe_name(cfg, mm, pid_tgid);
    // SAFETY: as above.
    let (Some(start), Some(end)) = (unsafe { read::<u64>(mm, o.mm_env_start) }, unsafe {
        read::<u64>(mm, o.mm_env_end)
    }) else {
        return;
    };
    let total = if end > start {
        (end - start).min(ENV_MAX as u64)
    } else {
        0
    };
    // At least one chunk, empty for an empty environment: it ends the description.
    let mut off = 0u64;
    for _ in 0..ENV_MAX / MAX_DATA {
        if off > 0 && off >= total {
            break;
        }
        let Some(mut entry) = reserve::<MAX_DATA>() else {
            return;
        };
        let rec: *mut Rec<MAX_DATA> = entry.as_mut_ptr();
        let mut n = (total - off) as usize;
        if n > MAX_DATA {
            n = MAX_DATA;
        }
        // SAFETY: `rec` is the reserved record, `n <= MAX_DATA`; the user read is checked;
        // every header field is written before submit.
        unsafe {
            let copied = match bpf_probe_read_user_buf(
                (start + off) as *const u8,
                &mut (&mut (*rec).data)[..n],
            ) {
                Ok(()) => n as u32,
                Err(_) => 0,
            };
            header(
                core::ptr::addr_of_mut!((*rec).header),
                pid_tgid,
                kind::PROC_ENV,
                off as i32,
                total as u32,
                copied,
            );
        }
        submit(entry);
        off += MAX_DATA as u64;
    }
}

/// `mm->exe_file->f_path.dentry->d_name.name`, NUL-terminated.
#[inline(always)]
fn exe_name(cfg: &Config, mm: *const u8, pid_tgid: u64) {
    let o = &cfg.offsets;
    // SAFETY: kernel reads through bpf_probe_read_kernel.
    let name = unsafe {
        let Some(file) = read::<*const u8>(mm, o.mm_exe_file) else {
            return;
        };
        if file.is_null() {
            return;
        }
        let Some(dentry) = read::<*const u8>(file, o.file_f_path + o.path_dentry) else {
            return;
        };
        let Some(name) = read::<*const u8>(dentry, o.dentry_d_name + o.qstr_name) else {
            return;
        };
        name
    };
    let Some(mut entry) = reserve::<EXE_NAME>() else {
        return;
    };
    let rec: *mut Rec<EXE_NAME> = entry.as_mut_ptr();
    // SAFETY: `rec` is the reserved record; the kernel string read is checked.
    unsafe {
        let copied =
            bpf_probe_read_kernel_str_bytes(name, &mut (*rec).data).map_or(0, |s| s.len() as u32);
        header(
            core::ptr::addr_of_mut!((*rec).header),
            pid_tgid,
            kind::PROC_EXE,
            -1,
            0,
            copied,
        );
    }
    submit(entry);
}

/// # Safety
/// `h` must point into a reserved ring-buffer record.
#[inline(always)]
unsafe fn header(h: *mut EventHeader, pid_tgid: u64, k: u8, fd: i32, len: u32, copied: u32) {
    // SAFETY: per the caller.
    unsafe {
        let now = bpf_ktime_get_ns();
        *h = EventHeader {
            start_ns: now,
            end_ns: now,
            sock_id: 0,
            pid: (pid_tgid >> 32) as u32,
            tid: pid_tgid as u32,
            fd,
            len,
            copied,
            tail_len: 0,
            kind: k,
            syscall: syscall::EXEC,
            tuple: Tuple::default(),
            tail: [0; agent_common::TAIL_LEN],
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
            sock_lost: 0,
            ring_lost: ring_lost(),
            goroutine: 0,
        };
    }
}
