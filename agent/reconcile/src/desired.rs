//! Pure: config + what a Grafana holds → the datasource fields Sonde owns in that Grafana.
//!
//! Sonde owns whole Tempo datasources it creates (but only the leaves it sets: a field a user
//! adds is kept), and, on existing Loki and Prometheus datasources, only the `derivedFields` /
//! `exemplarTraceIdDestinations` entries that point at a Sonde Tempo plus a marker key.
//! A link is emitted only to a datasource that exists in the same Grafana (or, without API
//! access, that the exchange data says lives there): never a dangling link.
use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{MARKER, ResolvedTempo, secret::Secret};
use crate::config::{BackendRef, CorrelationConfig, ReconcileSection};

mod select;
pub(crate) use select::select;
use select::unlinked_line;

/// A JSON path from the record root, e.g. `["jsonData", "serviceMap", "datasourceUid"]`.
pub type Path = Vec<String>;

/// Build a [`Path`] from segments.
pub fn path(segments: &[&str]) -> Path {
    segments.iter().map(|s| (*s).to_string()).collect()
}

/// One datasource as listed by `GET /api/datasources`.
#[derive(Debug, Clone, PartialEq)]
pub struct DsSummary {
    pub uid: String,
    pub name: String,
    pub kind: String,
    pub read_only: bool,
    /// The datasource carries Sonde's marker as a Tempo owner (a Sonde Tempo).
    pub sonde_tempo: bool,
    /// The Grafana id recorded in Sonde's marker (which config created it).
    pub sonde_grafana: Option<String>,
    /// The datasource carries Sonde's backlink entries (marker `tempoUids`).
    pub sonde_links: bool,
}

impl DsSummary {
    /// Summarise one list item; `None` when it has no uid.
    pub fn from_json(v: &Value) -> Option<Self> {
        let s = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let uid = s("uid");
        if uid.is_empty() {
            return None;
        }
        let owner = v
            .pointer(&format!("/jsonData/{MARKER}/owner"))
            .and_then(Value::as_str);
        let marker = |k: &str| v.pointer(&format!("/jsonData/{MARKER}/{k}"));
        Some(Self {
            kind: s("type"),
            name: s("name"),
            read_only: v.get("readOnly").and_then(Value::as_bool).unwrap_or(false),
            sonde_tempo: owner == Some("sonde") && s("type") == "tempo",
            sonde_grafana: marker("grafana")
                .and_then(Value::as_str)
                .map(str::to_string),
            sonde_links: marker("tempoUids").is_some(),
            uid,
        })
    }
}

/// Whether Sonde owns the whole datasource or only adds links to someone else's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owned,
    Patched,
}

/// Entries of a list (`derivedFields`, `exemplarTraceIdDestinations`) that Sonde owns: those
/// whose `datasourceUid` is a Sonde Tempo. Other entries are the user's and are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ListOwnership {
    pub list: Path,
    /// Tempo UIDs whose entries are Sonde's (plus those recorded in the observed marker).
    pub managed: BTreeSet<String>,
    /// The entries Sonde wants, each with a `datasourceUid`.
    pub entries: Vec<Map<String, Value>>,
}

/// The fields Sonde owns on one datasource in one Grafana.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredDatasource {
    pub uid: String,
    pub name: String,
    pub kind: String,
    pub role: Role,
    /// Owned leaves: `Some` = must equal, `None` = must be absent.
    pub sets: Vec<(Path, Option<Value>)>,
    /// Link fields Sonde has no target for: removed only if they point at a missing UID.
    pub unlink_if_dangling: Vec<Path>,
    pub lists: Vec<ListOwnership>,
    /// `secureJsonData` to send; write-only in Grafana, so drift is tracked by a hash.
    pub secure: BTreeMap<String, Secret>,
    /// Sonde's custom HTTP headers (name, value), in order. They are numbered when planned
    /// against the observed record (`httpHeaderName<N>` / `httpHeaderValue<N>`): Grafana reads
    /// N = 1, 2, … and stops at the first gap, and a user's own headers keep their numbers.
    pub headers: Vec<(String, Secret)>,
    /// Tempo UIDs this datasource links to (a patch waits for them to exist).
    pub depends_on: Vec<String>,
}

