//! The agent job's loop: drain the ring buffer, decode records, track connections into
//! `HttpSpan`s, attach each process's resource, link spans into traces (`link`), and hand
//! batches to a sink that never blocks (OTLP exporter, in-process store, or stdout). Runs on
//! its own thread so that nothing can slow the ring-buffer reader down; everything after it is
//! a bounded queue that drops and counts.
use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    conn::{Tracker, TrackerConfig},
    ebpf::{
        LoadOptions, Probes,
        decode::{self, Clock, decode},
        record::Record,
        select::Selection,
    },
    link::{LinkConfig, Linker},
    span::{
        HttpSpan,
        resource::{ProcessResource, ResourceCache, alive::Assembler},
    },
};

/// Command names remembered at most (a bound, not a target: cleared when reached).
const MAX_NAMES: usize = 65_536;
/// Spans are handed to the sink when this many are waiting, or `SEND_INTERVAL` after the last
/// hand-over (the OTLP exporter batches again on its own schedule).
const SEND_BATCH: usize = 1024;
const SEND_INTERVAL: Duration = Duration::from_millis(100);

/// Where finished spans go. `send` must never block.
pub trait SpanSink: Send {
    fn send(&mut self, batch: Vec<(Arc<ProcessResource>, HttpSpan)>);
    /// Exchanges the connection tracker dropped without a span (records lost, no response,
    /// eviction), per process: the loss next to the RED numbers.
    fn skipped(&mut self, _by_process: Vec<(Arc<ProcessResource>, u64)>) {}
    /// Called once when the agent stops: flush what is queued.
    fn finish(&mut self) {}
}

/// What the loop needs to know.
pub struct PipelineConfig {
    pub load: LoadOptions,
    pub selection: Selection,
    pub tracker: TrackerConfig,
    pub link: LinkConfig,
    /// How long the reader sleeps between drains when the kernel does not wake it.
    pub drain_interval: Duration,
    pub host_name: String,
    /// This node's pods, for the Kubernetes metadata of resources.
    pub pods: Option<crate::k8s::Pods>,
}

/// Counters of the loop itself, readable from other threads.
#[derive(Debug, Default)]
pub struct PipelineStats {
    pub records: AtomicU64,
    /// Bytes the records took in the ring buffer (with the ring's 8-byte record header and
    /// padding): its volume per request is what decides when it overflows.
    pub ring_bytes: AtomicU64,
    pub decode_errors: AtomicU64,
    pub spans: AtomicU64,
    pub kernel_lost: AtomicU64,
    /// The connection tracker's counters, copied at each sweep.
    pub conn: std::sync::Mutex<crate::conn::Stats>,
    /// The linking stage's counters, copied at each sweep.
    pub link: std::sync::Mutex<crate::link::Stats>,
}

/// Load the probes (on the caller's thread, so that a failure is reported before anything
/// else starts) and run the loop on a new thread until `stop` is set.
pub fn start(
    cfg: PipelineConfig,
    mut sink: Box<dyn SpanSink>,
    stop: Arc<AtomicBool>,
) -> Result<(std::thread::JoinHandle<()>, Arc<PipelineStats>), crate::ebpf::EbpfError> {
    let mut probes = Probes::load(&cfg.load)?;
    // Loading parsed the kernel's BTF (several MiB, now freed): hand those pages back, or
    // they stay in the agent's resident set for its whole life.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
    // Select before reporting ready, so nothing a selected process does from now on is missed.
    let selected = if cfg.selection.is_all() {
        HashSet::new()
    } else {
        let now = cfg.selection.resolve(Path::new("/proc"), true);
        probes.set_pids(&now.iter().copied().collect::<Vec<_>>(), &[]);
        now
    };
    // Go programs already running get the client uprobes before their next request.
    for pid in crate::ebpf::select::running_pids(Path::new("/proc")) {
        if cfg.selection.is_all() || selected.contains(&pid) {
            watch_go(&mut probes, pid);
        }
    }
    let stats = Arc::new(PipelineStats::default());
    let thread_stats = stats.clone();
    let handle = std::thread::Builder::new()
        .name("sonde-capture".into())
        .spawn(move || {
            raise_priority();
            run(
                &mut probes,
                &cfg,
                selected,
                sink.as_mut(),
                &stop,
                &thread_stats,
            );
            sink.finish();
        })
        .map_err(crate::ebpf::EbpfError::Thread)?;
    Ok((handle, stats))
}

