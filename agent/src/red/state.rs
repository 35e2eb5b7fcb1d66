//! Everything the RED stage has counted: per service (its resource, its server and client
//! series, its learnt routes, its losses), the service graph, and the bounds that keep it
//! all in a fixed amount of memory.
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    collapse::RouteTree,
    graph::Graph,
    patterns::RoutePatterns,
    series::{
        DURATION_BOUNDS, Exemplar, OVERFLOW, Observation, SIZE_BOUNDS, Table, overflow_label_name,
        overflowed,
    },
};
use rustc_hash::FxHashMap as HashMap;

use crate::span::{SpanKind, resource::ProcessResource};

/// How much the RED stage may hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Series per metric and per service.
    pub series_per_service: usize,
    /// Series in all, every service together.
    pub series_total: usize,
    /// Services (process instances) tracked at once.
    pub services: usize,
    /// Distinct values of a route segment under one prefix before it collapses.
    pub route_segment_values: usize,
    /// Nodes of a service's route tree.
    pub route_nodes: usize,
    /// Service-graph edges.
    pub edges: usize,
    /// Trace-ID exemplars on the duration buckets.
    pub exemplars: bool,
    /// User route patterns, first match wins (checked by the configuration).
    pub route_patterns: Vec<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            series_per_service: 1000,
            series_total: 20_000,
            services: 512,
            route_segment_values: 50,
            route_nodes: 2000,
            edges: 10_000,
            exemplars: true,
            route_patterns: Vec::new(),
        }
    }
}

/// A service is idle (and may give its place to a new one) after this long.
const IDLE: Duration = Duration::from_secs(300);

/// Which process instance a series belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceKey {
    pub name: Arc<str>,
    pub namespace: Option<Arc<str>>,
    pub instance: Arc<str>,
}

impl ServiceKey {
    pub fn of(r: &ProcessResource) -> Self {
        let text = |k| match r.attr(k) {
            Some(crate::span::resource::AttrValue::Str(s)) => Some(s.as_str().into()),
            Some(crate::span::resource::AttrValue::Int(i)) => Some(i.to_string().into()),
            None => None,
        };
        Self {
            name: r.service_name.as_str().into(),
            namespace: text("service.namespace"),
            instance: text("service.instance.id").unwrap_or_else(|| r.pid.to_string().into()),
        }
    }
}

/// What is counted for one service.
#[derive(Debug)]
pub struct Service {
    pub resource: Arc<ProcessResource>,
    pub server: Table,
    pub client: Table,
    routes: RouteTree,
    /// Spans of this service the RED stage could not count (its queue was full).
    pub dropped_spans: u64,
    /// Exchanges of this service the capture dropped without a span (records lost, no
    /// response, eviction).
    pub skipped_exchanges: u64,
    /// Spans whose labels overflowed: (side, label) → count.
    pub overflows: HashMap<(SpanKind, &'static str), u64>,
    last_seen: Instant,
}

/// The whole RED state.
#[derive(Debug)]
pub struct State {
    pub limits: Limits,
    pub services: HashMap<ServiceKey, Service>,
    pub graph: Graph,
    /// Series held, all services together.
    series: usize,
    /// Services that took the overflow instance because the service table was full.
    pub instance_overflows: u64,
    /// OTLP metrics requests sent, and those that failed.
    pub otlp_requests: u64,
    pub otlp_failed_requests: u64,
    /// The key of each process resource seen lately, by its address (the `Arc` held here
    /// keeps the address from being reused): no allocation per span.
    keys: HashMap<usize, (Arc<ProcessResource>, Arc<ServiceKey>)>,
    patterns: RoutePatterns,
    /// Collapses learnt before the last restart, per service name (`/users/{id}` form):
    /// every instance of the service starts with them.
    learnt: std::collections::BTreeMap<String, Vec<String>>,
}

/// Resources whose key is remembered at most (a bound: cleared when reached).
const MAX_KEYS: usize = 4096;

impl State {
    pub fn new(limits: Limits) -> Self {
        Self {
            graph: Graph::new(limits.edges),
            patterns: RoutePatterns::parse(&limits.route_patterns).unwrap_or_default(),
            limits,
            services: HashMap::default(),
            series: 0,
            instance_overflows: 0,
            otlp_requests: 0,
            otlp_failed_requests: 0,
            keys: HashMap::default(),
            learnt: std::collections::BTreeMap::new(),
        }
    }