/// Everything Sonde wants in one Grafana, Tempos first.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredGrafana {
    pub grafana: String,
    pub datasources: Vec<DesiredDatasource>,
    /// Why a choice was made, for the report.
    pub notes: Vec<String>,
    /// One line per link not made: which link, and why each candidate seen was rejected.
    pub unlinked: Vec<String>,
}

/// The header carrying the Tempo tenant.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";
/// The header carrying a Tempo bearer token.
pub const AUTH_HEADER: &str = "Authorization";

/// Types accepted for a metrics link when a reference names no type.
const METRICS_TYPES: &[&str] = &["prometheus"];
/// Types accepted for a logs link when a reference names no type.
const LOGS_TYPES: &[&str] = &["loki"];

/// The Tempo UID: configured, or `sonde-` + a slug of the name (+ a hash when the slug is
/// lossy or long), always a valid Grafana UID.
pub fn tempo_uid(name: &str, configured: Option<&str>) -> String {
    if let Some(uid) = configured {
        return uid.to_string();
    }
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .to_ascii_lowercase();
    let slug = slug.trim_matches('-');
    let lossless = slug == name && !slug.is_empty();
    let slug = slug.strip_prefix("sonde-").unwrap_or(slug);
    if lossless && slug.len() <= 34 {
        return format!("sonde-{slug}");
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let short: String = slug.chars().take(24).collect();
    let short = short.trim_end_matches('-');
    let hash = hex::encode(&digest.as_ref()[..3]);
    if short.is_empty() {
        format!("sonde-{hash}")
    } else {
        format!("sonde-{short}-{hash}")
    }
}

/// The keyed hash of the secrets Sonde sends to one datasource. Keyed with the Grafana
/// credential so that people who can read jsonData cannot test guesses of low-entropy values.
pub fn secure_hash(
    key: &[u8],
    grafana: &str,
    uid: &str,
    secure: &BTreeMap<String, Secret>,
) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    for part in [grafana, uid] {
        ctx.update(part.as_bytes());
        ctx.update(&[0]);
    }
    for (k, v) in secure {
        ctx.update(k.as_bytes());
        ctx.update(&[0]);
        ctx.update(v.expose().as_bytes());
        ctx.update(&[0]);
    }
    hex::encode(&ctx.sign().as_ref()[..12])
}

fn tags(tags: &[crate::config::TagMapping]) -> Value {
    serde_json::to_value(tags).unwrap_or(Value::Array(Vec::new()))
}

fn set(sets: &mut Vec<(Path, Option<Value>)>, p: &[&str], v: Value) {
    sets.push((path(p), Some(v)));
}

/// The span time shifts of a trace-to-logs or trace-to-metrics link under `base`.
fn set_time_shifts(sets: &mut Vec<(Path, Option<Value>)>, base: [&str; 2], c: &CorrelationConfig) {
    let [a, b] = base;
    set(
        sets,
        &[a, b, "spanStartTimeShift"],
        json!(c.span_start_time_shift),
    );
    set(
        sets,
        &[a, b, "spanEndTimeShift"],
        json!(c.span_end_time_shift),
    );
}

