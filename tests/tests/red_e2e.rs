//! RED metrics end to end on the real kernel: a real Prometheus (Debian's package, exemplar
//! storage on) scrapes the agent's `/metrics` while curl makes a known mix of requests to a
//! Python server; Prometheus's HTTP API must then count exactly the requests made per route
//! and status, and hold an exemplar whose trace ID is one of the exported spans'; the OTLP
//! metrics the agent exports at the same time must count the same; the service graph counts
//! each request once, from the server's side. A second
//! test sends thousands of distinct paths and checks the series stay under the configured
//! limit with the overflow counted; another traces both sides on one node (one named edge);
//! the last runs `sonde all` and finds an exemplar's trace in the embedded store.
use std::{
    collections::{BTreeMap, HashSet},
    process::Command,
    time::{Duration, Instant},
};

use sonde_e2e::{
    Proc,
    agent::{scrape, start_agent, start_agent_with_env, start_sonde},
    free_port,
    otlp::{start_receiver, start_receiver_with_metrics},
    prometheus::{self, Prometheus},
    require_kernel, wait_port,
};

/// `/users/<n>` → 200, `POST /orders` → 201, `/fail` → 500, `/r/<anything>` → 200, else 404.
const SERVER: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        p = self.path
        if p.startswith("/users/") or p.startswith("/r/"):
            code = 200
        elif p == "/orders" and self.command == "POST":
            code = 201
        elif p == "/fail":
            code = 500
        else:
            code = 404
        body = b"hello from " + p.encode()
        # Head and body in one write: two small writes on a kept-alive connection would wait
        # on delayed ACKs.
        head = f"HTTP/1.1 {code} X\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        self.wfile.write(head + body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn python_server(port: u16, service: &str) -> Proc {
    let p = Proc(
        Command::new("python3")
            .args(["-c", SERVER, &port.to_string()])
            .env("OTEL_SERVICE_NAME", service)
            .spawn()
            .expect("start python server"),
    );
    wait_port(port);
    p
}

/// One request with curl; returns the status code and curl's total time in seconds.
fn curl(port: u16, method: &str, path: &str) -> (u16, f64) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{time_total}",
            "-X",
            method,
        ])
        .args(if method == "POST" {
            vec!["-d", "item=1"]
        } else {
            vec![]
        })
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (code, time) = text.split_once(' ').expect("curl output");
    (code.parse().expect("status"), time.parse().expect("time"))
}

