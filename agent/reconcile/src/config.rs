//! The `reconcile:` section of the configuration file and its check, which reports every
//! problem at once.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};
use sonde_config::Invalid;

use crate::Mode;

/// The `reconcile:` section: which Grafanas to wire, the Tempo endpoints to add to them, and the
/// metrics and logs datasources the traces must link to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSection {
    /// How often the default (looping) mode reconciles, e.g. `30s`, `5m`, `1h`.
    #[serde(with = "sonde_config::duration")]
    pub interval: Duration,
    /// How to apply: `api` (Grafana HTTP API), `provisioning` (YAML files) or `operator`
    /// (grafana-operator `GrafanaDatasource` manifests).
    pub mode: Mode,
    /// Where `provisioning` and `operator` modes write their files.
    pub output_dir: PathBuf,
    /// The Grafana instances (or orgs) to reconcile.
    pub grafanas: Vec<GrafanaConfig>,
    /// The Tempo endpoints; each becomes one Tempo datasource in each of its Grafanas.
    pub tempos: Vec<TempoConfig>,
    /// Prometheus/Mimir datasources for traces-to-metrics, the service map and exemplars,
    /// in order of preference.
    pub metrics: Vec<BackendRef>,
    /// Prometheus holding the service-graph series (where Tempo's metrics-generator
    /// remote-writes), if not the `metrics` one.
    pub service_map: Vec<BackendRef>,
    /// Loki datasources for traces-to-logs and derived fields, in order of preference.
    pub logs: Vec<BackendRef>,
    /// What the links look like.
    pub correlation: CorrelationConfig,
}

impl Default for ReconcileSection {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            mode: Mode::Api,
            output_dir: PathBuf::from("sonde-grafana"),
            grafanas: Vec::new(),
            tempos: Vec::new(),
            metrics: Vec::new(),
            service_map: Vec::new(),
            logs: Vec::new(),
            correlation: CorrelationConfig::default(),
        }
    }
}

/// One Grafana (one org of one Grafana server).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrafanaConfig {
    /// Operator-chosen, stable id of this Grafana; plays the role of COS `grafana_uid` and tags
    /// exchanged datasource UIDs.
    pub id: String,
    /// Base URL, e.g. `http://grafana:3000`. Required in `api` mode; optional otherwise (then
    /// only UIDs tagged with this Grafana's id can be linked).
    pub url: Option<String>,
    /// The org to manage, default 1 (sent as `X-Grafana-Org-Id` with basic auth; a
    /// service-account token is bound to its own org).
    pub org_id: u64,
    /// Service-account token (sent as `Authorization: Bearer`).
    pub token: Option<SecretSource>,
    /// Basic-auth user and password.
    pub basic_auth: Option<BasicAuth>,
    /// PEM CA bundle to trust for this Grafana's TLS certificate.
    pub ca_file: Option<PathBuf>,
    /// `provisioning` mode: your own datasource provisioning files (in the directory Grafana
    /// provisions from) that define the Loki/Prometheus datasources Sonde links back from.
    /// Sonde adds its `derivedFields` / `exemplarTraceIdDestinations` entries to those
    /// datasources there and changes nothing else (comments are not kept). A backlink to a
    /// datasource defined elsewhere fails with what to add where.
    pub provisioning_files: Vec<PathBuf>,
    /// grafana-operator settings for `operator` mode.
    pub operator: OperatorTarget,
}

impl Default for GrafanaConfig {
    fn default() -> Self {
        Self {
            id: String::new(),
            url: None,
            org_id: 1,
            token: None,
            basic_auth: None,
            ca_file: None,
            provisioning_files: Vec::new(),
            operator: OperatorTarget::default(),
        }
    }
}

/// Where `operator` mode puts the manifests for one Grafana.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorTarget {
    /// Namespace of the `GrafanaDatasource` objects.
    pub namespace: String,
    /// `spec.instanceSelector.matchLabels` selecting the `Grafana` custom resource.
    pub instance_selector: BTreeMap<String, String>,
    /// Kubernetes Secret holding the datasource secrets (keys are listed in the manifests).
    pub secret_name: String,
}

impl Default for OperatorTarget {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            instance_selector: BTreeMap::new(),
            secret_name: "sonde-datasource-secrets".into(),
        }
    }
}

/// A user name and a password read from a file or the environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicAuth {
    pub user: String,
    pub password: SecretSource,
}

