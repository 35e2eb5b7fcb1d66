//! Naming facts the kernel sent while a process was alive (its executable's file name and
//! its environment, at its first connection): what names a process that is gone from /proc
//! by the time its spans are built. Of the environment only the OpenTelemetry naming
//! variables are kept; the rest (which may hold secrets) is dropped as soon as it is read.
use rustc_hash::FxHashMap as HashMap;

/// The environment variables that name a process.
const NAMING_VARS: &[&[u8]] = &[b"OTEL_SERVICE_NAME=", b"OTEL_RESOURCE_ATTRIBUTES="];

/// What the kernel told of one process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AliveFacts {
    /// The executable's file name.
    pub exe_name: Option<String>,
    /// The naming variables, NUL-separated as in `/proc/<pid>/environ`.
    pub environ: Vec<u8>,
}

/// Assembles environment chunks into [`AliveFacts`], for a bounded number of processes.
#[derive(Debug)]
pub struct Assembler {
    capacity: usize,
    /// Environments still arriving: (bytes expected, bytes so far).
    partial: HashMap<u32, (usize, Vec<u8>)>,
    /// Executable names waiting for their environment.
    names: HashMap<u32, String>,
    /// Environments dropped because chunks were missing or too many were in flight.
    pub incomplete: u64,
}

impl Assembler {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            partial: HashMap::default(),
            names: HashMap::default(),
            incomplete: 0,
        }
    }

    /// The executable's name (sent before the environment).
    pub fn exe_name(&mut self, pid: u32, name: &[u8]) {
        if self.names.len() >= self.capacity {
            self.names.clear();
        }
        if !name.is_empty() {
            self.names
                .insert(pid, String::from_utf8_lossy(name).into_owned());
        }
    }

    /// One chunk of the environment; returns the facts once the last chunk is in (a process
    /// with an empty environment sends one empty chunk).
    pub fn environ(
        &mut self,
        pid: u32,
        offset: usize,
        total: usize,
        bytes: &[u8],
    ) -> Option<AliveFacts> {
        if offset == 0 {
            if self.partial.len() >= self.capacity {
                self.incomplete += self.partial.len() as u64;
                self.partial.clear();
            }
            self.partial.insert(pid, (total, Vec::with_capacity(total)));
        }
        let Some((expected, buf)) = self.partial.get_mut(&pid) else {
            self.incomplete += 1;
            return None;
        };
        if offset != buf.len() || buf.len() + bytes.len() > *expected {
            self.partial.remove(&pid);
            self.incomplete += 1;
            return None;
        }
        buf.extend_from_slice(bytes);
        if buf.len() < *expected {
            return None;
        }
        let (_, env) = self.partial.remove(&pid)?;
        Some(AliveFacts {
            exe_name: self.names.remove(&pid),
            environ: naming_vars(&env),
        })
    }
}

/// The naming variables of a NUL-separated environment (a cut-off last entry is dropped).
fn naming_vars(env: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let complete = match env.iter().rposition(|&b| b == 0) {
        Some(end) => &env[..=end],
        None => &[][..],
    };
    for entry in complete.split(|&b| b == 0) {
        if NAMING_VARS.iter().any(|v| entry.starts_with(v)) {
            out.extend_from_slice(entry);
            out.push(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENV: &[u8] = b"HOME=/root\0AWS_SECRET_ACCESS_KEY=hunter2\0OTEL_SERVICE_NAME=billing\0\
        OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod\0PATH=/bin\0";

    #[test]
    fn keeps_only_the_naming_variables_across_chunks() {
        let mut a = Assembler::new(4);
        a.exe_name(7, b"curl");
        let (first, rest) = ENV.split_at(30);
        assert_eq!(a.environ(7, 0, ENV.len(), first), None);
        let facts = a.environ(7, 30, ENV.len(), rest).expect("complete");
        assert_eq!(facts.exe_name.as_deref(), Some("curl"));
        assert_eq!(
            facts.environ,
            b"OTEL_SERVICE_NAME=billing\0OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod\0"
        );
        assert!(!String::from_utf8_lossy(&facts.environ).contains("hunter2"));
    }

    #[test]
    fn a_missing_chunk_yields_nothing_and_is_counted() {
        let mut a = Assembler::new(4);
        assert_eq!(a.environ(7, 0, 100, &[b'A'; 40]), None);
        assert_eq!(a.environ(7, 80, 100, &[b'B'; 20]), None);
        assert_eq!(a.incomplete, 1);
        assert_eq!(a.environ(8, 4096, 5000, b"x"), None);
        assert_eq!(a.incomplete, 2);
    }

    #[test]
    fn a_cut_off_last_entry_is_dropped() {
        assert_eq!(
            naming_vars(b"OTEL_SERVICE_NAME=a\0OTEL_SERVICE_NAME=b"),
            b"OTEL_SERVICE_NAME=a\0"
        );
    }

    #[test]
    fn an_empty_environment_is_one_empty_chunk() {
        let mut a = Assembler::new(4);
        a.exe_name(9, b"wget");
        let facts = a.environ(9, 0, 0, b"").expect("complete");
        assert_eq!(facts.exe_name.as_deref(), Some("wget"));
        assert!(facts.environ.is_empty());
    }

    #[test]
    fn bounded() {
        let mut a = Assembler::new(2);
        for pid in 0..10 {
            a.exe_name(pid, b"x");
            a.environ(pid, 0, 10, b"ABC");
        }
        assert!(a.partial.len() <= 2 && a.names.len() <= 2);
    }
}