fn skip_without_prometheus() -> bool {
    if let Some(why) = prometheus::unavailable() {
        if std::env::var("SONDE_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
            panic!("RED test cannot run and SONDE_REQUIRE_KERNEL=1: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return true;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_every_request_per_route_and_status_with_trace_exemplars() {
    require_kernel!();
    if skip_without_prometheus() {
        return;
    }
    let service = "red-e2e-shop";
    let port = free_port();
    let _server = python_server(port, service);
    let (addr, received, otlp_metrics) = start_receiver_with_metrics().await;
    let metrics = format!("127.0.0.1:{}", free_port());
    let _agent = start_agent_with_env(
        addr,
        &[
            "--port",
            &port.to_string(),
            "--metrics-listen-address",
            &metrics,
        ],
        &[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path(), &metrics).await;

    // The known mix, and what each request should count under.
    let mix: &[(&str, &str, usize, Option<&str>, u16)] = &[
        ("GET", "/users/{}", 7, Some("/users/{id}"), 200),
        ("POST", "/orders", 4, Some("/orders"), 201),
        ("GET", "/fail", 2, Some("/fail"), 500),
        ("GET", "/nope/{}", 3, None, 404),
    ];
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut slowest_users = 0f64;
    for (method, path, n, route, status) in mix {
        for i in 0..*n {
            let (code, secs) = curl(port, method, &path.replace("{}", &(i + 1).to_string()));
            assert_eq!(code, *status, "{method} {path}");
            if path.starts_with("/users/") {
                slowest_users = slowest_users.max(secs);
            }
        }
        *want
            .entry((route.unwrap_or("").to_owned(), status.to_string()))
            .or_default() += *n as f64;
    }

    let count_query = format!(
        "sum by (http_route, http_response_status_code) \
         (http_server_request_duration_seconds_count{{service_name=\"{service}\"}})"
    );
    let deadline = Instant::now() + Duration::from_secs(40);
    let got = loop {
        let got: BTreeMap<(String, String), f64> = prom
            .query(&count_query)
            .await
            .into_iter()
            .map(|(l, v)| {
                let s = |k: &str| l.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                ((s("http_route"), s("http_response_status_code")), v)
            })
            .collect();
        if got == want || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        got, want,
        "requests per (route, status) as Prometheus counts them"
    );

    // The OTLP metrics exported meanwhile count the same.
    let deadline = Instant::now() + Duration::from_secs(10);
    let otlp = loop {
        let mut otlp: BTreeMap<(String, String), f64> = BTreeMap::new();
        for (a, p) in otlp_metrics.latest_histogram("http.server.request.duration") {
            if a.get("service.name").map(String::as_str) == Some(service) {
                let k = |k: &str| a.get(k).cloned().unwrap_or_default();
                *otlp
                    .entry((k("http.route"), k("http.response.status_code")))
                    .or_default() += p.count as f64;
            }
        }
        if otlp == want || Instant::now() > deadline {
            break otlp;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        otlp, want,
        "requests per (route, status) in the OTLP metrics"
    );

    // The service graph: every request once, counted by the server's side; curl is not
    // traced (only the server's port is), so the client is a virtual node named by its IP.
    let total: usize = mix.iter().map(|m| m.2).sum();
    let edges = prom
        .query(&format!(
            "traces_service_graph_request_total{{server=\"{service}\"}}"
        ))
        .await;
    assert_eq!(edges.len(), 1, "{edges:?}");
    assert_eq!(edges[0].1, total as f64, "{edges:?}");
    assert_eq!(edges[0].0["client"], "127.0.0.1");
    assert_eq!(edges[0].0["connection_type"], "virtual_node");
    let failed = prom
        .query(&format!(
            "traces_service_graph_request_failed_total{{server=\"{service}\"}}"
        ))
        .await;
    assert_eq!(
        failed.first().map(|f| f.1),
        Some(2.0),
        "the two 500s: {failed:?}"
    );

    let posts = prom
        .query(&format!(
            "sum(http_server_request_duration_seconds_count{{service_name=\"{service}\",\
             http_request_method=\"POST\"}})"
        ))
        .await;
    assert_eq!(posts.first().map(|p| p.1), Some(4.0), "{posts:?}");
    let info = prom
        .query(&format!("target_info{{service_name=\"{service}\"}}"))
        .await;
    assert_eq!(info.len(), 1, "one target_info per service: {info:?}");

    // The server's latency is within the client's: the quantile lies at or below the bucket
    // holding the slowest request curl measured.
    let q = prom
        .query(&format!(
            "histogram_quantile(0.99, sum by (le) (http_server_request_duration_seconds_bucket\
             {{service_name=\"{service}\",http_route=\"/users/{{id}}\"}}))"
        ))
        .await;
    let bound = sonde::red::series::DURATION_BOUNDS
        .iter()
        .copied()
        .find(|b| *b >= slowest_users)
        .unwrap_or(f64::INFINITY);
    let p99 = q.first().map_or(f64::NAN, |x| x.1);
    assert!(
        p99 <= bound,
        "p99 {p99} s above the bucket ({bound} s) of the slowest request curl saw ({slowest_users} s)"
    );

    // An exemplar links a latency bucket to a trace the agent exported.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (exemplars, traces) = loop {
        let exemplars: Vec<String> = prom
            .exemplars(
                &format!(
                    "http_server_request_duration_seconds_bucket{{service_name=\"{service}\"}}"
                ),
                Duration::from_secs(600),
            )
            .await
            .into_iter()
            .filter_map(|l| {
                l.get("trace_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .collect();
        let traces: HashSet<String> = received
            .spans()
            .iter()
            .map(|(_, s)| hex::encode(&s.trace_id))
            .collect();
        if exemplars.iter().any(|t| traces.contains(t)) || Instant::now() > deadline {
            break (exemplars, traces);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(!exemplars.is_empty(), "Prometheus stored no exemplar");
    assert!(
        exemplars.iter().all(|t| t.len() == 32),
        "trace ids: {exemplars:?}"
    );
    assert!(
        exemplars.iter().any(|t| traces.contains(t)),
        "no exemplar trace id among the {} exported traces: {exemplars:?}",
        traces.len()
    );
}

/// Requests to `/r/<random word>` on one keep-alive-less connection each.
const RANDOM_CLIENT: &str = r#"
import http.client, random, string, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
random.seed(17)
bad = 0
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for i in range(n):
    word = "".join(random.choice(string.ascii_lowercase) for _ in range(10))
    c.request("GET", "/r/" + word)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        bad += 1
c.close()
print(bad)
"#;

/// Sum of the samples of `name` whose labels contain `with`, and how many there are.
fn samples(text: &str, name: &str, with: &str) -> (u64, usize) {
    let mut sum = 0;
    let mut n = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(name)
            && rest.starts_with('{')
            && rest.contains(with)
        {
            n += 1;
            sum += rest
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (sum, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_paths_stay_under_the_series_limit_and_overflow_is_counted() {
    require_kernel!();
    const REQUESTS: u64 = 100_000;
    const LIMIT: usize = 50;
    let service = "red-e2e-random";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sonde.yaml");
    // The learnt collapse is off in effect (a high bound), so that the series limit is what
    // holds the routes back.
    std::fs::write(
        &config,
        format!("agent:\n  red:\n    series_limit: {LIMIT}\n    route_segment_values: 100000\n"),
    )
    .unwrap();
    let port = free_port();
    let _server = python_server(port, service);
    let (addr, _received) = start_receiver().await;
    let metrics = free_port();
    let agent = start_agent(
        addr,
        &[
            "--config",
            config.to_str().unwrap(),
            "--port",
            &port.to_string(),
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    let out = Command::new("python3")
        .args([
            "-c",
            RANDOM_CLIENT,
            &port.to_string(),
            &REQUESTS.to_string(),
        ])
        .output()
        .expect("run python client");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");

    let with = format!("service_name=\"{service}\"");
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = scrape(metrics).await;
        let (counted, _) = samples(&text, "http_server_request_duration_seconds_count", &with);
        if counted >= REQUESTS || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (counted, series) = samples(&text, "http_server_request_duration_seconds_count", &with);
    assert_eq!(counted, REQUESTS, "every request counted once");
    assert!(
        series <= LIMIT,
        "{series} series for one service, limit {LIMIT}"
    );
    let (overflowed, _) = samples(
        &text,
        "sonde_red_cardinality_overflow_total",
        "label=\"http.route\"",
    );
    assert!(
        overflowed >= REQUESTS - LIMIT as u64,
        "overflow counted {overflowed} of {REQUESTS} requests"
    );
    let (in_overflow, n) = samples(
        &text,
        "http_server_request_duration_seconds_count",
        "http_route=\"__cardinality_overflow__\"",
    );
    assert_eq!(n, 1, "one overflow series (method and status kept)");
    assert_eq!(in_overflow, overflowed);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        });
    eprintln!("agent after {REQUESTS} distinct paths: {series} series, {rss:?}");
    let rss_kib: u64 = rss
        .as_deref()
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("the agent's VmRSS");
    assert!(
        rss_kib < 128 * 1024,
        "agent RSS {rss_kib} KiB after {REQUESTS} distinct paths"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_node_client_and_server_make_one_named_edge() {
    require_kernel!();
    const REQUESTS: usize = 10;
    let service = "red-e2e-graph";
    let port = free_port();
    let _server = python_server(port, service);
    let (addr, _received) = start_receiver().await;
    let metrics = free_port();
    // The server by its port, and curl (started later) by its executable: both sides.
    let _agent = start_agent(
        addr,
        &[
            "--port",
            &port.to_string(),
            "--exe",
            "**/curl",
            "--metrics-listen-address",
            &format!("127.0.0.1:{metrics}"),
        ],
    );
    for i in 0..REQUESTS {
        let (code, _) = curl(port, "GET", &format!("/users/{i}"));
        assert_eq!(code, 200);
    }
    let edge = format!("client=\"curl\",server=\"{service}\",connection_type=\"\"");
    let client_side = format!("server_port=\"{port}\"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = scrape(metrics).await;
        let (n, _) = samples(&text, "traces_service_graph_request_total", &edge);
        let (c, _) = samples(
            &text,
            "http_client_request_duration_seconds_count",
            &client_side,
        );
        if (n >= REQUESTS as u64 && c >= REQUESTS as u64) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let (n, series) = samples(&text, "traces_service_graph_request_total", "");
    assert_eq!(
        (n, series),
        (REQUESTS as u64, 1),
        "one edge curl → {service}, each request once:\n{}",
        text.lines()
            .filter(|l| l.starts_with("traces_service_graph"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let (n, _) = samples(&text, "traces_service_graph_request_total", &edge);
    assert_eq!(n, REQUESTS as u64);
    let (n, _) = samples(
        &text,
        "traces_service_graph_request_client_seconds_count",
        &edge,
    );
    assert_eq!(n, REQUESTS as u64, "the client side's durations, same edge");
    let (n, _) = samples(
        &text,
        "http_client_request_duration_seconds_count",
        "service_name=\"curl\"",
    );
    assert_eq!(n, REQUESTS as u64, "curl's own client metrics");
    assert!(
        text.contains(&format!(
            "server_address=\"127.0.0.1\",server_port=\"{port}\""
        )),
        "client metrics name the server"
    );
}

/// `sonde all`: a latency bucket's exemplar, as Prometheus stored it, names a trace the
/// embedded store serves by ID (the click from a Grafana latency panel to the trace).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exemplar_trace_is_served_by_the_embedded_store() {
    require_kernel!();
    if skip_without_prometheus() {
        return;
    }
    let service = "red-e2e-all";
    let port = free_port();
    let _server = python_server(port, service);
    let data = tempfile::tempdir().unwrap();
    let (api, grpc, http, metrics) = (free_port(), free_port(), free_port(), free_port());
    let _all = start_sonde(
        "all",
        &[
            "--port".into(),
            port.to_string(),
            "--metrics-listen-address".into(),
            format!("127.0.0.1:{metrics}"),
        ],
        data.path(),
        [api, grpc, http],
        "capturing",
    );
    let dir = tempfile::tempdir().unwrap();
    let prom = Prometheus::start(dir.path(), &format!("127.0.0.1:{metrics}")).await;
    for i in 0..5 {
        assert_eq!(curl(port, "GET", &format!("/users/{i}")).0, 200);
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids: Vec<String> = prom
            .exemplars(
                &format!(
                    "http_server_request_duration_seconds_bucket{{service_name=\"{service}\"}}"
                ),
                Duration::from_secs(600),
            )
            .await
            .into_iter()
            .filter_map(|l| {
                l.get("trace_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .collect();
        let mut served = None;
        for id in &ids {
            let resp = client
                .get(format!("http://127.0.0.1:{api}/api/traces/{id}"))
                .send()
                .await
                .unwrap();
            if resp.status() == 200 {
                served = Some(resp.json::<serde_json::Value>().await.unwrap());
                break;
            }
        }
        if let Some(trace) = served {
            let text = trace.to_string();
            assert!(text.contains("/users/"), "{text}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no exemplar trace id served by the store: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
