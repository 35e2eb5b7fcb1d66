//! One tenant's generated series: counters and classic histograms keyed by label values,
//! bounded by `max_active_series` (a new series past it is counted into one
//! `metric_overflow="true"` series) and by `max_cardinality_per_label` (past it only the
//! offending label's value becomes `__cardinality_overflow__`). Collected as remote-write time
//! series or rendered as Prometheus text; idle series are forgotten after `stale_duration`.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    hash::BuildHasher,
};

use foldhash::fast::RandomState;

use super::prompb::{Exemplar, Label, Sample, TimeSeries};

/// The value a label takes once it has too many distinct values.
pub const OVERFLOW_VALUE: &str = "__cardinality_overflow__";

/// Longest label value kept (Tempo's `max_label_value_length`); longer ones are cut.
pub const MAX_LABEL_VALUE_LEN: usize = 2048;

/// `v` cut to at most `max` bytes, on a character boundary.
fn truncate(v: &str, max: usize) -> &str {
    if v.len() <= max {
        return v;
    }
    let mut end = max;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// A metric of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricId(usize);

/// Label values with their hash, made once for all the metrics a span updates.
#[derive(Debug, Clone, Copy)]
pub struct Key<'a> {
    values: &'a [&'a str],
    hash: u64,
}

/// The last observation of a bucket since the previous collection.
#[derive(Debug, Clone, Copy)]
struct Ex {
    trace_id: [u8; 16],
    value: f64,
    ts_ms: i64,
}

enum Data {
    Counter(f64),
    Histogram {
        /// Per bucket, the last one being +Inf; not cumulative.
        counts: Box<[u64]>,
        sum: f64,
        exemplars: Box<[Option<Ex>]>,
    },
}

struct Series {
    values: Box<[Box<str>]>,
    updated_ns: u64,
    /// Not remote-written yet: gets a 0 sample first, so `rate()` sees its first increment.
    new: bool,
    data: Data,
}

struct Metric {
    name: &'static str,
    label_names: std::sync::Arc<[String]>,
    /// Histogram upper bounds, without +Inf; empty for a counter.
    buckets: Box<[f64]>,
    /// `le` of each bucket, +Inf last, formatted once.
    le: Box<[String]>,
    series: Vec<Series>,
    /// Hash of label values → indexes into `series`.
    index: HashMap<u64, Vec<u32>, RandomState>,
    overflow: Option<Series>,
    /// Whether a limited label value here is counted (one metric per group of metrics
    /// updated together, so each span counts once).
    counts_limits: bool,
}

/// What the limits refused since the last [`Registry::take_limited`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Limited {
    /// New series counted into the overflow series.
    pub series: u64,
    /// Label values replaced by [`OVERFLOW_VALUE`], by label name.
    pub label_values: HashMap<String, u64>,
}

/// One tenant's series.
pub struct Registry {
    metrics: Vec<Metric>,
    hasher: RandomState,
    max_active_series: usize,
    max_cardinality_per_label: usize,
    /// Distinct values per label name, rebuilt from the live series when stale ones go.
    label_values: HashMap<String, HashSet<Box<str>>>,
    active: usize,
    limited: Limited,
}

impl Registry {
    pub fn new(max_active_series: usize, max_cardinality_per_label: usize) -> Self {
        Self {
            metrics: Vec::new(),
            hasher: RandomState::default(),
            max_active_series,
            max_cardinality_per_label,
            label_values: HashMap::new(),
            active: 0,
            limited: Limited::default(),
        }
    }

    fn add(&mut self, name: &'static str, label_names: Vec<String>, buckets: &[f64]) -> MetricId {
        let mut le: Vec<String> = buckets.iter().map(|b| format_f64(*b)).collect();
        le.push("+Inf".into());
        self.metrics.push(Metric {
            name,
            label_names: label_names.into(),
            buckets: buckets.into(),
            le: le.into(),
            series: Vec::new(),
            index: HashMap::default(),
            overflow: None,
            counts_limits: true,
        });
        MetricId(self.metrics.len() - 1)
    }