/// Build the desired state of one Grafana. `inventory` is `None` when the Grafana cannot be
/// listed (file modes without API access); `hash_key` is the Grafana credential (API mode).
pub fn build(
    section: &ReconcileSection,
    tempos: &[ResolvedTempo],
    grafana: &str,
    inventory: Option<&[DsSummary]>,
    hash_key: Option<&[u8]>,
) -> DesiredGrafana {
    let c = &section.correlation;
    let mut notes = Vec::new();
    let mut unlinked = Vec::new();
    let mut tempo_ds = Vec::new();
    let mut logs_links: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut metrics_links: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for t in tempos
        .iter()
        .filter(|t| t.config.grafanas.is_empty() || t.config.grafanas.iter().any(|g| g == grafana))
    {
        let what = format!("tempo {:?}", t.config.name);
        let metrics_refs = t.config.metrics.as_deref().unwrap_or(&section.metrics);
        let logs_refs = t.config.logs.as_deref().unwrap_or(&section.logs);
        let mut pick = |refs: &[BackendRef], types: &[&str], link: &str, key: &str| {
            let what = format!("{what} {link}");
            match select(refs, grafana, inventory, types, &what, &mut notes) {
                Ok(choice) => Some(choice),
                Err(rejected) => {
                    unlinked.push(unlinked_line(&what, key, &rejected));
                    None
                }
            }
        };
        let metrics = pick(metrics_refs, METRICS_TYPES, "→ metrics", "metrics");
        let logs = pick(logs_refs, LOGS_TYPES, "→ logs", "logs");
        let own_map = t.config.service_map.as_deref();
        let map_refs =
            own_map.or((!section.service_map.is_empty()).then_some(&section.service_map[..]));
        let service_map = match map_refs {
            Some(refs) => pick(refs, METRICS_TYPES, "→ service map", "service_map"),
            None => metrics.clone(),
        };
        let links = Links {
            metrics: metrics.as_ref(),
            service_map: service_map.as_ref(),
            logs: logs.as_ref(),
        };
        tempo_ds.push(tempo_datasource(t, c, grafana, &links, hash_key));
        if let Some(l) = logs {
            logs_links.entry(l).or_default().push(t.uid.clone());
        }
        // Exemplars link back from whichever Prometheus holds the span metrics.
        for m in metrics.into_iter().chain(service_map) {
            let tempos = metrics_links.entry(m).or_default();
            if !tempos.contains(&t.uid) {
                tempos.push(t.uid.clone());
            }
        }
    }
    let mut managed: BTreeSet<String> = tempos.iter().map(|t| t.uid.clone()).collect();
    managed.extend(
        inventory
            .into_iter()
            .flatten()
            .filter(|d| d.sonde_tempo)
            .map(|d| d.uid.clone()),
    );
    let mut datasources = tempo_ds;
    for ((uid, name), tempo_uids) in logs_links {
        let entries = tempo_uids
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("name".into(), json!(c.derived_field_name));
                m.insert("matcherType".into(), json!("regex"));
                m.insert("matcherRegex".into(), json!(c.derived_field_regex));
                m.insert("url".into(), json!("${__value.raw}"));
                m.insert("urlDisplayLabel".into(), json!(c.derived_field_label));
                m.insert("datasourceUid".into(), json!(t));
                m
            })
            .collect();
        datasources.push(patch(
            uid,
            name,
            "loki",
            "derivedFields",
            &managed,
            entries,
            tempo_uids,
        ));
    }
    for ((uid, name), tempo_uids) in metrics_links {
        let entries = tempo_uids
            .iter()
            .map(|t| {
                let mut m = Map::new();
                m.insert("name".into(), json!(c.exemplar_label));
                m.insert("datasourceUid".into(), json!(t));
                m
            })
            .collect();
        datasources.push(patch(
            uid,
            name,
            "prometheus",
            "exemplarTraceIdDestinations",
            &managed,
            entries,
            tempo_uids,
        ));
    }
    for d in &mut datasources {
        stamp_spec_hash(d);
    }
    DesiredGrafana {
        grafana: grafana.to_string(),
        datasources,
        notes,
        unlinked,
    }
}

/// What Sonde owned in one Grafana and no longer wants: its Tempos created for this Grafana
/// (`grafana` in the marker) that the config no longer lists, and its backlink entries in
/// Loki/Prometheus datasources that no longer link to a Sonde Tempo. The Tempos are to be
/// deleted; the returned patches remove the entries and the marker.
pub(crate) fn unwanted(
    want: &DesiredGrafana,
    inventory: &[DsSummary],
) -> (Vec<DsSummary>, Vec<DesiredDatasource>) {
    let wanted = |uid: &str| want.datasources.iter().any(|w| w.uid == uid);
    let tempos = inventory
        .iter()
        .filter(|d| d.sonde_tempo && d.sonde_grafana.as_deref() == Some(&want.grafana))
        .filter(|d| !wanted(&d.uid))
        .cloned()
        .collect();
    let managed: BTreeSet<String> = inventory
        .iter()
        .filter(|d| d.sonde_tempo)
        .map(|d| d.uid.clone())
        .chain(
            want.datasources
                .iter()
                .filter(|d| d.role == Role::Owned)
                .map(|d| d.uid.clone()),
        )
        .collect();
    let unlink = inventory
        .iter()
        .filter(|d| d.sonde_links && !wanted(&d.uid))
        .map(|d| DesiredDatasource {
            uid: d.uid.clone(),
            name: d.name.clone(),
            kind: d.kind.clone(),
            role: Role::Patched,
            sets: vec![(path(&["jsonData", MARKER]), None)],
            unlink_if_dangling: Vec::new(),
            lists: ["derivedFields", "exemplarTraceIdDestinations"]
                .iter()
                .map(|l| ListOwnership {
                    list: path(&["jsonData", l]),
                    managed: managed.clone(),
                    entries: Vec::new(),
                })
                .collect(),
            secure: BTreeMap::new(),
            headers: Vec::new(),
            depends_on: Vec::new(),
        })
        .collect();
    (tempos, unlink)
}

