//! Helpers shared by the privileged end-to-end tests: skip logic, real servers and clients
//! started as child processes on 127.0.0.1, and free ports.
use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod agent;
pub mod deploy;
pub mod otlp;
pub mod prometheus;
pub mod servers;
pub mod tempo;

/// Why the kernel tests cannot run here, if they cannot.
pub fn kernel_unavailable() -> Option<String> {
    sonde::ebpf::check_environment()
        .err()
        .map(|e| e.to_string())
}

/// Skip the calling test (return) when the kernel part cannot run, printing why; with
/// `SONDE_REQUIRE_KERNEL=1` (set by CI) a skip is a failure instead.
#[macro_export]
macro_rules! require_kernel {
    () => {
        if let Some(why) = $crate::kernel_unavailable() {
            if std::env::var("SONDE_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
                panic!("kernel test cannot run and SONDE_REQUIRE_KERNEL=1: {why}");
            }
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (and reaped) on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    /// SIGTERM first (nginx stops its workers on it), SIGKILL after 3 s.
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Wait until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// `python3 -m http.server` serving `dir` on 127.0.0.1:`port`.
pub fn python_http_server(dir: &std::path::Path, port: u16) -> Proc {
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start python3 http.server");
    let p = Proc(child);
    wait_port(port);
    p
}

/// A Python server script (`python3 -c <script> <port>`) listening on 127.0.0.1:`port`.
pub fn python_server(script: &str, port: u16) -> Proc {
    let p = Proc(
        Command::new("python3")
            .args(["-c", script, &port.to_string()])
            .spawn()
            .expect("start a python server"),
    );
    wait_port(port);
    p
}

/// Run a Python client script (`python3 -c <script> <args…>`) that prints how many of its
/// requests failed; panics with its stderr unless that is 0.
pub fn python_client_without_failures(script: &str, args: &[String]) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run a python client");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the client saw failures: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run curl with `args`; returns (exit ok, stdout).
pub fn curl(args: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