fn run(
    probes: &mut Probes,
    cfg: &PipelineConfig,
    mut selected: HashSet<u32>,
    sink: &mut dyn SpanSink,
    stop: &AtomicBool,
    stats: &PipelineStats,
) {
    let clock = Clock::now();
    let mut tracker = Tracker::new(cfg.tracker.clone());
    let mut linker: Linker<Arc<ProcessResource>> = Linker::new(cfg.link.clone());
    let mut resources = ResourceCache::new(cfg.host_name.clone(), 4096);
    if let Some(pods) = &cfg.pods {
        resources = resources.with_pods(pods.clone());
    }
    let mut spans: Vec<HttpSpan> = Vec::with_capacity(256);
    let mut exited: Vec<u32> = Vec::new();
    // Processes seen opening their first connection: Go programs among them get the client
    // uprobes that let the linker follow goroutines.
    let mut new_processes: Vec<u32> = Vec::new();
    // Processes the kernel selected provisionally at exec whose program does not match
    // (selection by executable path), with when that was found: their records are dropped
    // until the kernel has surely stopped sending them.
    let mut rejected: HashMap<u32, Instant> = HashMap::new();
    let mut unselect: Vec<u32> = Vec::new();
    // Command names from the kernel, for processes that exit before /proc can be read.
    let mut names: HashMap<u32, String> = HashMap::new();
    // Naming facts the kernel sends at a process's first connection, being assembled.
    let mut naming = Assembler::new(1024);
    let mut last_sweep = Instant::now();
    let mut last_select = Instant::now();
    // Finished spans with their resources (taken while the process surely still had one),
    // waiting to be handed to the sink.
    let mut pending: Vec<(Arc<ProcessResource>, HttpSpan)> = Vec::with_capacity(SEND_BATCH);
    let mut last_send = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if cfg.selection.needs_rescan() && last_select.elapsed() >= Duration::from_secs(1) {
            let mut now = cfg.selection.resolve(Path::new("/proc"), false);
            // Keep what was selected before (start-up port lookup included); exits remove
            // pids below.
            now.extend(selected.iter().copied());
            let add: Vec<u32> = now.difference(&selected).copied().collect();
            let remove: Vec<u32> = selected.difference(&now).copied().collect();
            if !add.is_empty() || !remove.is_empty() {
                tracing::debug!(?add, ?remove, "selected processes changed");
            }
            probes.set_pids(&add, &remove);
            for pid in &add {
                rejected.remove(pid);
            }
            selected = now;
            last_select = Instant::now();
        }
        // A plain sleep, not poll(2): the ring buffer's fd is readable whenever it holds any
        // record, so polling it under load turns into a busy loop that wakes this thread for
        // every few records and competes with the traced processes for the CPU. The ring
        // holds far more than one interval's worth of records.
        std::thread::sleep(cfg.drain_interval);
        let drained_at = Instant::now();
        let mut ring_bytes = 0u64;
        let n = probes.drain(|raw| {
            ring_bytes += ring_footprint(raw.len());
            match decode(raw, clock) {
                Ok(rec) => {
                    // A program started after the agent: the kernel traces it from its exec on;
                    // keep it if it matches, else drop what it sent and unselect it. (A process
                    // dropped before is judged afresh: it runs another program now.)
                    match &rec {
                        Record::Exec { pid, path } => {
                            rejected.remove(pid);
                            if !selected.contains(pid)
                                && !cfg.selection.exe_matches(Path::new("/proc"), *pid, path)
                            {
                                rejected.insert(*pid, drained_at);
                                unselect.push(*pid);
                                return;
                            }
                            if selected.insert(*pid) {
                                tracing::debug!(pid, "selected at exec");
                            }
                        }
                        _ if !rejected.is_empty() && rejected.contains_key(&rec.pid()) => return,
                        _ => {}
                    }
                    // The kernel describes a process right after its first connection's record; its
                    // resource is built again from that (/proc may be gone).
                    match &rec {
                        Record::ExeName { pid, name } => naming.exe_name(*pid, name),
                        Record::Environ {
                            pid,
                            offset,
                            total,
                            bytes,
                        } => {
                            if let Some(facts) =
                                naming.environ(*pid, *offset as usize, *total as usize, bytes)
                            {
                                resources.remember(*pid, facts);
                            }
                        }
                        _ => {}
                    }
                    if let Record::Go { pid, call } = rec {
                        linker.go_step(pid, call);
                        return;
                    }
                    if let Record::Open { key, .. } = &rec {
                        if !names.contains_key(&key.pid) {
                            new_processes.push(key.pid);
                            if names.len() >= MAX_NAMES {
                                names.clear();
                            }
                            if let Some(comm) = decode::comm(raw) {
                                names.insert(key.pid, comm);
                            }
                        }
                        // Read the process's resource while it is surely alive.
                        resources.get_named(key.pid, names.get(&key.pid).map(String::as_str));
                    }
                    tracing::trace!(?rec, "record");
                    if let Record::ProcessExit { pid, .. } = rec {
                        exited.push(pid);
                    }
                    tracker.push(rec, &mut spans);
                }
                Err(_) => {
                    stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        for pid in new_processes.drain(..) {
            watch_go(probes, pid);
        }
        stats.records.fetch_add(n as u64, Ordering::Relaxed);
        stats.ring_bytes.fetch_add(ring_bytes, Ordering::Relaxed);
        if last_sweep.elapsed() >= Duration::from_millis(500) {
            tracker.sweep(clock.to_unix(monotonic_ns()), &mut spans);
            let skipped = tracker.take_skipped();
            if !skipped.is_empty() {
                sink.skipped(
                    skipped
                        .into_iter()
                        .map(|(pid, n)| {
                            let name = names.get(&pid).map(String::as_str);
                            (resources.get_named(pid, name), n)
                        })
                        .collect(),
                );
            }
            // Records a rejected process wrote before its bit was cleared are all drained a
            // drain interval later; a second is ample.
            rejected.retain(|_, at| at.elapsed() < Duration::from_secs(1));
            stats
                .kernel_lost
                .store(probes.counters().0, Ordering::Relaxed);
            if let Ok(mut c) = stats.conn.lock() {
                c.clone_from(tracker.stats());
            }
            if let Ok(mut l) = stats.link.lock() {
                l.clone_from(linker.stats());
            }
            last_sweep = Instant::now();
        }
        // Spans wait in the linker for their partners (at most the link window), with their
        // resource taken now.
        let now = clock.to_unix(monotonic_ns());
        if !spans.is_empty() {
            stats.spans.fetch_add(spans.len() as u64, Ordering::Relaxed);
            for s in spans.drain(..) {
                let resource = resources.get_named(s.pid, names.get(&s.pid).map(String::as_str));
                linker.push(now, resource, s);
            }
        }
        linker.poll(now, &mut pending);
        // Hand spans over in batches, not at every drain: each hand-over wakes the sink's
        // thread (the exporter's or the store's).
        if !pending.is_empty()
            && (pending.len() >= SEND_BATCH || last_send.elapsed() >= SEND_INTERVAL)
        {
            sink.send(std::mem::replace(
                &mut pending,
                Vec::with_capacity(SEND_BATCH),
            ));
            last_send = Instant::now();
        }
        if !unselect.is_empty() {
            probes.set_pids(&[], &unselect);
            // A process that ran another program between the check and the unselect (a shell
            // that execs its last command) gets no exec record: its bit was still set. Look
            // once more, now that a later exec would be reported.
            let now_matching: Vec<u32> = unselect
                .drain(..)
                .filter(|&pid| cfg.selection.exe_matches(Path::new("/proc"), pid, b""))
                .collect();
            if !now_matching.is_empty() {
                tracing::debug!(?now_matching, "selected after a second exec");
                probes.set_pids(&now_matching, &[]);
                for pid in now_matching {
                    rejected.remove(&pid);
                    selected.insert(pid);
                }
            }
        }
        // Forget a process only after its last spans took its resource.
        if !exited.is_empty() && !cfg.selection.is_all() {
            probes.set_pids(&[], &exited);
            for pid in &exited {
                selected.remove(pid);
            }
        }
        for pid in exited.drain(..) {
            resources.forget(pid);
            linker.forget_process(pid);
            names.remove(&pid);
        }
    }
    // Final drain so that nothing already captured is lost on a clean stop.
    probes.drain(|raw| {
        if let Ok(rec) = decode(raw, clock) {
            tracker.push(rec, &mut spans);
        }
    });
    let now = clock.to_unix(monotonic_ns());
    for s in spans.drain(..) {
        linker.push(now, resources.get(s.pid), s);
    }
    linker.flush(&mut pending);
    if !pending.is_empty() {
        sink.send(pending);
    }
}

/// Attaches the Go client's uprobes to what `pid` runs, when it is a Go program not seen yet.
fn watch_go(probes: &mut Probes, pid: u32) {
    match probes.watch_go(pid) {
        Ok(crate::ebpf::golang::Watch::Attached) => {
            tracing::info!(pid, "Go client probes attached to the process's executable");
        }
        Ok(crate::ebpf::golang::Watch::Refused(why)) => {
            tracing::warn!("Go client probes off: {why}");
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(pid, "Go client probes not attached: {e}"),
    }
}

/// Bytes a record of `len` bytes takes in a BPF ring buffer: an 8-byte header, and the
/// whole rounded up to 8.
fn ring_footprint(len: usize) -> u64 {
    (len as u64 + 8).next_multiple_of(8)
}

/// Nice value of the ring reader: under saturating load every CPU is busy with the traced
/// processes, and a reader that waits its turn lets the ring overflow. It sleeps between
/// drains, so its priority costs the others only the work it has to do anyway.
const READER_NICE: i32 = -10;

/// Give the calling thread (the ring reader) `READER_NICE`; without the right to
/// (CAP_SYS_NICE) it keeps its priority, and says so once.
fn raise_priority() {
    // SAFETY: gettid and setpriority on the calling thread have no preconditions.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, READER_NICE)
    };
    if rc != 0 {
        tracing::info!(
            error = %std::io::Error::last_os_error(),
            "the ring reader keeps its default priority"
        );
    }
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}
