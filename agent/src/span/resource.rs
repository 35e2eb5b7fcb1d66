//! Who a traced process is: its OpenTelemetry resource (`service.name`, `process.*`, `host.name`)
//! read from `/proc`, cached per pid with a bounded cache.
//!
//! `service.name` comes from, in order: the process's own `OTEL_SERVICE_NAME`; `service.name`
//! inside its `OTEL_RESOURCE_ATTRIBUTES`; the systemd unit it runs in (`…/foo.service` → `foo`);
//! the executable's file name; `unknown_service:<comm>` (the OpenTelemetry convention) when only
//! the thread name is known; `unknown_service` when the process is already gone.
//!
//! `service.instance.id` is `<host.name>:<pid>:<start>`, where `<start>` is the process start
//! time in clock ticks since boot (`/proc/<pid>/stat` field 22). That is stable for the life of
//! the process and differs when a pid is reused; it is `<host.name>:<pid>` when the process is
//! gone before we could read it.
//!
//! A process in a container gets `container.id`, and in a Kubernetes pod `k8s.pod.uid`, from
//! its cgroup path ([`container`]).
//!
//! A process gone from /proc by the time its spans are built (a short-lived client) is named
//! from what the kernel sent at its first connection ([`alive`]): its executable's file name
//! and its naming variables.
use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// Version reported as `telemetry.sdk.version` and as the instrumentation scope version.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `telemetry.sdk.name` and `telemetry.distro.name`.
pub const SDK_NAME: &str = "sonde";

/// Keys Sonde itself owns: a process's `OTEL_RESOURCE_ATTRIBUTES` cannot override them.
const OWNED_KEYS: &[&str] = &[
    "service.name",
    "process.pid",
    "process.executable.name",
    "process.executable.path",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
    "telemetry.sdk.language",
    "telemetry.distro.name",
    "telemetry.distro.version",
];

/// A resource attribute value (only the types we produce).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum AttrValue {
    Str(String),
    Int(i64),
}

/// One resource attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceAttr {
    pub key: String,
    pub value: AttrValue,
}

impl ResourceAttr {
    fn str(key: &str, value: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: AttrValue::Str(value.into()),
        }
    }
    fn int(key: &str, value: i64) -> Self {
        Self {
            key: key.to_owned(),
            value: AttrValue::Int(value),
        }
    }
}

/// The OpenTelemetry resource of one traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessResource {
    pub pid: u32,
    pub service_name: String,
    /// All attributes, `service.name` included, in a stable order.
    pub attributes: Vec<ResourceAttr>,
}

impl ProcessResource {
    /// The value of attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }
}

/// What `/proc` told us about one process (every field optional: the process may be gone or
/// unreadable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcFacts {
    pub environ: Option<Vec<u8>>,
    pub cgroup: Option<String>,
    pub exe: Option<PathBuf>,
    /// The executable's file name when its path is not known (the kernel's, for a process
    /// gone from /proc).
    pub exe_name: Option<String>,
    pub comm: Option<String>,
    pub stat: Option<String>,
    /// The Kubernetes pod and container the process runs in (from the pod watch).
    pub kube: Option<crate::k8s::ContainerMeta>,
}

impl ProcFacts {
    /// Read the facts for `pid` under `proc_root` (normally `/proc`).
    pub fn read(proc_root: &Path, pid: u32) -> Self {
        let dir = proc_root.join(pid.to_string());
        Self {
            environ: std::fs::read(dir.join("environ")).ok(),
            cgroup: std::fs::read_to_string(dir.join("cgroup")).ok(),
            exe: std::fs::read_link(dir.join("exe")).ok(),
            exe_name: None,
            comm: std::fs::read_to_string(dir.join("comm")).ok(),
            stat: std::fs::read_to_string(dir.join("stat")).ok(),
            kube: None,
        }
    }
}

