//! service-graphs: a client (or producer) span and the server (or consumer) span it called are
//! paired within `wait` into one edge, `traces_service_graph_request_total`, `_failed_total`,
//! `_request_{server,client}_seconds` (shared/research/tempo-api.md §11.2). Pending halves sit
//! in a bounded store; one whose other half never comes becomes a virtual-node edge (a root
//! server span's caller is `user` or its peer attribute; a client span's uninstrumented callee
//! is its peer attribute) or is counted as unpaired.
use std::{
    borrow::Cow,
    collections::{HashMap, VecDeque},
};

use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    trace::v1::{Span, span::SpanKind, status::StatusCode},
};

use super::{
    attr,
    config::{ServiceGraphsSection, sanitize_label_name},
    registry::{MetricId, Registry},
    spanmetrics::duration_s,
};

/// Trace ID, then the client's span ID (the server span's parent); zeros for a root server span.
type Key = [u8; 24];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionType {
    Unset,
    VirtualNode,
    MessagingSystem,
    Database,
}

impl ConnectionType {
    fn label(self) -> &'static str {
        match self {
            Self::Unset => "",
            Self::VirtualNode => "virtual_node",
            Self::MessagingSystem => "messaging_system",
            Self::Database => "database",
        }
    }
}

#[derive(Debug, Clone)]
struct Edge {
    trace_id: [u8; 16],
    created_ns: u64,
    client: String,
    server: String,
    client_s: f64,
    server_s: f64,
    failed: bool,
    connection_type: ConnectionType,
    /// The server half had no parent span.
    root: bool,
    peer: String,
    /// Unset when the half that knows them has not arrived.
    client_dims: Vec<String>,
    server_dims: Vec<String>,
    virtual_node: &'static str,
}

/// What a batch or an expiry did, for the generator's own counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EdgeStats {
    pub edges: u64,
    pub expired: u64,
    pub dropped_spans: u64,
}

pub struct ServiceGraphs {
    cfg: ServiceGraphsSection,
    dims: Vec<String>,
    wait_ns: u64,
    request: MetricId,
    failed: MetricId,
    server_s: MetricId,
    client_s: MetricId,
    unpaired: MetricId,
    dropped: MetricId,
    pending: HashMap<Key, Edge, foldhash::fast::RandomState>,
    /// Keys in arrival order, with the edge's creation time (completed ones are skipped).
    order: VecDeque<(Key, u64)>,
    pub stats: EdgeStats,
}

impl ServiceGraphs {
    pub fn new(reg: &mut Registry, cfg: &ServiceGraphsSection, dims: &[String]) -> Self {
        let mut names: Vec<String> = ["client", "server", "connection_type"]
            .map(String::from)
            .to_vec();
        for d in dims {
            if cfg.enable_client_server_prefix {
                names.push(sanitize_label_name(&format!("client_{d}")));
                names.push(sanitize_label_name(&format!("server_{d}")));
            } else {
                names.push(sanitize_label_name(d));
            }
        }
        if cfg.enable_virtual_node_label {
            names.push("virtual_node".into());
        }
        let b = &cfg.histogram_buckets;
        let side = vec!["client".to_string(), "server".to_string()];
        let failed = reg.counter("traces_service_graph_request_failed_total", names.clone());
        let server_s = reg.histogram(
            "traces_service_graph_request_server_seconds",
            names.clone(),
            b,
        );
        let client_s = reg.histogram(
            "traces_service_graph_request_client_seconds",
            names.clone(),
            b,
        );
        for id in [failed, server_s, client_s] {
            reg.limits_counted_elsewhere(id);
        }
        Self {
            request: reg.counter("traces_service_graph_request_total", names),
            failed,
            server_s,
            client_s,
            unpaired: reg.counter("traces_service_graph_unpaired_spans_total", side.clone()),
            dropped: reg.counter("traces_service_graph_dropped_spans_total", side),
            wait_ns: u64::try_from(cfg.wait.as_nanos()).unwrap_or(u64::MAX),
            cfg: cfg.clone(),
            dims: dims.to_vec(),
            pending: HashMap::default(),
            order: VecDeque::new(),
            stats: EdgeStats::default(),
        }
    }

