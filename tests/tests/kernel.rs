//! The kernel programs on the real kernel: they load, attach, and report what real processes
//! (python3 http.server, curl) read and write on their sockets, with the 4-tuple.
use std::time::{Duration, Instant};

use sonde::ebpf::{
    LoadOptions, Probes,
    decode::{Clock, decode},
    record::{Direction, Record, Role},
};
use sonde_e2e::{curl, free_port, python_http_server, require_kernel};

fn load() -> Probes {
    Probes::load(&LoadOptions {
        selected_only: false,
        copy_len: 4096,
        ring_bytes: 8 << 20,
        capture_server: true,
        capture_client: true,
        ports: vec![],
        exec_notify: false,
        go_probes: false,
    })
    .expect("load and attach")
}

fn collect(
    probes: &mut Probes,
    within: Duration,
    until: impl Fn(&[Record]) -> bool,
) -> Vec<Record<'static>> {
    let clock = Clock::now();
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        probes.wait(Duration::from_millis(20));
        probes.drain(|raw| out.push(decode(raw, clock).expect("decodes").into_owned()));
        if until(&out) {
            break;
        }
    }
    out
}

/// Run a python script with arguments; it must succeed.
fn run_python(script: &str, args: &[&std::ffi::OsStr]) {
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A regular file holding an HTTP request line for `path` (each test its own, so that tests
/// running side by side never see each other's reads); keep the directory alive.
fn file_that_looks_like_http(path: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("looks-like-http.txt");
    std::fs::write(&file, format!("GET {path} HTTP/1.1\r\n\r\n")).unwrap();
    (dir, file)
}

/// Whether some reported read carried `needle`.
fn read_contains(records: &[Record<'_>], needle: &[u8]) -> bool {
    records.iter().any(|r| {
        matches!(r, Record::Data(d)
            if d.direction == Direction::Read
                && d.bytes.windows(needle.len()).any(|w| w == needle))
    })
}

#[test]
fn captures_request_and_response_with_tuple_on_both_sides() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), "hello\n").unwrap();
    let port = free_port();
    let server = python_http_server(dir.path(), port);
    let mut probes = load();
    let (ok, body) = curl(&[&format!("http://127.0.0.1:{port}/hello.txt")]);
    assert!(ok && body == "hello\n");
    let server_pid = server.pid();
    let records = collect(&mut probes, Duration::from_secs(5), |recs| {
        recs.iter().any(|r| matches!(r, Record::Data(d) if d.key.pid == server_pid && d.direction == Direction::Write))
    });
    let server_read = records
        .iter()
        .find_map(|r| match r {
            Record::Data(d)
                if d.key.pid == server_pid
                    && d.direction == Direction::Read
                    && d.bytes.starts_with(b"GET /hello.txt") =>
            {
                Some(d)
            }
            _ => None,
        })
        .expect("server read of the request");
    assert_eq!(server_read.tuple.local.port(), port);
    assert!(server_read.tuple.remote.ip().is_loopback());
    assert!(server_read.end_unix_ns >= server_read.start_unix_ns);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(
        wall.abs_diff(server_read.end_unix_ns) < 10_000_000_000,
        "wall-clock conversion"
    );
    assert!(records.iter().any(
        |r| matches!(r, Record::Open { key, role: Role::Server, .. } if key.pid == server_pid)
    ));
    // curl's side: a client connect and its request write, to the server's port.
    assert!(records.iter().any(|r| matches!(r, Record::Open { role: Role::Client, tuple, .. } if tuple.remote.port() == port)));
    assert!(records.iter().any(|r| matches!(r, Record::Data(d) if d.direction == Direction::Write && d.tuple.remote.port() == port && d.bytes.starts_with(b"GET /hello.txt"))));
}

#[test]
fn files_and_pipes_are_not_reported() {
    require_kernel!();
    let mut probes = load();
    let out = std::process::Command::new("sh")
        .args(["-c", "cat /etc/hostname | wc -c > /dev/null"])
        .status()
        .unwrap();
    assert!(out.success());
    let records = collect(&mut probes, Duration::from_millis(500), |_| false);
    for r in &records {
        if let Record::Data(d) = r {
            assert!(
                d.tuple.local.port() != 0 || d.tuple.remote.port() != 0,
                "non-socket data: {d:?}"
            );
        }
    }
    let (lost, _) = probes.counters();
    assert_eq!(lost, 0);
}

/// A socket fd replaced by dup2 is forgotten: the kernel caches socket fds, and reads of the
/// file now behind that number must not be reported as the old connection's data.
#[test]
fn an_fd_replaced_by_dup2_is_no_longer_a_socket() {
    require_kernel!();
    let (_dir, file) = file_that_looks_like_http("/from-a-file-after-dup2");
    let mut probes = load();
    let script = r#"
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
cli.sendall(b"GET /over-the-socket HTTP/1.1\r\n\r\n"); conn.recv(100)
fd = conn.fileno()
f = os.open(sys.argv[1], os.O_RDONLY)
os.dup2(f, fd)
os.read(fd, 100)
os.lseek(fd, 0, 0); os.read(fd, 100)
print(fd, flush=True)
"#;
    run_python(script, &[file.as_os_str()]);
    let records = collect(&mut probes, Duration::from_millis(500), |_| false);
    assert!(
        read_contains(&records, b"/over-the-socket"),
        "the socket read is reported"
    );
    assert!(
        !read_contains(&records, b"/from-a-file-after-dup2"),
        "the file behind the reused fd is not"
    );
    // The dup2 ended the connection it replaced.
    assert!(records.iter().any(|r| matches!(r, Record::Close { .. })));
}

