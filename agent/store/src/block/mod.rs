//! Immutable blocks on local disk. A block is a directory of four files:
//! `data` (trace payloads in id order, zstd pages), `search` (row groups of search columns,
//! zstd), `index` (page directory, group directory, bloom filter) and `meta.json`.
//! By-id is bloom → page directory → one page read; search scans row groups.
use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    codec::{Dec, DecodeError, Enc},
    error::StoreError,
    fsio::{self, Io},
    ids::TraceId,
    layout,
    rows::{SpanRow, Table},
};

pub mod bloom;
pub mod group;

use bloom::Bloom;
use group::{Group, GroupBuilder};

const INDEX_MAGIC: &[u8; 8] = b"SNDIDX02";

/// `meta.json` of a block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub id: String,
    /// 0 when cut from live data, +1 per compaction.
    pub level: u32,
    pub min_start_ns: u64,
    pub max_end_ns: u64,
    pub traces: u64,
    pub spans: u64,
    pub data_bytes: u64,
    pub search_bytes: u64,
    pub index_bytes: u64,
    pub created_ns: u64,
}

impl BlockMeta {
    pub fn total_bytes(&self) -> u64 {
        self.data_bytes + self.search_bytes + self.index_bytes
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct PageEntry {
    first: TraceId,
    last: TraceId,
    offset: u64,
    len: u32,
    raw_len: u32,
}

/// Directory entry of one search row group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupEntry {
    pub offset: u64,
    pub len: u32,
    pub raw_len: u32,
    pub min_start: u64,
    pub max_end: u64,
    pub traces: u32,
    pub spans: u32,
}

/// Tunables of block writing.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    pub page_bytes: usize,
    pub group_traces: usize,
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            page_bytes: 256 * 1024,
            group_traces: 4096,
            zstd_level: 3,
        }
    }
}

/// Streams traces (ascending id) into a new block directory.
pub struct BlockWriter {
    io: Io,
    opts: WriteOptions,
    tmp_dir: PathBuf,
    final_dir: PathBuf,
    data: File,
    search: File,
    data_off: u64,
    search_off: u64,
    page: Enc,
    page_first: Option<TraceId>,
    page_last: TraceId,
    pages: Vec<PageEntry>,
    groups: Vec<GroupEntry>,
    group_blooms: Vec<Bloom>,
    gb: GroupBuilder,
    ids: Vec<TraceId>,
    meta: BlockMeta,
}

fn io_err(p: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::io(p, e)
}

fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(data, level)
}

impl BlockWriter {
    /// Start a block `id` under `blocks_dir` (written to a temporary directory first).
    pub fn create(
        blocks_dir: &Path,
        id: &str,
        level: u32,
        io: Io,
        opts: WriteOptions,
    ) -> Result<Self, StoreError> {
        let tmp_dir = layout::block_tmp_dir(blocks_dir, id);
        std::fs::create_dir_all(&tmp_dir).map_err(io_err(&tmp_dir))?;
        let dp = tmp_dir.join(layout::BLOCK_DATA);
        let sp = tmp_dir.join(layout::BLOCK_SEARCH);
        let data = File::create(&dp).map_err(io_err(&dp))?;
        let search = File::create(&sp).map_err(io_err(&sp))?;
        Ok(Self {
            io,
            opts,
            final_dir: blocks_dir.join(id),
            tmp_dir,
            data,
            search,
            data_off: 0,
            search_off: 0,
            page: Enc::with_capacity(opts.page_bytes + 64 * 1024),
            page_first: None,
            page_last: [0; 16],
            pages: Vec::new(),
            groups: Vec::new(),
            group_blooms: Vec::new(),
            gb: GroupBuilder::default(),
            ids: Vec::new(),
            meta: BlockMeta {
                id: id.to_string(),
                level,
                min_start_ns: u64::MAX,
                max_end_ns: 0,
                traces: 0,
                spans: 0,
                data_bytes: 0,
                search_bytes: 0,
                index_bytes: 0,
                created_ns: 0,
            },
        })
    }

