//! `#[repr(C)]` records shared by the kernel programs (agent-ebpf) and the agent (userspace).
//!
//! Every record is `Copy`, made of fixed-width integers and byte arrays with explicit padding,
//! and has a compile-time size assertion. `aya::Pod` is implemented behind the `user` feature.
#![no_std]

/// Largest number of payload bytes one record can carry (the runtime copy limit is ≤ this).
pub const MAX_DATA: usize = 4096;
/// Bytes copied from the end of a buffer, so userspace can see a chunked terminator.
pub const TAIL_LEN: usize = 16;
/// Default runtime copy limit (configurable down to 64 and up to `MAX_DATA`).
pub const DEFAULT_COPY_LEN: u32 = 4096;
/// Buffers up to this many bytes are copied whole (up to the copy limit), whatever they hold.
pub const SMALL_BUF: usize = 256;
/// Bytes copied of a larger buffer that does not start like an HTTP/1.x head (a request line
/// or a status line): a body, or another protocol. Its length and its last bytes are enough
/// to count a body and follow chunk framing; the ring's volume follows heads, not bodies.
pub const BODY_PREFIX: usize = 64;

/// What a record describes.
pub mod kind {
    /// Bytes the process read from a socket.
    pub const READ: u8 = 1;
    /// Bytes the process wrote to a socket.
    pub const WRITE: u8 = 2;
    /// A connection the process accepted (server side).
    pub const ACCEPT: u8 = 3;
    /// A connection the process opened (client side).
    pub const CONNECT: u8 = 4;
    /// The process closed a socket fd.
    pub const CLOSE: u8 = 5;
    /// The whole process exited.
    pub const EXIT: u8 = 6;
    /// A process not selected yet ran a new program (`Config::exec_notify`); the payload is
    /// the program's path as passed to exec. The kernel selected the process provisionally.
    pub const EXEC: u8 = 7;
    /// What names a process, sent at its first accept or connect since it started or ran a
    /// new program, so that a process gone before userspace reads /proc keeps its name:
    /// its executable's file name (payload, NUL-terminated) ...
    pub const PROC_EXE: u8 = 8;
    /// ... and its environment (NUL-separated `NAME=value`), in chunks of up to `MAX_DATA`
    /// bytes: `fd` is the chunk's offset and `len` the bytes sent in all (at most
    /// `ENV_MAX`). Userspace keeps only the `OTEL_*` naming variables.
    pub const PROC_ENV: u8 = 9;
    /// A Go program's HTTP client was given a request to send
    /// (`net/http.(*Transport).roundTrip`, a uprobe): `goroutine` is the caller's (the
    /// handler's, in a server), `sock_id` the request's `*http.Request` address.
    pub const GO_ROUND_TRIP: u8 = 10;
    /// A goroutine starts writing a Go request (`net/http.(*Request).write`): the pooled
    /// connection's writer goroutine, for the request at `sock_id`.
    pub const GO_WRITE_REQUEST: u8 = 11;
}

/// Most environment bytes sent for one process (`kind::PROC_ENV`).
pub const ENV_MAX: usize = 4 * MAX_DATA;

/// Bytes of the program path an exec record carries (longer paths are cut).
pub const EXEC_PATH: usize = 256;

/// Words of the selected-process bitmap: one bit per pid up to Linux's PID_MAX_LIMIT on 64-bit
/// (4,194,304).
pub const SELECTED_WORDS: u32 = 4_194_304 / 64;

/// Which syscall produced a data record (for diagnostics and the benchmark).
pub mod syscall {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const READV: u8 = 3;
    pub const WRITEV: u8 = 4;
    pub const RECVFROM: u8 = 5;
    pub const SENDTO: u8 = 6;
    pub const RECVMSG: u8 = 7;
    pub const SENDMSG: u8 = 8;
    pub const SENDFILE: u8 = 9;
    pub const ACCEPT: u8 = 10;
    pub const CONNECT: u8 = 11;
    pub const CLOSE: u8 = 12;
    pub const EXIT: u8 = 13;
    /// dup2 / dup3 (which close the fd they replace).
    pub const DUP: u8 = 14;
    pub const EXEC: u8 = 15;
}

/// A connection's addresses as the traced process sees them (local = its own end).
/// IPv4 addresses are stored as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
/// 8-byte aligned so that the kernel programs copy it in five word moves (the BPF target
/// copies a byte-aligned struct one byte at a time: 80 instructions per copy).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tuple {
    pub local_addr: [u8; 16],
    pub remote_addr: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// `AF_INET` (2), `AF_INET6` (10), or 0 when the fd was not an inet socket.
    pub family: u16,
    pub _pad: u16,
}
const _: () = assert!(core::mem::size_of::<Tuple>() == 40);

