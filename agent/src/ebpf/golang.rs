//! Go programs' HTTP client, for the linking stage: find where the functions the kernel's
//! `golang` uprobes watch start in a process's executable, and attach the probes there once
//! per executable (a uprobe on a file fires in every process that runs it).
//!
//! Only executables with a symbol table are watched (Go keeps one unless built with `-s`).
use std::{collections::HashSet, os::unix::fs::MetadataExt as _, path::Path};

use aya::programs::{UProbe, uprobe::UProbeScope};
use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// The probed functions: (uprobe program, Go symbol).
pub const FUNCTIONS: [(&str, &str); 2] = [
    ("go_round_trip", "net/http.(*Transport).roundTrip"),
    ("go_write_request", "net/http.(*Request).write"),
];

/// Executables larger than this are not read.
const MAX_EXE_BYTES: u64 = 512 << 20;
/// Executables remembered as looked at (forgotten all at once beyond).
const MAX_SEEN: usize = 4096;

/// Where each of [`FUNCTIONS`] starts in the file (its uprobe offset), when the ELF image
/// `elf` is a Go program (it has Go's build information) that defines them all. Only the
/// parts of the file needed are read.
pub fn client_offsets<'a, R: object::ReadRef<'a>>(
    elf: R,
) -> Result<Option<[u64; 2]>, object::Error> {
    let file = object::File::parse(elf)?;
    if file.section_by_name(".go.buildinfo").is_none() {
        return Ok(None);
    }
    let mut found = [None; 2];
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(i) = FUNCTIONS.iter().position(|(_, f)| *f == name) else {
            continue;
        };
        let Some(section) = sym
            .section_index()
            .and_then(|s| file.section_by_index(s).ok())
        else {
            continue;
        };
        let Some((file_start, _)) = section.file_range() else {
            continue;
        };
        found[i] = sym
            .address()
            .checked_sub(section.address())
            .and_then(|d| d.checked_add(file_start));
    }
    Ok(match found {
        [Some(a), Some(b)] => Some([a, b]),
        _ => None,
    })
}

/// What came of looking at a process's executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watch {
    /// The probes cannot be attached for want of privilege (said once; no Go program is
    /// probed after that).
    Refused(String),
    /// The probes were attached to it now.
    Attached,
    /// Looked at before (attached or not).
    Seen,
    /// Not a Go program with net/http's client (or without its symbol table).
    NotGo,
}

/// The Go uprobes: loaded once, attached per executable.
pub struct GoProbes {
    /// (device, inode) of every executable looked at.
    seen: HashSet<(u64, u64)>,
    /// A probe was refused for want of privilege: not tried again.
    refused: bool,
}

impl GoProbes {
    /// Loads the uprobe programs of `ebpf` (attached later, per executable).
    pub fn load(ebpf: &mut aya::Ebpf) -> Result<Self, String> {
        for (program, _) in FUNCTIONS {
            uprobe(ebpf, program)?
                .load()
                .map_err(|e| format!("loading {program}: {e}"))?;
        }
        Ok(Self {
            seen: HashSet::new(),
            refused: false,
        })
    }

    /// Attaches the probes to the executable process `pid` runs, unless it was looked at
    /// before or is not a Go program with net/http's client.
    pub fn watch(&mut self, ebpf: &mut aya::Ebpf, pid: u32) -> Result<Watch, String> {
        if self.refused {
            return Ok(Watch::NotGo);
        }
        let exe = format!("/proc/{pid}/exe");
        let meta = match std::fs::metadata(&exe) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                self.refused = true;
                return Ok(Watch::Refused(format!(
                    "{exe}: {e}: opening another user's executable takes CAP_SYS_PTRACE, \
                     and a uprobe CAP_SYS_ADMIN"
                )));
            }
            Err(e) => return Err(format!("{exe}: {e}")),
        };
        if self.seen.len() >= MAX_SEEN {
            self.seen.clear();
        }
        if !self.seen.insert((meta.dev(), meta.ino())) {
            return Ok(Watch::Seen);
        }
        if meta.len() > MAX_EXE_BYTES {
            return Ok(Watch::NotGo);
        }
        let image = std::fs::File::open(&exe).map_err(|e| format!("{exe}: {e}"))?;
        let image = object::read::ReadCache::new(image);
        let Ok(Some(offsets)) = client_offsets(&image) else {
            return Ok(Watch::NotGo);
        };
        for ((program, function), offset) in FUNCTIONS.iter().zip(offsets) {
            let attached =
                uprobe(ebpf, program)?.attach(offset, Path::new(&exe), UProbeScope::AllProcesses);
            match attached {
                Ok(_) => {}
                Err(e) if refused_for_privilege(&e) => {
                    self.refused = true;
                    return Ok(Watch::Refused(format!(
                        "the kernel refused a uprobe on {function} ({e}): uprobes take \
                         CAP_SYS_ADMIN on current kernels (CAP_PERFMON was enough on some \
                         earlier ones), and another user's executable CAP_SYS_PTRACE"
                    )));
                }
                Err(e) => return Err(format!("attaching to {function} in {exe}: {e}")),
            }
        }
        Ok(Watch::Attached)
    }
}

/// `perf_event_open` failed with EACCES or EPERM.
fn refused_for_privilege(e: &aya::programs::ProgramError) -> bool {
    matches!(
        e,
        aya::programs::ProgramError::SyscallError(aya::sys::SyscallError { io_error, .. })
            if matches!(io_error.raw_os_error(), Some(libc::EACCES | libc::EPERM))
    )
}

fn uprobe<'a>(ebpf: &'a mut aya::Ebpf, program: &str) -> Result<&'a mut UProbe, String> {
    ebpf.program_mut(program)
        .ok_or_else(|| format!("the eBPF object has no program {program}"))?
        .try_into()
        .map_err(|e| format!("{program}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_without_go_s_client_has_no_offsets() {
        // This test binary is Rust: an ELF file without the Go symbols.
        let own = std::fs::read("/proc/self/exe").expect("read own executable");
        assert_eq!(client_offsets(own.as_slice()).expect("parse"), None);
        assert!(client_offsets(b"not an executable".as_slice()).is_err());
    }

    /// A Go program with net/http's client has both functions; the same program built
    /// without its symbol table (`-ldflags=-s`) has none to probe.
    #[test]
    fn a_go_program_has_offsets_unless_stripped() {
        if std::process::Command::new("go")
            .arg("version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("SONDE_REQUIRE_KERNEL").is_none(),
                "go is not installed (cargo xtask setup installs golang-go)"
            );
            eprintln!("skipped: go is not installed");
            return;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let src = dir.path().join("main.go");
        std::fs::write(&src, include_str!("../../../tests/programs/middle.go")).expect("write");
        let build = |out: &str, flags: &[&str]| {
            let bin = dir.path().join(out);
            let ok = std::process::Command::new("go")
                .arg("build")
                .args(flags)
                .arg("-o")
                .arg(&bin)
                .arg(&src)
                .env("GO111MODULE", "off")
                .env("GOCACHE", dir.path().join("cache"))
                .status()
                .expect("go build")
                .success();
            assert!(ok, "go build failed");
            std::fs::read(bin).expect("read built program")
        };
        let image = build("with-symbols", &[]);
        let [round_trip, write] = client_offsets(image.as_slice())
            .expect("parse")
            .expect("both functions found");
        assert!(round_trip != write);
        assert!(round_trip < image.len() as u64 && write < image.len() as u64);
        let stripped = build("stripped", &["-ldflags=-s"]);
        assert_eq!(client_offsets(stripped.as_slice()).expect("parse"), None);
    }
}