    /// Collapses learnt before a restart, per service name (as [`Self::learnt_routes`] gives
    /// them): services seen from now on start with them.
    pub fn seed_learnt_routes(&mut self, learnt: std::collections::BTreeMap<String, Vec<String>>) {
        self.learnt = learnt;
    }

    /// Every collapse learnt, per service name (all its instances, and what was learnt before
    /// the last restart): what survives a restart.
    pub fn learnt_routes(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out = self.learnt.clone();
        for (k, s) in &self.services {
            let v = out.entry(k.name.to_string()).or_default();
            v.extend(
                s.routes
                    .collapsed()
                    .map(|p| format!("{p}/{}", super::route::ID)),
            );
        }
        for v in out.values_mut() {
            v.sort();
            v.dedup();
        }
        out.retain(|_, v| !v.is_empty());
        out
    }

    /// Series held, all services together.
    pub fn series(&self) -> usize {
        self.series
    }

    /// Count one hand-over of observations.
    pub fn record(&mut self, batch: Vec<Observation>) {
        let now = Instant::now();
        let keys: Vec<Arc<ServiceKey>> = batch
            .iter()
            .map(|o| self.key_for(&o.resource, now))
            .collect();
        for (o, key) in batch.iter().zip(&keys) {
            self.graph.learn(&key.name, o);
        }
        for (mut o, key) in batch.into_iter().zip(keys) {
            self.graph.record(&key.name, &o, now);
            let exemplars = self.limits.exemplars;
            let room = self.series < self.limits.series_total;
            let limit = self.limits.series_per_service;
            if !self.services.contains_key(&*key) {
                self.insert_service(&key, &o.resource, 0, now);
            }
            let Some(service) = self.services.get_mut(&*key) else {
                continue;
            };
            service.last_seen = now;
            // The user's patterns first, then what was learnt.
            if let Some(route) = &o.labels.route {
                if let Some(p) = self.patterns.matching(route) {
                    o.labels.route = Some(p.into());
                } else if let Some(collapsed) = service.routes.apply_changed(route) {
                    o.labels.route = Some(collapsed.into());
                }
            }
            let table = match o.kind {
                SpanKind::Server => &mut service.server,
                SpanKind::Client => &mut service.client,
            };
            let before = table.series.len();
            let (series, admitted) = table.admit(o.labels, limit, room, exemplars);
            let b = series.duration.observe(&DURATION_BOUNDS, o.seconds);
            if let Some(ex) = series.exemplars.as_deref_mut() {
                ex[b] = Some(Exemplar {
                    trace_id: o.trace_id,
                    span_id: o.span_id,
                    value: o.seconds,
                    unix_ms: o.end_unix_ns / 1_000_000,
                });
            }
            if let Some(n) = o.request_size {
                series.request_size.observe(&SIZE_BOUNDS, n as f64);
            }
            if let Some(n) = o.response_size {
                series.response_size.observe(&SIZE_BOUNDS, n as f64);
            }
            self.series += table.series.len() - before;
            for bit in [
                overflowed::ROUTE,
                overflowed::SERVER_ADDRESS,
                overflowed::SERVER_PORT,
                overflowed::ALL,
            ] {
                if admitted.overflowed & bit != 0 {
                    *service
                        .overflows
                        .entry((o.kind, overflow_label_name(bit)))
                        .or_default() += 1;
                }
            }
        }
        self.graph.tick(Some(now));
    }

    /// Between hand-overs: let waiting service-graph edges go (all of them when stopping).
    pub fn tick(&mut self, stopping: bool) {
        self.graph.tick((!stopping).then(Instant::now));
    }

    /// The learnt collapses per service (`name` or `name/instance`): each prefix whose next
    /// segment now collapses, as the template it gives (`/users/{id}`), sorted.
    pub fn collapsed_routes(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out = std::collections::BTreeMap::new();
        for (k, s) in &self.services {
            let mut v: Vec<String> = s
                .routes
                .collapsed()
                .map(|p| format!("{p}/{}", super::route::ID))
                .collect();
            if v.is_empty() {
                continue;
            }
            v.sort();
            out.insert(format!("{}/{}", k.name, k.instance), v);
        }
        out
    }

    /// Count spans the RED stage had to drop, per service.
    pub fn dropped(&mut self, resource: &Arc<ProcessResource>, spans: u64) {
        let now = Instant::now();
        let key = self.key_for(resource, now);
        match self.services.get_mut(&*key) {
            Some(s) => s.dropped_spans += spans,
            None => self.insert_service(&key, resource, spans, now),
        }
    }