    /// Add one trace. Ids must come in ascending order; a repeated id must be merged by the
    /// caller first.
    pub fn add(
        &mut self,
        id: TraceId,
        payload: &[u8],
        parts: &[(&Table, &[SpanRow])],
    ) -> Result<(), StoreError> {
        self.page_first.get_or_insert(id);
        self.page_last = id;
        self.page.raw(&id);
        self.page.bytes(payload);
        self.ids.push(id);
        self.gb.add(id, parts);
        self.meta.traces += 1;
        if self.page.buf.len() >= self.opts.page_bytes {
            self.flush_page()?;
        }
        if self.gb.len() >= self.opts.group_traces {
            self.flush_group()?;
        }
        Ok(())
    }

    fn flush_page(&mut self) -> Result<(), StoreError> {
        let Some(first) = self.page_first.take() else {
            return Ok(());
        };
        let path = self.tmp_dir.join(layout::BLOCK_DATA);
        let c = compress(&self.page.buf, self.opts.zstd_level).map_err(io_err(&path))?;
        fsio::write_all(&self.io, &path, &mut self.data, &c).map_err(io_err(&path))?;
        self.pages.push(PageEntry {
            first,
            last: self.page_last,
            offset: self.data_off,
            len: c.len() as u32,
            raw_len: self.page.buf.len() as u32,
        });
        self.data_off += c.len() as u64;
        self.page.buf.clear();
        Ok(())
    }

    fn flush_group(&mut self) -> Result<(), StoreError> {
        if self.gb.is_empty() {
            return Ok(());
        }
        let g = self.gb.take();
        let min_start = g.spans.iter().map(|s| s.start).min().unwrap_or(0);
        let max_end = g.spans.iter().map(|s| s.end).max().unwrap_or(0);
        self.meta.min_start_ns = self.meta.min_start_ns.min(min_start);
        self.meta.max_end_ns = self.meta.max_end_ns.max(max_end);
        self.meta.spans += g.spans.len() as u64;
        let mut strings = Bloom::new(g.table.dict.strings.len());
        for s in &g.table.dict.strings {
            strings.insert(&bloom::str_key(s));
        }
        self.group_blooms.push(strings);
        let raw = group::encode(&g);
        let path = self.tmp_dir.join(layout::BLOCK_SEARCH);
        let c = compress(&raw, self.opts.zstd_level).map_err(io_err(&path))?;
        fsio::write_all(&self.io, &path, &mut self.search, &c).map_err(io_err(&path))?;
        self.groups.push(GroupEntry {
            offset: self.search_off,
            len: c.len() as u32,
            raw_len: raw.len() as u32,
            min_start,
            max_end,
            traces: g.traces.len() as u32,
            spans: g.spans.len() as u32,
        });
        self.search_off += c.len() as u64;
        Ok(())
    }