/// A Loki/Prometheus patch without its links to `tempos` (Tempos that were not written);
/// `None` when it links to nothing else.
pub fn without_links_to(
    d: &DesiredDatasource,
    tempos: &BTreeSet<String>,
) -> Option<DesiredDatasource> {
    let mut d = d.clone();
    d.depends_on.retain(|t| !tempos.contains(t));
    if d.depends_on.is_empty() {
        return None;
    }
    for l in &mut d.lists {
        l.entries.retain(|e| {
            e.get("datasourceUid")
                .and_then(Value::as_str)
                .is_none_or(|u| !tempos.contains(u))
        });
    }
    let marker = |k: &str| path(&["jsonData", MARKER, k]);
    d.sets
        .retain(|(p, _)| *p != marker("specHash") && *p != marker("tempoUids"));
    set(
        &mut d.sets,
        &["jsonData", MARKER, "tempoUids"],
        json!(d.depends_on),
    );
    stamp_spec_hash(&mut d);
    Some(d)
}

/// Record a hash of everything Sonde sets (secrets excluded) in the marker, so that a later
/// run can tell drift (config unchanged, Grafana changed) from a config change.
fn stamp_spec_hash(d: &mut DesiredDatasource) {
    let lists: Vec<_> = d.lists.iter().map(|l| (&l.list, &l.entries)).collect();
    let text = serde_json::to_string(&(&d.sets, &d.unlink_if_dangling, lists)).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let h = hex::encode(&digest.as_ref()[..8]);
    set(&mut d.sets, &["jsonData", MARKER, "specHash"], json!(h));
}

fn patch(
    uid: String,
    name: String,
    kind: &str,
    list: &str,
    managed: &BTreeSet<String>,
    entries: Vec<Map<String, Value>>,
    tempo_uids: Vec<String>,
) -> DesiredDatasource {
    let mut sets = Vec::new();
    set(
        &mut sets,
        &["jsonData", MARKER, "tempoUids"],
        json!(tempo_uids),
    );
    DesiredDatasource {
        uid,
        name,
        kind: kind.into(),
        role: Role::Patched,
        sets,
        unlink_if_dangling: Vec::new(),
        lists: vec![ListOwnership {
            list: path(&["jsonData", list]),
            managed: managed.clone(),
            entries,
        }],
        secure: BTreeMap::new(),
        headers: Vec::new(),
        depends_on: tempo_uids,
    }
}

/// The datasources one Tempo links to in one Grafana: (uid, name).
struct Links<'a> {
    metrics: Option<&'a (String, String)>,
    service_map: Option<&'a (String, String)>,
    logs: Option<&'a (String, String)>,
}

