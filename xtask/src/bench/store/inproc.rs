//! The metrics generator's own cost, in process: the same requests through `Store::ingest`
//! (the seam the generator hangs on) with the generator off and on, counting only the
//! ingesting thread's CPU time. Other load on the machine moves that far less than a whole
//! process's CPU time; blocks are cut between requests, outside the count.
use std::{path::Path, sync::Arc};

use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use sonde_store::{Store, StoreSection, SystemClock, ids::SINGLE_TENANT};

use super::load::Batch;

/// This thread's CPU time, seconds.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Ingest-path CPU seconds per million spans with the generator off and on, `rounds` times
/// each (alternating which goes first).
pub fn generator_cost(
    dir: &Path,
    batches: &[Batch],
    rounds: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let reqs: Vec<(ExportTraceServiceRequest, usize)> = batches
        .iter()
        .map(|b| {
            Ok((
                ExportTraceServiceRequest::decode(b.body.as_slice())?,
                b.spans,
            ))
        })
        .collect::<Result<_, prost::DecodeError>>()
        .context("decoding the generated requests")?;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for generator in order {
            let data = dir.join(format!("inproc-{round}-{generator}"));
            let mut cfg = StoreSection {
                data_dir: data.clone(),
                ..StoreSection::default()
            };
            cfg.generator.enabled = generator;
            // Pushed as fast as one thread goes: no rate limit to refuse part of it.
            cfg.limits.ingestion_rate_limit_bytes = 0;
            let store = Store::open(&cfg, Arc::new(SystemClock))
                .map_err(|e| anyhow::anyhow!("opening a store in {}: {e}", data.display()))?;
            let (mut cpu, mut spans, mut refused) = (0.0, 0usize, 0usize);
            for (i, (req, n)) in reqs.iter().enumerate() {
                let req = req.clone();
                let t = thread_cpu();
                let ok = store.ingest(SINGLE_TENANT, req).is_ok();
                cpu += thread_cpu() - t;
                if ok {
                    spans += n;
                } else {
                    refused += 1;
                }
                if i % 50 == 49 {
                    store.maintain(true);
                }
            }
            drop(store);
            if refused > 0 {
                anyhow::bail!("the in-process store refused {refused} requests");
            }
            let _ = std::fs::remove_dir_all(&data);
            let per_m = cpu / (spans.max(1) as f64 / 1e6);
            if generator { &mut on } else { &mut off }.push(per_m);
        }
    }
    Ok((off, on))
}
