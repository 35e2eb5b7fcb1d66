//! Pod metadata from recorded API objects, the index, the resources built from it, and the
//! watch against an API server that answers with recorded responses.
use std::{
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::{List, api::core::v1::Pod};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::span::resource::{AttrValue, ResourceCache};

const PODS: &str = include_str!("testdata/pods.json");
const WATCH_ADDED: &str = include_str!("testdata/watch-added.json");

fn recorded() -> Vec<Pod> {
    serde_json::from_str::<List<Pod>>(PODS)
        .expect("recorded pod list")
        .items
}

fn id(hex2: &str) -> String {
    hex2.repeat(32)
}

#[test]
fn owners_and_service_names_follow_the_precedence() {
    let metas: Vec<PodMeta> = recorded().iter().filter_map(pod_meta).collect();
    assert_eq!(metas.len(), 3);
    let deployment = &metas[0];
    assert_eq!(
        deployment.owners,
        vec![
            ("k8s.deployment.name", "checkout".to_owned()),
            ("k8s.replicaset.name", "checkout-7d9f8c6b5d".to_owned()),
        ]
    );
    // No annotation, no app.kubernetes.io/name label: the owner's name.
    assert_eq!(deployment.service_name.as_deref(), Some("checkout"));
    assert_eq!(
        deployment.containers,
        vec![
            (id("a1"), "app".to_owned()),
            (id("a2"), "istio-proxy".to_owned())
        ]
    );
    assert_eq!(deployment.node.as_deref(), Some("node-a"));
    // The annotation wins over the label.
    let statefulset = &metas[1];
    assert_eq!(statefulset.service_name.as_deref(), Some("orders-db"));
    assert_eq!(
        statefulset.owners,
        vec![("k8s.statefulset.name", "db".to_owned())]
    );
    // The label wins over the owner; a CronJob's Job names the CronJob.
    let job = &metas[2];
    assert_eq!(job.service_name.as_deref(), Some("reporter"));
    assert_eq!(
        job.owners,
        vec![
            ("k8s.cronjob.name", "report".to_owned()),
            ("k8s.job.name", "report-29433120".to_owned()),
        ]
    );
    assert_eq!(job.containers, vec![(id("c1"), "report".to_owned())]);
}

#[test]
fn the_index_follows_adds_deletes_and_relists() {
    let pods = Pods::default();
    let recorded = recorded();
    pods.replace(&recorded);
    let g = pods.generation();
    let app = pods.lookup(&id("a1"), None).expect("container a1");
    assert_eq!(
        (app.pod.name.as_str(), app.container.as_str()),
        ("checkout-7d9f8c6b5d-x2x9k", "app")
    );
    // A container not in the pod's status yet: the pod by its UID, without a container name
    // when it has several.
    let by_uid = pods
        .lookup(&id("ff"), Some("0b6c1c3e-8f1a-4b7e-9c2d-5e4f3a2b1c0d"))
        .expect("pod by uid");
    assert_eq!(by_uid.container, "");
    let single = pods
        .lookup(&id("ff"), Some("1c7d2d4f-9a2b-4c8f-8d3e-6f5a4b3c2d1e"))
        .expect("pod by uid");
    assert_eq!(single.container, "postgres");
    pods.delete(&recorded[0]);
    assert!(pods.lookup(&id("a1"), None).is_none());
    assert!(pods.generation() > g);
    assert_eq!(pods.stats().pods.load(Ordering::Relaxed), 2);
    pods.replace(&recorded[2..]);
    assert!(
        pods.lookup(&id("b1"), None).is_none(),
        "gone from the relist"
    );
    assert!(pods.lookup(&id("c1"), None).is_some());
}

/// A `/proc` fixture with one process in container `c`.
fn proc_in_container(c: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = dir.path().join("7");
    std::fs::create_dir_all(&p).expect("mkdir");
    let cgroup = format!(
        "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b6c1c3e_8f1a_4b7e_9c2d_5e4f3a2b1c0d.slice/cri-containerd-{c}.scope\n"
    );
    std::fs::write(p.join("cgroup"), cgroup).expect("write");
    std::fs::write(p.join("environ"), "PATH=/bin\0").expect("write");
    std::fs::write(p.join("comm"), "server\n").expect("write");
    std::os::unix::fs::symlink("/app/server", p.join("exe")).expect("symlink");
    dir
}

fn attr(r: &crate::span::resource::ProcessResource, key: &str) -> Option<String> {
    match r.attr(key)? {
        AttrValue::Str(s) => Some(s.clone()),
        AttrValue::Int(i) => Some(i.to_string()),
    }
}

#[test]
fn a_process_in_a_pod_carries_the_pod_and_is_named_after_it_once_the_pod_is_known() {
    let dir = proc_in_container(&id("a1"));
    let pods = Pods::default();
    let cache = ResourceCache::with_proc_root("node-a", 16, dir.path()).with_pods(pods.clone());
    // The watch has not delivered the pod yet: the cgroup's facts only, counted.
    let early = cache.get(7);
    assert_eq!(early.service_name, "server");
    assert_eq!(
        attr(&early, "k8s.pod.uid").as_deref(),
        Some("0b6c1c3e-8f1a-4b7e-9c2d-5e4f3a2b1c0d")
    );
    assert_eq!(attr(&early, "k8s.pod.name"), None);
    assert_eq!(pods.stats().unmatched.load(Ordering::Relaxed), 1);
    assert!(
        Arc::ptr_eq(&early, &cache.get(7)),
        "no rebuild while nothing changed"
    );
    pods.replace(&recorded());
    let r = cache.get(7);
    assert_eq!(r.service_name, "checkout");
    for (key, want) in [
        ("service.namespace", "shop"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "checkout-7d9f8c6b5d-x2x9k"),
        ("k8s.pod.uid", "0b6c1c3e-8f1a-4b7e-9c2d-5e4f3a2b1c0d"),
        ("k8s.container.name", "app"),
        ("k8s.node.name", "node-a"),
        ("k8s.deployment.name", "checkout"),
        ("k8s.replicaset.name", "checkout-7d9f8c6b5d"),
    ] {
        assert_eq!(attr(&r, key).as_deref(), Some(want), "{key}");
    }
    assert!(Arc::ptr_eq(&r, &cache.get(7)), "kept once complete");
}

/// An API server answering the pod list and watch of node `node-a` with recorded responses,
/// keeping the query strings it was asked.
async fn fake_api_server(queries: Arc<Mutex<Vec<String>>>) -> std::net::SocketAddr {
    use axum::{body::Body, extract::RawQuery, routing::get};
    let app = axum::Router::new().route(
        "/api/v1/pods",
        get(move |RawQuery(q): RawQuery| {
            let queries = queries.clone();
            async move {
                let q = q.unwrap_or_default();
                queries.lock().expect("lock").push(q.clone());
                let body = if q.contains("watch=true") {
                    // One event, then the watch stays open.
                    let first = futures::stream::once(async {
                        Ok::<_, std::io::Error>(format!("{WATCH_ADDED}\n"))
                    });
                    Body::from_stream(first.chain(futures::stream::pending()))
                } else {
                    Body::from(PODS)
                };
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client_for(addr: std::net::SocketAddr) -> kube::Client {
    let config = kube::Config::new(format!("http://{addr}").parse().expect("uri"));
    kube::Client::try_from(config).expect("client")
}

/// The watch of node `node-a`'s pods through the API server at `addr`.
struct Watch {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    fn start(addr: std::net::SocketAddr, pods: &Pods) -> Self {
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch::run(
            client_for(addr),
            "node-a".into(),
            pods.clone(),
            stop.clone(),
        ));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the watch stops")
            .expect("join");
    }
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_watch_lists_then_follows_this_node_s_pods() {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let addr = fake_api_server(queries.clone()).await;
    let pods = Pods::default();
    let watch = Watch::start(addr, &pods);
    until("the listed and the added pods", || {
        pods.lookup(&id("a1"), None).is_some() && pods.lookup(&id("d4"), None).is_some()
    })
    .await;
    assert_eq!(pods.stats().pods.load(Ordering::Relaxed), 4);
    assert_eq!(pods.stats().api_errors.load(Ordering::Relaxed), 0);
    let asked = queries.lock().expect("lock").clone();
    assert!(
        asked
            .iter()
            .all(|q| q.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{asked:?}"
    );
    watch.stop().await;
}

#[tokio::test]
async fn with_the_api_down_resources_are_built_without_pods_and_errors_are_counted() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let pods = Pods::default();
    let watch = Watch::start(addr, &pods);
    until("an API error", || {
        pods.stats().api_errors.load(Ordering::Relaxed) >= 1
    })
    .await;
    let dir = proc_in_container(&id("a1"));
    let cache = ResourceCache::with_proc_root("node-a", 16, dir.path()).with_pods(pods.clone());
    let r = cache.get(7);
    assert_eq!(r.service_name, "server");
    assert!(attr(&r, "container.id").is_some());
    watch.stop().await;
}
