//! Kernel side, seen from userspace: load the embedded programs with the running kernel's
//! offsets, attach them, drain the ring buffer, keep the selected-process map current.
pub mod btf;
pub mod decode;
pub mod golang;
pub mod object;
pub mod record;
#[cfg(feature = "reference-tracer")]
pub mod reference;
pub mod select;

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use agent_common::{Config, counter};
use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};

/// Every tracepoint the agent attaches: (category, name). No kprobes: this must work on
/// kernels without them.
pub const TRACEPOINTS: &[(&str, &str)] = &[
    ("syscalls", "sys_exit_read"),
    ("syscalls", "sys_exit_write"),
    ("syscalls", "sys_exit_readv"),
    ("syscalls", "sys_exit_writev"),
    ("syscalls", "sys_exit_recvfrom"),
    ("syscalls", "sys_exit_sendto"),
    ("syscalls", "sys_exit_recvmsg"),
    ("syscalls", "sys_exit_sendmsg"),
    ("syscalls", "sys_exit_sendfile64"),
    ("syscalls", "sys_exit_accept"),
    ("syscalls", "sys_exit_accept4"),
    ("syscalls", "sys_exit_connect"),
    ("syscalls", "sys_enter_close"),
    ("syscalls", "sys_exit_dup2"),
    ("syscalls", "sys_exit_dup3"),
    ("sock", "inet_sock_set_state"),
    ("sched", "sched_process_exit"),
    ("sched", "sched_process_exec"),
];

/// Why the kernel part cannot run.
#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error(
        "this sonde was built without its eBPF object (AYA_BUILD_SKIP=1); rebuild with \
         `cargo xtask setup && cargo build --release`"
    )]
    NotBuilt,
    #[error(
        "sonde agent needs root (or CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH); run it with sudo"
    )]
    NotPrivileged,
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing; mount it with \
         `mount -t tracefs nodev /sys/kernel/tracing`"
    )]
    NoTracefs,
    #[error(transparent)]
    Btf(#[from] btf::BtfError),
    #[error("loading the eBPF object failed: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("program {program} is missing from the eBPF object")]
    MissingProgram { program: String },
    #[error("map {map} is missing from the eBPF object")]
    MissingMap { map: &'static str },
    #[error("program {program}: {source}")]
    Program {
        program: String,
        source: Box<aya::programs::ProgramError>,
    },
    #[error("cannot start the capture thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        source: Box<aya::maps::MapError>,
    },
}

/// What the kernel side is told at load time.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub selected_only: bool,
    pub copy_len: u32,
    pub ring_bytes: u32,
    pub capture_server: bool,
    pub capture_client: bool,
    /// Processes accepting connections on these local ports are selected by the kernel at
    /// their first accept (no /proc scan on the hot path).
    pub ports: Vec<u16>,
    /// Select every process not selected yet provisionally at its exec, and report the exec
    /// (selection by executable path: the agent keeps matching programs, unselects the rest).
    pub exec_notify: bool,
    /// Attach uprobes to Go programs' HTTP client (for linking).
    pub go_probes: bool,
}

/// Capabilities the agent needs (bit numbers from linux/capability.h): CAP_BPF to load the
/// programs and maps, CAP_PERFMON to attach them to tracepoints, CAP_DAC_READ_SEARCH to read
/// tracefs (root-only) as another user.
const NEEDED_CAPS: [(u32, &str); 3] = [
    (39, "CAP_BPF"),
    (38, "CAP_PERFMON"),
    (2, "CAP_DAC_READ_SEARCH"),
];

/// What the Go client uprobes take beyond [`NEEDED_CAPS`]: a uprobe, CAP_SYS_ADMIN on current
/// kernels; another user's `/proc/<pid>/exe`, CAP_SYS_PTRACE.
pub const GO_PROBE_CAPS: [(u32, &str); 2] = [(21, "CAP_SYS_ADMIN"), (19, "CAP_SYS_PTRACE")];