    pub fn counter(&mut self, name: &'static str, label_names: Vec<String>) -> MetricId {
        self.add(name, label_names, &[])
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        label_names: Vec<String>,
        buckets: &[f64],
    ) -> MetricId {
        self.add(name, label_names, buckets)
    }

    /// Don't count limited label values for `id`: another metric updated with the same labels
    /// counts them.
    pub fn limits_counted_elsewhere(&mut self, id: MetricId) {
        if let Some(m) = self.metrics.get_mut(id.0) {
            m.counts_limits = false;
        }
    }

    /// Series held now, overflow series included.
    pub fn active_series(&self) -> usize {
        self.active
    }

    /// What the limits refused since the last call.
    pub fn take_limited(&mut self) -> Limited {
        std::mem::take(&mut self.limited)
    }

    /// Add `v` to the counter series with these label values.
    /// The key of these label values (in the metric's label order).
    pub fn key<'a>(&self, values: &'a [&'a str]) -> Key<'a> {
        Key {
            values,
            hash: self.hash(values),
        }
    }

    /// Add `v` to the counter series with these label values.
    pub fn inc(&mut self, id: MetricId, key: &Key<'_>, v: f64, now_ns: u64) {
        if let Some(s) = self.series(id, key, now_ns)
            && let Data::Counter(c) = &mut s.data
        {
            *c += v;
        }
    }

    /// Observe `v` in the histogram series with these label values; the trace becomes the
    /// exemplar of the bucket `v` falls in.
    pub fn observe(&mut self, id: MetricId, key: &Key<'_>, v: f64, trace_id: &[u8], now_ns: u64) {
        let Some(m) = self.metrics.get(id.0) else {
            return;
        };
        let bucket = m.buckets.partition_point(|b| *b < v);
        if let Some(s) = self.series(id, key, now_ns)
            && let Data::Histogram {
                counts,
                sum,
                exemplars,
            } = &mut s.data
        {
            if let Some(c) = counts.get_mut(bucket) {
                *c += 1;
            }
            *sum += v;
            if let (Some(e), Ok(t)) = (exemplars.get_mut(bucket), <[u8; 16]>::try_from(trace_id)) {
                *e = Some(Ex {
                    trace_id: t,
                    value: v,
                    ts_ms: (now_ns / 1_000_000) as i64,
                });
            }
        }
    }

    fn hash(&self, values: &[&str]) -> u64 {
        self.hasher.hash_one(values)
    }

    fn find(&self, id: MetricId, values: &[&str], h: u64) -> Option<usize> {
        let m = self.metrics.get(id.0)?;
        m.index.get(&h)?.iter().map(|i| *i as usize).find(|i| {
            m.series
                .get(*i)
                .is_some_and(|s| s.values.iter().map(|v| &**v).eq(values.iter().copied()))
        })
    }

    /// The series with these values, made if it is new and the limits allow.
    fn series(&mut self, id: MetricId, key: &Key<'_>, now_ns: u64) -> Option<&mut Series> {
        let i = match self.find(id, key.values, key.hash) {
            Some(i) => i,
            None => self.make(id, key.values, now_ns)?,
        };
        let m = self.metrics.get_mut(id.0)?;
        let s = if i == usize::MAX {
            m.overflow.as_mut()?
        } else {
            m.series.get_mut(i)?
        };
        s.updated_ns = now_ns;
        Some(s)
    }

    /// Make a series (`usize::MAX` = the overflow series), applying both limits.
    fn make(&mut self, id: MetricId, values: &[&str], now_ns: u64) -> Option<usize> {
        let m = self.metrics.get(id.0)?;
        let (names, count) = (m.label_names.clone(), m.counts_limits);
        let mut limited: Vec<&str> = values
            .iter()
            .map(|v| truncate(v, MAX_LABEL_VALUE_LEN))
            .collect();
        if self.max_cardinality_per_label > 0 {
            for (name, v) in names.iter().zip(limited.iter_mut()) {
                if v.is_empty() {
                    continue;
                }
                let set = self.label_values.entry(name.clone()).or_default();
                if set.contains(*v) {
                    continue;
                }
                if set.len() < self.max_cardinality_per_label {
                    set.insert((*v).into());
                } else {
                    *v = OVERFLOW_VALUE;
                    if !count {
                        continue;
                    }
                    *self.limited.label_values.entry(name.clone()).or_default() += 1;
                }
            }
        }
        if limited != values {
            let h = self.hash(&limited);
            if let Some(i) = self.find(id, &limited, h) {
                return Some(i);
            }
        }
        let m = self.metrics.get_mut(id.0)?;
        let data = if m.buckets.is_empty() {
            Data::Counter(0.0)
        } else {
            Data::Histogram {
                counts: vec![0; m.buckets.len() + 1].into(),
                sum: 0.0,
                exemplars: vec![None; m.buckets.len() + 1].into(),
            }
        };
        if self.active >= self.max_active_series {
            self.limited.series += 1;
            if m.overflow.is_none() {
                self.active += 1;
                m.overflow = Some(Series {
                    values: Box::new([]),
                    updated_ns: now_ns,
                    new: true,
                    data,
                });
            }
            return Some(usize::MAX);
        }
        let h = self.hasher.hash_one(&limited);
        let i = m.series.len();
        m.series.push(Series {
            values: limited.iter().map(|v| Box::<str>::from(*v)).collect(),
            updated_ns: now_ns,
            new: true,
            data,
        });
        m.index.entry(h).or_default().push(i as u32);
        self.active += 1;
        Some(i)
    }

    /// Forget series not updated since `before_ns`; rebuild the per-label value sets.
    pub fn remove_stale(&mut self, before_ns: u64) {
        let mut active = 0;
        for m in &mut self.metrics {
            let n = m.series.len();
            m.series.retain(|s| s.updated_ns >= before_ns);
            if m.overflow
                .as_ref()
                .is_some_and(|s| s.updated_ns < before_ns)
            {
                m.overflow = None;
            }
            if m.series.len() != n {
                m.index.clear();
                for (i, s) in m.series.iter().enumerate() {
                    let vals: Vec<&str> = s.values.iter().map(|v| &**v).collect();
                    m.index
                        .entry(self.hasher.hash_one(&vals))
                        .or_default()
                        .push(i as u32);
                }
            }
            active += m.series.len() + usize::from(m.overflow.is_some());
        }
        self.active = active;
        self.label_values.clear();
        if self.max_cardinality_per_label == 0 {
            return;
        }
        for m in &self.metrics {
            for s in &m.series {
                for (name, v) in m.label_names.iter().zip(s.values.iter()) {
                    if !v.is_empty() && &**v != OVERFLOW_VALUE {
                        self.label_values
                            .entry(name.clone())
                            .or_default()
                            .insert(v.clone());
                    }
                }
            }
        }
    }

    /// Every series as remote-write time series at `now_ms`, with `extra` labels; a series
    /// never written before first gets a 0 at the end of the previous minute. Exemplars are
    /// written once.
    pub fn collect(&mut self, now_ms: i64, extra: &[(String, String)], out: &mut Vec<TimeSeries>) {
        let zero_ms = now_ms - now_ms.rem_euclid(60_000) - 1;
        for m in &mut self.metrics {
            let Metric {
                name,
                label_names,
                le,
                series,
                overflow,
                ..
            } = m;
            for s in series.iter_mut().chain(overflow.as_mut()) {
                let mut base: Vec<Label> = extra.iter().map(|(k, v)| label(k, v)).collect();
                if s.values.is_empty() && !label_names.is_empty() {
                    base.push(label("metric_overflow", "true"));
                } else {
                    for (k, v) in label_names.iter().zip(s.values.iter()) {
                        if !v.is_empty() {
                            base.push(label(k, v));
                        }
                    }
                }
                let first = std::mem::replace(&mut s.new, false);
                let samples = |v: f64| {
                    let mut out = Vec::with_capacity(2);
                    if first && zero_ms < now_ms {
                        out.push(Sample {
                            value: 0.0,
                            timestamp: zero_ms,
                        });
                    }
                    out.push(Sample {
                        value: v,
                        timestamp: now_ms,
                    });
                    out
                };
                match &mut s.data {
                    Data::Counter(c) => {
                        out.push(series_of(name, &base, &[], samples(*c), Vec::new()));
                    }
                    Data::Histogram {
                        counts,
                        sum,
                        exemplars,
                    } => {
                        let mut cum = 0u64;
                        for ((n, le), ex) in counts.iter().zip(le.iter()).zip(exemplars.iter_mut())
                        {
                            cum += n;
                            let exs = ex
                                .take()
                                .map(|e| Exemplar {
                                    labels: vec![label("traceID", &trace_id_hex(&e.trace_id))],
                                    value: e.value,
                                    timestamp: e.ts_ms,
                                })
                                .into_iter()
                                .collect();
                            out.push(series_of(
                                &format!("{name}_bucket"),
                                &base,
                                &[label("le", le)],
                                samples(cum as f64),
                                exs,
                            ));
                        }
                        out.push(series_of(
                            &format!("{name}_sum"),
                            &base,
                            &[],
                            samples(*sum),
                            Vec::new(),
                        ));
                        out.push(series_of(
                            &format!("{name}_count"),
                            &base,
                            &[],
                            samples(cum as f64),
                            Vec::new(),
                        ));
                    }
                }
            }
        }
    }

    /// Prometheus text exposition (format 0.0.4) of every series, with `extra` labels, into
    /// one text per metric family (several tenants' series share a family's `# TYPE` line).
    pub fn render(&self, extra: &[(String, String)], out: &mut Families) {
        for m in &self.metrics {
            if m.series.is_empty() && m.overflow.is_none() {
                continue;
            }
            let hist = !m.buckets.is_empty();
            let text = &mut out
                .entry(m.name)
                .or_insert_with(|| (if hist { "histogram" } else { "counter" }, String::new()))
                .1;
            for s in m.series.iter().chain(m.overflow.as_ref()) {
                let mut labels = String::new();
                let mut push = |k: &str, v: &str| {
                    if !labels.is_empty() {
                        labels.push(',');
                    }
                    let _ = write!(labels, "{k}=\"{}\"", escape(v));
                };
                for (k, v) in extra {
                    push(k, v);
                }
                if s.values.is_empty() && !m.label_names.is_empty() {
                    push("metric_overflow", "true");
                }
                for (k, v) in m.label_names.iter().zip(s.values.iter()) {
                    if !v.is_empty() {
                        push(k, v);
                    }
                }
                match &s.data {
                    Data::Counter(c) => {
                        let _ = writeln!(text, "{}{{{labels}}} {}", m.name, format_f64(*c));
                    }
                    Data::Histogram { counts, sum, .. } => {
                        let sep = if labels.is_empty() { "" } else { "," };
                        let mut cum = 0u64;
                        for (n, le) in counts.iter().zip(m.le.iter()) {
                            cum += n;
                            let _ = writeln!(
                                text,
                                "{}_bucket{{{labels}{sep}le=\"{le}\"}} {cum}",
                                m.name
                            );
                        }
                        let _ = writeln!(text, "{}_sum{{{labels}}} {}", m.name, format_f64(*sum));
                        let _ = writeln!(text, "{}_count{{{labels}}} {cum}", m.name);
                    }
                }
            }
        }
    }
}

/// Rendered series by metric family: its type and its lines.
pub type Families = BTreeMap<&'static str, (&'static str, String)>;

