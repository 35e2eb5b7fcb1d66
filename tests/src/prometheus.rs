//! A real Prometheus (Debian's `prometheus` package) on 127.0.0.1, scraping one target every
//! second with exemplar storage on (or receiving remote write), and its HTTP API.
use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{Proc, free_port};

/// A running Prometheus and where its API is.
pub struct Prometheus {
    proc: Option<Proc>,
    pub port: u16,
    args: Vec<String>,
}

/// Why Prometheus cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    match Command::new("prometheus").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("prometheus is not installed (apt install prometheus)".into()),
    }
}

impl Prometheus {
    /// Start Prometheus in `dir` scraping `target` (`host:port`, path `/metrics`) every
    /// second; returns once it is ready.
    pub async fn start(dir: &Path, target: &str) -> Self {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: ['{target}']\n"
        );
        Self::start_with(dir, &config, &[]).await
    }

    /// Start Prometheus in `dir` with this configuration and extra flags (for example
    /// `--web.enable-remote-write-receiver`); returns once it is ready.
    pub async fn start_with(dir: &Path, config: &str, flags: &[&str]) -> Self {
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config).expect("write prometheus.yml");
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", path.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--enable-feature=exemplar-storage".to_string(),
        ];
        args.extend(flags.iter().map(|f| (*f).to_string()));
        let mut p = Self {
            proc: None,
            port,
            args,
        };
        p.resume().await;
        p
    }

    /// Stop it (SIGTERM); [`Prometheus::resume`] starts it again on the same port and data.
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Start it (again); returns once it is ready.
    pub async fn resume(&mut self) {
        let child = Command::new("prometheus")
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (apt install prometheus)");
        self.proc = Some(Proc(child));
        let port = self.port;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest::get(format!("http://127.0.0.1:{port}/-/ready"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "prometheus did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let resp = reqwest::Client::new()
            .get(url)
            .query(params)
            .send()
            .await
            .expect("prometheus API");
        let body: Value = resp.json().await.expect("prometheus API JSON");
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    /// An instant query: each result's labels and value.
    pub async fn query(&self, promql: &str) -> Vec<(serde_json::Map<String, Value>, f64)> {
        let data = self
            .get("/api/v1/query", &[("query", promql.to_owned())])
            .await;
        data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let labels = s["metric"].as_object().cloned().unwrap_or_default();
                        let v = s["value"][1].as_str().and_then(|v| v.parse().ok());
                        (labels, v.unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Exemplars of the last `window` for `promql`: their label sets.
    pub async fn exemplars(
        &self,
        promql: &str,
        window: Duration,
    ) -> Vec<serde_json::Map<String, Value>> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let data = self
            .get(
                "/api/v1/query_exemplars",
                &[
                    ("query", promql.to_owned()),
                    ("start", format!("{:.3}", now - window.as_secs_f64())),
                    ("end", format!("{:.3}", now + 1.0)),
                ],
            )
            .await;
        let mut out = Vec::new();
        for series in data.as_array().into_iter().flatten() {
            for e in series["exemplars"].as_array().into_iter().flatten() {
                if let Some(l) = e["labels"].as_object() {
                    out.push(l.clone());
                }
            }
        }
        out
    }
}
