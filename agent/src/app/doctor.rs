//! `sonde doctor`: can Sonde run here, and what will it see? A pass/warn/fail list with the fix
//! for each failure: kernel, BTF, tracefs, capabilities, the eBPF object, which hook types the
//! kernel offers, the OTLP endpoint (reachable and answering OTLP), the store's data directory
//! and ports; then, per process listening on TCP, what Sonde will see of it. Exits 1 when
//! something blocks capture (the agent would refuse to start), else 0.
use std::{
    fmt::Write as _,
    net::TcpListener,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::Args;

use crate::{config::Config, ebpf, export::client::Payload};

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Config file to check against (endpoint, data directory, ports) [env: SONDE_CONFIG=]
    #[arg(long, env = "SONDE_CONFIG")]
    pub config: Option<PathBuf>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Sonde runs, but something will be missing or worse.
    Warn,
    /// Capture cannot start.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or a failure.
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn not_ok(name: &'static str, status: Status, detail: impl Into<String>, fix: &str) -> Self {
        Self {
            name,
            status,
            detail: detail.into(),
            fix: Some(fix.to_owned()),
        }
    }
}

pub fn run_doctor(args: DoctorArgs) -> ExitCode {
    let cfg = match Config::load(args.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("sonde: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    let mut checks = host_checks(Path::new("/sys/kernel/tracing"));
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    checks.push(go_probes_check(cfg.agent.go_probes, &status));
    checks.push(endpoint_check(&cfg));
    checks.push(data_dir_check(&cfg.store.data_dir));
    checks.extend(port_checks(&cfg));
    print!("{}", render(&checks));
    print!(
        "{}",
        render_processes(&listening_processes(Path::new("/proc")))
    );
    if checks.iter().any(|c| c.status == Status::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Kernel, BTF, tracefs, capabilities, the eBPF object and hook types.
fn host_checks(tracefs: &Path) -> Vec<Check> {
    let mut out = Vec::new();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    out.push(match kernel_version(release) {
        Some(v) if v >= (5, 8) => Check::pass("kernel", release),
        _ => Check::not_ok(
            "kernel",
            Status::Fail,
            format!("{release}: ring buffers and CAP_BPF need 5.8 or later"),
            "run Sonde on a kernel 5.8 or later",
        ),
    });
    out.push(match ebpf::btf::Btf::from_sys().and_then(|b| b.offsets()) {
        Ok(_) => Check::pass(
            "BTF",
            "/sys/kernel/btf/vmlinux has every struct offset needed",
        ),
        Err(e) => Check::not_ok(
            "BTF",
            Status::Fail,
            e.to_string(),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions' are)",
        ),
    });
    out.push(if tracefs.join("events/syscalls").exists() {
        Check::pass("tracefs", tracefs.display().to_string())
    } else {
        Check::not_ok(
            "tracefs",
            Status::Fail,
            format!("{} has no events/syscalls", tracefs.display()),
            "mount -t tracefs nodev /sys/kernel/tracing",
        )
    });
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    out.push(if ebpf::has_capabilities(&status) {
        Check::pass(
            "capabilities",
            "CAP_BPF, CAP_PERFMON and CAP_DAC_READ_SEARCH",
        )
    } else {
        Check::not_ok(
            "capabilities",
            Status::Fail,
            "missing CAP_BPF, CAP_PERFMON or CAP_DAC_READ_SEARCH",
            "run as root, or grant exactly these three (deploy/systemd/sonde.service does)",
        )
    });
    out.push(if ebpf::object::is_built() {
        Check::pass("eBPF object", "built into this binary")
    } else {
        Check::not_ok(
            "eBPF object",
            Status::Fail,
            "this sonde was built without it (AYA_BUILD_SKIP=1)",
            "cargo xtask setup && cargo build --release -p sonde",
        )
    });
    out.extend(hook_checks(tracefs));
    out
}

/// Which hook types the kernel offers, as tracefs shows them. Sonde needs tracepoints only;
/// kprobes and uprobes are reported for what later capture (TLS libraries) will need.
fn hook_checks(tracefs: &Path) -> Vec<Check> {
    let has = |p: &str| tracefs.join(p).exists();
    let mut out = vec![if has("events/syscalls/sys_exit_read")
        && has("events/sock/inet_sock_set_state")
    {
        Check::pass("tracepoints", "syscalls, sock and sched: all Sonde uses")
    } else {
        Check::not_ok(
            "tracepoints",
            Status::Fail,
            "syscall or sock tracepoints missing",
            "use a kernel with CONFIG_FTRACE_SYSCALLS=y",
        )
    }];
    for (name, file, what) in [
        ("kprobes", "kprobe_events", "not used by Sonde"),
        (
            "uprobes",
            "uprobe_events",
            "the Go client probes; later, TLS libraries' plaintext",
        ),
    ] {
        out.push(if has(file) {
            Check::pass(name, format!("offered ({what})"))
        } else {
            Check::not_ok(
                name,
                Status::Warn,
                format!("not offered by this kernel ({what})"),
                "nothing to do for plaintext HTTP capture",
            )
        });
    }
    out
}

/// Whether the Go client uprobes can be attached with the capabilities this process holds
/// (`status`: a `/proc/<pid>/status` text). Without them the agent captures as well, but
/// links Go programs' client calls without the goroutine.
fn go_probes_check(enabled: bool, status: &str) -> Check {
    if !enabled {
        return Check::pass("Go client probes", "off (agent.go_probes: false)");
    }
    let missing = ebpf::missing_go_probe_capabilities(status);
    if missing.is_empty() {
        return Check::pass("Go client probes", "CAP_SYS_ADMIN and CAP_SYS_PTRACE held");
    }
    Check::not_ok(
        "Go client probes",
        Status::Warn,
        format!(
            "missing {}: the kernel refuses the uprobes (CAP_SYS_ADMIN) or another user's \
             executable (CAP_SYS_PTRACE), so Go client calls are not joined by goroutine",
            missing.join(" and ")
        ),
        "run as root, or add CAP_SYS_ADMIN and CAP_SYS_PTRACE (Helm: agent.goProbes: true)",
    )
}

/// `6.18.0-foo` → (6, 18).
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The OTLP endpoint the agent exports to: an empty export request must be accepted.
fn endpoint_check(cfg: &Config) -> Check {
    let export = &cfg.agent.export;
    let mut export = export.clone();
    if let Err(e) = export.apply_env(&|k| std::env::var(k).ok()) {
        return Check::not_ok(
            "OTLP endpoint",
            Status::Fail,
            e.to_string(),
            "fix the OTEL_EXPORTER_OTLP_* variables",
        );
    }
    export.timeout = export.timeout.min(Duration::from_secs(3));
    let url = export.traces_url();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                // The gRPC client needs the runtime from its creation on.
                let transport =
                    crate::export::client::transport_for(&export).map_err(|e| e.to_string())?;
                let empty =
                    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
                        resource_spans: Vec::new(),
                    };
                transport
                    .send(Payload::Proto(empty))
                    .await
                    .map_err(|e| e.to_string())
            })
        });
    match result {
        Ok(_) => Check::pass(
            "OTLP endpoint",
            format!("{url} answers OTLP ({:?})", export.protocol),
        ),
        Err(e) => Check::not_ok(
            "OTLP endpoint",
            Status::Warn,
            e,
            "start the store (`sonde all`) or point OTEL_EXPORTER_OTLP_ENDPOINT at a Tempo; \
             until then spans are dropped (counted), the traced processes are never slowed",
        ),
    }
}