fn tempo_datasource(
    t: &ResolvedTempo,
    c: &CorrelationConfig,
    grafana: &str,
    links: &Links<'_>,
    hash_key: Option<&[u8]>,
) -> DesiredDatasource {
    let (metrics, logs) = (links.metrics, links.logs);
    let mut sets = Vec::new();
    let mut unlink = Vec::new();
    let mut secure = BTreeMap::new();
    set(&mut sets, &["name"], json!(t.config.name));
    set(&mut sets, &["type"], json!("tempo"));
    set(&mut sets, &["access"], json!("proxy"));
    set(&mut sets, &["url"], json!(t.config.url));
    match &t.basic_auth {
        Some((user, password)) => {
            set(&mut sets, &["basicAuth"], json!(true));
            set(&mut sets, &["basicAuthUser"], json!(user));
            secure.insert("basicAuthPassword".to_string(), password.clone());
        }
        None => {
            // Grafana stores an unset user as "".
            set(&mut sets, &["basicAuth"], json!(false));
            set(&mut sets, &["basicAuthUser"], json!(""));
        }
    }
    let mut headers = Vec::new();
    if let Some(tenant) = &t.tenant {
        headers.push((TENANT_HEADER.to_string(), tenant.clone()));
    }
    if let Some(token) = &t.bearer {
        let value = Secret::new(format!("Bearer {}", token.expose()));
        headers.push((AUTH_HEADER.to_string(), value));
    }
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    set(&mut sets, &["jsonData", MARKER, "headers"], json!(names));
    if let Some((logs_uid, _)) = logs {
        let base = ["jsonData", "tracesToLogsV2"];
        let leaf = |k: &'static str| [base[0], base[1], k];
        set(&mut sets, &leaf("datasourceUid"), json!(logs_uid));
        set(&mut sets, &leaf("tags"), tags(&c.logs_tags));
        set_time_shifts(&mut sets, base, c);
        set(&mut sets, &leaf("filterByTraceID"), json!(true));
        set(&mut sets, &leaf("filterBySpanID"), json!(false));
        set(&mut sets, &leaf("customQuery"), json!(false));
        set(
            &mut sets,
            &["jsonData", "lokiSearch", "datasourceUid"],
            json!(logs_uid),
        );
    } else {
        unlink.push(path(&["jsonData", "tracesToLogsV2", "datasourceUid"]));
        unlink.push(path(&["jsonData", "lokiSearch", "datasourceUid"]));
    }
    if let Some((metrics_uid, _)) = metrics {
        let base = ["jsonData", "tracesToMetrics"];
        let leaf = |k: &'static str| [base[0], base[1], k];
        set(&mut sets, &leaf("datasourceUid"), json!(metrics_uid));
        set(&mut sets, &leaf("tags"), tags(&c.metrics_tags));
        let queries = serde_json::to_value(&c.metrics_queries).unwrap_or(Value::Array(Vec::new()));
        set(&mut sets, &leaf("queries"), queries);
        set_time_shifts(&mut sets, base, c);
    } else {
        unlink.push(path(&["jsonData", "tracesToMetrics", "datasourceUid"]));
    }
    let map = ["jsonData", "serviceMap", "datasourceUid"];
    match links.service_map {
        Some((uid, _)) => set(&mut sets, &map, json!(uid)),
        None => unlink.push(path(&map)),
    }
    set(
        &mut sets,
        &["jsonData", "nodeGraph", "enabled"],
        json!(c.node_graph),
    );
    set(&mut sets, &["jsonData", "search", "hide"], json!(false));
    if let Some(on) = t.config.streaming {
        set(
            &mut sets,
            &["jsonData", "streamingEnabled", "search"],
            json!(on),
        );
        set(
            &mut sets,
            &["jsonData", "streamingEnabled", "metrics"],
            json!(on),
        );
    }
    set(&mut sets, &["jsonData", MARKER, "owner"], json!("sonde"));
    set(&mut sets, &["jsonData", MARKER, "grafana"], json!(grafana));
    if let Some(key) = hash_key.filter(|_| !secure.is_empty() || !headers.is_empty()) {
        // Headers are hashed by name: their number depends on the observed record.
        let mut hashed = secure.clone();
        for (name, value) in &headers {
            hashed.insert(format!("header:{name}"), value.clone());
        }
        let h = secure_hash(key, grafana, &t.uid, &hashed);
        set(&mut sets, &["jsonData", MARKER, "secureHash"], json!(h));
    } else {
        sets.push((path(&["jsonData", MARKER, "secureHash"]), None));
    }
    DesiredDatasource {
        uid: t.uid.clone(),
        name: t.config.name.clone(),
        kind: "tempo".into(),
        role: Role::Owned,
        sets,
        unlink_if_dangling: unlink,
        lists: Vec::new(),
        secure,
        headers,
        depends_on: Vec::new(),
    }
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