/// Build the resource of `pid` from what `/proc` said. Pure.
pub fn build_resource(pid: u32, host_name: &str, facts: &ProcFacts) -> ProcessResource {
    let env = facts
        .environ
        .as_deref()
        .map(parse_environ)
        .unwrap_or_default();
    let env_get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let user_attrs = env_get("OTEL_RESOURCE_ATTRIBUTES")
        .map(parse_key_values)
        .unwrap_or_default();

    let exe_path = facts
        .exe
        .as_ref()
        .map(|p| strip_deleted(&p.to_string_lossy()));
    let exe_name = exe_path
        .as_deref()
        .and_then(|p| p.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| facts.exe_name.clone().filter(|n| !n.is_empty()));
    let comm = facts
        .comm
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned);

    let service_name = env_get("OTEL_SERVICE_NAME")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .or_else(|| {
            user_attrs
                .iter()
                .find(|(k, v)| k == "service.name" && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
        .or_else(|| facts.kube.as_ref()?.pod.service_name.clone())
        .or_else(|| facts.cgroup.as_deref().and_then(systemd_unit))
        .or_else(|| exe_name.clone())
        .unwrap_or_else(|| match &comm {
            Some(c) => format!("unknown_service:{c}"),
            None => "unknown_service".to_owned(),
        });

    let start = facts.stat.as_deref().and_then(stat_start_ticks);
    let instance_id = match start {
        Some(s) => format!("{host_name}:{pid}:{s}"),
        None => format!("{host_name}:{pid}"),
    };

    let mut attrs = vec![
        ResourceAttr::str("service.name", service_name.clone()),
        ResourceAttr::str("service.instance.id", instance_id),
        ResourceAttr::int("process.pid", i64::from(pid)),
    ];
    if let Some(name) = exe_name.or_else(|| comm.clone()) {
        attrs.push(ResourceAttr::str("process.executable.name", name));
    }
    if let Some(path) = exe_path {
        attrs.push(ResourceAttr::str("process.executable.path", path));
    }
    attrs.push(ResourceAttr::str("host.name", host_name));
    if let Some(c) = facts.cgroup.as_deref().and_then(container::container_of) {
        attrs.push(ResourceAttr::str("container.id", c.id));
        match &facts.kube {
            Some(k) => {
                let pod = &k.pod;
                attrs.push(ResourceAttr::str("service.namespace", &pod.namespace));
                attrs.push(ResourceAttr::str("k8s.namespace.name", &pod.namespace));
                attrs.push(ResourceAttr::str("k8s.pod.name", &pod.name));
                attrs.push(ResourceAttr::str("k8s.pod.uid", &pod.uid));
                if !k.container.is_empty() {
                    attrs.push(ResourceAttr::str("k8s.container.name", &k.container));
                }
                if let Some(node) = &pod.node {
                    attrs.push(ResourceAttr::str("k8s.node.name", node));
                }
                for (key, name) in &pod.owners {
                    attrs.push(ResourceAttr::str(key, name));
                }
            }
            None => {
                if let Some(uid) = c.pod_uid {
                    attrs.push(ResourceAttr::str("k8s.pod.uid", uid));
                }
            }
        }
    }
    attrs.push(ResourceAttr::str("telemetry.sdk.name", SDK_NAME));
    attrs.push(ResourceAttr::str("telemetry.sdk.version", SDK_VERSION));
    attrs.push(ResourceAttr::str("telemetry.distro.name", SDK_NAME));
    attrs.push(ResourceAttr::str("telemetry.distro.version", SDK_VERSION));
    for (key, value) in user_attrs {
        if key.is_empty() || OWNED_KEYS.contains(&key.as_str()) {
            continue;
        }
        let attr = ResourceAttr::str(&key, value);
        match attrs.iter_mut().find(|a| a.key == key) {
            Some(existing) => *existing = attr,
            None => attrs.push(attr),
        }
    }
    ProcessResource {
        pid,
        service_name,
        attributes: attrs,
    }
}

/// Split a NUL-separated `environ` into `(name, value)` pairs; entries without `=` are skipped.
fn parse_environ(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            let (k, v) = text.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Parse the `key1=value1,key2=value2` form of `OTEL_RESOURCE_ATTRIBUTES` and
/// `OTEL_EXPORTER_OTLP_HEADERS`: keys and values trimmed and percent-decoded; entries without
/// `=` are skipped (the specification says to ignore them).
pub fn parse_key_values(s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter_map(|item| {
            let (k, v) = item.split_once('=')?;
            let key = percent_decode(k.trim());
            (!key.is_empty()).then(|| (key, percent_decode(v.trim())))
        })
        .collect()
}

/// Decode `%XX` escapes; malformed escapes are kept literally, invalid UTF-8 is replaced.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The systemd service a process runs in, from `/proc/<pid>/cgroup` (v2 `0::/…` or the v1
/// `name=systemd` hierarchy): the deepest `*.service` path component, without the suffix.
/// The per-user manager `user@<uid>.service` only counts when nothing deeper is a service.
pub fn systemd_unit(cgroup: &str) -> Option<String> {
    let path = cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers.is_empty() || controllers == "name=systemd").then_some(path)
        })
        .next()?;
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    // An app scope under the user manager (`user@1000.service/app.slice/x.scope`) is not the
    // user manager itself.
    let last = components.last()?;
    components.iter().rev().find_map(|c| {
        let unit = c.strip_suffix(".service")?;
        if unit.is_empty() || (is_user_manager(unit) && !last.ends_with(".service")) {
            return None;
        }
        Some(unit.to_owned())
    })
}