/// The store's data directory: writable, with room.
fn data_dir_check(dir: &Path) -> Check {
    // The directory itself may not exist yet: judge the nearest one that does.
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let probe = existing.join(format!(".sonde-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"") {
        return Check::not_ok(
            "store data dir",
            Status::Warn,
            format!("{} is not writable: {e}", existing.display()),
            "set store.data_dir (or --data-dir) to a writable directory",
        );
    }
    let _ = std::fs::remove_file(&probe);
    match free_bytes(existing) {
        Some(free) if free < 1 << 30 => Check::not_ok(
            "store data dir",
            Status::Warn,
            format!("{}: {} MiB free", dir.display(), free >> 20),
            "give the store at least 1 GiB (it refuses writes, answering 503, when the disk is full)",
        ),
        free => Check::pass(
            "store data dir",
            format!(
                "{} writable, {} free",
                dir.display(),
                free.map_or("? ".into(), |f| format!("{} GiB", f >> 30))
            ),
        ),
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the struct we own; `c` is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(c.as_ptr(), &mut st) == 0).then(|| st.f_bavail * st.f_frsize)
    }
}

/// The addresses `sonde all` listens on: free, or taken (by another Sonde, or anything else).
fn port_checks(cfg: &Config) -> Vec<Check> {
    let mut addrs = vec![
        (
            "store HTTP (Tempo API)",
            cfg.store.http_listen_address.as_str(),
        ),
        (
            "store OTLP gRPC",
            cfg.store.otlp_grpc_listen_address.as_str(),
        ),
        (
            "store OTLP HTTP",
            cfg.store.otlp_http_listen_address.as_str(),
        ),
    ];
    if !cfg.agent.metrics_listen_address.is_empty() {
        addrs.push(("agent /metrics", cfg.agent.metrics_listen_address.as_str()));
    }
    addrs
        .into_iter()
        .map(|(what, addr)| match TcpListener::bind(addr) {
            Ok(_) => Check::pass("port", format!("{addr} free ({what})")),
            Err(e) => Check::not_ok(
                "port",
                Status::Warn,
                format!("{addr} ({what}): {e}"),
                "stop what holds it (another sonde?) or set another address in the config",
            ),
        })
        .collect()
}