/// The families as one exposition.
pub fn exposition(f: &Families) -> String {
    let mut out = String::new();
    for (name, (kind, lines)) in f {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        out.push_str(lines);
    }
    out
}

fn label(k: &str, v: &str) -> Label {
    Label {
        name: k.to_string(),
        value: v.to_string(),
    }
}

fn series_of(
    name: &str,
    base: &[Label],
    more: &[Label],
    samples: Vec<Sample>,
    exemplars: Vec<Exemplar>,
) -> TimeSeries {
    let mut labels = Vec::with_capacity(base.len() + more.len() + 1);
    labels.push(label("__name__", name));
    labels.extend_from_slice(base);
    labels.extend_from_slice(more);
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels.dedup_by(|a, b| a.name == b.name);
    TimeSeries {
        labels,
        samples,
        exemplars,
    }
}

/// Trace ID in hex without leading zeros, as Tempo writes exemplars.
pub fn trace_id_hex(id: &[u8]) -> String {
    let h = hex::encode(id);
    let t = h.trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.into() }
}

fn format_f64(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    format!("{v}")
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn value(out: &[TimeSeries], name: &str, want: &[(&str, &str)]) -> Option<f64> {
        out.iter()
            .find(|ts| {
                ts.labels
                    .iter()
                    .any(|l| l.name == "__name__" && l.value == name)
                    && want
                        .iter()
                        .all(|(k, v)| ts.labels.iter().any(|l| l.name == *k && l.value == *v))
            })
            .and_then(|ts| ts.samples.last().map(|s| s.value))
    }

    #[test]
    fn counters_and_histograms_collect_cumulatively_with_a_first_zero() {
        let mut r = Registry::new(100, 0);
        let c = r.counter("calls_total", names(&["service", "span_name"]));
        let h = r.histogram("latency", names(&["service"]), &[0.1, 1.0]);
        r.inc(c, &r.key(&["a", "GET"]), 1.0, 1);
        r.inc(c, &r.key(&["a", "GET"]), 2.0, 2);
        r.inc(c, &r.key(&["b", ""]), 1.0, 3);
        let tid = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0xbc];
        r.observe(h, &r.key(&["a"]), 0.05, &tid, 4);
        r.observe(h, &r.key(&["a"]), 0.5, &[1; 16], 5);
        r.observe(h, &r.key(&["a"]), 7.0, &[2; 16], 6);
        let mut out = Vec::new();
        r.collect(125_000, &[("ext".into(), "x".into())], &mut out);
        assert_eq!(
            value(
                &out,
                "calls_total",
                &[("service", "a"), ("span_name", "GET")]
            ),
            Some(3.0)
        );
        // An empty value is an absent label.
        let b = out
            .iter()
            .find(|t| t.labels.iter().any(|l| l.value == "b"))
            .unwrap();
        assert!(b.labels.iter().all(|l| l.name != "span_name"), "{b:?}");
        assert_eq!(b.samples.len(), 2);
        assert_eq!(b.samples[0].value, 0.0);
        assert_eq!(b.samples[0].timestamp, 119_999);
        assert_eq!(value(&out, "latency_bucket", &[("le", "0.1")]), Some(1.0));
        assert_eq!(value(&out, "latency_bucket", &[("le", "1")]), Some(2.0));
        assert_eq!(value(&out, "latency_bucket", &[("le", "+Inf")]), Some(3.0));
        assert_eq!(value(&out, "latency_count", &[("ext", "x")]), Some(3.0));
        assert!((value(&out, "latency_sum", &[]).unwrap() - 7.55).abs() < 1e-9);
        let ex = &out
            .iter()
            .find(|t| t.labels.iter().any(|l| l.name == "le" && l.value == "0.1"))
            .unwrap()
            .exemplars;
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].labels[0].value, "abc");
        // Labels are sorted, as remote write requires.
        for t in &out {
            assert!(t.labels.windows(2).all(|w| w[0].name < w[1].name), "{t:?}");
        }
        // The second collection: no first zero, no exemplar again.
        let mut again = Vec::new();
        r.collect(140_000, &[], &mut again);
        assert!(
            again
                .iter()
                .all(|t| t.samples.len() == 1 && t.exemplars.is_empty())
        );
        let mut f = Families::new();
        r.render(&[], &mut f);
        let text = exposition(&f);
        assert!(
            text.contains("calls_total{service=\"a\",span_name=\"GET\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_bucket{service=\"a\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE latency histogram\n"), "{text}");
    }

    #[test]
    fn only_the_offending_label_overflows() {
        let mut r = Registry::new(1000, 2);
        let c = r.counter("calls_total", names(&["service", "span_name"]));
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            r.inc(c, &r.key(&["svc", name]), 1.0, i as u64);
        }
        let mut out = Vec::new();
        r.collect(1000, &[], &mut out);
        assert_eq!(value(&out, "calls_total", &[("span_name", "a")]), Some(1.0));
        assert_eq!(value(&out, "calls_total", &[("span_name", "b")]), Some(1.0));
        assert_eq!(
            value(
                &out,
                "calls_total",
                &[("service", "svc"), ("span_name", OVERFLOW_VALUE)]
            ),
            Some(2.0)
        );
        assert_eq!(out.len(), 3);
        let l = r.take_limited();
        assert_eq!(l.label_values.get("span_name"), Some(&2));
        assert_eq!(l.label_values.get("service"), None);
        // Once the old values go stale, new ones fit again.
        r.inc(c, &r.key(&["svc", "e"]), 1.0, 100);
        r.remove_stale(50);
        r.inc(c, &r.key(&["svc", "f"]), 1.0, 101);
        let mut out = Vec::new();
        r.collect(2000, &[], &mut out);
        assert_eq!(value(&out, "calls_total", &[("span_name", "f")]), Some(1.0));
        assert_eq!(r.active_series(), 2);
    }

    #[test]
    fn series_past_the_limit_go_to_one_overflow_series() {
        let mut r = Registry::new(2, 0);
        let c = r.counter("calls_total", names(&["service"]));
        for s in ["a", "b", "c", "d", "a"] {
            r.inc(c, &r.key(&[s]), 1.0, 1);
        }
        let mut out = Vec::new();
        r.collect(1000, &[], &mut out);
        assert_eq!(value(&out, "calls_total", &[("service", "a")]), Some(2.0));
        assert_eq!(
            value(&out, "calls_total", &[("metric_overflow", "true")]),
            Some(2.0)
        );
        assert_eq!(r.take_limited().series, 2);
        assert_eq!(r.active_series(), 3);
        r.remove_stale(2);
        assert_eq!(r.active_series(), 0);
    }

    #[test]
    fn long_label_values_are_cut_to_one_series() {
        let mut r = Registry::new(100, 0);
        let c = r.counter("calls_total", names(&["span_name"]));
        let long = format!("{}é-tail", "x".repeat(MAX_LABEL_VALUE_LEN - 1));
        r.inc(c, &r.key(&[&long]), 1.0, 1);
        r.inc(c, &r.key(&[&long]), 1.0, 2);
        let mut out = Vec::new();
        r.collect(1000, &[], &mut out);
        assert_eq!(out.len(), 1);
        let v = &out[0]
            .labels
            .iter()
            .find(|l| l.name == "span_name")
            .unwrap()
            .value;
        assert_eq!(v.len(), MAX_LABEL_VALUE_LEN - 1);
        assert_eq!(out[0].samples.last().unwrap().value, 2.0);
    }

    #[test]
    fn trace_ids_lose_leading_zeros() {
        assert_eq!(trace_id_hex(&[0, 0, 1, 0xff]), "1ff");
        assert_eq!(trace_id_hex(&[0; 16]), "0");
    }
}