/// The effective capability set in a `/proc/<pid>/status` text, as a bit mask.
fn effective_capabilities(status: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Whether the effective capability set in a `/proc/<pid>/status` text holds every needed
/// capability (root normally does; a non-root user can be granted exactly these).
pub fn has_capabilities(status: &str) -> bool {
    let effective = effective_capabilities(status);
    NEEDED_CAPS.iter().all(|(bit, _)| effective >> bit & 1 == 1)
}

/// The capabilities of [`GO_PROBE_CAPS`] missing from a `/proc/<pid>/status` text.
pub fn missing_go_probe_capabilities(status: &str) -> Vec<&'static str> {
    let effective = effective_capabilities(status);
    GO_PROBE_CAPS
        .iter()
        .filter(|(bit, _)| effective >> bit & 1 == 0)
        .map(|(_, name)| *name)
        .collect()
}

/// Say what is missing before trying to load, in one clear line.
pub fn check_environment() -> Result<(), EbpfError> {
    if !object::is_built() {
        return Err(EbpfError::NotBuilt);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !has_capabilities(&status) {
        return Err(EbpfError::NotPrivileged);
    }
    if !Path::new("/sys/kernel/tracing/events/syscalls").exists()
        && !Path::new("/sys/kernel/debug/tracing/events/syscalls").exists()
    {
        return Err(EbpfError::NoTracefs);
    }
    btf::Btf::from_sys()?;
    Ok(())
}

/// The loaded and attached programs. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
    ring: RingBuf<MapData>,
    selected: SelectedBits,
    /// The Go client's uprobes, when they could be loaded.
    go: Option<golang::GoProbes>,
}

/// The kernel's selected-process bitmap (`SELECTED`, one bit per tgid), mapped into this
/// process. Bits are flipped with atomic operations because the kernel sets bits in the same
/// words (port selection at accept).
struct SelectedBits {
    words: *mut AtomicU64,
    len: usize,
    /// Keeps the map alive while it is mapped.
    _map: MapData,
}

// SAFETY: the mapping is shared memory owned by this value and only accessed through atomics.
unsafe impl Send for SelectedBits {}

impl SelectedBits {
    fn map(map: MapData) -> Result<Self, EbpfError> {
        let len = agent_common::SELECTED_WORDS as usize;
        let bytes = len * std::mem::size_of::<u64>();
        // SAFETY: mapping a BPF_F_MMAPABLE array map of `len` u64 values, shared and writable;
        // the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(EbpfError::Map {
                map: "SELECTED",
                source: Box::new(aya::maps::MapError::IoError(std::io::Error::last_os_error())),
            });
        }
        Ok(Self {
            words: ptr.cast(),
            len,
            _map: map,
        })
    }

    fn word(&self, pid: u32) -> Option<&AtomicU64> {
        let i = (pid >> 6) as usize;
        // SAFETY: `i < len` words are mapped for as long as `self` lives.
        (i < self.len).then(|| unsafe { &*self.words.add(i) })
    }

    fn set(&self, pid: u32, on: bool) {
        if let Some(w) = self.word(pid) {
            let bit = 1u64 << (pid & 63);
            if on {
                w.fetch_or(bit, Ordering::Relaxed);
            } else {
                w.fetch_and(!bit, Ordering::Relaxed);
            }
        }
    }

    fn get(&self, pid: u32) -> bool {
        self.word(pid)
            .is_some_and(|w| w.load(Ordering::Relaxed) >> (pid & 63) & 1 != 0)
    }
}

