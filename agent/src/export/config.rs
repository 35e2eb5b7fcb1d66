//! `ExportConfig`: where and how spans are shipped (OTLP endpoint, protocol, headers, batching,
//! queue, retry), with the standard `OTEL_EXPORTER_OTLP_*` environment variables applied on top.
use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::span::resource::parse_key_values;

/// OTLP transport protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl FromStr for Protocol {
    type Err = ExportConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => Err(ExportConfigError::Protocol(other.to_owned())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        })
    }
}

/// What an exporter sends: each has its own `OTEL_EXPORTER_OTLP_<SIGNAL>_*` variables and
/// HTTP path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    /// `TRACES` / `METRICS`, as in the variables' names.
    fn env_name(self) -> &'static str {
        match self {
            Self::Traces => "TRACES",
            Self::Metrics => "METRICS",
        }
    }

    /// The path appended to a base endpoint for `http/protobuf`.
    pub fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "/v1/traces",
            Self::Metrics => "/v1/metrics",
        }
    }

    /// The gRPC method.
    pub fn grpc_path(self) -> &'static str {
        match self {
            Self::Traces => "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
            Self::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
        }
    }
}

/// Payload compression.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl FromStr for Compression {
    type Err = ExportConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "none" | "" => Ok(Self::None),
            "gzip" => Ok(Self::Gzip),
            other => Err(ExportConfigError::Compression(other.to_owned())),
        }
    }
}

/// Invalid export configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExportConfigError {
    #[error("unsupported OTLP protocol {0:?}: use \"grpc\" or \"http/protobuf\"")]
    Protocol(String),
    #[error("unsupported OTLP compression {0:?}: use \"gzip\" or \"none\"")]
    Compression(String),
    #[error("invalid OTLP endpoint {url:?}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error("invalid OTLP header {name:?}: {reason}")]
    Header { name: String, reason: String },
    #[error("cannot use CA certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("invalid value {value:?} for {name}: {reason}")]
    Value {
        name: String,
        value: String,
        reason: String,
    },
}

/// The `export:` settings. `Debug` hides header values (they are often credentials).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    /// Base endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`); defaults to `http://localhost:4317` for
    /// gRPC and `http://localhost:4318` for HTTP. For `http/protobuf`, `/v1/traces` is appended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Full traces URL used as is (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); wins over `endpoint`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traces_endpoint: Option<String>,
    /// Full metrics URL used as is (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`); wins over
    /// `endpoint` for the RED metrics' OTLP export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_endpoint: Option<String>,
    pub protocol: Protocol,
    /// PEM file with the CA certificate(s) that sign an `https` endpoint's certificate, added
    /// to the built-in public roots (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// Extra request headers (e.g. `authorization`, `x-scope-orgid`).
    pub headers: BTreeMap<String, String>,
    pub compression: Compression,
    /// Deadline of one export request.
    #[serde(with = "sonde_config::duration")]
    pub timeout: Duration,
    /// A batch is sent when it holds this many spans…
    pub batch_max_spans: usize,
    /// …or when its oldest span has waited this long.
    #[serde(with = "sonde_config::duration")]
    pub batch_interval: Duration,
    /// Spans held at most (queued, batched and in flight); beyond that new spans are dropped.
    pub queue_capacity: usize,
    /// Give up on a batch after retrying this long.
    #[serde(with = "sonde_config::duration")]
    pub retry_max_elapsed: Duration,
    /// First retry delay; doubles up to `retry_max_backoff` (with jitter).
    #[serde(with = "sonde_config::duration")]
    pub retry_initial_backoff: Duration,
    #[serde(with = "sonde_config::duration")]
    pub retry_max_backoff: Duration,
    /// Export `url.query` (query strings often carry tokens; off by default).
    pub export_query: bool,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            traces_endpoint: None,
            metrics_endpoint: None,
            protocol: Protocol::Grpc,
            certificate: None,
            headers: BTreeMap::new(),
            compression: Compression::None,
            timeout: Duration::from_secs(10),
            // One batch is in flight at a time: at saturating load on two cores (~60k spans/s
            // with every process traced) 512-span batches to a real store dropped 10% at the
            // queue, 4,096-span batches none. 4,096 spans are about 1.2 MB of OTLP, under the
            // 4 MiB gRPC message size receivers accept by default.
            batch_max_spans: 4096,
            batch_interval: Duration::from_secs(1),
            queue_capacity: 65_536,
            retry_max_elapsed: Duration::from_secs(30),
            retry_initial_backoff: Duration::from_millis(500),
            retry_max_backoff: Duration::from_secs(5),
            export_query: false,
        }
    }
}

