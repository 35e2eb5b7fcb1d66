//! Records from the kernel, decoded into userspace form (wall-clock times, socket addresses).
//! A data record borrows its bytes from the ring buffer while it is processed
//! (`Record::into_owned` keeps one longer). This is the input of `conn`; tests build these by
//! hand.
use std::{borrow::Cow, net::SocketAddr};

/// Which side of the connection the traced process is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The process accepted the connection: it serves requests.
    Server,
    /// The process opened the connection: it makes requests.
    Client,
}

/// Direction of a data record, from the traced process's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The process read these bytes from the socket.
    Read,
    /// The process wrote these bytes to the socket.
    Write,
}

/// The two ends of a TCP connection; `local` is the traced process's own end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Identity of one connection inside one process. `sock_id` (the kernel socket address)
/// tells a reused fd number apart from the connection that held it before.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub pid: u32,
    pub fd: i32,
    pub sock_id: u64,
}

/// Bytes moved by one read/write-family syscall on a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data<'a> {
    pub key: ConnKey,
    pub tid: u32,
    /// In a Go program, the goroutine that made the call (its `g` address); meaningless in
    /// any other program.
    pub goroutine: u64,
    pub direction: Direction,
    pub tuple: Tuple,
    /// Wall-clock time (Unix ns) when the syscall started and when it returned.
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// Bytes the syscall moved; `bytes` holds only a prefix of them when this is larger.
    pub len: u32,
    /// The copied prefix (at most the configured copy length).
    pub bytes: Cow<'a, [u8]>,
    /// The last bytes of the buffer when they were not in the prefix, right-aligned; leading
    /// bytes are zero when fewer were known (a vectored write's short last iovecs).
    pub tail: Option<[u8; agent_common::TAIL_LEN]>,
    /// Records of this socket the kernel lost to a full ring so far: a change between two
    /// records of one connection means records between them are missing.
    pub sock_lost: u32,
    /// Records lost host-wide when this one was written (see `Tracker`).
    pub ring_lost: u32,
}

/// One decoded kernel record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A socket was read from or written to.
    Data(Data<'a>),
    /// A connection was accepted (`Role::Server`) or opened (`Role::Client`).
    Open {
        key: ConnKey,
        role: Role,
        tuple: Tuple,
        unix_ns: u64,
        /// As in [`Data::sock_lost`].
        sock_lost: u32,
        /// As in [`Data::ring_lost`].
        ring_lost: u32,
    },
    /// The process closed the fd (`key.fd >= 0`), or the kernel closed the socket
    /// (`key.fd == -1`, matched by `key.sock_id`).
    Close {
        key: ConnKey,
        unix_ns: u64,
        /// As in [`Data::sock_lost`].
        sock_lost: u32,
        /// As in [`Data::ring_lost`].
        ring_lost: u32,
    },
    /// The whole process exited.
    ProcessExit {
        pid: u32,
        unix_ns: u64,
        /// As in [`Data::ring_lost`].
        ring_lost: u32,
    },
    /// A process not selected yet ran a new program (selection by executable path); the
    /// kernel traces it provisionally until the agent has matched the program.
    Exec {
        pid: u32,
        /// The program's path as passed to exec (at most `agent_common::EXEC_PATH` bytes).
        path: Cow<'a, [u8]>,
    },
    /// The file name of a process's executable, sent at its first connection.
    ExeName { pid: u32, name: Cow<'a, [u8]> },
    /// A chunk of a process's environment, sent at its first connection: `bytes` sit at
    /// `offset` of the `total` bytes sent.
    Environ {
        pid: u32,
        offset: u32,
        total: u32,
        bytes: Cow<'a, [u8]>,
    },
    /// A step of a Go program's HTTP client (uprobes).
    Go { pid: u32, call: GoCall },
}

/// One step of a Go program's HTTP client, as the kernel reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoCall {
    pub step: GoStep,
    /// The goroutine that took the step (as in [`Data::goroutine`]).
    pub goroutine: u64,
    /// The request's `*http.Request` address.
    pub request: u64,
    /// When (Unix ns).
    pub at: u64,
    /// As in [`Data::ring_lost`].
    pub ring_lost: u32,
}

/// What a Go program's HTTP client did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GoStep {
    /// A goroutine handed a request to the client (its bytes are written by a pooled
    /// connection's writer goroutine, not by this one).
    RoundTrip,
    /// A goroutine starts writing a request.
    WriteRequest,
}

impl Record<'_> {
    /// The process the record is about.
    pub fn pid(&self) -> u32 {
        match self {
            Record::Data(d) => d.key.pid,
            Record::Open { key, .. } | Record::Close { key, .. } => key.pid,
            Record::ProcessExit { pid, .. }
            | Record::Exec { pid, .. }
            | Record::ExeName { pid, .. }
            | Record::Environ { pid, .. }
            | Record::Go { pid, .. } => *pid,
        }
    }

    /// Records lost host-wide when this one was written (exec records do not say).
    pub fn ring_lost(&self) -> Option<u32> {
        match self {
            Record::Data(d) => Some(d.ring_lost),
            Record::Open { ring_lost, .. }
            | Record::Close { ring_lost, .. }
            | Record::ProcessExit { ring_lost, .. } => Some(*ring_lost),
            Record::Go { call, .. } => Some(call.ring_lost),
            Record::Exec { .. } | Record::ExeName { .. } | Record::Environ { .. } => None,
        }
    }

    /// The same record, owning its bytes.
    pub fn into_owned(self) -> Record<'static> {
        match self {
            Record::Data(d) => Record::Data(Data {
                bytes: Cow::Owned(d.bytes.into_owned()),
                ..d
            }),
            Record::Open {
                key,
                role,
                tuple,
                unix_ns,
                sock_lost,
                ring_lost,
            } => Record::Open {
                key,
                role,
                tuple,
                unix_ns,
                sock_lost,
                ring_lost,
            },
            Record::Close {
                key,
                unix_ns,
                sock_lost,
                ring_lost,
            } => Record::Close {
                key,
                unix_ns,
                sock_lost,
                ring_lost,
            },
            Record::ProcessExit {
                pid,
                unix_ns,
                ring_lost,
            } => Record::ProcessExit {
                pid,
                unix_ns,
                ring_lost,
            },
            Record::Exec { pid, path } => Record::Exec {
                pid,
                path: Cow::Owned(path.into_owned()),
            },
            Record::ExeName { pid, name } => Record::ExeName {
                pid,
                name: Cow::Owned(name.into_owned()),
            },
            Record::Environ {
                pid,
                offset,
                total,
                bytes,
            } => Record::Environ {
                pid,
                offset,
                total,
                bytes: Cow::Owned(bytes.into_owned()),
            },
            Record::Go { pid, call } => Record::Go { pid, call },
        }
    }
}