fn is_user_manager(unit: &str) -> bool {
    unit.strip_prefix("user@")
        .is_some_and(|uid| uid.bytes().all(|b| b.is_ascii_digit()))
}

/// `readlink /proc/<pid>/exe` says `/usr/bin/foo (deleted)` after the binary was replaced.
fn strip_deleted(path: &str) -> String {
    path.strip_suffix(" (deleted)").unwrap_or(path).to_owned()
}

/// Field 22 (`starttime`) of `/proc/<pid>/stat`; `comm` (field 2) may contain spaces and
/// parentheses, so count from the last `)`.
fn stat_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After `)`: field 3 (state) is the first token, so starttime (22) is token index 19.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The host name of this node (`/proc/sys/kernel/hostname`), `localhost` if unreadable.
pub fn local_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// A bounded pid → resource cache. When full, the oldest entry is evicted; call [`forget`]
/// when a process exits so a reused pid is read afresh.
///
/// [`forget`]: ResourceCache::forget
#[derive(Debug)]
pub struct ResourceCache {
    host_name: String,
    capacity: usize,
    proc_root: PathBuf,
    /// This node's pods, when Kubernetes metadata is on.
    pods: Option<crate::k8s::Pods>,
    inner: Mutex<CacheInner>,
}

#[derive(Debug)]
struct Cached {
    /// Insertion sequence number.
    seq: u64,
    resource: Arc<ProcessResource>,
    /// Built from the process's own /proc environment: what the kernel sends later adds
    /// nothing.
    from_proc: bool,
    /// A process in a container whose pod was not known: the pods' generation then (the
    /// resource is built again once it changed).
    pod_missing_at: Option<u64>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// pid → its resource.
    map: rustc_hash::FxHashMap<u32, Cached>,
    /// Insertion order as `(seq, pid)`; stale rows (forgotten or replaced) are skipped.
    order: VecDeque<(u64, u32)>,
    next_seq: u64,
    /// What the kernel sent of processes while they were alive (bounded by `capacity`).
    alive: rustc_hash::FxHashMap<u32, AliveFacts>,
}

impl ResourceCache {
    /// A cache over the real `/proc`.
    pub fn new(host_name: impl Into<String>, capacity: usize) -> Self {
        Self::with_proc_root(host_name, capacity, "/proc")
    }