impl fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: BTreeMap<&str, &str> = self
            .headers
            .keys()
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("ExportConfig")
            .field("endpoint", &self.endpoint)
            .field("traces_endpoint", &self.traces_endpoint)
            .field("metrics_endpoint", &self.metrics_endpoint)
            .field("protocol", &self.protocol)
            .field("certificate", &self.certificate)
            .field("headers", &headers)
            .field("compression", &self.compression)
            .field("timeout", &self.timeout)
            .field("batch_max_spans", &self.batch_max_spans)
            .field("batch_interval", &self.batch_interval)
            .field("queue_capacity", &self.queue_capacity)
            .field("retry_max_elapsed", &self.retry_max_elapsed)
            .field("retry_initial_backoff", &self.retry_initial_backoff)
            .field("retry_max_backoff", &self.retry_max_backoff)
            .field("export_query", &self.export_query)
            .finish()
    }
}

/// The generic endpoint variable (the signal's own is `OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT`).
const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// `OTEL_EXPORTER_OTLP_<SIGNAL>_<what>` then `OTEL_EXPORTER_OTLP_<what>`: signal-specific first.
fn env_keys(signal: Signal, what: &str) -> [String; 2] {
    [
        format!("OTEL_EXPORTER_OTLP_{}_{what}", signal.env_name()),
        format!("OTEL_EXPORTER_OTLP_{what}"),
    ]
}

