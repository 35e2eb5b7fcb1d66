//! Reads the few kernel struct offsets the probes need from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`). Rust eBPF cannot emit CO-RE relocations yet, so the offsets are
//! found here and handed to the programs as globals ("poor man's CO-RE").
use std::{collections::HashMap, path::Path};

use agent_common::Offsets;

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// Failure to read offsets from BTF.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid BTF: {reason}")]
    Malformed { path: String, reason: &'static str },
    #[error("kernel BTF has no {what}")]
    Missing { what: String },
}

#[derive(Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone)]
struct Type {
    kind: u32,
    name_off: u32,
    /// For typedef/const/volatile/ptr…: the referenced type.
    referenced: u32,
    members: Vec<Member>,
}

/// The parsed type section of one BTF blob (only what offset lookup needs).
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

impl Btf {
    /// Parse the running kernel's BTF.
    pub fn from_sys() -> Result<Self, BtfError> {
        Self::from_path(Path::new("/sys/kernel/btf/vmlinux"))
    }

    pub fn from_path(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&bytes).map_err(|reason| BtfError::Malformed {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parse a raw BTF blob (little-endian, as on x86_64 and arm64).
    pub fn parse(b: &[u8]) -> Result<Self, &'static str> {
        let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
        let u32_at = |o: usize| {
            b.get(o..o + 4)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        if u16_at(0) != Some(MAGIC) {
            return Err("bad magic");
        }
        let hdr_len = u32_at(4).ok_or("short header")? as usize;
        let type_off = u32_at(8).ok_or("short header")? as usize;
        let type_len = u32_at(12).ok_or("short header")? as usize;
        let str_off = u32_at(16).ok_or("short header")? as usize;
        let str_len = u32_at(20).ok_or("short header")? as usize;
        let t_start = hdr_len.checked_add(type_off).ok_or("bad type offset")?;
        let t_end = t_start.checked_add(type_len).ok_or("bad type length")?;
        let s_start = hdr_len.checked_add(str_off).ok_or("bad string offset")?;
        let s_end = s_start.checked_add(str_len).ok_or("bad string length")?;
        if t_end > b.len() || s_end > b.len() {
            return Err("sections past end of file");
        }
        let strings = b[s_start..s_end].to_vec();
        // Type id 0 is `void`.
        let mut types = vec![Type {
            kind: 0,
            name_off: 0,
            referenced: 0,
            members: Vec::new(),
        }];
        let mut at = t_start;
        while at < t_end {
            let name_off = u32_at(at).ok_or("truncated type")?;
            let info = u32_at(at + 4).ok_or("truncated type")?;
            let size_or_type = u32_at(at + 8).ok_or("truncated type")?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let offset = u32_at(m + 8).ok_or("truncated member")?;
                        members.push(Member {
                            name_off: u32_at(m).ok_or("truncated member")?,
                            type_id: u32_at(m + 4).ok_or("truncated member")?,
                            bit_offset: if kind_flag {
                                offset & 0x00ff_ffff
                            } else {
                                offset
                            },
                        });
                    }
                    vlen * 12
                }
                KIND_ENUM | KIND_FUNC_PROTO => vlen * 8,
                KIND_DATASEC | KIND_ENUM64 => vlen * 12,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                _ => return Err("unknown type kind"),
            };
            at += extra;
            types.push(Type {
                kind,
                name_off,
                referenced: size_or_type,
                members,
            });
        }
        let mut btf = Self {
            types,
            strings,
            structs_by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name_off != 0 {
                let name = btf.name(t.name_off).to_owned();
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Skip typedef/const/volatile/restrict/type-tag wrappers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.referenced;
                }
                _ => return Some(t),
            }
        }
        None
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous structs/unions.
    pub fn offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let missing = || BtfError::Missing {
            what: format!("{name}.{member}"),
        };
        let id = *self.structs_by_name.get(name).ok_or_else(missing)?;
        let t = self.types.get(id as usize).ok_or_else(missing)?;
        self.find(t, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(missing)
    }

    fn find(&self, t: &Type, member: &str, base_bits: u32) -> Option<u32> {
        for m in &t.members {
            if m.name_off != 0 && self.name(m.name_off) == member {
                return Some(base_bits + m.bit_offset);
            }
        }
        for m in t.members.iter().filter(|m| m.name_off == 0) {
            let inner = self.resolve(m.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && let Some(found) = self.find(inner, member, base_bits + m.bit_offset)
            {
                return Some(found);
            }
        }
        None
    }

    /// Every offset the kernel programs need.
    pub fn offsets(&self) -> Result<Offsets, BtfError> {
        Ok(Offsets {
            task_files: self.offset("task_struct", "files")?,
            files_fdt: self.offset("files_struct", "fdt")?,
            fdt_max_fds: self.offset("fdtable", "max_fds")?,
            fdt_fd: self.offset("fdtable", "fd")?,
            file_inode: self.offset("file", "f_inode")?,
            file_private_data: self.offset("file", "private_data")?,
            inode_mode: self.offset("inode", "i_mode")?,
            socket_sk: self.offset("socket", "sk")?,
            socket_type: self.offset("socket", "type")?,
            skc_daddr: self.offset("sock_common", "skc_daddr")?,
            skc_rcv_saddr: self.offset("sock_common", "skc_rcv_saddr")?,
            skc_dport: self.offset("sock_common", "skc_dport")?,
            skc_num: self.offset("sock_common", "skc_num")?,
            skc_family: self.offset("sock_common", "skc_family")?,
            skc_v6_daddr: self.offset("sock_common", "skc_v6_daddr")?,
            skc_v6_rcv_saddr: self.offset("sock_common", "skc_v6_rcv_saddr")?,
            task_mm: self.offset("task_struct", "mm")?,
            mm_env_start: self.offset("mm_struct", "env_start")?,
            mm_env_end: self.offset("mm_struct", "env_end")?,
            mm_exe_file: self.offset("mm_struct", "exe_file")?,
            file_f_path: self.offset("file", "f_path")?,
            path_dentry: self.offset("path", "dentry")?,
            dentry_d_name: self.offset("dentry", "d_name")?,
            qstr_name: self.offset("qstr", "name")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::empty(&[])]
    #[case::bad_magic(&[0, 0, 1, 0, 24, 0, 0, 0])]
    #[case::short_header(&[0x9f, 0xeb, 1, 0, 24, 0])]
    #[case::sections_past_end(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]
    fn malformed_blobs_are_errors(#[case] blob: &[u8]) {
        assert!(Btf::parse(blob).is_err());
    }

    /// A tiny hand-built blob: struct outer { int a; union { int b; int c; }; }.
    #[test]
    fn finds_members_through_anonymous_unions() {
        let strings = b"\0outer\0a\0b\0c\0int\0";
        let mut types = Vec::new();
        let push = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        // 1: int (name "int" at 15), size 4
        push(&mut types, 15);
        push(&mut types, KIND_INT << 24);
        push(&mut types, 4);
        push(&mut types, 32);
        // 2: anonymous union { b @0, c @0 }
        push(&mut types, 0);
        push(&mut types, (KIND_UNION << 24) | 2);
        push(&mut types, 4);
        for name in [9u32, 11] {
            push(&mut types, name);
            push(&mut types, 1);
            push(&mut types, 0);
        }
        // 3: struct outer { a @0, <anon> @32 bits }
        push(&mut types, 1);
        push(&mut types, (KIND_STRUCT << 24) | 2);
        push(&mut types, 8);
        push(&mut types, 7);
        push(&mut types, 1);
        push(&mut types, 0);
        push(&mut types, 0);
        push(&mut types, 2);
        push(&mut types, 32);
        let mut blob = Vec::new();
        blob.extend_from_slice(&MAGIC.to_le_bytes());
        blob.extend_from_slice(&[1, 0]);
        push(&mut blob, 24);
        push(&mut blob, 0);
        push(&mut blob, types.len() as u32);
        push(&mut blob, types.len() as u32);
        push(&mut blob, strings.len() as u32);
        blob.extend_from_slice(&types);
        blob.extend_from_slice(strings);
        let btf = Btf::parse(&blob).expect("parses");
        assert_eq!(btf.offset("outer", "a").expect("a"), 0);
        assert_eq!(btf.offset("outer", "c").expect("c"), 4);
        assert!(matches!(
            btf.offset("outer", "zz"),
            Err(BtfError::Missing { .. })
        ));
        assert!(matches!(
            btf.offset("nope", "a"),
            Err(BtfError::Missing { .. })
        ));
    }

    /// The running kernel's BTF yields every offset, with the well-known fixed ones right.
    #[test]
    fn running_kernel_offsets() {
        let Ok(btf) = Btf::from_sys() else {
            eprintln!("SKIPPED: /sys/kernel/btf/vmlinux is not readable here");
            assert!(
                std::env::var("SONDE_REQUIRE_KERNEL").is_err(),
                "kernel BTF required"
            );
            return;
        };
        let o = btf.offsets().expect("all offsets present");
        // These sit at the start of struct sock_common on every kernel since 2.6.
        assert_eq!(o.skc_daddr, 0);
        assert_eq!(o.skc_rcv_saddr, 4);
        assert_eq!(o.skc_dport, 12);
        assert_eq!(o.skc_num, 14);
        assert_eq!(o.skc_family, 16);
        assert!(o.task_files > 0 && o.file_private_data > 0);
    }
}
