//! Which processes to trace: every process (the default), or those matching pids, listening
//! ports or executable-path globs. Resolution scans /proc; the agent re-runs it periodically
//! and writes the result into the kernel's selected-process bitmap.
use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use globset::{Glob, GlobSet, GlobSetBuilder};

/// A process selection as configured.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub pids: Vec<u32>,
    pub ports: Vec<u16>,
    pub exe_globs: GlobSet,
    has_globs: bool,
}

/// A bad executable glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid executable glob {glob:?}: {source}")]
pub struct GlobError {
    glob: String,
    source: globset::Error,
}

impl Selection {
    pub fn new(pids: Vec<u32>, ports: Vec<u16>, globs: &[String]) -> Result<Self, GlobError> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(Glob::new(g).map_err(|source| GlobError {
                glob: g.clone(),
                source,
            })?);
        }
        let exe_globs = b.build().map_err(|source| GlobError {
            glob: globs.join(","),
            source,
        })?;
        Ok(Self {
            pids,
            ports,
            exe_globs,
            has_globs: !globs.is_empty(),
        })
    }

    /// Whether any periodic /proc rescan is worth doing (pids and globs; ports are selected by
    /// the kernel).
    pub fn needs_rescan(&self) -> bool {
        self.has_globs
    }

    /// Whether the program `pid` just ran matches an executable glob: its executable as
    /// `proc_root` shows it (the resolved path, as the periodic scan sees it), or, when the
    /// process is already gone, `exec_path`, the path it was started with (a short-lived
    /// client can finish before the agent looks).
    pub fn exe_matches(&self, proc_root: &Path, pid: u32, exec_path: &[u8]) -> bool {
        use std::os::unix::ffi::OsStrExt as _;
        if !self.has_globs {
            return false;
        }
        match fs::read_link(proc_root.join(pid.to_string()).join("exe")) {
            Ok(exe) => self.exe_globs.is_match(&exe),
            Err(_) => {
                !exec_path.is_empty()
                    && self
                        .exe_globs
                        .is_match(Path::new(std::ffi::OsStr::from_bytes(exec_path)))
            }
        }
    }

    /// No criterion: trace every process.
    pub fn is_all(&self) -> bool {
        self.pids.is_empty() && self.ports.is_empty() && !self.has_globs
    }

    /// The pids selected right now, read from `proc_root` (normally `/proc`). Listening ports
    /// are looked up only when `with_ports` is set: reading `net/tcp` costs a lot on a busy
    /// host (every TIME_WAIT socket is listed), so the agent does it once at start and lets the
    /// kernel select later listeners at their first accept.
    pub fn resolve(&self, proc_root: &Path, with_ports: bool) -> HashSet<u32> {
        let mut out: HashSet<u32> = self.pids.iter().copied().collect();
        let listening = if self.ports.is_empty() || !with_ports {
            HashSet::new()
        } else {
            listening_inodes(proc_root, &self.ports)
        };
        for pid in running_pids(proc_root) {
            let dir = proc_root.join(pid.to_string());
            if self.has_globs
                && let Ok(exe) = fs::read_link(dir.join("exe"))
                && self.exe_globs.is_match(&exe)
            {
                out.insert(pid);
                continue;
            }
            if !listening.is_empty() && owns_any_socket(&dir, &listening) {
                out.insert(pid);
            }
        }
        out
    }
}

