//! The metrics generator: Tempo's span-metrics and service-graph series, made from every span
//! the store accepts (the agent's hand-off and any OTLP sender alike), kept per tenant in a
//! bounded [`registry::Registry`], remote-written to Prometheus ([`remote_write`]) and served
//! on `/metrics/generator` for a Prometheus that scrapes.
use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest, common::v1::KeyValue,
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};

pub mod config;
pub mod prompb;
pub mod registry;
pub mod remote_write;
pub mod scrape;
pub mod servicegraphs;
pub mod spanmetrics;

use config::{GeneratorSection, TenantSettings};
use registry::Registry;
use servicegraphs::ServiceGraphs;
use spanmetrics::SpanMetrics;

use crate::{BatchObserver, Clock};

type Labels = Vec<(String, String)>;

/// An attribute's value as a label value: the span's, else the resource's.
pub(crate) fn attr<'a>(
    key: &str,
    span: &'a [KeyValue],
    res: &'a [KeyValue],
) -> Option<Cow<'a, str>> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    let kv = span
        .iter()
        .find(|kv| kv.key == key)
        .or_else(|| res.iter().find(|kv| kv.key == key))?;
    let v = kv.value.as_ref()?;
    match &v.value {
        Some(Value::StringValue(s)) => Some(Cow::Borrowed(s.as_str())),
        None => None,
        Some(_) => Some(Cow::Owned(crate::rows::render_any(v))),
    }
}

/// The generator's own counters, on the store's `/metrics` under Tempo's names.
#[derive(Default)]
pub struct SelfMetrics {
    pub spans_received: Family<Labels, Counter>,
    pub active_series: Family<Labels, Gauge>,
    pub series_limited: Family<Labels, Counter>,
    pub label_values_limited: Family<Labels, Counter>,
    pub edges: Family<Labels, Counter>,
    pub expired_edges: Family<Labels, Counter>,
    pub dropped_spans: Family<Labels, Counter>,
    pub pending_edges: Family<Labels, Gauge>,
    pub rw_samples_sent: Family<Labels, Counter>,
    pub rw_samples_dropped: Family<Labels, Counter>,
    pub rw_retries: Family<Labels, Counter>,
    pub rw_pending: Gauge,
}

impl SelfMetrics {
    fn registry(&self) -> prometheus_client::registry::Registry {
        let mut r = prometheus_client::registry::Registry::default();
        let t = "tempo_metrics_generator_";
        r.register(
            format!("{t}spans_received"),
            "Spans the generator processed",
            self.spans_received.clone(),
        );
        r.register(
            format!("{t}registry_active_series"),
            "Generated series held per tenant",
            self.active_series.clone(),
        );
        r.register(
            format!("{t}registry_series_limited"),
            "New series counted into the metric_overflow series (max_active_series)",
            self.series_limited.clone(),
        );
        r.register(
            format!("{t}registry_label_values_limited"),
            "Label values replaced by __cardinality_overflow__ (max_cardinality_per_label)",
            self.label_values_limited.clone(),
        );
        r.register(
            format!("{t}processor_service_graphs_edges"),
            "Service-graph edges started",
            self.edges.clone(),
        );
        r.register(
            format!("{t}processor_service_graphs_expired_edges"),
            "Half edges that expired unpaired, without a virtual node",
            self.expired_edges.clone(),
        );
        r.register(
            format!("{t}processor_service_graphs_dropped_spans"),
            "Spans not paired because the store of pending edges was full",
            self.dropped_spans.clone(),
        );
        r.register(
            "sonde_store_generator_pending_edges",
            "Half edges waiting for their other half",
            self.pending_edges.clone(),
        );
        r.register(
            "sonde_store_generator_remote_write_samples_sent",
            "Samples Prometheus accepted",
            self.rw_samples_sent.clone(),
        );
        r.register(
            "sonde_store_generator_remote_write_samples_dropped",
            "Samples never sent, by reason (queue_full, rejected)",
            self.rw_samples_dropped.clone(),
        );
        r.register(
            "sonde_store_generator_remote_write_retries",
            "Remote-write requests retried",
            self.rw_retries.clone(),
        );
        r.register(
            "sonde_store_generator_remote_write_pending_requests",
            "Remote-write requests waiting to be sent",
            self.rw_pending.clone(),
        );
        r
    }
}

