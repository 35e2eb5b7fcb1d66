//! Service-graph edges with Tempo's metric names and labels (`client`, `server`,
//! `connection_type`), each metric emitted from one side only so that edges seen by two
//! agents still count once:
//!
//! - the server side emits `traces_service_graph_request_total`, `_failed_total` and
//!   `_request_server_seconds`: a server process runs on one node, so exactly one agent sees
//!   each request it handles;
//! - the client side emits `_request_client_seconds` only.
//!
//! The peer is named from what this agent saw: a client or server process traced on this node
//! (matched by socket address), else a virtual node named from its address (the client's IP;
//! the server's `Host`), with `connection_type="virtual_node"`. A server span waits up to
//! [`WAIT`] for the client span of the same exchange, which often comes after it.
use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap as HashMap;

use super::series::{Hist, OVERFLOW, Observation};
use crate::span::SpanKind;

/// Tempo's service-graph buckets: `ExponentialBuckets(0.1, 2, 8)`.
pub const GRAPH_BOUNDS: [f64; 8] = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8];
pub type GraphHist = Hist<9>;

/// `connection_type` of an edge to or from a peer not traced here.
pub const VIRTUAL_NODE: &str = "virtual_node";
/// Server spans waiting for their client at most.
const MAX_WAITING: usize = 4096;
/// Socket addresses remembered per side at most (a bound: cleared when reached).
const MAX_ADDRESSES: usize = 16_384;
/// How long a server span waits for its client span (the capture hands spans over every
/// 100 ms).
pub const WAIT: Duration = Duration::from_millis(300);

/// One edge of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Edge {
    pub client: Arc<str>,
    pub server: Arc<str>,
    pub connection_type: &'static str,
}

/// What crossed one edge.
#[derive(Debug, Clone, Default)]
pub struct EdgeStats {
    pub total: u64,
    pub failed: u64,
    pub server_seconds: GraphHist,
    pub client_seconds: GraphHist,
}

/// A server span's part of an edge, waiting to learn its client.
#[derive(Debug)]
struct Waiting {
    server: Arc<str>,
    peer: SocketAddr,
    seconds: f64,
    failed: bool,
    since: Instant,
}

/// The service graph this agent emits.
#[derive(Debug)]
pub struct Graph {
    pub edges: HashMap<Edge, EdgeStats>,
    max_edges: usize,
    /// A traced client's socket (its local address) → its service.
    clients: HashMap<SocketAddr, Arc<str>>,
    /// A traced server's socket (its local address) → its service.
    servers: HashMap<SocketAddr, Arc<str>>,
    /// Virtual nodes' names, made once per address.
    ip_names: HashMap<IpAddr, Arc<str>>,
    /// Server spans in the order they came, so the oldest are first.
    waiting: VecDeque<Waiting>,
    /// Edges whose peer label overflowed.
    pub overflowed: u64,
}

impl Graph {
    pub fn new(max_edges: usize) -> Self {
        Self {
            edges: HashMap::default(),
            max_edges: max_edges.max(1),
            clients: HashMap::default(),
            servers: HashMap::default(),
            ip_names: HashMap::default(),
            waiting: VecDeque::new(),
            overflowed: 0,
        }
    }

    /// Remember which traced process owns the span's local socket.
    pub fn learn(&mut self, service: &Arc<str>, span: &Observation) {
        let map = match span.kind {
            SpanKind::Client => &mut self.clients,
            SpanKind::Server => &mut self.servers,
        };
        if map.len() >= MAX_ADDRESSES {
            map.clear();
        }
        if map.get(&span.local).is_none_or(|s| s != service) {
            map.insert(span.local, service.clone());
        }
    }

    /// The virtual node named after `ip`.
    fn ip_name(&mut self, ip: IpAddr) -> Arc<str> {
        if let Some(n) = self.ip_names.get(&ip) {
            return n.clone();
        }
        if self.ip_names.len() >= MAX_ADDRESSES {
            self.ip_names.clear();
        }
        let n: Arc<str> = ip.to_string().into();
        self.ip_names.insert(ip, n.clone());
        n
    }

    /// Count one span of `service` (call [`Self::learn`] for the whole batch first).
    pub fn record(&mut self, service: &Arc<str>, span: &Observation, now: Instant) {
        let seconds = span.seconds;
        match span.kind {
            SpanKind::Server => {
                let failed = span.failed();
                if let Some(client) = self.clients.get(&span.peer).cloned() {
                    self.server_side(client, service.clone(), "", seconds, failed);
                } else if self.waiting.len() < MAX_WAITING {
                    self.waiting.push_back(Waiting {
                        server: service.clone(),
                        peer: span.peer,
                        seconds,
                        failed,
                        since: now,
                    });
                } else {
                    let client = self.ip_name(span.peer.ip());
                    self.server_side(client, service.clone(), VIRTUAL_NODE, seconds, failed);
                }
            }
            SpanKind::Client => {
                let (server, kind) = match self.servers.get(&span.peer) {
                    Some(s) => (s.clone(), ""),
                    None => match &span.labels.server_address {
                        Some(a) => (Arc::from(&**a), VIRTUAL_NODE),
                        None => (self.ip_name(span.peer.ip()), VIRTUAL_NODE),
                    },
                };
                let edge = self.edge(service.clone(), server, kind, false);
                self.edges
                    .entry(edge)
                    .or_default()
                    .client_seconds
                    .observe(&GRAPH_BOUNDS, seconds);
            }
        }
    }