    /// Count exchanges the capture dropped without a span, per service.
    pub fn skipped(&mut self, resource: &Arc<ProcessResource>, exchanges: u64) {
        let now = Instant::now();
        let key = self.key_for(resource, now);
        if !self.services.contains_key(&*key) {
            self.insert_service(&key, resource, 0, now);
        }
        if let Some(s) = self.services.get_mut(&*key) {
            s.skipped_exchanges += exchanges;
        }
    }

    fn insert_service(
        &mut self,
        key: &ServiceKey,
        resource: &Arc<ProcessResource>,
        dropped_spans: u64,
        now: Instant,
    ) {
        let limits = &self.limits;
        let mut routes = RouteTree::new(limits.route_segment_values, limits.route_nodes);
        for template in self.learnt.get(&*key.name).into_iter().flatten() {
            if let Some(prefix) = template.strip_suffix(&format!("/{}", super::route::ID)) {
                routes.mark_collapsed(prefix);
            }
        }
        self.services.insert(
            key.clone(),
            Service {
                resource: resource.clone(),
                server: Table::default(),
                client: Table::default(),
                routes,
                dropped_spans,
                skipped_exchanges: 0,
                overflows: HashMap::default(),
                last_seen: now,
            },
        );
    }

    /// The key `resource`'s series go under: its own, or when the service table is full and
    /// no service is idle enough to give its place, the same with the instance overflowed.
    fn key_for(&mut self, resource: &Arc<ProcessResource>, now: Instant) -> Arc<ServiceKey> {
        let addr = Arc::as_ptr(resource) as usize;
        let key = match self.keys.get(&addr) {
            Some((_, k)) => k.clone(),
            None => {
                if self.keys.len() >= MAX_KEYS {
                    self.keys.clear();
                }
                let k = Arc::new(ServiceKey::of(resource));
                self.keys.insert(addr, (resource.clone(), k.clone()));
                k
            }
        };
        if self.services.contains_key(&*key) || self.services.len() < self.limits.services {
            return key;
        }
        let idlest = self
            .services
            .iter()
            .filter(|(k, _)| &*k.instance != OVERFLOW)
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, s)| (k.clone(), s.last_seen));
        if let Some((old, seen)) = idlest
            && now.duration_since(seen) >= IDLE
            && let Some(gone) = self.services.remove(&old)
        {
            self.series -= gone.server.series.len() + gone.client.series.len();
            return key;
        }
        // Past the bound only the instance overflows, in a reserve of a tenth; past that,
        // the name too: one catch-all service.
        self.instance_overflows += 1;
        let limited = ServiceKey {
            instance: OVERFLOW.into(),
            ..(*key).clone()
        };
        let reserve = (self.limits.services / 10).max(1);
        if self.services.contains_key(&limited)
            || self.services.len() < self.limits.services + reserve
        {
            return Arc::new(limited);
        }
        Arc::new(ServiceKey {
            name: OVERFLOW.into(),
            namespace: None,
            instance: OVERFLOW.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::testutil::{resource, server_span};

    fn obs(service: &Arc<ProcessResource>, path: &str, status: u16) -> Observation {
        let mut s = server_span();
        s.route = Some(super::super::route::template(path));
        s.status_code = Some(status);
        Observation::of(service, &s)
    }

    #[test]
    fn counts_per_route_and_status_with_exemplars() {
        let mut st = State::new(Limits::default());
        let r = resource(1, "shop");
        st.record(vec![
            obs(&r, "/items/1", 200),
            obs(&r, "/items/2", 200),
            obs(&r, "/cart", 500),
        ]);
        let svc = st.services.values().next().unwrap();
        assert_eq!(svc.server.series.len(), 2);
        let items = svc
            .server
            .series
            .iter()
            .find(|(l, _)| l.route.as_deref() == Some("/items/{id}"))
            .unwrap()
            .1;
        assert_eq!(items.duration.count(), 2);
        assert_eq!(items.response_size.count(), 2);
        let ex = items.exemplars.as_ref().unwrap();
        assert!(ex.iter().flatten().all(|e| e.trace_id == [0x11; 16]));
        assert_eq!(st.series(), 2);
    }

    #[test]
    fn random_paths_stay_under_the_limit_and_overflow_is_counted() {
        let limits = Limits {
            series_per_service: 100,
            ..Limits::default()
        };
        let mut st = State::new(limits);
        let r = resource(1, "shop");
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100 {
            let batch = (0..1000)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    obs(&r, &format!("/w/{:x}/x", rng % 1_000_000_007), 200)
                })
                .collect();
            st.record(batch);
        }
        let svc = st.services.values().next().unwrap();
        assert!(svc.server.series.len() <= 100);
        let total: u64 = svc.server.series.values().map(|s| s.duration.count()).sum();
        assert_eq!(total, 100_000, "every span is counted somewhere");
        // Hex words under /w/ collapse once 50 were seen: few series, no overflow needed.
        assert!(svc.server.series.len() < 60, "{}", svc.server.series.len());
    }