    /// Write the index and meta, fsync, and move the block into place.
    pub fn finish(mut self, created_ns: u64) -> Result<BlockMeta, StoreError> {
        let r = self.finish_inner(created_ns);
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&self.tmp_dir);
        }
        r
    }

    fn finish_inner(&mut self, created_ns: u64) -> Result<BlockMeta, StoreError> {
        self.flush_page()?;
        self.flush_group()?;
        let dp = self.tmp_dir.join(layout::BLOCK_DATA);
        self.data.sync_all().map_err(io_err(&dp))?;
        let sp = self.tmp_dir.join(layout::BLOCK_SEARCH);
        self.search.sync_all().map_err(io_err(&sp))?;
        let mut bloom = Bloom::new(self.ids.len());
        self.ids.iter().for_each(|i| bloom.insert(i));
        let mut e = Enc::default();
        e.raw(INDEX_MAGIC);
        e.varint(self.pages.len() as u64);
        for p in &self.pages {
            e.raw(&p.first);
            e.raw(&p.last);
            e.varint(p.offset);
            e.varint(u64::from(p.len));
            e.varint(u64::from(p.raw_len));
        }
        e.varint(self.groups.len() as u64);
        for g in &self.groups {
            e.varint(g.offset);
            e.varint(u64::from(g.len));
            e.varint(u64::from(g.raw_len));
            e.varint(g.min_start);
            e.varint(g.max_end);
            e.varint(u64::from(g.traces));
            e.varint(u64::from(g.spans));
        }
        bloom.encode(&mut e);
        for b in &self.group_blooms {
            b.encode(&mut e);
        }
        let crc = crc32fast::hash(&e.buf);
        e.raw(&crc.to_le_bytes());
        let ip = self.tmp_dir.join(layout::BLOCK_INDEX);
        fsio::write_new_file(&self.io, &ip, &e.buf).map_err(io_err(&ip))?;
        self.meta.data_bytes = self.data_off;
        self.meta.search_bytes = self.search_off;
        self.meta.index_bytes = e.buf.len() as u64;
        self.meta.created_ns = created_ns;
        if self.meta.min_start_ns == u64::MAX {
            self.meta.min_start_ns = 0;
        }
        let mp = self.tmp_dir.join(layout::BLOCK_META);
        let json =
            serde_json::to_vec_pretty(&self.meta).map_err(|e| StoreError::corrupt(&mp, e))?;
        fsio::write_new_file(&self.io, &mp, &json).map_err(io_err(&mp))?;
        fsio::sync_dir(&self.tmp_dir).map_err(io_err(&self.tmp_dir))?;
        std::fs::rename(&self.tmp_dir, &self.final_dir).map_err(io_err(&self.final_dir))?;
        if let Some(parent) = self.final_dir.parent() {
            fsio::sync_dir(parent).map_err(io_err(parent))?;
        }
        Ok(self.meta.clone())
    }
}

/// An open block.
#[derive(Debug)]
pub struct Block {
    pub meta: BlockMeta,
    pub dir: PathBuf,
    data: File,
    search: File,
    pages: Vec<PageEntry>,
    pub groups: Vec<GroupEntry>,
    bloom: Bloom,
    /// Per group: the strings of its dictionary (names, attribute keys and values).
    group_strings: Vec<Bloom>,
}

/// Parsed `index` file: page directory, group directory, trace-id bloom, per-group string blooms.
type Index = (Vec<PageEntry>, Vec<GroupEntry>, Bloom, Vec<Bloom>);

fn parse_index(buf: &[u8]) -> Result<Index, DecodeError> {
    if buf.len() < 12 || &buf[..8] != INDEX_MAGIC {
        return Err(DecodeError(0));
    }
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(DecodeError(body.len()));
    }
    let mut d = Dec::new(body);
    d.raw(8)?;
    let np = d.len()?;
    let mut pages = Vec::with_capacity(np);
    for _ in 0..np {
        pages.push(PageEntry {
            first: d.array()?,
            last: d.array()?,
            offset: d.varint()?,
            len: d.varint_u32()?,
            raw_len: d.varint_u32()?,
        });
    }
    let ng = d.len()?;
    let mut groups = Vec::with_capacity(ng);
    for _ in 0..ng {
        groups.push(GroupEntry {
            offset: d.varint()?,
            len: d.varint_u32()?,
            raw_len: d.varint_u32()?,
            min_start: d.varint()?,
            max_end: d.varint()?,
            traces: d.varint_u32()?,
            spans: d.varint_u32()?,
        });
    }
    let bloom = Bloom::decode(&mut d)?;
    let mut strings = Vec::with_capacity(ng);
    for _ in 0..ng {
        strings.push(Bloom::decode(&mut d)?);
    }
    Ok((pages, groups, bloom, strings))
}

/// Records of a decompressed data page: (trace id, payload).
fn page_records(buf: &[u8]) -> Result<Vec<(TraceId, &[u8])>, DecodeError> {
    let mut d = Dec::new(buf);
    let mut out = Vec::new();
    while !d.is_empty() {
        let id = d.array()?;
        out.push((id, d.bytes()?));
    }
    Ok(out)
}