/// The report, a line per check and its fix under it.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let tag = match c.status {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {:<15} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(out, "      fix: {fix}");
        }
    }
    out
}

/// A process listening on TCP, and what Sonde will see of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub pid: u32,
    pub comm: String,
    pub ports: Vec<u16>,
    /// A TLS library is mapped (its traffic may be encrypted: Sonde reads plaintext only).
    pub tls_library: Option<String>,
    /// The executable looks like a Go binary (Go's own TLS and HTTP/2).
    pub go: bool,
    /// A Go binary whose HTTP client the agent's uprobes find (its symbol table is there):
    /// its client calls join the request of the goroutine that made them.
    pub go_client_probes: bool,
}

/// Processes with listening TCP sockets, from /proc: the sockets' inodes in
/// /proc/net/tcp{,6} (state 0A), matched with each process's fds.
fn listening_processes(proc_root: &Path) -> Vec<Listener> {
    use crate::ebpf::select::{listeners, socket_inodes};
    let mut inodes: std::collections::HashMap<u64, u16> = std::collections::HashMap::new();
    for table in ["net/tcp", "net/tcp6"] {
        let text = std::fs::read_to_string(proc_root.join(table)).unwrap_or_default();
        inodes.extend(listeners(&text));
    }
    let mut out = Vec::new();
    for pid in crate::ebpf::select::running_pids(proc_root) {
        let dir = proc_root.join(pid.to_string());
        let mut ports: Vec<u16> = socket_inodes(&dir)
            .filter_map(|inode| inodes.get(&inode).copied())
            .collect();
        if ports.is_empty() {
            continue;
        }
        ports.sort_unstable();
        ports.dedup();
        let maps = std::fs::read_to_string(dir.join("maps")).unwrap_or_default();
        let exe = std::fs::read(dir.join("exe")).unwrap_or_default();
        out.push(Listener {
            pid,
            comm: std::fs::read_to_string(dir.join("comm"))
                .unwrap_or_default()
                .trim()
                .to_owned(),
            ports,
            tls_library: tls_library(&maps),
            go: is_go(&exe),
            go_client_probes: matches!(
                crate::ebpf::golang::client_offsets(exe.as_slice()),
                Ok(Some(_))
            ),
        });
    }
    out.sort_by_key(|l| l.pid);
    out
}

/// The TLS library a process has mapped, if any.
fn tls_library(maps: &str) -> Option<String> {
    [
        "libssl.so",
        "libgnutls.so",
        "libnss3.so",
        "libboringssl",
        "libwolfssl.so",
    ]
    .into_iter()
    .find(|lib| maps.contains(lib))
    .map(|lib| lib.trim_end_matches(".so").to_owned())
}

/// Go binaries carry a build-info section with this marker.
fn is_go(exe: &[u8]) -> bool {
    exe.windows(14).any(|w| w == b"\xff Go buildinf:")
}