    /// Half edges waiting for their other half.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn dims_of(&self, span: &Span, res: &[KeyValue]) -> Vec<String> {
        self.dims
            .iter()
            .map(|d| attr(d, &span.attributes, res).map_or(String::new(), Cow::into_owned))
            .collect()
    }

    fn peer_of(&self, span: &Span) -> String {
        self.cfg
            .peer_attributes
            .iter()
            .find_map(|k| attr(k, &span.attributes, &[]))
            .map_or(String::new(), Cow::into_owned)
    }

    /// Take one span of `service`.
    pub fn span(
        &mut self,
        reg: &mut Registry,
        service: &str,
        res: &[KeyValue],
        span: &Span,
        now: u64,
    ) {
        let kind = SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified);
        let client = matches!(kind, SpanKind::Client | SpanKind::Producer);
        let server = matches!(kind, SpanKind::Server | SpanKind::Consumer);
        if !(client || server) {
            return;
        }
        let (Ok(trace_id), Ok(span_id)) = (
            <[u8; 16]>::try_from(span.trace_id.as_slice()),
            <[u8; 8]>::try_from(span.span_id.as_slice()),
        ) else {
            return;
        };
        let mut key: Key = [0; 24];
        key[..16].copy_from_slice(&trace_id);
        let parent = <[u8; 8]>::try_from(span.parent_span_id.as_slice()).ok();
        if client {
            key[16..].copy_from_slice(&span_id);
        } else if let Some(p) = parent {
            key[16..].copy_from_slice(&p);
        }
        let failed = span
            .status
            .as_ref()
            .is_some_and(|s| s.code == StatusCode::Error as i32);
        let messaging = matches!(kind, SpanKind::Producer | SpanKind::Consumer);
        let is_new = !self.pending.contains_key(&key);
        let mut e = self.pending.remove(&key).unwrap_or_else(|| Edge {
            trace_id,
            created_ns: now,
            client: String::new(),
            server: String::new(),
            client_s: 0.0,
            server_s: 0.0,
            failed: false,
            connection_type: ConnectionType::Unset,
            root: false,
            peer: String::new(),
            client_dims: Vec::new(),
            server_dims: Vec::new(),
            virtual_node: "",
        });
        if messaging {
            e.connection_type = ConnectionType::MessagingSystem;
        }
        e.failed |= failed;
        let peer = self.peer_of(span);
        if !peer.is_empty() {
            e.peer = peer;
        }
        if client {
            e.client = service.to_string();
            e.client_s = duration_s(span);
            e.client_dims = self.dims_of(span, res);
            self.database(&mut e, span, res);
        } else {
            e.server = service.to_string();
            e.server_s = duration_s(span);
            e.root = parent.is_none();
            e.server_dims = self.dims_of(span, res);
        }
        if !e.client.is_empty() && !e.server.is_empty() {
            self.stats.edges += u64::from(is_new);
            self.record(reg, &e, now);
            return;
        }
        if is_new && self.pending.len() >= self.cfg.max_items {
            self.stats.dropped_spans += 1;
            let side = if client { [service, ""] } else { ["", service] };
            reg.inc(self.dropped, &reg.key(&side), 1.0, now);
            return;
        }
        if is_new {
            self.stats.edges += 1;
            self.order.push_back((key, e.created_ns));
        }
        self.pending.insert(key, e);
        if self.order.len() > 2 * self.cfg.max_items + 1024 {
            let pending = &self.pending;
            self.order
                .retain(|(k, t)| pending.get(k).is_some_and(|e| e.created_ns == *t));
        }
    }

    /// A client span with a database attribute is a finished `database` edge.
    fn database(&self, e: &mut Edge, span: &Span, res: &[KeyValue]) {
        let Some(db) = self
            .cfg
            .database_name_attributes
            .iter()
            .find_map(|k| attr(k, &span.attributes, res))
        else {
            return;
        };
        e.connection_type = ConnectionType::Database;
        e.server_s = duration_s(span);
        let a = |k: &str| attr(k, &span.attributes, res);
        e.server = if let Some(v) = a("peer.service").or_else(|| a("server.address")) {
            v.into_owned()
        } else if let Some(host) = a("network.peer.address") {
            match a("network.peer.port") {
                Some(port) => format!("{host}:{port}"),
                None => host.into_owned(),
            }
        } else {
            db.into_owned()
        };
    }

    /// Settle every half edge older than `wait`.
    pub fn expire(&mut self, reg: &mut Registry, now: u64) {
        while let Some(&(key, created)) = self.order.front() {
            if created.saturating_add(self.wait_ns) > now {
                break;
            }
            self.order.pop_front();
            match self.pending.get(&key) {
                Some(e) if e.created_ns == created => {}
                _ => continue,
            }
            let Some(mut e) = self.pending.remove(&key) else {
                continue;
            };
            e.connection_type = ConnectionType::VirtualNode;
            if e.client.is_empty() && e.root {
                e.client = if e.peer.is_empty() {
                    "user".into()
                } else {
                    e.peer.clone()
                };
                e.virtual_node = "client";
                self.record(reg, &e, now);
            } else if e.server.is_empty() && !e.client.is_empty() && !e.peer.is_empty() {
                e.server = e.peer.clone();
                e.virtual_node = "server";
                self.record(reg, &e, now);
            } else {
                self.stats.expired += 1;
                let side = [e.client.as_str(), e.server.as_str()];
                reg.inc(self.unpaired, &reg.key(&side), 1.0, now);
            }
        }
    }

    fn record(&self, reg: &mut Registry, e: &Edge, now: u64) {
        let mut v: Vec<&str> = vec![&e.client, &e.server, e.connection_type.label()];
        fn get(d: &[String], i: usize) -> &str {
            d.get(i).map_or("", String::as_str)
        }
        for i in 0..self.dims.len() {
            if self.cfg.enable_client_server_prefix {
                v.push(get(&e.client_dims, i));
                v.push(get(&e.server_dims, i));
            } else {
                let s = get(&e.server_dims, i);
                v.push(if s.is_empty() {
                    get(&e.client_dims, i)
                } else {
                    s
                });
            }
        }
        if self.cfg.enable_virtual_node_label {
            v.push(e.virtual_node);
        }
        let k = reg.key(&v);
        reg.inc(self.request, &k, 1.0, now);
        if e.failed {
            reg.inc(self.failed, &k, 1.0, now);
        }
        reg.observe(self.server_s, &k, e.server_s, &e.trace_id, now);
        reg.observe(self.client_s, &k, e.client_s, &e.trace_id, now);
    }
}