/// Fixed header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EventHeader {
    /// Kernel monotonic time (`bpf_ktime_get_ns`) at syscall entry.
    pub start_ns: u64,
    /// Kernel monotonic time at syscall exit.
    pub end_ns: u64,
    /// Address of the kernel `struct sock`: tells a reused fd from the old connection.
    pub sock_id: u64,
    /// Process id (tgid).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub fd: i32,
    /// Bytes the syscall moved (its return value), or 0 for non-data records.
    pub len: u32,
    /// Payload bytes copied into `data` (≤ copy limit).
    pub copied: u32,
    /// Bytes valid at the end of `tail` (the last bytes of the buffer, right-aligned), 0 when
    /// not taken. The bytes before them are not written.
    pub tail_len: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// One of [`syscall`].
    pub syscall: u8,
    pub tuple: Tuple,
    pub tail: [u8; TAIL_LEN],
    /// The task's command name (`comm`), NUL-padded, on accept/connect/close/exit records; zero
    /// when not known (softirq context), and not written at all on data records (whatever the
    /// ring held there). Names a process that exits before userspace can read /proc.
    pub comm: [u8; 16],
    /// How many records of this socket (as seen by this process) the kernel could not write
    /// because the ring was full, so far ([`SockInfo::lost`]). When it changes between two
    /// records of a connection, records between them are missing: userspace drops that
    /// connection's pending exchanges and resumes at the next head.
    pub sock_lost: u32,
    /// Records lost to a full ring on the whole host when this one was written (wrapping).
    /// A connection that ends without a record of its own end (its close or its process's
    /// exit was among the lost) is judged by this: when it moved since the connection's last
    /// record, what was in flight on it may have lost its answer.
    pub ring_lost: u32,
    /// The register in which Go code keeps its current goroutine (r14 on x86-64, x28 on
    /// arm64), as the call saved it: on data records and the `GO_*` records, which goroutine
    /// of a Go program made the call. Meaningless in any other program.
    pub goroutine: u64,
}

/// [`EventHeader::sock_lost`] of a close the kernel saw without the socket's entry.
pub const LOST_UNKNOWN: u32 = u32::MAX;
const _: () = assert!(core::mem::size_of::<EventHeader>() == 136);

/// One ring-buffer record: header plus a bounded prefix of the buffer.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Event {
    pub header: EventHeader,
    pub data: [u8; MAX_DATA],
}
const _: () = assert!(core::mem::size_of::<Event>() == 136 + MAX_DATA);

/// Selection modes written into [`Config::mode`].
pub mod mode {
    /// Trace every process except the excluded ones.
    pub const ALL: u32 = 0;
    /// Trace only pids set in the SELECTED bitmap (the agent sets them; so does the kernel
    /// for processes accepting on a port in the PORTS map).
    pub const SELECTED: u32 = 1;
}

/// Global configuration of the kernel programs, patched in with `override_global`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Config {
    /// One of [`mode`].
    pub mode: u32,
    /// The agent's own tgid: never traced.
    pub self_pid: u32,
    /// Payload bytes to copy per record (≤ `MAX_DATA`).
    pub copy_len: u32,
    /// Reserved (the reader drains on a timer and is never woken).
    pub wakeup_bytes: u32,
    /// Non-zero when the offsets below were read from BTF; 0 disables the fd walk.
    pub offsets_ok: u32,
    /// Capture client-side (connect) connections.
    pub capture_client: u32,
    /// Capture server-side (accept) connections.
    pub capture_server: u32,
    /// Non-zero when the PORTS map selects processes: a process that accepts a connection on
    /// one of those local ports is set in SELECTED by the kernel at that moment.
    pub port_select: u32,
    /// Non-zero when processes are selected by executable path: a process not selected yet is
    /// selected provisionally when it execs, and the exec is reported with the program's path,
    /// so the agent keeps a matching program from its first request and unselects the rest.
    pub exec_notify: u32,
    pub offsets: Offsets,
}
const _: () = assert!(core::mem::size_of::<Config>() == 36 + core::mem::size_of::<Offsets>());

/// Kernel struct offsets read from `/sys/kernel/btf/vmlinux` at start-up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Offsets {
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_inode: u32,
    pub file_private_data: u32,
    pub inode_mode: u32,
    pub socket_sk: u32,
    pub skc_daddr: u32,
    pub skc_rcv_saddr: u32,
    pub skc_dport: u32,
    pub skc_num: u32,
    pub skc_family: u32,
    pub skc_v6_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    /// `struct socket.type` (SOCK_STREAM = 1): only stream sockets are traced.
    pub socket_type: u32,
    /// What names a process (`kind::PROC_EXE`, `kind::PROC_ENV`): its environment
    /// (`task->mm->env_start..env_end`) and its executable's file name
    /// (`mm->exe_file->f_path.dentry->d_name.name`).
    pub task_mm: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    pub mm_exe_file: u32,
    pub file_f_path: u32,
    pub path_dentry: u32,
    pub dentry_d_name: u32,
    pub qstr_name: u32,
}
const _: () = assert!(core::mem::size_of::<Offsets>() == 96);

/// What the kernel remembers of a socket fd between syscalls, so that the next read or write
/// on it skips the fd-table walk (the entry leaves at close, dup2 or dup3 of the fd).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockInfo {
    /// The `struct file *` the fd held when this was recorded (for diagnostics).
    pub file: u64,
    /// The `struct sock *`.
    pub sk: u64,
    pub tuple: Tuple,
    /// Non-zero once the connection was seen closing (FIN_WAIT1, LAST_ACK or CLOSE): the fd
    /// may be gone without a close(2) (exec closing close-on-exec fds, process exit), so the
    /// next use of the fd number walks the fd table again instead of trusting this entry.
    pub closing: u32,
    /// Records of this socket lost to a full ring (see [`EventHeader::sock_lost`]).
    pub lost: u32,
}
const _: () = assert!(core::mem::size_of::<SockInfo>() == 64);

/// Counters kept in the kernel (a per-CPU array indexed by these).
pub mod counter {
    /// A record could not be reserved: the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// Reserved (records submitted are counted in userspace).
    pub const SUBMITTED: u32 = 1;
    /// Number of counters.
    pub const COUNT: u32 = 2;
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: all of these are `#[repr(C)]`, `Copy`, made only of integers and byte arrays with
    // explicit padding, so any bit pattern is valid.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Offsets {}
    unsafe impl aya::Pod for super::Tuple {}
    unsafe impl aya::Pod for super::SockInfo {}
}
