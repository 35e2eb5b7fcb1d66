//! Prometheus remote write: every `collection_interval` each tenant's series become
//! snappy-compressed protobuf `WriteRequest`s in one bounded queue (full → the oldest is
//! dropped and its samples counted); one sender posts them in order, retrying network errors,
//! 5xx and 429 with doubling backoff, and dropping (counted) what Prometheus refuses (4xx).
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use prost::Message;
use tokio_util::sync::CancellationToken;

use super::{
    Generator, labels, lock,
    prompb::{TimeSeries, WriteRequest},
};

/// One request waiting to be sent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub tenant: String,
    /// Snappy-compressed `WriteRequest`.
    pub body: Bytes,
    pub samples: u64,
}

/// Requests waiting to be sent, oldest first, at most `max`.
pub struct Queue {
    q: Mutex<VecDeque<Pending>>,
    max: usize,
    wake: tokio::sync::Notify,
}

impl Queue {
    pub fn new(max: usize) -> Self {
        Self {
            q: Mutex::new(VecDeque::new()),
            max: max.max(1),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Queue `p`; the oldest waiting request, if the queue was full.
    pub fn push(&self, p: Pending) -> Option<Pending> {
        let dropped = {
            let mut q = lock(&self.q);
            let d = if q.len() >= self.max {
                q.pop_front()
            } else {
                None
            };
            q.push_back(p);
            d
        };
        self.wake.notify_one();
        dropped
    }

    pub fn pop(&self) -> Option<Pending> {
        lock(&self.q).pop_front()
    }

    pub fn len(&self) -> usize {
        lock(&self.q).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The series as requests of at most `max_samples` samples each.
pub fn encode(series: Vec<TimeSeries>, max_samples: usize) -> Vec<(Bytes, u64)> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut n = 0usize;
    let flush = |cur: &mut Vec<TimeSeries>, n: &mut usize, out: &mut Vec<(Bytes, u64)>| {
        if cur.is_empty() {
            return;
        }
        let req = WriteRequest {
            timeseries: std::mem::take(cur),
        };
        let raw = req.encode_to_vec();
        // Compressing a buffer we made cannot fail but for its size (> 4 GiB); an empty body
        // would then be refused by Prometheus and counted.
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .unwrap_or_default();
        out.push((Bytes::from(body), *n as u64));
        *n = 0;
    };
    for ts in series {
        if n > 0 && n + ts.samples.len() > max_samples {
            flush(&mut cur, &mut n, &mut out);
        }
        n += ts.samples.len();
        cur.push(ts);
    }
    flush(&mut cur, &mut n, &mut out);
    out
}

impl Generator {
    /// Collect every tenant's series into the remote-write queue.
    pub fn enqueue(&self) {
        let max = self.cfg.remote_write.max_samples_per_send;
        for (tenant, series) in self.collect() {
            for (body, samples) in encode(series, max) {
                let dropped = self.queue.push(Pending {
                    tenant: tenant.clone(),
                    body,
                    samples,
                });
                if let Some(d) = dropped {
                    self.dropped(&d, "queue_full");
                }
            }
        }
    }

    fn dropped(&self, p: &Pending, reason: &str) {
        self.metrics
            .rw_samples_dropped
            .get_or_create(&labels(&[("tenant", &p.tenant), ("reason", reason)]))
            .inc_by(p.samples);
        if let Some(held_back) = self.rw_log.allow() {
            tracing::warn!(tenant = %p.tenant, samples = p.samples, reason, held_back, "generated samples dropped before remote write");
        }
    }
}

/// How one send went.
enum Sent {
    Ok,
    /// Worth trying again (network, 5xx, 429).
    Retry(String),
    /// Prometheus refused it for good (4xx).
    Refused(String),
}

async fn send(client: &reqwest::Client, generator: &Generator, p: &Pending) -> Sent {
    let rw = &generator.cfg.remote_write;
    let mut req = client
        .post(&rw.url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("User-Agent", concat!("sonde/", env!("CARGO_PKG_VERSION")));
    for (k, v) in &rw.headers {
        req = req.header(k, v);
    }
    if generator.multitenancy {
        req = req.header("X-Scope-OrgID", &p.tenant);
    }
    match req.body(p.body.clone()).send().await {
        Err(e) => Sent::Retry(e.to_string()),
        Ok(r) if r.status().is_success() => Sent::Ok,
        Ok(r) => {
            let code = r.status();
            let body = r.text().await.unwrap_or_default();
            let msg = format!("{code}: {}", body.trim());
            if code.is_server_error() || code.as_u16() == 429 {
                Sent::Retry(msg)
            } else {
                Sent::Refused(msg)
            }
        }
    }
}

/// Collect every `collection_interval` (also settling expired edges and forgetting stale series,
/// with or without a remote-write URL) and send until `shutdown`.
pub async fn run(generator: Arc<Generator>, shutdown: CancellationToken) {
    let rw = generator.cfg.remote_write.clone();
    let client = match reqwest::Client::builder().timeout(rw.timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot make the remote-write client; generated series are only scraped");
            return;
        }
    };
    let g = generator.clone();
    let sd = shutdown.clone();
    let collector = async move {
        let mut tick = tokio::time::interval(g.cfg.collection_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let g = g.clone();
                    let _ = tokio::task::spawn_blocking(move || g.enqueue()).await;
                }
                () = sd.cancelled() => return,
            }
        }
    };
    let sender = async move {
        let mut backoff = rw.min_backoff;
        loop {
            let Some(p) = generator.queue.pop() else {
                tokio::select! {
                    () = generator.queue.wake.notified() => continue,
                    () = shutdown.cancelled() => return,
                }
            };
            loop {
                let sent = tokio::select! {
                    s = send(&client, &generator, &p) => s,
                    () = shutdown.cancelled() => return,
                };
                match sent {
                    Sent::Ok => {
                        generator
                            .metrics
                            .rw_samples_sent
                            .get_or_create(&labels(&[("tenant", &p.tenant)]))
                            .inc_by(p.samples);
                        backoff = rw.min_backoff;
                        break;
                    }
                    Sent::Refused(msg) => {
                        if let Some(held_back) = generator.rw_log.allow() {
                            tracing::warn!(url = %rw.url, error = %msg, held_back, "Prometheus refused generated series");
                        }
                        generator.dropped(&p, "rejected");
                        break;
                    }
                    Sent::Retry(msg) => {
                        if let Some(held_back) = generator.rw_log.allow() {
                            tracing::warn!(url = %rw.url, error = %msg, retry_in = ?backoff, held_back, "remote write failed; retrying");
                        }
                        generator
                            .metrics
                            .rw_retries
                            .get_or_create(&labels(&[("tenant", &p.tenant)]))
                            .inc();
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = shutdown.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(rw.max_backoff);
                    }
                }
            }
        }
    };
    tokio::join!(collector, sender);
}
