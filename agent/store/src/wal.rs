//! Append-only write-ahead log per tenant. Each record is `[len u32][crc32 u32][payload]`;
//! a record is written with one `write` call before the ingest is acknowledged, so an
//! acknowledged span survives `kill -9` (the bytes are in the kernel's page cache). Durability
//! against power loss depends on fsync: every `fsync_interval` by a background task, or on
//! every write when the interval is zero. A torn or corrupt tail is cut off on replay.
use std::{
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
};

use super::{
    codec::{Dec, Enc},
    fsio::{self, Io},
    ids::TraceId,
};

const HEADER: usize = 8;

/// One replayed record.
#[derive(Debug)]
pub struct Replayed {
    pub segment: u64,
    pub time_ns: u64,
    pub fragments: Vec<(TraceId, Vec<u8>)>,
}

/// Encode a record payload: ingest time then (trace id, fragment) pairs.
pub fn encode_record<'a>(
    time_ns: u64,
    frags: impl Iterator<Item = (&'a TraceId, &'a [u8])> + Clone,
) -> Vec<u8> {
    let size: usize = frags.clone().map(|(_, p)| p.len() + 26).sum();
    let mut e = Enc::with_capacity(HEADER + 8 + size);
    e.raw(&[0; HEADER]);
    e.u64_le(time_ns);
    for (id, payload) in frags {
        e.raw(id);
        e.bytes(payload);
    }
    let len = (e.buf.len() - HEADER) as u32;
    let crc = crc32fast::hash(&e.buf[HEADER..]);
    e.buf[0..4].copy_from_slice(&len.to_le_bytes());
    e.buf[4..8].copy_from_slice(&crc.to_le_bytes());
    e.buf
}

/// Ingest time and (trace id, fragment) pairs of one record.
type Payload = (u64, Vec<(TraceId, Vec<u8>)>);

fn decode_payload(p: &[u8]) -> Option<Payload> {
    let mut d = Dec::new(p);
    let t = d.u64_le().ok()?;
    let mut out = Vec::new();
    while !d.is_empty() {
        let id: TraceId = d.array().ok()?;
        out.push((id, d.bytes().ok()?.to_vec()));
    }
    Some((t, out))
}

/// Parse records from a segment's bytes; returns them and the length of the valid prefix.
pub fn parse_segment(segment: u64, buf: &[u8]) -> (Vec<Replayed>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= HEADER {
        let len = u32::from_le_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]) as usize;
        let crc = u32::from_le_bytes([buf[pos + 4], buf[pos + 5], buf[pos + 6], buf[pos + 7]]);
        let Some(body) = buf.get(pos + HEADER..pos + HEADER + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Some((time_ns, fragments)) = decode_payload(body) else {
            break;
        };
        out.push(Replayed {
            segment,
            time_ns,
            fragments,
        });
        pos += HEADER + len;
    }
    (out, pos)
}

/// The open WAL of one tenant.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    path: PathBuf,
    /// The current segment, closed while the tenant is idle (reopened on the next append).
    file: Option<File>,
    len: u64,
    io: Io,
    sync_each_write: bool,
    /// Ingest-clock time of the last append (or of opening).
    pub last_write_ns: u64,
}

/// Sorted segment numbers in `dir`.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
        .collect();
    v.sort_unstable();
    Ok(v)
}