pub(crate) fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// One tenant's processors and series.
struct TenantGen {
    settings: TenantSettings,
    registry: Registry,
    span_metrics: Option<SpanMetrics>,
    service_graphs: Option<ServiceGraphs>,
}

/// The generator: sees every accepted batch and keeps each tenant's series.
pub struct Generator {
    cfg: GeneratorSection,
    clock: Arc<dyn Clock>,
    multitenancy: bool,
    instance: String,
    tenants: RwLock<HashMap<String, Arc<Mutex<TenantGen>>>>,
    pub metrics: SelfMetrics,
    self_registry: prometheus_client::registry::Registry,
    pub(crate) queue: remote_write::Queue,
    pub(crate) rw_log: crate::loggate::LogGate,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Generator {
    pub fn new(cfg: &GeneratorSection, clock: Arc<dyn Clock>, multitenancy: bool) -> Self {
        let metrics = SelfMetrics::default();
        let self_registry = metrics.registry();
        let instance = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sonde".into());
        Self {
            cfg: cfg.clone(),
            clock,
            multitenancy,
            instance,
            tenants: RwLock::new(HashMap::new()),
            metrics,
            self_registry,
            queue: remote_write::Queue::new(cfg.remote_write.max_pending_requests),
            rw_log: crate::loggate::LogGate::default(),
        }
    }

    pub fn config(&self) -> &GeneratorSection {
        &self.cfg
    }

    fn tenant(&self, name: &str) -> Arc<Mutex<TenantGen>> {
        if let Some(t) = self
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
        {
            return t.clone();
        }
        let mut map = self
            .tenants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(name.to_string())
            .or_insert_with(|| {
                let settings = self.cfg.for_tenant(name);
                let mut registry = Registry::new(
                    settings.max_active_series,
                    settings.max_cardinality_per_label,
                );
                let span_metrics = settings.span_metrics.then(|| {
                    SpanMetrics::new(
                        &mut registry,
                        &self.cfg.span_metrics,
                        &settings.span_metrics_dimensions,
                    )
                });
                let service_graphs = settings.service_graphs.then(|| {
                    ServiceGraphs::new(
                        &mut registry,
                        &self.cfg.service_graphs,
                        &settings.service_graphs_dimensions,
                    )
                });
                Arc::new(Mutex::new(TenantGen {
                    settings,
                    registry,
                    span_metrics,
                    service_graphs,
                }))
            })
            .clone()
    }

    fn tenant_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .tenants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Take one accepted batch of `tenant`.
    pub fn push(&self, tenant: &str, batch: &ExportTraceServiceRequest) {
        let now = self.clock.now_ns();
        let t = self.tenant(tenant);
        let mut g = lock(&t);
        let TenantGen {
            registry,
            span_metrics,
            service_graphs,
            ..
        } = &mut *g;
        if span_metrics.is_none() && service_graphs.is_none() {
            return;
        }
        let mut n = 0u64;
        for rs in &batch.resource_spans {
            let res: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
            let service = attr("service.name", &[], res);
            let svc = service.as_deref().unwrap_or("");
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    n += 1;
                    if let Some(sm) = span_metrics {
                        sm.span(registry, svc, res, span, now);
                    }
                    if let Some(sg) = service_graphs.as_mut()
                        && service.is_some()
                    {
                        sg.span(registry, svc, res, span, now);
                    }
                }
            }
        }
        if let Some(sg) = service_graphs.as_mut() {
            sg.expire(registry, now);
        }
        let tl = labels(&[("tenant", tenant)]);
        self.metrics.spans_received.get_or_create(&tl).inc_by(n);
        self.account(tenant, &mut g);
    }

    /// Move the processors' counts into the self metrics.
    fn account(&self, tenant: &str, g: &mut TenantGen) {
        let tl = labels(&[("tenant", tenant)]);
        let m = &self.metrics;
        let limited = g.registry.take_limited();
        if limited.series > 0 {
            m.series_limited.get_or_create(&tl).inc_by(limited.series);
        }
        for (name, n) in limited.label_values {
            m.label_values_limited
                .get_or_create(&labels(&[("tenant", tenant), ("label_name", &name)]))
                .inc_by(n);
        }
        m.active_series
            .get_or_create(&tl)
            .set(g.registry.active_series() as i64);
        if let Some(sg) = g.service_graphs.as_mut() {
            let s = std::mem::take(&mut sg.stats);
            for (f, n) in [
                (&m.edges, s.edges),
                (&m.expired_edges, s.expired),
                (&m.dropped_spans, s.dropped_spans),
            ] {
                if n > 0 {
                    f.get_or_create(&tl).inc_by(n);
                }
            }
            m.pending_edges.get_or_create(&tl).set(sg.pending() as i64);
        }
    }

    /// Labels every series of `tenant` carries.
    fn extra_labels(&self, tenant: &str, remote: bool) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .cfg
            .external_labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if remote {
            v.push(("__metrics_gen_instance".into(), self.instance.clone()));
        }
        if !self.cfg.inject_tenant_id_as.is_empty() {
            v.push((self.cfg.inject_tenant_id_as.clone(), tenant.to_string()));
        }
        v
    }

    /// Settle expired edges, forget stale series, and return each tenant's series that are
    /// remote-written (tenant, time series).
    pub fn collect(&self) -> Vec<(String, Vec<prompb::TimeSeries>)> {
        let now = self.clock.now_ns();
        let stale_ns = u64::try_from(self.cfg.stale_duration.as_nanos()).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        for name in self.tenant_names() {
            let t = self.tenant(&name);
            let mut g = lock(&t);
            let TenantGen {
                registry,
                service_graphs,
                settings,
                ..
            } = &mut *g;
            if let Some(sg) = service_graphs.as_mut() {
                sg.expire(registry, now);
            }
            registry.remove_stale(now.saturating_sub(stale_ns));
            if settings.remote_write {
                let mut series = Vec::new();
                registry.collect(
                    (now / 1_000_000) as i64,
                    &self.extra_labels(&name, true),
                    &mut series,
                );
                out.push((name.clone(), series));
            }
            self.account(&name, &mut g);
        }
        out
    }

    /// Prometheus text of the series of `tenants` (all when `None`); with multitenancy on,
    /// each series carries `tenant` unless `inject_tenant_id_as` names the label.
    pub fn render(&self, tenants: Option<&[String]>) -> String {
        let mut out = registry::Families::new();
        for name in self.tenant_names() {
            if tenants.is_some_and(|ts| !ts.contains(&name)) {
                continue;
            }
            let mut extra = self.extra_labels(&name, false);
            if self.multitenancy && self.cfg.inject_tenant_id_as.is_empty() {
                extra.push(("tenant".into(), name.clone()));
            }
            let t = self.tenant(&name);
            lock(&t).registry.render(&extra, &mut out);
        }
        registry::exposition(&out)
    }

    /// The generator's own counters as Prometheus text.
    pub fn render_self(&self) -> String {
        self.metrics.rw_pending.set(self.queue.len() as i64);
        let mut s = String::new();
        if encode(&mut s, &self.self_registry).is_err() {
            s.clear();
        }
        // Both halves of `/metrics` end with `# EOF`; keep only the last.
        s.trim_end().trim_end_matches("# EOF").to_string()
    }
}

impl BatchObserver for Generator {
    fn observe(&self, tenant: &str, batch: &ExportTraceServiceRequest) {
        self.push(tenant, batch);
    }
}

#[cfg(test)]
mod tests;
