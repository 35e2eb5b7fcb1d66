//! Decodes raw ring-buffer records into [`Record`]s: kernel monotonic time becomes wall-clock
//! time (the offset is measured once at start-up), addresses become `SocketAddr`s.
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use agent_common::{EventHeader, MAX_DATA, kind};

use super::record::{ConnKey, Data, Direction, GoCall, GoStep, Record, Role, Tuple};

/// Converts kernel monotonic nanoseconds to Unix nanoseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Measure the offset between CLOCK_REALTIME and CLOCK_MONOTONIC now.
    pub fn now() -> Self {
        let real = read_clock(libc::CLOCK_REALTIME);
        let mono = read_clock(libc::CLOCK_MONOTONIC);
        Self {
            offset_ns: real - mono,
        }
    }

    /// A fixed offset (tests).
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn to_unix(self, monotonic_ns: u64) -> u64 {
        u64::try_from(i128::from(monotonic_ns) + self.offset_ns).unwrap_or(0)
    }
}

fn read_clock(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(id, &mut ts);
    }
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Why a raw record could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("record has unknown kind {0}")]
    UnknownKind(u8),
}

const HEADER: usize = std::mem::size_of::<EventHeader>();

/// Decode one record as read from the ring buffer.
pub fn decode(raw: &[u8], clock: Clock) -> Result<Record<'_>, DecodeError> {
    if raw.len() < HEADER {
        return Err(DecodeError::Short(raw.len()));
    }
    // SAFETY: EventHeader is repr(C), made of integers and byte arrays: any bytes are valid,
    // and read_unaligned copes with the ring buffer's 8-byte alignment.
    let h: EventHeader = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<EventHeader>()) };
    let key = ConnKey {
        pid: h.pid,
        fd: h.fd,
        sock_id: h.sock_id,
    };
    let tuple = tuple(&h);
    Ok(match h.kind {
        kind::READ | kind::WRITE => {
            let copied = (h.copied as usize).min(MAX_DATA).min(raw.len() - HEADER);
            // The kernel right-aligns what it knows of the last bytes; the rest is zero.
            let known = (h.tail_len as usize).min(agent_common::TAIL_LEN);
            let tail = (known > 0).then(|| {
                let mut t = [0u8; agent_common::TAIL_LEN];
                t[agent_common::TAIL_LEN - known..]
                    .copy_from_slice(&h.tail[agent_common::TAIL_LEN - known..]);
                t
            });
            Record::Data(Data {
                key,
                tid: h.tid,
                goroutine: h.goroutine,
                direction: if h.kind == kind::READ {
                    Direction::Read
                } else {
                    Direction::Write
                },
                tuple,
                start_unix_ns: clock.to_unix(h.start_ns),
                end_unix_ns: clock.to_unix(h.end_ns),
                len: h.len,
                bytes: std::borrow::Cow::Borrowed(&raw[HEADER..HEADER + copied]),
                tail,
                sock_lost: h.sock_lost,
                ring_lost: h.ring_lost,
            })
        }
        kind::ACCEPT | kind::CONNECT => Record::Open {
            key,
            role: if h.kind == kind::ACCEPT {
                Role::Server
            } else {
                Role::Client
            },
            tuple,
            unix_ns: clock.to_unix(h.end_ns),
            sock_lost: h.sock_lost,
            ring_lost: h.ring_lost,
        },
        kind::CLOSE => Record::Close {
            key,
            unix_ns: clock.to_unix(h.end_ns),
            sock_lost: h.sock_lost,
            ring_lost: h.ring_lost,
        },
        kind::EXIT => Record::ProcessExit {
            pid: h.pid,
            unix_ns: clock.to_unix(h.end_ns),
            ring_lost: h.ring_lost,
        },
        kind::EXEC => {
            let copied = (h.copied as usize).min(raw.len() - HEADER);
            let path = &raw[HEADER..HEADER + copied];
            // The kernel copies the string with its NUL.
            let path = path.strip_suffix(b"\0").unwrap_or(path);
            Record::Exec {
                pid: h.pid,
                path: std::borrow::Cow::Borrowed(path),
            }
        }
        kind::PROC_EXE => {
            let copied = (h.copied as usize).min(raw.len() - HEADER);
            let name = &raw[HEADER..HEADER + copied];
            Record::ExeName {
                pid: h.pid,
                name: std::borrow::Cow::Borrowed(name.strip_suffix(b"\0").unwrap_or(name)),
            }
        }
        kind::PROC_ENV => {
            let copied = (h.copied as usize).min(raw.len() - HEADER);
            Record::Environ {
                pid: h.pid,
                offset: h.fd as u32,
                total: h.len,
                bytes: std::borrow::Cow::Borrowed(&raw[HEADER..HEADER + copied]),
            }
        }
        kind::GO_ROUND_TRIP | kind::GO_WRITE_REQUEST => Record::Go {
            pid: h.pid,
            call: GoCall {
                step: if h.kind == kind::GO_ROUND_TRIP {
                    GoStep::RoundTrip
                } else {
                    GoStep::WriteRequest
                },
                goroutine: h.goroutine,
                request: h.sock_id,
                at: clock.to_unix(h.end_ns),
                ring_lost: h.ring_lost,
            },
        },
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

/// The command name in a raw record's header, when the kernel knew it (connection and process
/// records only: data records do not carry it).
pub fn comm(raw: &[u8]) -> Option<String> {
    if raw.len() < HEADER {
        return None;
    }
    // SAFETY: as in `decode`.
    let h: EventHeader = unsafe { std::ptr::read_unaligned(raw.as_ptr().cast::<EventHeader>()) };
    if h.kind == kind::READ || h.kind == kind::WRITE {
        return None;
    }
    let end = h.comm.iter().position(|&c| c == 0).unwrap_or(h.comm.len());
    (end > 0).then(|| String::from_utf8_lossy(&h.comm[..end]).into_owned())
}

fn tuple(h: &EventHeader) -> Tuple {
    let ip = |a: [u8; 16]| -> IpAddr {
        let v6 = Ipv6Addr::from(a);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    };
    Tuple {
        local: SocketAddr::new(ip(h.tuple.local_addr), h.tuple.local_port),
        remote: SocketAddr::new(ip(h.tuple.remote_addr), h.tuple.remote_port),
    }
}

#[cfg(test)]
mod tests {
    use agent_common::{Tuple as RawTuple, syscall};
    use rstest::rstest;

    use super::*;

    fn raw(h: EventHeader, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; HEADER];
        // SAFETY: writing a POD header into a buffer of its size.
        unsafe {
            std::ptr::write_unaligned(v.as_mut_ptr().cast::<EventHeader>(), h);
        }
        v.extend_from_slice(data);
        v
    }

    fn header(kind: u8, copied: u32) -> EventHeader {
        let mut local = [0u8; 16];
        local[10] = 0xff;
        local[11] = 0xff;
        local[12..].copy_from_slice(&[127, 0, 0, 1]);
        EventHeader {
            start_ns: 100,
            end_ns: 200,
            sock_id: 7,
            pid: 42,
            tid: 43,
            fd: 5,
            len: 1000,
            copied,
            tail_len: 0,
            kind,
            syscall: syscall::RECVFROM,
            tuple: RawTuple {
                local_addr: local,
                remote_addr: Ipv6Addr::LOCALHOST.octets(),
                local_port: 8080,
                remote_port: 50000,
                family: 2,
                _pad: 0,
            },
            tail: [0; 16],
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            sock_lost: 3,
            ring_lost: 11,
            goroutine: 0x00c0_0012_3400,
        }
    }

    #[test]
    fn data_record_round_trip() {
        let bytes = raw(header(kind::READ, 3), b"GET");
        let rec = decode(&bytes, Clock::with_offset(1_000)).unwrap();
        let Record::Data(d) = rec else {
            panic!("not data: {rec:?}")
        };
        assert_eq!(&*d.bytes, b"GET");
        assert_eq!(d.len, 1000);
        assert_eq!((d.start_unix_ns, d.end_unix_ns), (1_100, 1_200));
        assert_eq!(d.direction, Direction::Read);
        assert_eq!(d.tuple.local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(d.tuple.remote, "[::1]:50000".parse().unwrap());
        assert_eq!(
            d.key,
            ConnKey {
                pid: 42,
                fd: 5,
                sock_id: 7
            }
        );
        assert_eq!(d.tail, None);
        assert_eq!((d.sock_lost, d.ring_lost), (3, 11));
        assert_eq!(d.goroutine, 0x00c0_0012_3400);
        assert_eq!(
            comm(&raw(header(kind::ACCEPT, 0), &[])).as_deref(),
            Some("curl")
        );
        // Data records leave the name unwritten: whatever is there is not a name.
        assert_eq!(comm(&raw(header(kind::READ, 0), &[])), None);
        assert_eq!(comm(&[0u8; 3]), None);
    }

    #[rstest]
    #[case::empty(vec![])]
    #[case::short(vec![0u8; HEADER - 1])]
    fn short_records_are_errors(#[case] bytes: Vec<u8>) {
        assert!(matches!(
            decode(&bytes, Clock::with_offset(0)),
            Err(DecodeError::Short(_))
        ));
    }

    #[test]
    fn copied_larger_than_record_is_clamped() {
        let bytes = raw(header(kind::WRITE, 4000), b"HTTP");
        let rec = decode(&bytes, Clock::with_offset(0)).unwrap();
        let Record::Data(d) = rec else { panic!() };
        assert_eq!(&*d.bytes, b"HTTP");
    }

    #[rstest]
    #[case::accept(kind::ACCEPT)]
    #[case::connect(kind::CONNECT)]
    #[case::close(kind::CLOSE)]
    #[case::exit(kind::EXIT)]
    #[case::exec(kind::EXEC)]
    #[case::exe_name(kind::PROC_EXE)]
    #[case::environ(kind::PROC_ENV)]
    fn lifecycle_records(#[case] k: u8) {
        let bytes = raw(header(k, 0), &[]);
        let rec = decode(&bytes, Clock::with_offset(0)).unwrap();
        match (k, rec) {
            (
                kind::ACCEPT,
                Record::Open {
                    role: Role::Server, ..
                },
            )
            | (
                kind::CONNECT,
                Record::Open {
                    role: Role::Client, ..
                },
            )
            | (kind::CLOSE, Record::Close { .. })
            | (kind::EXIT, Record::ProcessExit { pid: 42, .. })
            | (kind::EXEC, Record::Exec { pid: 42, .. })
            | (kind::PROC_EXE, Record::ExeName { pid: 42, .. })
            | (kind::PROC_ENV, Record::Environ { pid: 42, .. }) => {}
            (k, r) => panic!("kind {k} decoded as {r:?}"),
        }
    }

    #[rstest]
    #[case::round_trip(kind::GO_ROUND_TRIP, GoStep::RoundTrip)]
    #[case::write_request(kind::GO_WRITE_REQUEST, GoStep::WriteRequest)]
    fn go_client_records(#[case] k: u8, #[case] step: GoStep) {
        let bytes = raw(header(k, 0), &[]);
        assert_eq!(
            decode(&bytes, Clock::with_offset(5)).unwrap(),
            Record::Go {
                pid: 42,
                call: GoCall {
                    step,
                    goroutine: 0x00c0_0012_3400,
                    request: 7,
                    at: 205,
                    ring_lost: 11,
                },
            }
        );
    }

    #[rstest]
    #[case::with_nul(b"/usr/bin/curl\0".as_slice(), 14, b"/usr/bin/curl".as_slice())]
    #[case::without_nul(b"/usr/bin/curl", 13, b"/usr/bin/curl")]
    #[case::copied_past_the_record(b"/bin/sh\0", 300, b"/bin/sh")]
    #[case::nothing_copied(b"", 0, b"")]
    fn exec_record_carries_the_program_path(
        #[case] payload: &[u8],
        #[case] copied: u32,
        #[case] want: &[u8],
    ) {
        let mut h = header(kind::EXEC, 0);
        h.copied = copied;
        let bytes = raw(h, payload);
        let rec = decode(&bytes, Clock::with_offset(0)).unwrap();
        let Record::Exec { pid: 42, path } = rec else {
            panic!("{rec:?}")
        };
        assert_eq!(&*path, want);
    }

    #[rstest]
    #[case::none(0, None)]
    #[case::full(16, Some(*b"abcdefg\r\n0\r\n\r\nXX"))]
    #[case::short_right_aligned(7, Some(*b"\0\0\0\0\0\0\0\0\0\r\n0\r\n\r\n"))]
    fn tail_is_right_aligned(#[case] tail_len: u16, #[case] want: Option<[u8; 16]>) {
        let mut h = header(kind::WRITE, 0);
        h.tail = *b"abcdefg\r\n0\r\n\r\nXX";
        if tail_len == 7 {
            h.tail = *b"garbage!!\r\n0\r\n\r\n";
        }
        h.tail_len = tail_len;
        let bytes = raw(h, &[]);
        let Record::Data(d) = decode(&bytes, Clock::with_offset(0)).unwrap() else {
            panic!()
        };
        assert_eq!(d.tail, want);
    }

    #[test]
    fn unknown_kind_is_error() {
        assert_eq!(
            decode(&raw(header(99, 0), &[]), Clock::with_offset(0)),
            Err(DecodeError::UnknownKind(99))
        );
    }
}