impl Drop for SelectedBits {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map` mapped.
        unsafe {
            libc::munmap(self.words.cast(), self.len * std::mem::size_of::<u64>());
        }
    }
}

impl Probes {
    /// Load the embedded object with this kernel's offsets and attach every tracepoint.
    pub fn load(opts: &LoadOptions) -> Result<Self, EbpfError> {
        check_environment()?;
        let offsets = btf::Btf::from_sys()?.offsets()?;
        let ring_bytes = opts.ring_bytes.next_power_of_two().max(4096 * 16);
        let config = Config {
            mode: if opts.selected_only {
                agent_common::mode::SELECTED
            } else {
                agent_common::mode::ALL
            },
            self_pid: std::process::id(),
            copy_len: opts.copy_len.clamp(64, agent_common::MAX_DATA as u32),
            wakeup_bytes: ring_bytes / 2,
            offsets_ok: 1,
            capture_client: u32::from(opts.capture_client),
            capture_server: u32::from(opts.capture_server),
            port_select: u32::from(opts.selected_only && !opts.ports.is_empty()),
            exec_notify: u32::from(opts.selected_only && opts.exec_notify),
            offsets,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", ring_bytes)
            .load(object::OBJECT)
            .map_err(|e| EbpfError::Load(Box::new(e)))?;
        for (category, name) in TRACEPOINTS {
            let program = ebpf
                .program_mut(name)
                .ok_or_else(|| EbpfError::MissingProgram {
                    program: (*name).to_owned(),
                })?;
            let tp: &mut TracePoint = program.try_into().map_err(|e| EbpfError::Program {
                program: (*name).to_owned(),
                source: Box::new(e),
            })?;
            tp.load().map_err(|e| EbpfError::Program {
                program: (*name).to_owned(),
                source: Box::new(e),
            })?;
            tp.attach(category, name).map_err(|e| EbpfError::Program {
                program: (*name).to_owned(),
                source: Box::new(e),
            })?;
        }
        let ring = RingBuf::try_from(
            ebpf.take_map("EVENTS")
                .ok_or(EbpfError::MissingMap { map: "EVENTS" })?,
        )
        .map_err(|e| EbpfError::Map {
            map: "EVENTS",
            source: Box::new(e),
        })?;
        let selected = match ebpf.take_map("SELECTED") {
            Some(aya::maps::Map::Array(map)) => SelectedBits::map(map)?,
            _ => return Err(EbpfError::MissingMap { map: "SELECTED" }),
        };
        let mut ports: BpfHashMap<MapData, u16, u8> = BpfHashMap::try_from(
            ebpf.take_map("PORTS")
                .ok_or(EbpfError::MissingMap { map: "PORTS" })?,
        )
        .map_err(|e| EbpfError::Map {
            map: "PORTS",
            source: Box::new(e),
        })?;
        for port in &opts.ports {
            ports.insert(port, 1, 0).map_err(|e| EbpfError::Map {
                map: "PORTS",
                source: Box::new(e),
            })?;
        }
        // Uprobes help linking in Go programs; capture works without them.
        let go = if opts.go_probes {
            golang::GoProbes::load(&mut ebpf)
                .inspect_err(|e| tracing::warn!("Go client probes unavailable: {e}"))
                .ok()
        } else {
            None
        };
        Ok(Self {
            ebpf,
            ring,
            selected,
            go,
        })
    }

    /// Attaches the Go client's uprobes to the executable process `pid` runs, when it is a
    /// Go program with net/http's client not looked at before.
    pub fn watch_go(&mut self, pid: u32) -> Result<golang::Watch, String> {
        match &mut self.go {
            Some(go) => go.watch(&mut self.ebpf, pid),
            None => Ok(golang::Watch::NotGo),
        }
    }

    /// Call `f` on every record waiting in the ring buffer; returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Wait until the kernel wakes us (the buffer is half full) or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let mut fds = libc::pollfd {
            fd: self.ring.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe {
            libc::poll(&mut fds, 1, ms);
        }
    }

    /// Replace the set of selected pids (mode SELECTED).
    pub fn set_pids(&mut self, add: &[u32], remove: &[u32]) {
        for &pid in remove {
            self.selected.set(pid, false);
        }
        for &pid in add {
            self.selected.set(pid, true);
        }
    }

    /// Whether the kernel currently traces `pid` (mode SELECTED).
    pub fn is_selected(&self, pid: u32) -> bool {
        self.selected.get(pid)
    }

    /// Kernel counters summed over CPUs: (records lost because the ring was full, submitted).
    pub fn counters(&self) -> (u64, u64) {
        let Some(map) = self.ebpf.map("COUNTERS") else {
            return (0, 0);
        };
        let Ok(arr) = PerCpuArray::<&MapData, u64>::try_from(map) else {
            return (0, 0);
        };
        let sum = |i: u32| arr.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
        (sum(counter::RINGBUF_FULL), sum(counter::SUBMITTED))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    #[rstest]
    #[case::root("CapEff:\t000001ffffffffff\n", true)]
    #[case::exactly_the_three("CapEff:\t000000c000000004\n", true)]
    #[case::no_dac_read_search("CapEff:\t000000c000000000\n", false)]
    #[case::unprivileged("CapEff:\t0000000000000000\n", false)]
    #[case::unreadable("", false)]
    fn capability_check(#[case] status: &str, #[case] ok: bool) {
        assert_eq!(super::has_capabilities(status), ok);
    }
}