/// Per listening process, what Sonde will see.
pub fn render_processes(listeners: &[Listener]) -> String {
    let mut out = String::from("\nListening processes and what Sonde will see of them:\n");
    if listeners.is_empty() {
        out.push_str("  (none found; run as root to see every process)\n");
    }
    for l in listeners {
        let ports: Vec<String> = l.ports.iter().map(u16::to_string).collect();
        let seen = match (&l.tls_library, l.go) {
            (Some(lib), _) => format!(
                "plaintext HTTP/1.x; TLS through {lib} is not readable yet (encrypted bytes are \
                 skipped, counted as non-HTTP)"
            ),
            (None, true) => format!(
                "plaintext HTTP/1.x; {}; Go's own TLS and HTTP/2 are not readable yet",
                if l.go_client_probes {
                    "client calls join their request through goroutine uprobes"
                } else {
                    "no symbol table (built with -s): client calls are not linked to requests"
                }
            ),
            (None, false) => "plaintext HTTP/1.x; HTTP/2 (h2c) is skipped, counted".to_owned(),
        };
        let _ = writeln!(
            out,
            "  {:>7} {:<15} port {}: {seen}",
            l.pid,
            l.comm,
            ports.join(",")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case("6.18.0-firecracker", Some((6, 18)))]
    #[case("5.4.0-150-generic", Some((5, 4)))]
    #[case("", None)]
    fn kernel_versions(#[case] release: &str, #[case] want: Option<(u32, u32)>) {
        assert_eq!(kernel_version(release), want);
    }

    /// CapEff of root (every capability), of the systemd unit's three (BPF, PERFMON,
    /// DAC_READ_SEARCH) and of those three with SYS_ADMIN but not SYS_PTRACE.
    #[rstest]
    #[case::root("000001ffffffffff", true, Status::Pass, None)]
    #[case::unit(
        "000000c000000004",
        true,
        Status::Warn,
        Some("CAP_SYS_ADMIN and CAP_SYS_PTRACE")
    )]
    #[case::no_ptrace(
        "000000c000200004",
        true,
        Status::Warn,
        Some("missing CAP_SYS_PTRACE:")
    )]
    #[case::off("000000c000000004", false, Status::Pass, None)]
    fn go_probes_need_sys_admin_and_sys_ptrace(
        #[case] cap_eff: &str,
        #[case] enabled: bool,
        #[case] want: Status,
        #[case] says: Option<&str>,
    ) {
        let status = format!("Name:\tsonde\nCapEff:\t{cap_eff}\n");
        let c = go_probes_check(enabled, &status);
        assert_eq!(c.status, want, "{}", c.detail);
        if let Some(s) = says {
            assert!(c.detail.contains(s), "{}", c.detail);
        }
    }

    #[test]
    fn listening_sockets_from_a_proc_net_tcp_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
           0: 0100007F:0C80 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
           1: 0100007F:D431 0100007F:0C80 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 20 4 30 10 -1\n";
        assert_eq!(crate::ebpf::select::listeners(table), vec![(4242, 3200)]);
    }

    #[test]
    fn a_missing_tracefs_fails_with_the_mount_command() {
        let dir = tempfile::tempdir().unwrap();
        let checks = host_checks(dir.path());
        let tracefs = checks.iter().find(|c| c.name == "tracefs").unwrap();
        assert_eq!(tracefs.status, Status::Fail);
        assert!(render(&checks).contains("fix: mount -t tracefs nodev /sys/kernel/tracing"));
    }

    #[test]
    fn tls_libraries_and_go_are_told_apart() {
        assert_eq!(
            tls_library("7f.. r-xp 0 08:01 1 /usr/lib/x86_64-linux-gnu/libssl.so.3\n").as_deref(),
            Some("libssl")
        );
        assert_eq!(tls_library("7f.. /usr/lib/libc.so.6\n"), None);
        assert!(is_go(b"....\xff Go buildinf:...."));
        let text = render_processes(&[Listener {
            pid: 7,
            comm: "nginx".into(),
            ports: vec![443, 80],
            tls_library: Some("libssl".into()),
            go: false,
            go_client_probes: false,
        }]);
        assert!(
            text.contains("nginx") && text.contains("libssl is not readable yet"),
            "{text}"
        );
    }

    #[test]
    fn a_data_dir_that_cannot_be_written_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let check = data_dir_check(&dir.path().join("store"));
        assert_eq!(check.status, Status::Pass, "{check:?}");
        let check = data_dir_check(Path::new("/proc/sys/sonde-store"));
        assert_eq!(check.status, Status::Warn, "{check:?}");
    }
}