impl Wal {
    /// Open the WAL in `dir`, replaying every existing segment (corrupt tails are cut off), and
    /// start a fresh segment for new writes.
    pub fn open(dir: &Path, io: Io, sync_each_write: bool) -> io::Result<(Wal, Vec<Replayed>)> {
        std::fs::create_dir_all(dir)?;
        let mut replayed = Vec::new();
        let segs = segments(dir)?;
        for &s in &segs {
            let p = dir.join(crate::layout::wal_segment(s));
            let buf = std::fs::read(&p)?;
            let (recs, valid) = parse_segment(s, &buf);
            if valid < buf.len() {
                tracing::warn!(path = %p.display(), valid, total = buf.len(), "cutting corrupt WAL tail");
                OpenOptions::new()
                    .write(true)
                    .open(&p)?
                    .set_len(valid as u64)?;
            }
            replayed.extend(recs);
        }
        let seq = segs.last().map_or(1, |s| s + 1);
        let path = dir.join(crate::layout::wal_segment(seq));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        fsio::sync_dir(dir)?;
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                seq,
                path,
                file: Some(file),
                len: 0,
                io,
                sync_each_write,
                last_write_ns: 0,
            },
            replayed,
        ))
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Append one encoded record. On failure the segment is cut back to its previous length,
    /// so no partial record is left behind.
    pub fn append(&mut self, record: &[u8]) -> io::Result<()> {
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)?,
            ),
        };
        let res = fsio::write_all(&self.io, &self.path, file, record).and_then(|()| {
            if self.sync_each_write {
                file.sync_data()
            } else {
                Ok(())
            }
        });
        match res {
            Ok(()) => {
                self.len += record.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(e2) = file.set_len(self.len) {
                    tracing::error!(path = %self.path.display(), error = %e2, "cannot cut back WAL after a failed write");
                }
                Err(e)
            }
        }
    }

    /// Start a new segment; returns its number.
    pub fn rotate(&mut self) -> io::Result<u64> {
        let seq = self.seq + 1;
        let path = self.dir.join(crate::layout::wal_segment(seq));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if let Some(f) = &self.file {
            f.sync_data()?;
        }
        self.file = Some(file);
        self.path = path;
        self.seq = seq;
        self.len = 0;
        Ok(seq)
    }

    /// A handle for fsync outside the tenant lock (`None` while closed: nothing to sync).
    pub fn sync_handle(&self) -> io::Result<Option<File>> {
        self.file.as_ref().map(File::try_clone).transpose()
    }

    /// fsync and close the segment if nothing was appended for `idle_ns`, so an idle tenant
    /// holds no file handle. Returns whether it closed.
    pub fn close_if_idle(&mut self, now_ns: u64, idle_ns: u64) -> io::Result<bool> {
        let Some(f) = &self.file else {
            return Ok(false);
        };
        if now_ns.saturating_sub(self.last_write_ns) < idle_ns {
            return Ok(false);
        }
        f.sync_data()?;
        self.file = None;
        Ok(true)
    }

    /// Remove segments numbered below `seq` (their data is in blocks).
    pub fn remove_below(&self, seq: u64) -> io::Result<()> {
        for s in segments(&self.dir)? {
            if s < seq && s != self.seq {
                std::fs::remove_file(self.dir.join(crate::layout::wal_segment(s)))?;
            }
        }
        Ok(())
    }

    /// Total bytes of all segments.
    pub fn bytes(&self) -> u64 {
        fsio::dir_bytes(&self.dir)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::fsio::{FullDisk, RealIo};

    fn rec(t: u64, id: u8, body: &[u8]) -> Vec<u8> {
        let tid = [id; 16];
        encode_record(t, std::iter::once((&tid, body)))
    }

    #[test]
    fn replays_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let io: Io = Arc::new(RealIo);
        let (mut w, r) = Wal::open(dir.path(), io.clone(), false).unwrap();
        assert!(r.is_empty());
        w.append(&rec(5, 1, b"hello")).unwrap();
        w.append(&rec(6, 2, b"world")).unwrap();
        drop(w);
        let (w2, r) = Wal::open(dir.path(), io, false).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].time_ns, 5);
        assert_eq!(r[1].fragments, vec![([2; 16], b"world".to_vec())]);
        assert_eq!(w2.seq(), 2);
    }

    #[rstest::rstest]
    #[case::truncated_header(3)]
    #[case::truncated_body(12)]
    fn torn_tail_is_cut(#[case] keep_of_second: usize) {
        let dir = tempfile::tempdir().unwrap();
        let first = rec(1, 1, b"aaaa");
        let second = rec(2, 2, b"bbbbbbbb");
        let mut bytes = first.clone();
        bytes.extend_from_slice(&second[..keep_of_second]);
        std::fs::write(dir.path().join(crate::layout::wal_segment(1)), &bytes).unwrap();
        let (_w, r) = Wal::open(dir.path(), Arc::new(RealIo), false).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            std::fs::metadata(dir.path().join(crate::layout::wal_segment(1)))
                .unwrap()
                .len(),
            first.len() as u64
        );
    }

    #[test]
    fn corrupt_record_stops_replay() {
        let mut bytes = rec(1, 1, b"aaaa");
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        let (r, valid) = parse_segment(1, &bytes);
        assert!(r.is_empty());
        assert_eq!(valid, 0);
        let (r, valid) = parse_segment(1, b"");
        assert!(r.is_empty() && valid == 0);
    }

    #[test]
    fn failed_write_leaves_no_partial_record() {
        let dir = tempfile::tempdir().unwrap();
        let disk = FullDisk::new(1_000_000);
        let (mut w, _) = Wal::open(dir.path(), disk.clone(), false).unwrap();
        w.append(&rec(1, 1, b"ok")).unwrap();
        disk.set(0);
        let err = w.append(&rec(2, 2, b"refused")).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        drop(w);
        let (_w, r) = Wal::open(dir.path(), Arc::new(RealIo), false).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn fsync_on_every_write_mode_replays_too() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), Arc::new(RealIo), true).unwrap();
        w.append(&rec(1, 1, b"synced")).unwrap();
        drop(w);
        let (_w, r) = Wal::open(dir.path(), Arc::new(RealIo), true).unwrap();
        assert_eq!(r[0].fragments, vec![([1; 16], b"synced".to_vec())]);
    }

    #[test]
    fn rotate_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, _) = Wal::open(dir.path(), Arc::new(RealIo), false).unwrap();
        w.append(&rec(1, 1, b"x")).unwrap();
        let s2 = w.rotate().unwrap();
        w.append(&rec(2, 2, b"y")).unwrap();
        w.remove_below(s2).unwrap();
        drop(w);
        let (_w, r) = Wal::open(dir.path(), Arc::new(RealIo), false).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].fragments[0].0, [2; 16]);
    }
}