/// Where a secret comes from: exactly one of an inline `value` (only for non-credentials such
/// as a tenant id), an environment variable, or a file (trailing newline trimmed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretSource {
    pub value: Option<String>,
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// One Tempo endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TempoConfig {
    /// Datasource name shown in Grafana. Keep it stable: provisioning matches on it.
    pub name: String,
    /// Datasource UID; derived deterministically from `name` when absent.
    pub uid: Option<String>,
    /// Tempo query endpoint, e.g. `http://sonde:3200`.
    pub url: String,
    /// Tenant sent as `X-Scope-OrgID` (multi-tenant Tempo); `a|b` queries across tenants.
    pub tenant: Option<SecretSource>,
    /// Basic auth towards Tempo.
    pub basic_auth: Option<BasicAuth>,
    /// Bearer token towards Tempo (sent as a custom `Authorization` header).
    pub bearer_token: Option<SecretSource>,
    /// Grafana ids to add this Tempo to; all when empty.
    pub grafanas: Vec<String>,
    /// Overrides the top-level `metrics` list for this Tempo.
    pub metrics: Option<Vec<BackendRef>>,
    /// Overrides the top-level `service_map` list for this Tempo.
    pub service_map: Option<Vec<BackendRef>>,
    /// Overrides the top-level `logs` list for this Tempo.
    pub logs: Option<Vec<BackendRef>>,
    /// Grafana's gRPC streaming of search and TraceQL metrics results
    /// (`jsonData.streamingEnabled`). Unset leaves Grafana's default alone (on); Tempo and
    /// Sonde's embedded store both serve the streaming gRPC API.
    pub streaming: Option<bool>,
}

/// A metrics or logs datasource: either a UID from the exchange (tagged with the Grafana that
/// holds it), or a name and/or type to look up in each Grafana.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendRef {
    /// Datasource UID.
    pub uid: Option<String>,
    /// The Grafana id this UID belongs to (exchange data); the UID is used only there.
    pub grafana: Option<String>,
    /// Datasource name to look up.
    pub name: Option<String>,
    /// Datasource type (plugin id) to look up or require, e.g. `prometheus`, `loki`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A `{key, value}` tag mapping: span attribute `key`, renamed to `value` in the target query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagMapping {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A named PromQL query for traces-to-metrics (`$__tags` expands to the span's tags).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsQuery {
    pub name: String,
    pub query: String,
}

/// The shape of the links Sonde writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// Tags for traces-to-logs.
    pub logs_tags: Vec<TagMapping>,
    /// Tags for traces-to-metrics.
    pub metrics_tags: Vec<TagMapping>,
    /// Widen the linked time range (Grafana's default of 0 often misses logs).
    pub span_start_time_shift: String,
    pub span_end_time_shift: String,
    /// Queries offered on a span for traces-to-metrics.
    pub metrics_queries: Vec<MetricsQuery>,
    /// Prometheus exemplar label carrying the trace id.
    pub exemplar_label: String,
    /// Loki derived field: display name, regex with one capture group, link label.
    pub derived_field_name: String,
    pub derived_field_regex: String,
    pub derived_field_label: String,
    /// Show the node graph in trace views.
    pub node_graph: bool,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        let tag = |key: &str, value: Option<&str>| TagMapping {
            key: key.into(),
            value: value.map(Into::into),
        };
        Self {
            logs_tags: vec![tag("service.name", Some("service_name"))],
            metrics_tags: vec![tag("service.name", Some("service"))],
            span_start_time_shift: "-5m".into(),
            span_end_time_shift: "5m".into(),
            // Series of Tempo's metrics-generator (span-metrics), whose `service` label carries
            // `service.name` and whose latency exemplars carry `traceID`.
            metrics_queries: vec![
                MetricsQuery {
                    name: "Request rate".into(),
                    query: "sum(rate(traces_spanmetrics_calls_total{$__tags}[5m]))".into(),
                },
                MetricsQuery {
                    name: "p90 latency".into(),
                    query: "histogram_quantile(0.9, sum by (le) \
                            (rate(traces_spanmetrics_latency_bucket{$__tags}[5m])))"
                        .into(),
                },
            ],
            exemplar_label: "traceID".into(),
            derived_field_name: "traceID".into(),
            derived_field_regex: r"(?:traceID|trace_id|tid)=(\w+)".into(),
            derived_field_label: "View trace".into(),
            node_graph: true,
        }
    }
}

