//! Kubernetes metadata for the resources of traced processes: a process's cgroup names its
//! container ([`crate::span::resource::container`]); a watch of the pods on this node
//! ([`watch`]) says which pod, namespace, container and owner that container belongs to.
//!
//! `service.name` of a process in a pod, when the process does not name itself
//! (`OTEL_SERVICE_NAME`, `service.name` in `OTEL_RESOURCE_ATTRIBUTES`): the pod's
//! `resource.opentelemetry.io/service.name` annotation, its `app.kubernetes.io/name` label,
//! then its owner's name (the Deployment behind a ReplicaSet, a StatefulSet, a DaemonSet, a
//! Job, the CronJob behind a Job). `service.namespace` is the pod's namespace.
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
};

use k8s_openapi::api::core::v1::Pod;
use rustc_hash::FxHashMap as HashMap;

pub mod watch;

/// What the agent knows of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    /// The workload that owns the pod: (`k8s.<kind>.name` attribute key, name), the
    /// Deployment (from its ReplicaSet) or CronJob (from its Job) first.
    pub owners: Vec<(&'static str, String)>,
    /// `service.name` the pod gives its processes, if any (annotation, label, owner).
    pub service_name: Option<String>,
    /// Container ID (64 hex digits, without the runtime prefix) → container name.
    pub containers: Vec<(String, String)>,
}

/// The attributes of one container of a pod, for a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMeta {
    pub pod: Arc<PodMeta>,
    pub container: String,
}

/// The pods of this node, by UID and by container ID. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Pods {
    inner: Arc<RwLock<Index>>,
    stats: Arc<PodStats>,
}

#[derive(Debug, Default)]
struct Index {
    by_uid: HashMap<String, Arc<PodMeta>>,
    by_container: HashMap<String, (Arc<PodMeta>, String)>,
    /// Bumped at every change: a resource built without its pod is built again after one.
    generation: u64,
}

/// Counters of the pod watch.
#[derive(Debug, Default)]
pub struct PodStats {
    /// Errors talking to the Kubernetes API (the watch retries with backoff).
    pub api_errors: AtomicU64,
    /// Pods known right now (a gauge).
    pub pods: AtomicU64,
    /// Resources of containerised processes built without their pod (not known yet, or the
    /// API unreachable).
    pub unmatched: AtomicU64,
}

impl Pods {
    pub fn stats(&self) -> &PodStats {
        &self.stats
    }

    /// A pod was added or changed.
    pub fn apply(&self, pod: &Pod) {
        let Some(meta) = pod_meta(pod) else { return };
        let mut index = self.write();
        index.remove(&meta.uid);
        index.insert(Arc::new(meta));
        self.stats
            .pods
            .store(index.by_uid.len() as u64, Ordering::Relaxed);
    }

    /// A pod was deleted.
    pub fn delete(&self, pod: &Pod) {
        let Some(uid) = pod.metadata.uid.as_deref() else {
            return;
        };
        let mut index = self.write();
        index.remove(uid);
        self.stats
            .pods
            .store(index.by_uid.len() as u64, Ordering::Relaxed);
    }

    /// The watch listed every pod afresh: forget the ones not among them.
    pub fn replace(&self, pods: &[Pod]) {
        let metas: Vec<Arc<PodMeta>> = pods.iter().filter_map(pod_meta).map(Arc::new).collect();
        let mut index = self.write();
        let generation = index.generation + 1;
        *index = Index {
            generation,
            ..Index::default()
        };
        for meta in metas {
            index.insert(meta);
        }
        self.stats
            .pods
            .store(index.by_uid.len() as u64, Ordering::Relaxed);
    }

    /// The container with this ID (else the pod with this UID: a container not started yet
    /// when the pod was last seen).
    pub fn lookup(&self, container_id: &str, pod_uid: Option<&str>) -> Option<ContainerMeta> {
        let index = self.read();
        if let Some((pod, container)) = index.by_container.get(container_id) {
            return Some(ContainerMeta {
                pod: pod.clone(),
                container: container.clone(),
            });
        }
        let pod = index.by_uid.get(pod_uid?)?;
        // One container: it is that one; several: the pod's facts without a container name.
        let container = match pod.containers.as_slice() {
            [(_, name)] => name.clone(),
            _ => String::new(),
        };
        Some(ContainerMeta {
            pod: pod.clone(),
            container,
        })
    }

    /// Changes so far.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Index {
    fn insert(&mut self, meta: Arc<PodMeta>) {
        for (id, name) in &meta.containers {
            self.by_container
                .insert(id.clone(), (meta.clone(), name.clone()));
        }
        self.by_uid.insert(meta.uid.clone(), meta);
        self.generation += 1;
    }

    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.by_uid.remove(uid) {
            for (id, _) in &old.containers {
                self.by_container.remove(id);
            }
            self.generation += 1;
        }
    }
}

/// What a pod object says, or `None` without a namespace, name or UID.
pub fn pod_meta(pod: &Pod) -> Option<PodMeta> {
    let m = &pod.metadata;
    let namespace = m.namespace.clone()?;
    let name = m.name.clone()?;
    let uid = m.uid.clone()?;
    let mut owners = Vec::new();
    for owner in m.owner_references.iter().flatten() {
        let entry = match owner.kind.as_str() {
            "ReplicaSet" => {
                // A Deployment's ReplicaSet is `<deployment>-<pod-template-hash>`.
                if let Some(deployment) = m
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("pod-template-hash"))
                    .and_then(|hash| owner.name.strip_suffix(&format!("-{hash}")))
                {
                    owners.push(("k8s.deployment.name", deployment.to_owned()));
                }
                ("k8s.replicaset.name", owner.name.clone())
            }
            "StatefulSet" => ("k8s.statefulset.name", owner.name.clone()),
            "DaemonSet" => ("k8s.daemonset.name", owner.name.clone()),
            "Job" => {
                // A CronJob's Job is `<cronjob>-<scheduled minute>`.
                if let Some((cronjob, stamp)) = owner.name.rsplit_once('-')
                    && stamp.len() >= 8
                    && stamp.bytes().all(|b| b.is_ascii_digit())
                {
                    owners.push(("k8s.cronjob.name", cronjob.to_owned()));
                }
                ("k8s.job.name", owner.name.clone())
            }
            _ => continue,
        };
        owners.push(entry);
    }
    let service_name = m
        .annotations
        .as_ref()
        .and_then(|a| a.get("resource.opentelemetry.io/service.name"))
        .or_else(|| m.labels.as_ref()?.get("app.kubernetes.io/name"))
        .filter(|s| !s.is_empty())
        .cloned()
        .or_else(|| owners.first().map(|(_, name)| name.clone()));
    let status = pod.status.as_ref();
    let containers = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .filter_map(|c| {
            // `containerd://<id>`, `cri-o://<id>`, `docker://<id>`.
            let id = c.container_id.as_deref()?.rsplit_once("://")?.1;
            Some((id.to_owned(), c.name.clone()))
        })
        .collect();
    Some(PodMeta {
        namespace,
        name,
        uid,
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        owners,
        service_name,
        containers,
    })
}

#[cfg(test)]
mod tests;
