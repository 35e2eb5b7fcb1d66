//! `cargo xtask helm-template`: renders the Helm chart in deploy/helm/sonde the way
//! `helm template` does, with no helm binary: Go templates through the gtmpl crate, the Sprig
//! and Helm functions the chart uses (`funcs`), Helm's merging of values (`values`), its
//! splitting into documents and its install order of kinds.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use gtmpl::{Context, Value};
use serde_yaml::Value as Yaml;

mod funcs;
pub mod values;

/// deploy/helm/sonde, from the workspace root.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/helm/sonde")
}

/// A chart read from disk: Chart.yaml's facts, values.yaml, and its templates.
pub struct Chart {
    pub name: String,
    pub version: String,
    pub app_version: String,
    pub values: Yaml,
    /// (`<chart>/templates/<file>`, text), sorted by name.
    templates: Vec<(String, String)>,
}

/// Who the chart is installed as: `helm install <name> -n <namespace>`.
pub struct Release {
    pub name: String,
    pub namespace: String,
}

impl Default for Release {
    fn default() -> Self {
        Self {
            name: "sonde".to_owned(),
            namespace: "sonde".to_owned(),
        }
    }
}

/// One rendered Kubernetes object.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The template it came from, `sonde/templates/<file>`.
    pub source: String,
    pub kind: String,
    pub name: String,
    pub text: String,
}

impl Chart {
    pub fn load(dir: &Path) -> Result<Self> {
        let meta: Yaml = read_yaml(&dir.join("Chart.yaml"))?;
        if meta["apiVersion"].as_str() != Some("v2") {
            bail!(
                "{}: apiVersion must be v2",
                dir.join("Chart.yaml").display()
            );
        }
        let field = |k: &str| meta[k].as_str().unwrap_or_default().to_owned();
        let name = field("name");
        let mut templates = Vec::new();
        let tdir = dir.join("templates");
        for entry in std::fs::read_dir(&tdir).with_context(|| tdir.display().to_string())? {
            let path = entry?.path();
            let file = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            if path.is_file() {
                let text =
                    std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
                templates.push((format!("{name}/templates/{file}"), text));
            }
        }
        templates.sort();
        Ok(Self {
            version: field("version"),
            app_version: field("appVersion"),
            values: read_yaml(&dir.join("values.yaml"))?,
            name,
            templates,
        })
    }

    /// Render with `overrides` (values files, then `--set`s, in order) over values.yaml.
    pub fn render(&self, release: &Release, overrides: &[Yaml]) -> Result<Vec<Manifest>> {
        let mut vals = self.values.clone();
        for o in overrides {
            values::merge(&mut vals, o.clone());
        }
        let dot = Value::Object(
            [
                ("Values".to_owned(), values::to_template(&vals)),
                (
                    "Release".to_owned(),
                    object(&[
                        ("Name", release.name.as_str()),
                        ("Namespace", release.namespace.as_str()),
                        ("Service", "Helm"),
                    ]),
                ),
                (
                    "Chart".to_owned(),
                    object(&[
                        ("Name", self.name.as_str()),
                        ("Version", self.version.as_str()),
                        ("AppVersion", self.app_version.as_str()),
                    ]),
                ),
            ]
            .into(),
        );
        let mut tmpl = funcs::template(&self.templates).map_err(anyhow::Error::msg)?;
        let mut out = Vec::new();
        for (source, _) in &self.templates {
            let file = source.rsplit('/').next().unwrap_or_default();
            if file.starts_with('_') || file == "NOTES.txt" {
                continue;
            }
            tmpl.name = source.clone();
            let mut dot = dot.clone();
            if let Value::Object(fields) = &mut dot {
                fields.insert(
                    "Template".to_owned(),
                    object(&[
                        ("Name", source.as_str()),
                        ("BasePath", &format!("{}/templates", self.name)),
                    ]),
                );
            }
            let text = tmpl
                .render(&Context::from(dot))
                .map_err(|e| anyhow::anyhow!("{source}: {e}"))?
                .replace("<no value>", "");
            for doc in split_documents(&text) {
                let head: Yaml = serde_yaml::from_str(doc)
                    .with_context(|| format!("{source} rendered invalid YAML:\n{doc}"))?;
                out.push(Manifest {
                    source: source.clone(),
                    kind: head["kind"].as_str().unwrap_or_default().to_owned(),
                    name: head["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    text: doc.to_owned(),
                });
            }
        }
        // Helm prints objects in its install order of kinds, keeping file order within a kind.
        out.sort_by_key(|m| install_rank(&m.kind));
        Ok(out)
    }
}

fn object(fields: &[(&str, &str)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect(),
    )
}

fn read_yaml(path: &Path) -> Result<Yaml> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    serde_yaml::from_str(&text).with_context(|| format!("{}: not YAML", path.display()))
}