/// A UID Grafana accepts: 1 to 40 characters of `[a-zA-Z0-9_-]`.
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 40
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SecretSource {
    /// Check the source. `for_grafana`: provisioning mode writes a Tempo secret from `env` or
    /// `file` as Grafana's `$__env{VAR}` / `$__file{path}`, which Grafana expands itself.
    fn check(&self, what: &str, allow_inline: bool, for_grafana: bool, problems: &mut Vec<String>) {
        let set = [
            self.value.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ];
        match set.iter().filter(|s| **s).count() {
            1 => {}
            0 => problems.push(format!(
                "{what}: set one of `env`, `file`{}",
                inline(allow_inline)
            )),
            _ => problems.push(format!("{what}: set only one of `value`, `env`, `file`")),
        }
        if self.value.is_some() && !allow_inline {
            problems.push(format!(
                "{what}: credentials must not be written in the config; use `env` or `file`"
            ));
        }
        if let Some(var) = &self.env {
            let mut chars = var.chars();
            let name = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name {
                problems.push(format!(
                    "{what}.env: {var:?} is not an environment variable name (A-Z, a-z, 0-9, _)"
                ));
            }
        }
        if let Some(path) = self.file.as_ref().filter(|_| for_grafana) {
            let text = path.display().to_string();
            if !path.is_absolute() || text.contains('}') {
                problems.push(format!(
                    "{what}.file: provisioning mode writes it as $__file{{{text}}} for Grafana \
                     to read: use an absolute path without `}}`, the same for Sonde and Grafana"
                ));
            }
        }
    }
}

fn inline(allow: bool) -> &'static str {
    if allow { ", `value`" } else { "" }
}

impl BackendRef {
    fn check(&self, what: &str, grafana_ids: &[&str], problems: &mut Vec<String>) {
        if self.uid.is_none() && self.name.is_none() && self.kind.is_none() {
            problems.push(format!(
                "{what}: set `uid` (with `grafana`), `name` or `type`"
            ));
        }
        if self.uid.is_some() && self.name.is_some() {
            problems.push(format!("{what}: set either `uid` or `name`, not both"));
        }
        if self.grafana.is_some() && self.uid.is_none() {
            problems.push(format!("{what}: `grafana` tags a `uid`; it needs `uid`"));
        }
        if let Some(uid) = &self.uid
            && !is_valid_uid(uid)
        {
            problems.push(format!(
                "{what}: uid {uid:?} is not a Grafana UID (1-40 of a-zA-Z0-9_-)"
            ));
        }
        if let Some(g) = &self.grafana
            && !grafana_ids.contains(&g.as_str())
        {
            problems.push(format!(
                "{what}: grafana {g:?} is not one of the `grafanas` ids"
            ));
        }
    }
}