/// A socket fd closed by exec (close-on-exec) is forgotten too: the program exec'd in the same
/// process opens a file that gets the old socket's fd number, and its reads must not be
/// reported as the old connection's data.
#[test]
fn an_fd_closed_by_exec_is_no_longer_a_socket() {
    require_kernel!();
    let (_dir, file) = file_that_looks_like_http("/from-a-file-after-exec");
    let mut probes = load();
    // After the exec, open the file until it lands on the old socket's number (lower free
    // numbers are taken and kept open on the way).
    let execd = r#"
import os, sys
want = int(sys.argv[2])
held = []
while True:
    f = os.open(sys.argv[1], os.O_RDONLY)
    if f >= want:
        break
    held.append(f)
assert f == want, f"file got fd {f}, the socket had {want}"
os.read(f, 100)
os.lseek(f, 0, 0); os.read(f, 100)
"#;
    // Python sockets are close-on-exec: the exec closes the connection's fd.
    let script = r#"
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
cli = socket.create_connection(srv.getsockname()); conn, _ = srv.accept()
cli.sendall(b"GET /over-the-socket HTTP/1.1\r\n\r\n"); conn.recv(100)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2], sys.argv[1], str(conn.fileno())])
"#;
    run_python(script, &[file.as_os_str(), execd.as_ref()]);
    let records = collect(&mut probes, Duration::from_millis(500), |_| false);
    assert!(
        read_contains(&records, b"/over-the-socket"),
        "the socket read is reported"
    );
    assert!(
        !read_contains(&records, b"/from-a-file-after-exec"),
        "the file behind the fd number exec freed is not"
    );
}

/// A vectored read larger than the copy length still shows its last bytes (the end of a
/// chunked body) in the record's tail, with readv and recvmsg, also when the last iovec got
/// only a few of them.
#[rstest::rstest]
#[case::readv_last_iovec_full("readv", 3000)]
#[case::readv_three_bytes_in_the_last_iovec("readv", 6004)]
#[case::recvmsg_three_bytes_in_the_last_iovec("recvmsg", 6004)]
fn vectored_reads_carry_their_last_bytes(#[case] call: &str, #[case] first: usize) {
    require_kernel!();
    const SCRIPT: &str = r#"
import os, socket, sys, time
call, first, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = b"X" * (length - 7) + b"\r\n0\r\n\r\n"
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
cli = socket.create_connection(srv.getsockname())
conn, _ = srv.accept()
conn.sendall(payload)
time.sleep(0.2)
bufs = [bytearray(first), bytearray(8192)]
n = os.readv(cli.fileno(), bufs) if call == "readv" else cli.recvmsg_into(bufs)[0]
assert n == length, n
"#;
    // A length no other socket read of the machine is likely to have.
    let length = 6007;
    let mut probes = load();
    run_python(
        SCRIPT,
        &[
            call.as_ref(),
            first.to_string().as_ref(),
            length.to_string().as_ref(),
        ],
    );
    let is_it = |r: &Record<'_>| matches!(r, Record::Data(d) if d.direction == Direction::Read && d.len == length);
    let records = collect(&mut probes, Duration::from_secs(5), |recs| {
        recs.iter().any(is_it)
    });
    let Some(Record::Data(d)) = records.iter().find(|r| is_it(r)) else {
        panic!("no read of {length} bytes reported");
    };
    assert!(d.bytes.len() < length as usize, "the copy is a prefix");
    assert_eq!(d.tail, Some(*b"XXXXXXXXX\r\n0\r\n\r\n"));
}

/// The benchmark's reference tracer copies what the selected server reads, and nothing of
/// the client it did not select.
#[test]
fn reference_tracer_copies_the_selected_process_reads() {
    require_kernel!();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = python_http_server(dir.path(), port);
    let mut tracer = sonde::ebpf::reference::Reference::load(&[server.pid()]).expect("load");
    for _ in 0..3 {
        curl(&[&format!("http://127.0.0.1:{port}/reference-probe")]);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (mut requests, mut others) = (0, 0);
    tracer.drain(|raw| {
        let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        let data = &raw[24..24 + (word(2) as usize).min(1024)];
        if (word(0) >> 32) as u32 != server.pid() {
            others += 1;
        } else if data.starts_with(b"GET /reference-probe ") {
            requests += 1;
        }
    });
    assert_eq!(requests, 3, "one copied request read per curl");
    assert_eq!(others, 0, "records of processes not selected");
}

/// Without privileges the agent says in one line what is missing and exits non-zero.
#[test]
fn unprivileged_agent_fails_with_one_clear_line() {
    require_kernel!();
    let bin = sonde_e2e::agent::sonde_bin();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&bin)
        .args(["agent", "--no-export"])
        .output()
        .expect("run setpriv");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("needs root"), "{stderr}");
}
