//! File-system seam: every write the store makes goes through `Io`, so tests can inject
//! failures (a full disk) and the store can prove it refuses writes without corrupting data.
use std::{
    fs::File,
    io::{self, Write},
    path::Path,
    sync::Arc,
};

/// A hook consulted before each write; returning an error makes the write fail as if the
/// disk did.
pub trait IoHooks: Send + Sync + std::fmt::Debug {
    fn before_write(&self, path: &Path, len: usize) -> io::Result<()>;
}

/// The real file system: no hook.
#[derive(Debug, Default)]
pub struct RealIo;

impl IoHooks for RealIo {
    fn before_write(&self, _path: &Path, _len: usize) -> io::Result<()> {
        Ok(())
    }
}

/// Shared handle to the hooks.
pub type Io = Arc<dyn IoHooks>;

/// Write all of `buf` to `file` (at `path`) through the hooks.
pub fn write_all(io: &Io, path: &Path, file: &mut File, buf: &[u8]) -> io::Result<()> {
    io.before_write(path, buf.len())?;
    file.write_all(buf)
}

/// Create `path` with `buf` as content, fsync it.
pub fn write_new_file(io: &Io, path: &Path, buf: &[u8]) -> io::Result<()> {
    let mut f = File::create(path)?;
    write_all(io, path, &mut f, buf)?;
    f.sync_all()
}

/// fsync a directory so renames and creations in it are durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Bytes used on disk by a directory tree (file lengths).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(path) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A hook that fails every write once a byte budget is used up (tests: "disk full").
#[cfg(test)]
#[derive(Debug)]
pub struct FullDisk {
    pub remaining: std::sync::atomic::AtomicI64,
}

#[cfg(test)]
impl FullDisk {
    pub fn new(budget: i64) -> Arc<Self> {
        Arc::new(Self {
            remaining: std::sync::atomic::AtomicI64::new(budget),
        })
    }

    pub fn set(&self, budget: i64) {
        self.remaining
            .store(budget, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
impl IoHooks for FullDisk {
    fn before_write(&self, _path: &Path, len: usize) -> io::Result<()> {
        let left = self
            .remaining
            .fetch_sub(len as i64, std::sync::atomic::Ordering::SeqCst);
        if left < len as i64 {
            self.remaining
                .fetch_add(len as i64, std::sync::atomic::Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        Ok(())
    }
}
