//! The reference tracer (the `sonde-reference-tracer` binary, built only with the
//! `reference-tracer` feature, so it never ships in `sonde`): the kernel object built from
//! `agent-ebpf/src/reference.rs`, loaded for `cargo xtask bench overhead --reference` so that
//! Sonde's capture is compared, in the same run, with the least a syscall-tracepoint tracer
//! that copies 1 KiB per data syscall and batches its ring wake-ups does
//! (shared/research/kernel-floor.md, config C3). Userspace drains the ring every 100 ms and
//! counts; nothing is decoded.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, RingBuf},
    programs::TracePoint,
};

use super::{EbpfError, object};

/// The 12 syscalls whose entry and exit are hooked, with the exit program that copies (or
/// not) their bytes.
const SYSCALLS: &[(&str, &str)] = &[
    ("accept", "reference_exit"),
    ("accept4", "reference_exit"),
    ("connect", "reference_exit"),
    ("read", "reference_exit_flat"),
    ("write", "reference_exit_flat"),
    ("readv", "reference_exit_iov"),
    ("writev", "reference_exit_iov"),
    ("recvfrom", "reference_exit_flat"),
    ("sendto", "reference_exit_flat"),
    ("recvmsg", "reference_exit"),
    ("sendmsg", "reference_exit"),
    ("close", "reference_exit"),
];

/// Attachments: 12 entries, 12 exits, the sock and the sched tracepoint.
pub const ATTACHMENTS: usize = 2 * SYSCALLS.len() + 2;

/// The loaded reference tracer. Dropping it detaches everything.
pub struct Reference {
    ring: RingBuf<MapData>,
    _ebpf: Ebpf,
}

impl Reference {
    /// Load, select `pids` and attach all 26 tracepoints.
    pub fn load(pids: &[u32]) -> Result<Self, EbpfError> {
        if object::REFERENCE.is_empty() {
            return Err(EbpfError::NotBuilt);
        }
        let mut ebpf = Ebpf::load(object::REFERENCE).map_err(|e| EbpfError::Load(Box::new(e)))?;
        let mut targets: BpfHashMap<MapData, u32, u8> = BpfHashMap::try_from(
            ebpf.take_map("TARGETS")
                .ok_or(EbpfError::MissingMap { map: "TARGETS" })?,
        )
        .map_err(|e| map_error("TARGETS", e))?;
        for pid in pids {
            targets
                .insert(pid, 1, 0)
                .map_err(|e| map_error("TARGETS", e))?;
        }
        let mut attach = |program: &str, category: &str, name: &str| -> Result<(), EbpfError> {
            let fail = |e: aya::programs::ProgramError| EbpfError::Program {
                program: program.to_owned(),
                source: Box::new(e),
            };
            let tp: &mut TracePoint = ebpf
                .program_mut(program)
                .ok_or_else(|| EbpfError::MissingProgram {
                    program: program.to_owned(),
                })?
                .try_into()
                .map_err(fail)?;
            if tp.fd().is_err() {
                tp.load().map_err(fail)?;
            }
            tp.attach(category, name).map_err(fail)?;
            Ok(())
        };
        for (syscall, exit) in SYSCALLS {
            // close has one argument: its entry record is too short for the second.
            let enter = if *syscall == "close" {
                "reference_enter_fd"
            } else {
                "reference_enter"
            };
            attach(enter, "syscalls", &format!("sys_enter_{syscall}"))?;
            attach(exit, "syscalls", &format!("sys_exit_{syscall}"))?;
        }
        attach("reference_sock", "sock", "inet_sock_set_state")?;
        attach("reference_exit_task", "sched", "sched_process_exit")?;
        let ring = RingBuf::try_from(
            ebpf.take_map("RING")
                .ok_or(EbpfError::MissingMap { map: "RING" })?,
        )
        .map_err(|e| map_error("RING", e))?;
        Ok(Self { ring, _ebpf: ebpf })
    }

    /// Drain every 100 ms until `stop` is set; returns the records seen.
    pub fn run(&mut self, stop: &AtomicBool) -> u64 {
        let mut records = 0;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            records += self.drain(|_| {});
        }
        records
    }

    /// Hand every record in the ring to `f`: `pid_tgid`, `fd` and the copied length as three
    /// native-endian u64, then 1 KiB of data of which that many bytes are valid.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> u64 {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }
}

fn map_error(map: &'static str, e: aya::maps::MapError) -> EbpfError {
    EbpfError::Map {
        map,
        source: Box::new(e),
    }
}

/// `sonde reference-tracer --pid …`: trace until SIGINT/SIGTERM, then print the record count.
pub fn run_command(pids: &[u32]) -> std::process::ExitCode {
    let mut tracer = match super::check_environment().and_then(|()| Reference::load(pids)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sonde: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sonde: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let drain_stop = stop.clone();
    let drain = std::thread::spawn(move || tracer.run(&drain_stop));
    eprintln!("reference tracer: {ATTACHMENTS} tracepoints attached, pids {pids:?}");
    let waited = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    });
    stop.store(true, Ordering::Relaxed);
    if let Err(e) = waited {
        eprintln!("sonde: cannot wait for a signal: {e}");
        return std::process::ExitCode::FAILURE;
    }
    match drain.join() {
        Ok(records) => {
            println!("records {records}");
            std::process::ExitCode::SUCCESS
        }
        Err(_) => std::process::ExitCode::FAILURE,
    }
}