/// The pids under `proc_root` (normally `/proc`).
pub fn running_pids(proc_root: &Path) -> Vec<u32> {
    fs::read_dir(proc_root)
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Socket inodes of TCP listeners on any of `ports` (from `net/tcp` and `net/tcp6`).
fn listening_inodes(proc_root: &Path, ports: &[u16]) -> HashSet<u64> {
    let mut out = HashSet::new();
    for file in ["net/tcp", "net/tcp6"] {
        let Ok(text) = fs::read_to_string(proc_root.join(file)) else {
            continue;
        };
        out.extend(parse_listeners(&text, ports));
    }
    out
}

/// Socket inodes of the listeners on any of `ports` in a `/proc/net/tcp{,6}` text.
fn parse_listeners(text: &str, ports: &[u16]) -> Vec<u64> {
    listeners(text)
        .into_iter()
        .filter(|(_, port)| ports.contains(port))
        .map(|(inode, _)| inode)
        .collect()
}

/// Every TCP listener in a `/proc/net/tcp{,6}` text (`sl local_address rem_address st …
/// inode`, state 0A = LISTEN), as (socket inode, local port).
pub(crate) fn listeners(text: &str) -> Vec<(u64, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            (cols.get(3)? == &"0A").then(|| Some((cols.get(9)?.parse().ok()?, port)))?
        })
        .collect()
}

/// The socket inodes a process holds open, from `/proc/<pid>/fd`.
pub(crate) fn socket_inodes(proc_pid: &Path) -> impl Iterator<Item = u64> {
    fs::read_dir(proc_pid.join("fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| {
            let target: PathBuf = fs::read_link(fd.path()).ok()?;
            target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
}

fn owns_any_socket(proc_pid: &Path, inodes: &HashSet<u64>) -> bool {
    socket_inodes(proc_pid).any(|inode| inodes.contains(&inode))
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0
";

    #[rstest]
    #[case::listener_on_8080(&[8080], vec![4242])]
    #[case::established_is_not_listening(&[50000], vec![])]
    #[case::two_ports(&[8080, 80], vec![4242, 77])]
    #[case::none(&[9999], vec![])]
    fn listeners(#[case] ports: &[u16], #[case] want: Vec<u64>) {
        assert_eq!(parse_listeners(TCP, ports), want);
    }

    #[rstest]
    #[case::garbage("x\nnot a table at all\n")]
    #[case::empty("")]
    fn garbage_tables_yield_nothing(#[case] text: &str) {
        assert!(parse_listeners(text, &[80]).is_empty());
    }

    #[test]
    fn default_selects_all_and_globs_do_not() {
        assert!(Selection::new(vec![], vec![], &[]).unwrap().is_all());
        assert!(
            !Selection::new(vec![], vec![], &["**/python3*".into()])
                .unwrap()
                .is_all()
        );
        assert!(Selection::new(vec![], vec![], &["[".into()]).is_err());
    }

    #[test]
    fn resolves_own_process_by_exe_glob_and_pid() {
        let me = std::process::id();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let sel = Selection::new(vec![], vec![], &[exe.display().to_string()]).unwrap();
        assert!(sel.resolve(Path::new("/proc"), true).contains(&me));
        let sel = Selection::new(vec![1], vec![], &[]).unwrap();
        assert_eq!(
            sel.resolve(Path::new("/nonexistent"), true),
            HashSet::from([1])
        );
    }

    #[test]
    fn exe_match_of_one_pid() {
        let me = std::process::id();
        let exe = fs::read_link("/proc/self/exe").unwrap();
        let mine = Selection::new(vec![], vec![], &[exe.display().to_string()]).unwrap();
        assert!(mine.exe_matches(Path::new("/proc"), me, b""));
        let other = Selection::new(vec![], vec![], &["/nowhere/*".to_owned()]).unwrap();
        assert!(!other.exe_matches(Path::new("/proc"), me, b""));
        // /proc wins over the exec path while the process lives.
        assert!(!other.exe_matches(Path::new("/proc"), me, b"/nowhere/x"));
        // No globs: no match.
        let by_pid = Selection::new(vec![me], vec![], &[]).unwrap();
        assert!(!by_pid.exe_matches(Path::new("/proc"), me, b"/nowhere/x"));
        // A process that is gone is judged by the path it was started with.
        assert!(!mine.exe_matches(Path::new("/nonexistent"), me, b""));
        assert!(other.exe_matches(Path::new("/nonexistent"), me, b"/nowhere/x"));
        assert!(!other.exe_matches(Path::new("/nonexistent"), me, b"/elsewhere/x"));
    }
}
