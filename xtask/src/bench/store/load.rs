//! Deterministic generator of realistic traces for the store benchmark: 10 services, 3–8
//! spans per trace (SERVER root, CLIENT calls, SERVER callees in other services), HTTP
//! semantic-convention attributes, 1% error traces, log-normal durations (root median 40 ms).
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span, Status},
};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub const SERVICES: usize = 10;

const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/products/{id}"),
    ("GET", "/api/products"),
    ("POST", "/api/cart/items"),
    ("GET", "/api/cart"),
    ("POST", "/api/checkout"),
    ("GET", "/api/users/{id}"),
    ("PUT", "/api/users/{id}"),
    ("GET", "/api/recommendations"),
    ("POST", "/api/payments"),
    ("GET", "/health"),
];

fn kv(k: &str, v: Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

/// One generated request body and the trace ids inside it.
pub struct Batch {
    pub body: Vec<u8>,
    pub trace_ids: Vec<[u8; 16]>,
    pub spans: usize,
}

/// The generator.
pub struct Gen {
    rng: StdRng,
    resources: Vec<Resource>,
}

impl Gen {
    pub fn new(seed: u64) -> Self {
        let resources = (0..SERVICES)
            .map(|i| Resource {
                attributes: vec![
                    kv("service.name", s(&format!("svc-{i}"))),
                    kv("service.namespace", s("shop")),
                    kv("service.instance.id", s(&format!("svc-{i}-7d9f8c-abcde"))),
                    kv("host.name", s(&format!("node-{}", i % 3))),
                    kv("telemetry.sdk.name", s("sonde")),
                ],
                ..Default::default()
            })
            .collect();
        Self {
            rng: StdRng::seed_from_u64(seed),
            resources,
        }
    }

    fn normal(&mut self) -> f64 {
        let u1: f64 = self.rng.random::<f64>().max(1e-12);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn lognormal_ns(&mut self, median_ms: f64, sigma: f64) -> u64 {
        (median_ms * 1e6 * (sigma * self.normal()).exp()) as u64
    }

    fn id8(&mut self) -> Vec<u8> {
        self.rng.random::<u64>().max(1).to_be_bytes().to_vec()
    }

    /// One trace as (service index, span) pairs; returns its id.
    fn trace(&mut self, now_ns: u64, out: &mut Vec<(usize, Span)>) -> [u8; 16] {
        let tid: [u8; 16] = self.rng.random();
        let n_spans = self.rng.random_range(3..=8usize);
        let error = self.rng.random_range(0..100) == 0;
        let root_dur = self.lognormal_ns(40.0, 0.8).max(1_000_000);
        let start = now_ns - root_dur - self.rng.random_range(0..1_000_000_000);
        let mut svc = self.rng.random_range(0..SERVICES);
        let (method, route) = ROUTES[self.rng.random_range(0..ROUTES.len())];
        let mut parent = Vec::new();
        let (mut cur_start, mut cur_dur) = (start, root_dur);
        let mut made = 0;
        let first = out.len();
        while made < n_spans {
            // A SERVER span for `svc`.
            let id = self.id8();
            let status = if error && made + 2 >= n_spans {
                500
            } else {
                200
            };
            out.push((
                svc,
                Span {
                    trace_id: tid.to_vec(),
                    span_id: id.clone(),
                    parent_span_id: parent.clone(),
                    name: format!("{method} {route}"),
                    kind: 2,
                    start_time_unix_nano: cur_start,
                    end_time_unix_nano: cur_start + cur_dur,
                    attributes: vec![
                        kv("http.request.method", s(method)),
                        kv("http.route", s(route)),
                        kv(
                            "url.path",
                            s(&route
                                .replace("{id}", &self.rng.random_range(1..5000u32).to_string())),
                        ),
                        kv("http.response.status_code", Value::IntValue(status)),
                    ],
                    status: (status >= 500).then(|| Status {
                        code: 2,
                        message: String::new(),
                    }),
                    ..Default::default()
                },
            ));
            made += 1;
            if made >= n_spans {
                break;
            }
            // A CLIENT call from `svc` to another service.
            let callee = (svc + 1 + self.rng.random_range(0..SERVICES - 1)) % SERVICES;
            let cid = self.id8();
            let off = cur_dur / 10;
            let cdur = (cur_dur - off) * 8 / 10;
            let cstatus = if error && made + 2 >= n_spans {
                500
            } else {
                200
            };
            out.push((
                svc,
                Span {
                    trace_id: tid.to_vec(),
                    span_id: cid.clone(),
                    parent_span_id: id,
                    name: method.to_string(),
                    kind: 3,
                    start_time_unix_nano: cur_start + off,
                    end_time_unix_nano: cur_start + off + cdur,
                    attributes: vec![
                        kv("http.request.method", s(method)),
                        kv("server.address", s(&format!("svc-{callee}"))),
                        kv("server.port", Value::IntValue(8080)),
                        kv("url.full", s(&format!("http://svc-{callee}:8080{route}"))),
                        kv("http.response.status_code", Value::IntValue(cstatus)),
                    ],
                    status: (cstatus >= 500).then(|| Status {
                        code: 2,
                        message: String::new(),
                    }),
                    ..Default::default()
                },
            ));
            made += 1;
            parent = cid;
            svc = callee;
            cur_start = cur_start + off + cdur / 20;
            cur_dur = cdur * 9 / 10;
        }
        debug_assert!(out.len() - first == n_spans);
        tid
    }

    /// A request of about `spans` spans (whole traces).
    pub fn batch(&mut self, spans: usize, now_ns: u64) -> Batch {
        let mut all = Vec::with_capacity(spans + 8);
        let mut trace_ids = Vec::new();
        while all.len() < spans {
            trace_ids.push(self.trace(now_ns, &mut all));
        }
        let n = all.len();
        let mut per_svc: Vec<Vec<Span>> = vec![Vec::new(); SERVICES];
        for (svc, sp) in all {
            per_svc[svc].push(sp);
        }
        let req = ExportTraceServiceRequest {
            resource_spans: per_svc
                .into_iter()
                .enumerate()
                .filter(|(_, v)| !v.is_empty())
                .map(|(i, spans)| ResourceSpans {
                    resource: Some(self.resources[i].clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "sonde-bench".into(),
                            version: "1.0.0".into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect(),
        };
        Batch {
            body: prost::Message::encode_to_vec(&req),
            trace_ids,
            spans: n,
        }
    }
}