impl Block {
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let mp = dir.join(layout::BLOCK_META);
        let mbytes = std::fs::read(&mp).map_err(io_err(&mp))?;
        let meta: BlockMeta =
            serde_json::from_slice(&mbytes).map_err(|e| StoreError::corrupt(&mp, e))?;
        let ip = dir.join(layout::BLOCK_INDEX);
        let ibytes = std::fs::read(&ip).map_err(io_err(&ip))?;
        let (pages, groups, bloom, group_strings) =
            parse_index(&ibytes).map_err(|e| StoreError::corrupt(&ip, e))?;
        let dp = dir.join(layout::BLOCK_DATA);
        let sp = dir.join(layout::BLOCK_SEARCH);
        Ok(Self {
            meta,
            dir: dir.to_path_buf(),
            data: File::open(&dp).map_err(io_err(&dp))?,
            search: File::open(&sp).map_err(io_err(&sp))?,
            pages,
            groups,
            bloom,
            group_strings,
        })
    }

    /// False when the block certainly does not hold trace `id`.
    pub fn may_contain(&self, id: &TraceId) -> bool {
        self.bloom.may_contain(id)
    }

    /// False when row group `gi` certainly has none of `keys` (from `bloom::str_key`) in its
    /// dictionary, i.e. no span there can equal one of those strings.
    pub fn group_may_have_all(&self, gi: usize, keys: &[TraceId]) -> bool {
        match self.group_strings.get(gi) {
            Some(b) => keys.iter().all(|k| b.may_contain(k)),
            None => true,
        }
    }

    fn read_page(&self, p: &PageEntry) -> Result<Vec<u8>, StoreError> {
        let path = self.dir.join(layout::BLOCK_DATA);
        let mut buf = vec![0u8; p.len as usize];
        self.data
            .read_exact_at(&mut buf, p.offset)
            .map_err(io_err(&path))?;
        zstd::bulk::decompress(&buf, p.raw_len as usize).map_err(|e| StoreError::corrupt(&path, e))
    }

    /// The payload of trace `id`, if this block holds it.
    pub fn find(&self, id: &TraceId) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.bloom.may_contain(id) {
            return Ok(None);
        }
        let i = self.pages.partition_point(|p| p.last < *id);
        let Some(p) = self.pages.get(i).filter(|p| p.first <= *id) else {
            return Ok(None);
        };
        let raw = self.read_page(p)?;
        let recs = page_records(&raw)
            .map_err(|e| StoreError::corrupt(self.dir.join(layout::BLOCK_DATA), e))?;
        Ok(recs
            .into_iter()
            .find(|(rid, _)| rid == id)
            .map(|(_, b)| b.to_vec()))
    }

    /// Decode search row group `i`.
    pub fn read_group(&self, i: usize) -> Result<Group, StoreError> {
        let path = self.dir.join(layout::BLOCK_SEARCH);
        let g = self
            .groups
            .get(i)
            .ok_or_else(|| StoreError::corrupt(&path, "no such group"))?;
        let mut buf = vec![0u8; g.len as usize];
        self.search
            .read_exact_at(&mut buf, g.offset)
            .map_err(io_err(&path))?;
        let raw = zstd::bulk::decompress(&buf, g.raw_len as usize)
            .map_err(|e| StoreError::corrupt(&path, e))?;
        group::decode(&raw).map_err(|e| StoreError::corrupt(&path, e))
    }

    pub fn page_count(&self) -> usize {
        self.pages.len()
    }

    /// The (trace id, payload) records of data page `i`.
    pub fn page_records(&self, i: usize) -> Result<Vec<(TraceId, Vec<u8>)>, StoreError> {
        let path = self.dir.join(layout::BLOCK_DATA);
        let p = self
            .pages
            .get(i)
            .ok_or_else(|| StoreError::corrupt(&path, "no such page"))?;
        let raw = self.read_page(p)?;
        let recs = page_records(&raw).map_err(|e| StoreError::corrupt(&path, e))?;
        Ok(recs.into_iter().map(|(id, b)| (id, b.to_vec())).collect())
    }
}

#[cfg(test)]
mod tests;