    #[test]
    fn series_limit_overflows_only_the_route() {
        let limits = Limits {
            series_per_service: 10,
            route_segment_values: 1000,
            ..Limits::default()
        };
        let mut st = State::new(limits);
        let r = resource(1, "shop");
        let batch = (0..500).map(|i| obs(&r, &format!("/p{i}a"), 200)).collect();
        st.record(batch);
        let svc = st.services.values().next().unwrap();
        // Eight routes, then one series for the rest with method and status kept (the
        // catch-all's slot stays free).
        assert_eq!(svc.server.series.len(), 9);
        let over = svc
            .server
            .series
            .iter()
            .find(|(l, _)| l.overflow == overflowed::ROUTE)
            .unwrap();
        assert_eq!(over.0.status, Some(200));
        assert_eq!(over.0.method, "GET");
        assert_eq!(over.1.duration.count(), 500 - 8);
        assert_eq!(svc.overflows[&(SpanKind::Server, "http.route")], 500 - 8);
    }

    #[test]
    fn lists_learnt_collapses() {
        let mut st = State::new(Limits {
            route_segment_values: 2,
            ..Limits::default()
        });
        let r = resource(1, "shop");
        st.record(
            ["/tag/a", "/tag/b", "/tag/c", "/about"]
                .iter()
                .map(|p| obs(&r, p, 200))
                .collect(),
        );
        let routes = st.collapsed_routes();
        assert_eq!(routes.len(), 1);
        assert_eq!(
            routes.values().next().unwrap(),
            &vec!["/tag/{id}".to_owned()]
        );
    }

    /// What one run learnt, another (a restart: new instances) starts with: the first
    /// `/tag/x` of the new run is already `/tag/{id}`.
    #[test]
    fn learnt_collapses_survive_a_restart() {
        let limits = Limits {
            route_segment_values: 2,
            ..Limits::default()
        };
        let mut before = State::new(limits.clone());
        let r = resource(1, "shop");
        before.record(
            ["/tag/a", "/tag/b", "/tag/c"]
                .iter()
                .map(|p| obs(&r, p, 200))
                .collect(),
        );
        let learnt = before.learnt_routes();
        assert_eq!(learnt["shop"], vec!["/tag/{id}".to_owned()]);
        let mut after = State::new(limits);
        after.seed_learnt_routes(learnt.clone());
        let again = resource(2, "shop");
        after.record(vec![obs(&again, "/tag/zzz", 200)]);
        let svc = after.services.values().next().unwrap();
        let routes: Vec<&str> = svc
            .server
            .series
            .keys()
            .filter_map(|l| l.route.as_deref())
            .collect();
        assert_eq!(routes, ["/tag/{id}"]);
        // Kept for services not seen since the restart too.
        assert_eq!(after.learnt_routes(), learnt);
    }

    #[test]
    fn user_patterns_win_over_the_learnt_collapse() {
        let mut st = State::new(Limits {
            route_segment_values: 1,
            route_patterns: vec!["/users/{name}".to_owned()],
            ..Limits::default()
        });
        let r = resource(1, "shop");
        st.record(
            ["/users/alice", "/users/bob", "/tags/a", "/tags/b"]
                .iter()
                .map(|p| obs(&r, p, 200))
                .collect(),
        );
        let svc = st.services.values().next().unwrap();
        let mut routes: Vec<(&str, u64)> = svc
            .server
            .series
            .iter()
            .map(|(l, s)| (l.route.as_deref().unwrap(), s.duration.count()))
            .collect();
        routes.sort_unstable();
        assert_eq!(
            routes,
            vec![("/tags/a", 1), ("/tags/{id}", 1), ("/users/{name}", 2)]
        );
    }

    #[test]
    fn services_are_bounded() {
        let limits = Limits {
            services: 3,
            ..Limits::default()
        };
        let mut st = State::new(limits);
        for pid in 0..10 {
            st.record(vec![obs(&resource(pid, &format!("s{pid}")), "/", 200)]);
        }
        // Three services, one with its instance overflowed, and the catch-all.
        assert_eq!(st.services.len(), 5);
        assert_eq!(st.instance_overflows, 7);
    }
}