    /// After each hand-over and on a timer: the server spans that waited [`WAIT`] (all of
    /// them when `now` is `None`: the agent stops) count under their client's name if it
    /// came meanwhile, else under a virtual node. Only the expired ones are looked at: the
    /// queue is in arrival order.
    pub fn tick(&mut self, now: Option<Instant>) {
        while let Some(w) = self.waiting.front() {
            if now.is_some_and(|now| now.duration_since(w.since) < WAIT) {
                break;
            }
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            match self.clients.get(&w.peer).cloned() {
                Some(client) => self.server_side(client, w.server, "", w.seconds, w.failed),
                None => {
                    let client = self.ip_name(w.peer.ip());
                    self.server_side(client, w.server, VIRTUAL_NODE, w.seconds, w.failed);
                }
            }
        }
    }

    fn server_side(
        &mut self,
        client: Arc<str>,
        server: Arc<str>,
        kind: &'static str,
        seconds: f64,
        failed: bool,
    ) {
        let edge = self.edge(client, server, kind, true);
        let e = self.edges.entry(edge).or_default();
        e.total += 1;
        e.failed += u64::from(failed);
        e.server_seconds.observe(&GRAPH_BOUNDS, seconds);
    }

    /// The edge, with the peer's label overflowed when the graph is full.
    fn edge(
        &mut self,
        client: Arc<str>,
        server: Arc<str>,
        connection_type: &'static str,
        server_side: bool,
    ) -> Edge {
        let mut edge = Edge {
            client,
            server,
            connection_type,
        };
        if self.edges.len() >= self.max_edges && !self.edges.contains_key(&edge) {
            self.overflowed += 1;
            if server_side {
                edge.client = OVERFLOW.into();
            } else {
                edge.server = OVERFLOW.into();
            }
        }
        edge
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        export::testutil::{resource, server_span},
        span::HttpSpan,
    };

    fn n(s: &str) -> Arc<str> {
        s.into()
    }

    fn obs(s: &HttpSpan) -> Observation {
        Observation::of(&resource(1, "x"), s)
    }

    fn pair() -> (HttpSpan, HttpSpan) {
        let server = server_span(); // local 127.0.0.1:8000, peer 127.0.0.1:50000
        let mut client = server_span();
        client.kind = SpanKind::Client;
        client.local = server.peer;
        client.peer = server.local;
        client.end_unix_ns += 1_000_000;
        (server, client)
    }

    fn edge(c: &str, s: &str, t: &'static str) -> Edge {
        Edge {
            client: c.into(),
            server: s.into(),
            connection_type: t,
        }
    }

    #[test]
    fn same_node_pair_is_one_edge_counted_once() {
        let mut g = Graph::new(100);
        let (server, client) = pair();
        // The server span comes first; its client is learnt in the same hand-over.
        let (server, client) = (obs(&server), obs(&client));
        g.learn(&n("api"), &server);
        g.learn(&n("web"), &client);
        g.record(&n("api"), &server, Instant::now());
        g.record(&n("web"), &client, Instant::now());
        g.tick(Some(Instant::now()));
        assert_eq!(g.edges.len(), 1, "{:?}", g.edges);
        let e = &g.edges[&edge("web", "api", "")];
        assert_eq!(e.total, 1);
        assert_eq!(e.failed, 0);
        assert_eq!(e.server_seconds.count(), 1);
        assert_eq!(e.client_seconds.count(), 1);
    }

    #[test]
    fn client_learnt_one_hand_over_later_still_names_the_edge() {
        let mut g = Graph::new(100);
        let (server, client) = pair();
        let (server, client) = (obs(&server), obs(&client));
        g.learn(&n("api"), &server);
        g.record(&n("api"), &server, Instant::now());
        g.tick(Some(Instant::now()));
        assert!(g.edges.is_empty());
        g.learn(&n("web"), &client);
        g.record(&n("web"), &client, Instant::now());
        g.tick(Some(Instant::now() + WAIT));
        assert_eq!(g.edges[&edge("web", "api", "")].total, 1);
    }

    #[test]
    fn untraced_peers_are_virtual_nodes_named_from_their_address() {
        let mut g = Graph::new(100);
        let (mut server, mut client) = pair();
        server.peer = "10.1.2.3:40000".parse().unwrap();
        server.status_code = Some(503);
        g.record(&n("api"), &obs(&server), Instant::now());
        g.tick(Some(Instant::now()));
        assert!(g.edges.is_empty(), "still waiting for a client");
        g.tick(Some(Instant::now() + WAIT));
        let e = &g.edges[&edge("10.1.2.3", "api", VIRTUAL_NODE)];
        assert_eq!((e.total, e.failed), (1, 1));
        client.peer = "10.9.9.9:443".parse().unwrap();
        client.host = Some("payments.internal:443".into());
        g.record(&n("web"), &obs(&client), Instant::now());
        let e = &g.edges[&edge("web", "payments.internal", VIRTUAL_NODE)];
        assert_eq!((e.total, e.client_seconds.count()), (0, 1));
    }

    #[test]
    fn a_full_graph_overflows_the_peer_label() {
        let mut g = Graph::new(2);
        for i in 0..10u16 {
            let mut s = server_span();
            s.peer = SocketAddr::from(([10, 0, 0, u8::try_from(i).unwrap()], 1000));
            g.record(&n("api"), &obs(&s), Instant::now());
        }
        g.tick(None);
        assert_eq!(g.edges.len(), 3);
        assert_eq!(g.edges[&edge(OVERFLOW, "api", VIRTUAL_NODE)].total, 8);
        assert_eq!(g.overflowed, 8);
    }
}