impl ExportConfig {
    /// Apply the `OTEL_EXPORTER_OTLP_*` variables (they override the file). `env` looks a
    /// variable up (`|k| std::env::var(k).ok()` in production; a map in tests). Empty values
    /// count as unset.
    pub fn apply_env(
        &mut self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ExportConfigError> {
        self.apply_env_for(Signal::Traces, env)
    }

    /// [`Self::apply_env`] for `signal`'s variables.
    pub fn apply_env_for(
        &mut self,
        signal: Signal,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ExportConfigError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let first = |what: &str| {
            env_keys(signal, what)
                .into_iter()
                .find_map(|k| get(&k).map(|v| (k, v)))
        };
        if let Some((_, v)) = first("PROTOCOL") {
            self.protocol = v.parse()?;
        }
        let [signal_endpoint, _] = env_keys(signal, "ENDPOINT");
        let signal_url = match signal {
            Signal::Traces => &mut self.traces_endpoint,
            Signal::Metrics => &mut self.metrics_endpoint,
        };
        if let Some(v) = get(&signal_endpoint) {
            *signal_url = Some(v);
        }
        if let Some(v) = get(ENV_ENDPOINT) {
            self.endpoint = Some(v);
            // A generic endpoint from the environment beats a signal URL from the file only
            // when the environment has no signal URL of its own.
            if get(&signal_endpoint).is_none() {
                match signal {
                    Signal::Traces => self.traces_endpoint = None,
                    Signal::Metrics => self.metrics_endpoint = None,
                }
            }
        }
        // Generic first, then the signal's variant, so the latter wins per key.
        for key in env_keys(signal, "HEADERS").iter().rev() {
            if let Some(v) = get(key) {
                for (name, value) in parse_key_values(&v) {
                    self.headers.insert(name.to_ascii_lowercase(), value);
                }
            }
        }
        if let Some((name, v)) = first("TIMEOUT") {
            let ms: u64 = v.parse().map_err(|_| ExportConfigError::Value {
                name: name.clone(),
                value: v.clone(),
                reason: "expected milliseconds as an integer".to_owned(),
            })?;
            self.timeout = Duration::from_millis(ms);
        }
        if let Some((_, v)) = first("COMPRESSION") {
            self.compression = v.parse()?;
        }
        if let Some((_, v)) = first("CERTIFICATE") {
            self.certificate = Some(PathBuf::from(v));
        }
        Ok(())
    }

    /// The URL spans are sent to: `traces_endpoint` as is, else `endpoint` (or the protocol's
    /// default) with `/v1/traces` appended for `http/protobuf`.
    pub fn traces_url(&self) -> String {
        self.url_for(Signal::Traces)
    }

    /// The URL `signal` is sent to: its own URL as is, else `endpoint` (or the protocol's
    /// default) with the signal's path appended for `http/protobuf`.
    pub fn url_for(&self, signal: Signal) -> String {
        let own = match signal {
            Signal::Traces => &self.traces_endpoint,
            Signal::Metrics => &self.metrics_endpoint,
        };
        if let Some(url) = own {
            return url.clone();
        }
        let base = self.endpoint.clone().unwrap_or_else(|| {
            match self.protocol {
                Protocol::Grpc => "http://localhost:4317",
                Protocol::HttpProtobuf => "http://localhost:4318",
            }
            .to_owned()
        });
        match self.protocol {
            Protocol::Grpc => base,
            Protocol::HttpProtobuf => {
                format!("{}{}", base.trim_end_matches('/'), signal.http_path())
            }
        }
    }

    /// Check the settings; the error says which one is wrong and why.
    pub fn validate(&self) -> Result<(), ExportConfigError> {
        self.validate_for(Signal::Traces)
    }

    /// [`Self::validate`] with `signal`'s URL.
    pub fn validate_for(&self, signal: Signal) -> Result<(), ExportConfigError> {
        let url = self.url_for(signal);
        let bad = |reason: &str| ExportConfigError::Endpoint {
            url: url.clone(),
            reason: reason.to_owned(),
        };
        let parsed = reqwest::Url::parse(&url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if let Some(path) = &self.certificate {
            read_ca_certificate(path)?;
        }
        for (name, value) in &self.headers {
            let header = |reason: &str| ExportConfigError::Header {
                name: name.clone(),
                reason: reason.to_owned(),
            };
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| header("not a valid header name"))?;
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(header("header names must be lowercase (gRPC metadata)"));
            }
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| header("the value has characters a header cannot carry"))?;
        }
        let positive = |name: &str, ok: bool, value: String| {
            if ok {
                Ok(())
            } else {
                Err(ExportConfigError::Value {
                    name: name.to_owned(),
                    value,
                    reason: "must be greater than zero".to_owned(),
                })
            }
        };
        positive(
            "timeout",
            !self.timeout.is_zero(),
            format!("{:?}", self.timeout),
        )?;
        positive(
            "batch_max_spans",
            self.batch_max_spans > 0,
            self.batch_max_spans.to_string(),
        )?;
        positive(
            "batch_interval",
            !self.batch_interval.is_zero(),
            format!("{:?}", self.batch_interval),
        )?;
        positive(
            "queue_capacity",
            self.queue_capacity > 0,
            self.queue_capacity.to_string(),
        )?;
        positive(
            "retry_initial_backoff",
            !self.retry_initial_backoff.is_zero(),
            format!("{:?}", self.retry_initial_backoff),
        )?;
        if self.batch_max_spans > self.queue_capacity {
            return Err(ExportConfigError::Value {
                name: "batch_max_spans".to_owned(),
                value: self.batch_max_spans.to_string(),
                reason: format!("must not exceed queue_capacity ({})", self.queue_capacity),
            });
        }
        Ok(())
    }
}

/// Read and check a CA certificate file: PEM with at least one certificate.
pub fn read_ca_certificate(path: &std::path::Path) -> Result<Vec<u8>, ExportConfigError> {
    let bad = |reason: String| ExportConfigError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad("no PEM certificate in the file".to_owned()));
    }
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
    Ok(pem)
}

#[cfg(test)]
mod tests;
