//! The watch of this node's pods (kube-rs's watcher, `spec.nodeName=<node>` field selector),
//! kept in [`Pods`]. The API being down costs the metadata, never a span: the watch retries
//! with backoff and counts each error.
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt as _, watcher},
};
use tokio_util::sync::CancellationToken;

use super::Pods;

/// Watches the pods of `node` into `pods` until `stop`.
pub async fn run(client: Client, node: String, pods: Pods, stop: CancellationToken) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut logged: Option<Instant> = None;
    let mut listed: Vec<Pod> = Vec::new();
    loop {
        let event = tokio::select! {
            () = stop.cancelled() => break,
            event = stream.next() => event,
        };
        match event {
            Some(Ok(watcher::Event::Init)) => listed.clear(),
            Some(Ok(watcher::Event::InitApply(pod))) => listed.push(pod),
            Some(Ok(watcher::Event::InitDone)) => pods.replace(&std::mem::take(&mut listed)),
            Some(Ok(watcher::Event::Apply(pod))) => pods.apply(&pod),
            Some(Ok(watcher::Event::Delete(pod))) => pods.delete(&pod),
            Some(Err(e)) => {
                pods.stats().api_errors.fetch_add(1, Ordering::Relaxed);
                if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    logged = Some(Instant::now());
                    tracing::warn!(
                        error = %e,
                        "Kubernetes API: watching this node's pods failed (spans go on without \
                         pod metadata; retrying)"
                    );
                }
            }
            None => break,
        }
    }
}

/// A client from the in-cluster service account (or a kubeconfig outside a cluster).
pub async fn client() -> Result<Client, kube::Error> {
    Client::try_default().await
}
