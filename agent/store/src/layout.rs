//! The store's on-disk layout, named in one place:
//!
//! ```text
//! <data_dir>/<tenant>/wal/<seq, 16 digits>.wal         append-only WAL segments
//! <data_dir>/<tenant>/blocks/<block id>/data           trace payloads in id order, zstd pages
//! <data_dir>/<tenant>/blocks/<block id>/search         row groups of search columns
//! <data_dir>/<tenant>/blocks/<block id>/index          page and group directories, bloom filter
//! <data_dir>/<tenant>/blocks/<block id>/meta.json      time range, counts, sizes
//! <data_dir>/<tenant>/blocks/.tmp-<block id>/          a block being written (removed at open)
//! ```
//!
//! A block id sorts by creation time: 20 digits of nanoseconds, `-`, 8 random hex digits.
use std::path::{Path, PathBuf};

/// A tenant's directory.
pub fn tenant_dir(data_dir: &Path, tenant: &str) -> PathBuf {
    data_dir.join(tenant)
}

/// A tenant's WAL directory.
pub fn wal_dir(tenant_dir: &Path) -> PathBuf {
    tenant_dir.join("wal")
}

/// The file name of WAL segment `seq`.
pub fn wal_segment(seq: u64) -> String {
    format!("{seq:016}.wal")
}

/// A tenant's blocks directory.
pub fn blocks_dir(tenant_dir: &Path) -> PathBuf {
    tenant_dir.join("blocks")
}

/// The prefix of a block directory still being written.
pub const TMP_PREFIX: &str = ".tmp-";

/// Where block `id` is written before it is renamed into place.
pub fn block_tmp_dir(blocks_dir: &Path, id: &str) -> PathBuf {
    blocks_dir.join(format!("{TMP_PREFIX}{id}"))
}

/// The four files of a block.
pub const BLOCK_DATA: &str = "data";
pub const BLOCK_SEARCH: &str = "search";
pub const BLOCK_INDEX: &str = "index";
pub const BLOCK_META: &str = "meta.json";

/// A new block id that sorts by creation time.
pub fn new_block_id(now_ns: u64) -> String {
    format!("{now_ns:020}-{:08x}", rand::random::<u32>())
}