/// The documents of one rendered file: split on `---` lines, trimmed, blank ones dropped.
fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "---" || (line.starts_with("---") && line[3..].trim().is_empty()) {
            docs.push(&text[start..at]);
            start = at + line.len();
        }
        at += line.len();
    }
    docs.push(&text[start..]);
    docs.into_iter()
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect()
}

/// Helm's `InstallOrder`; kinds it does not list go last.
fn install_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "PriorityClass",
        "Namespace",
        "NetworkPolicy",
        "ResourceQuota",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "StorageClass",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// What `helm template` prints: each object under a `# Source:` line.
pub fn stream(manifests: &[Manifest]) -> String {
    manifests
        .iter()
        .map(|m| format!("---\n# Source: {}\n{}\n", m.source, m.text))
        .collect()
}

/// The plain manifests of deploy/kubernetes (`agent.yaml`, `store.yaml`, ...): objects grouped
/// by the template file's prefix (`agent-daemonset.yaml` → `agent.yaml`).
pub fn plain(manifests: &[Manifest]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for m in manifests {
        let file = m.source.rsplit('/').next().unwrap_or_default();
        let group = format!("{}.yaml", file.split(['-', '.']).next().unwrap_or(file));
        let doc = format!("{}\n", m.text);
        match files.iter_mut().find(|(g, _)| *g == group) {
            Some((_, text)) => {
                text.push_str("---\n");
                text.push_str(&doc);
            }
            None => files.push((group, format!("{PLAIN_HEADER}{doc}"))),
        }
    }
    files.sort();
    files
}

/// The first lines of each generated plain manifest.
pub const PLAIN_HEADER: &str = "# Generated from the Helm chart deploy/helm/sonde with its default values \
(release \"sonde\",\n# namespace \"sonde\") by `cargo xtask helm-template --plain deploy/kubernetes`: \
edit the chart,\n# not this file.\n";

/// `cargo xtask helm-template` flags.
#[derive(clap::Args)]
pub struct Args {
    /// The chart directory.
    #[arg(long, default_value_os_t = chart_dir())]
    pub chart: PathBuf,
    /// Release name (`helm template NAME`).
    #[arg(long, default_value = "sonde")]
    pub name: String,
    /// Release namespace (`-n`).
    #[arg(long, short = 'n', default_value = "sonde")]
    pub namespace: String,
    /// Values file over the chart's values.yaml (repeatable, later wins).
    #[arg(long = "values", short = 'f')]
    pub values: Vec<PathBuf>,
    /// `key.path=value` over the values files (repeatable, later wins).
    #[arg(long)]
    pub set: Vec<String>,
    /// Instead of printing, write the plain manifests (agent.yaml, store.yaml) into this
    /// directory (the chart's defaults generate deploy/kubernetes).
    #[arg(long)]
    pub plain: Option<PathBuf>,
}

/// Run `cargo xtask helm-template`.
pub fn run(args: &Args) -> Result<()> {
    let chart = Chart::load(&args.chart)?;
    let mut overrides = Vec::new();
    for f in &args.values {
        overrides.push(read_yaml(f)?);
    }
    for s in &args.set {
        overrides.push(values::parse_set(s)?);
    }
    let release = Release {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
    };
    let manifests = chart.render(&release, &overrides)?;
    match &args.plain {
        None => print!("{}", stream(&manifests)),
        Some(dir) => {
            for (file, text) in plain(&manifests) {
                let path = dir.join(&file);
                std::fs::write(&path, text).with_context(|| path.display().to_string())?;
                eprintln!("helm-template: wrote {}", path.display());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_on_separator_lines_only() {
        let text = "\n---\na: 1\n---   \nb: '---'\n---\n\n---\nc: 3\n";
        assert_eq!(split_documents(text), ["a: 1", "b: '---'", "c: 3"]);
    }

    #[test]
    fn unknown_kinds_go_last_and_services_before_workloads() {
        assert!(install_rank("ServiceAccount") < install_rank("Service"));
        assert!(install_rank("Service") < install_rank("DaemonSet"));
        assert!(install_rank("StatefulSet") < install_rank("ServiceMonitor"));
    }
}