impl ReconcileSection {
    /// Check the section; every problem is returned, each with its key.
    pub fn validate(&self) -> Result<(), Vec<Invalid>> {
        let mut problems = Vec::new();
        if self.interval.is_zero() {
            problems.push("interval: must be greater than 0".to_string());
        }
        if self.grafanas.is_empty() {
            problems.push("grafanas: list at least one Grafana".into());
        }
        if self.tempos.is_empty() {
            problems.push("tempos: list at least one Tempo endpoint".into());
        }
        let ids: Vec<&str> = self.grafanas.iter().map(|g| g.id.as_str()).collect();
        for (i, g) in self.grafanas.iter().enumerate() {
            let what = format!("grafanas[{i}] ({})", g.id);
            if !is_valid_uid(&g.id) {
                problems.push(format!("{what}: id must be 1-40 characters of a-zA-Z0-9_-"));
            }
            if ids.iter().filter(|id| **id == g.id).count() > 1 {
                problems.push(format!("{what}: id is used twice"));
            }
            if g.org_id == 0 {
                problems.push(format!("{what}: org_id must be >= 1"));
            }
            match &g.url {
                Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                    problems.push(format!(
                        "{what}: url {url:?} must start with http:// or https://"
                    ))
                }
                None if self.mode == Mode::Api => {
                    problems.push(format!("{what}: url is required in api mode"))
                }
                _ => {}
            }
            if g.token.is_some() && g.basic_auth.is_some() {
                problems.push(format!(
                    "{what}: set either `token` or `basic_auth`, not both"
                ));
            }
            if g.url.is_some() && g.token.is_none() && g.basic_auth.is_none() {
                problems.push(format!(
                    "{what}: set `token` or `basic_auth` to call the API"
                ));
            }
            if let Some(t) = &g.token {
                t.check(&format!("{what}.token"), false, false, &mut problems);
            }
            if let Some(b) = &g.basic_auth {
                b.password.check(
                    &format!("{what}.basic_auth.password"),
                    false,
                    false,
                    &mut problems,
                );
                if b.user.is_empty() {
                    problems.push(format!("{what}.basic_auth.user: must not be empty"));
                }
            }
            if self.mode == Mode::Operator && g.operator.instance_selector.is_empty() {
                problems.push(format!(
                    "{what}.operator.instance_selector: operator mode needs labels selecting \
                     the Grafana custom resource"
                ));
            }
        }
        let mut uids = Vec::new();
        let mut names = Vec::new();
        for (i, t) in self.tempos.iter().enumerate() {
            let what = format!("tempos[{i}] ({})", t.name);
            if t.name.trim().is_empty() {
                problems.push(format!("{what}: name must not be empty"));
            }
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                problems.push(format!(
                    "{what}: url {:?} must start with http:// or https://",
                    t.url
                ));
            }
            let uid = crate::tempo_uid(t);
            if !is_valid_uid(&uid) {
                problems.push(format!(
                    "{what}: uid {uid:?} is not a Grafana UID (1-40 of a-zA-Z0-9_-)"
                ));
            }
            if uids.contains(&uid) {
                problems.push(format!("{what}: uid {uid:?} is used twice"));
            }
            if names.contains(&t.name) {
                problems.push(format!("{what}: name is used twice"));
            }
            uids.push(uid);
            names.push(t.name.clone());
            let grafana_reads = self.mode == Mode::Provisioning;
            if let Some(s) = &t.tenant {
                s.check(
                    &format!("{what}.tenant"),
                    true,
                    grafana_reads,
                    &mut problems,
                );
            }
            if let Some(b) = &t.basic_auth {
                let key = format!("{what}.basic_auth.password");
                b.password.check(&key, false, grafana_reads, &mut problems);
            }
            if let Some(s) = &t.bearer_token {
                let key = format!("{what}.bearer_token");
                s.check(&key, false, grafana_reads, &mut problems);
            }
            if t.basic_auth.is_some() && t.bearer_token.is_some() {
                problems.push(format!("{what}: set either `basic_auth` or `bearer_token`"));
            }
            for g in &t.grafanas {
                if !ids.contains(&g.as_str()) {
                    problems.push(format!(
                        "{what}.grafanas: {g:?} is not one of the `grafanas` ids"
                    ));
                }
            }
            for (j, r) in t.metrics.iter().flatten().enumerate() {
                r.check(&format!("{what}.metrics[{j}]"), &ids, &mut problems);
            }
            for (j, r) in t.service_map.iter().flatten().enumerate() {
                r.check(&format!("{what}.service_map[{j}]"), &ids, &mut problems);
            }
            for (j, r) in t.logs.iter().flatten().enumerate() {
                r.check(&format!("{what}.logs[{j}]"), &ids, &mut problems);
            }
        }
        for (j, r) in self.metrics.iter().enumerate() {
            r.check(&format!("metrics[{j}]"), &ids, &mut problems);
        }
        for (j, r) in self.service_map.iter().enumerate() {
            r.check(&format!("service_map[{j}]"), &ids, &mut problems);
        }
        for (j, r) in self.logs.iter().enumerate() {
            r.check(&format!("logs[{j}]"), &ids, &mut problems);
        }
        let c = &self.correlation;
        match regex::Regex::new(&c.derived_field_regex) {
            Ok(re) if re.captures_len() == 2 => {}
            Ok(_) => problems.push(
                "correlation.derived_field_regex: needs exactly one capture group".to_string(),
            ),
            Err(e) => problems.push(format!("correlation.derived_field_regex: {e}")),
        }
        if c.exemplar_label.is_empty() {
            problems.push("correlation.exemplar_label: must not be empty".into());
        }
        if c.derived_field_name.is_empty() {
            problems.push("correlation.derived_field_name: must not be empty".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.into_iter().map(|p| keyed(&p)).collect())
        }
    }
}

/// A problem written `key: reason`, as a keyed [`Invalid`] under `reconcile.`.
fn keyed(problem: &str) -> Invalid {
    match problem.split_once(": ") {
        Some((key, reason)) => Invalid::new(format!("reconcile.{key}"), reason),
        None => Invalid::new("reconcile", problem),
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