    /// A cache over another `/proc` (tests use a fixture directory).
    pub fn with_proc_root(
        host_name: impl Into<String>,
        capacity: usize,
        proc_root: impl Into<PathBuf>,
    ) -> Self {
        Self {
            host_name: host_name.into(),
            capacity: capacity.max(1),
            proc_root: proc_root.into(),
            pods: None,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// Adds Kubernetes metadata from `pods` to the resources of processes in pods.
    pub fn with_pods(mut self, pods: crate::k8s::Pods) -> Self {
        self.pods = Some(pods);
        self
    }

    /// The resource of `pid`, read from `/proc` on first use.
    pub fn get(&self, pid: u32) -> Arc<ProcessResource> {
        self.get_named(pid, None)
    }

    /// Like [`get`](Self::get), with the command name the kernel reported, used when the
    /// process is already gone from `/proc` (short-lived clients such as curl).
    pub fn get_named(&self, pid: u32, comm: Option<&str>) -> Arc<ProcessResource> {
        let generation = self.pods.as_ref().map(crate::k8s::Pods::generation);
        if let Some(c) = self.lock().map.get(&pid)
            && (c.pod_missing_at.is_none() || c.pod_missing_at == generation)
        {
            return c.resource.clone();
        }
        // Read /proc without holding the lock.
        let mut facts = ProcFacts::read(&self.proc_root, pid);
        let from_proc = facts.environ.is_some();
        if facts.comm.is_none() {
            facts.comm = comm.map(str::to_owned);
        }
        if facts.environ.is_none() || facts.exe.is_none() {
            // Gone (or going): what the kernel saw while it was alive.
            if let Some(alive) = self.lock().alive.get(&pid) {
                if facts.environ.is_none() {
                    facts.environ = Some(alive.environ.clone());
                }
                facts.exe_name = alive.exe_name.clone();
            }
        }
        let mut pod_missing_at = None;
        if let Some(pods) = &self.pods
            && let Some(c) = facts.cgroup.as_deref().and_then(container::container_of)
        {
            facts.kube = pods.lookup(&c.id, c.pod_uid.as_deref());
            if facts.kube.is_none() {
                pods.stats()
                    .unmatched
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                pod_missing_at = generation;
            }
        }
        let fresh = Arc::new(build_resource(pid, &self.host_name, &facts));
        let mut inner = self.lock();
        if let Some(c) = inner.map.get(&pid)
            && c.pod_missing_at.is_none()
        {
            return c.resource.clone();
        }
        while inner.map.len() >= self.capacity {
            let Some((seq, old)) = inner.order.pop_front() else {
                break;
            };
            if inner.map.get(&old).is_some_and(|c| c.seq == seq) {
                inner.map.remove(&old);
            }
        }
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.order.push_back((seq, pid));
        inner.map.insert(
            pid,
            Cached {
                seq,
                resource: fresh.clone(),
                from_proc,
                pod_missing_at,
            },
        );
        // Keep the order queue from growing without bound under forget/insert churn.
        if inner.order.len() > self.capacity * 2 {
            let CacheInner { map, order, .. } = &mut *inner;
            order.retain(|(s, p)| map.get(p).is_some_and(|c| c.seq == *s));
        }
        fresh
    }

    /// Drop the cached resource of `pid` (call on process exit).
    pub fn forget(&self, pid: u32) {
        let mut inner = self.lock();
        inner.map.remove(&pid);
        inner.alive.remove(&pid);
    }

    /// Keep what the kernel sent of `pid` while it was alive, for when /proc no longer has
    /// it. A resource already built without the process's /proc environment (it was gone)
    /// is built again; one built from /proc is kept (it knew as much, and more).
    pub fn remember(&self, pid: u32, facts: AliveFacts) {
        let mut inner = self.lock();
        if inner.alive.len() >= self.capacity {
            inner.alive.clear();
        }
        inner.alive.insert(pid, facts);
        if !inner.map.get(&pid).is_some_and(|c| c.from_proc) {
            inner.map.remove(&pid);
        }
    }

    /// Number of cached processes.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic while holding this lock leaves the map consistent; keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

pub mod alive;
pub mod container;
#[cfg(test)]
mod tests;

pub use alive::AliveFacts;
