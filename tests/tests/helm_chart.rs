//! The Helm chart deploy/helm/sonde, rendered by `cargo xtask helm-template`'s renderer for
//! its defaults and its main option sets (deploy/helm/sonde/ci/*-values.yaml): every render
//! validates against the Kubernetes schemas, passes checkov with only the findings listed
//! in deploy/helm/checkov-skips.txt, and holds configuration that `sonde` itself loads; bad
//! values stop the render with a message naming the value; deploy/kubernetes is the default
//! render; and where helm is installed, `helm template` prints the very same bytes.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
};

use serde_yaml::Value as Yaml;
use sonde_e2e::{deploy, require_tool};
use xtask::helm::{self, Chart, Manifest, Release};

fn chart() -> Chart {
    Chart::load(&helm::chart_dir()).expect("deploy/helm/sonde loads")
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// (option set, its values file): the defaults, then each file in the chart's ci/.
fn option_sets() -> Vec<(&'static str, Option<PathBuf>)> {
    let ci = helm::chart_dir().join("ci");
    let mut sets = vec![("default", None)];
    for name in ["external-tempo", "servicemonitor", "reconciler"] {
        sets.push((name, Some(ci.join(format!("{name}-values.yaml")))));
    }
    sets
}

fn render_with(overrides: &[Yaml]) -> anyhow::Result<Vec<Manifest>> {
    chart().render(&Release::default(), overrides)
}

fn render(values: Option<&Path>) -> Vec<Manifest> {
    let overrides: Vec<Yaml> = values
        .map(|p| serde_yaml::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .into_iter()
        .collect();
    render_with(&overrides).unwrap_or_else(|e| panic!("{values:?}: {e:#}"))
}

/// Each option set rendered into a file of its own, as `helm template` prints it.
fn rendered_files(dir: &Path) -> Vec<(&'static str, PathBuf, Vec<Manifest>)> {
    option_sets()
        .into_iter()
        .map(|(name, values)| {
            let manifests = render(values.as_deref());
            let path = dir.join(format!("{name}.yaml"));
            std::fs::write(&path, helm::stream(&manifests)).unwrap();
            (name, path, manifests)
        })
        .collect()
}

fn object(m: &Manifest) -> Yaml {
    serde_yaml::from_str(&m.text).unwrap()
}

fn find<'a>(ms: &'a [Manifest], kind: &str, name: &str) -> Option<&'a Manifest> {
    ms.iter().find(|m| m.kind == kind && m.name == name)
}

#[test]
fn every_render_validates_against_the_kubernetes_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let expected: BTreeMap<&str, &[&str]> = [
        (
            "default",
            &[
                "daemonset/sonde-agent",
                "statefulset/sonde-store",
                "service/sonde-store",
                "networkpolicy/sonde-agent",
                "configmap/sonde-store",
            ][..],
        ),
        (
            "external-tempo",
            &["daemonset/sonde-agent", "configmap/sonde-agent"][..],
        ),
        (
            "servicemonitor",
            &[
                "clusterrole/sonde-agent",
                "clusterrolebinding/sonde-agent",
                "service/sonde-agent",
                "statefulset/sonde-store",
            ][..],
        ),
        (
            "reconciler",
            &[
                "deployment/sonde-reconciler",
                "configmap/sonde-reconciler",
                "networkpolicy/sonde-reconciler",
            ][..],
        ),
    ]
    .into();
    for (name, path, manifests) in rendered_files(dir.path()) {
        let text = deploy::kubernetes_validate(std::slice::from_ref(&path));
        for kind in expected[name] {
            assert!(
                text.contains(&format!("passed for resource {kind} ")),
                "{name}: {kind}: {text}"
            );
        }
        // Every object was validated, bar the Prometheus Operator's ServiceMonitor (a CRD
        // the Kubernetes schemas do not hold: checked by `the_service_monitor_scrapes_...`).
        let passed = text.matches(" passed for resource ").count();
        let crds = manifests
            .iter()
            .filter(|m| m.kind == "ServiceMonitor")
            .count();
        assert_eq!(passed + crds, manifests.len(), "{name}: {text}");
        if name == "external-tempo" {
            assert!(
                find(&manifests, "StatefulSet", "sonde-store").is_none(),
                "store off"
            );
        }
    }
}

#[test]
fn the_service_monitor_scrapes_the_agents_and_the_store_by_port_name() {
    let ms = render(Some(
        &helm::chart_dir().join("ci/servicemonitor-values.yaml"),
    ));
    let sm = object(find(&ms, "ServiceMonitor", "sonde").expect("ServiceMonitor"));
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let selector = sm["spec"]["selector"]["matchLabels"].as_mapping().unwrap();
    let ports: BTreeSet<&str> = sm["spec"]["endpoints"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_str().unwrap())
        .collect();
    assert_eq!(ports, ["metrics", "tempo-http"].into());
    // Each endpoint's port is named by a Service the selector picks.
    let mut served = BTreeSet::new();
    for svc in ms.iter().filter(|m| m.kind == "Service").map(object) {
        let labels = svc["metadata"]["labels"].as_mapping().unwrap();
        if selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            for p in svc["spec"]["ports"].as_sequence().unwrap() {
                served.insert(p["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(ports.iter().all(|p| served.contains(*p)), "{served:?}");
    assert!(
        find(&render(None), "ServiceMonitor", "sonde").is_none(),
        "off by default"
    );
}

/// deploy/helm/checkov-skips.txt: id → (resources it may concern, reason).
fn skip_list() -> BTreeMap<String, (BTreeSet<String>, String)> {
    let text = std::fs::read_to_string(repo("deploy/helm/checkov-skips.txt")).unwrap();
    let mut skips = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let mut fields = line.splitn(3, ' ');
        let (id, resources, reason) = (
            fields.next().unwrap(),
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default(),
        );
        assert!(
            id.starts_with("CKV") && reason.len() > 20,
            "a reason for {line:?}"
        );
        let resources = resources.split(',').map(str::to_owned).collect();
        assert!(
            skips
                .insert(id.to_owned(), (resources, reason.to_owned()))
                .is_none(),
            "{id} twice"
        );
    }
    skips
}

/// checkov's JSON report of one file: (summary, failed checks as (id, Kind/name, title)).
fn checkov_report(
    checkov: &Path,
    file: &Path,
    skip: &[&str],
) -> (serde_json::Value, Vec<[String; 3]>) {
    let mut cmd = Command::new(checkov);
    cmd.args([
        "--framework",
        "kubernetes",
        "--skip-download",
        "--quiet",
        "-o",
        "json",
        "-f",
    ])
    .arg(file);
    if !skip.is_empty() {
        cmd.arg("--skip-check").arg(skip.join(","));
    }
    let out = cmd.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{file:?}: checkov printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let failed = report["results"]["failed_checks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            // checkov names a resource Kind.namespace.name.
            let resource = c["resource"].as_str().unwrap_or_default();
            let mut parts = resource.splitn(3, '.');
            let kind = parts.next().unwrap_or_default();
            let name = parts.nth(1).unwrap_or_default();
            [
                c["check_id"].as_str().unwrap_or_default().to_owned(),
                format!("{kind}/{name}"),
                c["check_name"].as_str().unwrap_or_default().to_owned(),
            ]
        })
        .collect();
    (report["summary"].clone(), failed)
}

#[test]
fn renders_pass_checkov_with_only_the_listed_skips() {
    let checkov = require_tool!(deploy::checkov());
    let skips = skip_list();
    let ids: Vec<&str> = skips.keys().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let mut used = BTreeSet::new();
    for (name, path, _) in rendered_files(dir.path()) {
        // Unskipped: each finding must be listed, for that very resource.
        let (all, findings) = checkov_report(&checkov, &path, &[]);
        for [id, resource, title] in &findings {
            let listed = skips.get(id).is_some_and(|(res, _)| res.contains(resource));
            assert!(
                listed,
                "{name}: unexplained checkov finding {id} on {resource}: {title}"
            );
            used.insert(id.clone());
        }
        // With the list skipped, as README shows: nothing fails.
        let (summary, failed) = checkov_report(&checkov, &path, &ids);
        assert!(failed.is_empty(), "{name}: {failed:?}");
        eprintln!(
            "checkov {name}: {} passed, {} failed before skips ({} distinct ids), {} failed after",
            summary["passed"],
            all["failed"],
            findings
                .iter()
                .map(|f| &f[0])
                .collect::<BTreeSet<_>>()
                .len(),
            summary["failed"]
        );
        assert!(
            summary["passed"].as_u64().unwrap() > 50,
            "{name}: {summary}"
        );
    }
    let stale: Vec<&String> = skips.keys().filter(|id| !used.contains(*id)).collect();
    assert!(
        stale.is_empty(),
        "skips no render needs any more: {stale:?}"
    );
}

#[test]
fn plain_manifests_are_the_default_render() {
    for (file, text) in helm::plain(&render(None)) {
        let committed =
            std::fs::read_to_string(repo("deploy/kubernetes").join(&file)).unwrap_or_default();
        assert!(
            committed == text,
            "deploy/kubernetes/{file} is not the chart's default render: run \
             `cargo xtask helm-template --plain deploy/kubernetes`"
        );
    }
}

/// The ConfigMaps' files, each loaded by `sonde` itself (unknown keys are errors there).
fn sonde_configs(ms: &[Manifest]) -> BTreeMap<String, sonde::config::Config> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = BTreeMap::new();
    for cm in ms.iter().filter(|m| m.kind == "ConfigMap").map(object) {
        for (file, text) in cm["data"].as_mapping().unwrap() {
            let name = format!(
                "{}/{}",
                cm["metadata"]["name"].as_str().unwrap(),
                file.as_str().unwrap()
            );
            let path = dir.path().join(name.replace('/', "_"));
            std::fs::write(&path, text.as_str().unwrap()).unwrap();
            let cfg =
                sonde::config::Config::load(Some(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
            cfg.agent
                .validate()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            cfg.store
                .validate()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            if text.as_str().unwrap().starts_with("reconcile:") {
                cfg.reconcile
                    .validate()
                    .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            }
            out.insert(name, cfg);
        }
    }
    out
}

#[test]
fn the_config_maps_hold_configuration_sonde_loads_and_no_secret() {
    for (name, values) in option_sets() {
        let ms = render(values.as_deref());
        let configs = sonde_configs(&ms);
        assert!(
            configs.contains_key("sonde-agent/sonde.yaml"),
            "{name}: {configs:?}"
        );
        for m in ms.iter().filter(|m| m.kind == "ConfigMap") {
            assert!(
                !m.text.to_ascii_lowercase().contains("authorization:"),
                "{name}: {}",
                m.text
            );
        }
    }
    let ms = render(Some(
        &helm::chart_dir().join("ci/external-tempo-values.yaml"),
    ));
    let agent = &sonde_configs(&ms)["sonde-agent/sonde.yaml"].agent;
    assert_eq!(
        agent
            .export
            .headers
            .get("x-scope-orgid")
            .map(String::as_str),
        Some("team-a")
    );
    assert_eq!(
        agent
            .export
            .headers
            .get("x-sonde-cluster")
            .map(String::as_str),
        Some("prod-eu")
    );
    assert!(!agent.export.headers.contains_key("authorization"));
    let ds = object(find(&ms, "DaemonSet", "sonde-agent").unwrap());
    let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .unwrap()
        .clone();
    let var = |n: &str| {
        env.iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap_or(Yaml::Null)
    };
    assert_eq!(
        var("OTEL_EXPORTER_OTLP_ENDPOINT")["value"],
        "https://tempo-distributor.tempo.svc:4318"
    );
    assert_eq!(
        var("SONDE_EXPORT_AUTHORIZATION")["valueFrom"]["secretKeyRef"]["name"],
        "tempo-auth"
    );
    assert_eq!(
        var("OTEL_EXPORTER_OTLP_HEADERS")["value"],
        "authorization=$(SONDE_EXPORT_AUTHORIZATION)"
    );

    let ms = render(Some(
        &helm::chart_dir().join("ci/servicemonitor-values.yaml"),
    ));
    let configs = sonde_configs(&ms);
    let agent = &configs["sonde-agent/sonde.yaml"].agent;
    assert_eq!(agent.select.ports, [80, 8080]);
    assert_eq!(agent.select.exe_globs, ["/usr/sbin/nginx", "*/python3*"]);
    assert!(agent.capture_server && !agent.capture_client);
    let store = &configs["sonde-store/sonde.yaml"].store;
    assert_eq!(store.retention, std::time::Duration::from_secs(72 * 3600));
    assert!(store.multitenancy_enabled);

    let ms = render(Some(&helm::chart_dir().join("ci/reconciler-values.yaml")));
    let reconcile = &sonde_configs(&ms)["sonde-reconciler/reconcile.yaml"].reconcile;
    assert_eq!(reconcile.grafanas.len(), 1);
    assert_eq!(reconcile.tempos[0].url, "http://sonde-store.sonde.svc:3200");
}

/// The Go uprobes are off by default (the agent holds no CAP_SYS_ADMIN); `agent.goProbes:
/// true` turns them on with the two capabilities they take.
#[test]
fn go_probes_come_with_their_capabilities_only_when_asked_for() {
    let ms = render(None);
    assert!(!sonde_configs(&ms)["sonde-agent/sonde.yaml"].agent.go_probes);
    let ms = render_with(&[serde_yaml::from_str("agent: {goProbes: true}").unwrap()]).unwrap();
    let ds = object(find(&ms, "DaemonSet", "sonde-agent").unwrap());
    let sc = &ds["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    assert_eq!(
        sc["capabilities"]["add"],
        serde_yaml::from_str::<Yaml>("[BPF, PERFMON, DAC_READ_SEARCH, SYS_ADMIN, SYS_PTRACE]")
            .unwrap()
    );
    assert!(sonde_configs(&ms)["sonde-agent/sonde.yaml"].agent.go_probes);
}

#[test]
fn the_agent_is_unprivileged_and_bounded_in_every_render() {
    for (name, values) in option_sets() {
        let ms = render(values.as_deref());
        let ds = object(find(&ms, "DaemonSet", "sonde-agent").unwrap());
        let c = &ds["spec"]["template"]["spec"]["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["privileged"], false, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_yaml::from_str::<Yaml>("[ALL]").unwrap()
        );
        assert_eq!(
            sc["capabilities"]["add"],
            serde_yaml::from_str::<Yaml>("[BPF, PERFMON, DAC_READ_SEARCH]").unwrap()
        );
        assert_eq!(c["resources"]["limits"]["memory"], "256Mi", "{name}");
        for kind in ["StatefulSet", "Deployment"] {
            for w in ms.iter().filter(|m| m.kind == kind).map(object) {
                let pod = &w["spec"]["template"]["spec"];
                assert_eq!(
                    pod["securityContext"]["runAsNonRoot"], true,
                    "{name} {kind}"
                );
                assert!(pod["containers"][0]["resources"]["limits"]["memory"].is_string());
            }
        }
    }
}

#[test]
fn bad_values_stop_the_render_naming_the_value() {
    let cases = [
        ("store: {enabled: false}", "export.endpoint is required"),
        (
            "reconciler: {enabled: true}",
            "reconciler.grafanas is required",
        ),
        (
            "reconciler: {enabled: true, mode: provisioning, grafanas: [{id: a, url: 'http://g'}]}",
            "reconciler.mode: only api",
        ),
        (
            "reconciler: {enabled: true, grafanas: [{id: a, url: 'http://g'}]}\nstore: {enabled: false}\nexport: {endpoint: 'http://t:4317'}",
            "reconciler.tempos is required",
        ),
        (
            "export: {headers: {Authorization: Bearer x}}",
            "must not go into a ConfigMap",
        ),
        (
            "agent: {resources: {limits: {memory: null}}}",
            "agent.resources.limits.memory is required",
        ),
        ("store: {retention: ''}", "store.retention is required"),
    ];
    for (values, message) in cases {
        let e = render_with(&[serde_yaml::from_str(values).unwrap()])
            .map(|_| ())
            .expect_err(values);
        assert!(format!("{e:#}").contains(message), "{values}: {e:#}");
    }
    // --set reaches the same values.
    let set =
        helm::values::parse_set("store.enabled=false,export.endpoint=http://tempo:4317").unwrap();
    let ms = render_with(&[set]).unwrap();
    assert!(find(&ms, "StatefulSet", "sonde-store").is_none());
}

#[test]
fn a_changed_config_changes_the_pod_template_so_the_pods_roll() {
    let checksum = |ms: &[Manifest], kind: &str, name: &str| {
        let w = object(find(ms, kind, name).unwrap());
        w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let default = render(None);
    let other = render(Some(
        &helm::chart_dir().join("ci/servicemonitor-values.yaml"),
    ));
    for (kind, name) in [("DaemonSet", "sonde-agent"), ("StatefulSet", "sonde-store")] {
        assert_eq!(checksum(&default, kind, name).len(), 64);
        assert_eq!(
            checksum(&default, kind, name),
            checksum(&render(None), kind, name)
        );
        assert_ne!(
            checksum(&default, kind, name),
            checksum(&other, kind, name),
            "{kind}"
        );
    }
}

#[test]
fn helm_lints_the_chart_and_renders_the_same_bytes() {
    let helm_bin = require_tool!(deploy::helm());
    let helm_template = |values: Option<&Path>| {
        let mut cmd = Command::new(&helm_bin);
        cmd.args(["template", "sonde"])
            .arg(helm::chart_dir())
            .args(["-n", "sonde"]);
        if let Some(v) = values {
            cmd.arg("-f").arg(v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (name, values) in option_sets() {
        let (ok, stdout, stderr) = helm_template(values.as_deref());
        assert!(ok, "{name}: {stderr}");
        let ours = helm::stream(&render(values.as_deref()));
        assert!(stdout == ours, "{name}: helm renders otherwise:\n{stdout}");
    }
    // helm's own checks of the chart, for each option set.
    for (name, values) in option_sets() {
        let mut cmd = Command::new(&helm_bin);
        cmd.args(["lint", "--strict", "--namespace", "sonde"])
            .arg(helm::chart_dir());
        if let Some(v) = &values {
            cmd.arg("-f").arg(v);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("0 chart(s) failed"),
            "{name}: {text}"
        );
    }
    // A bad value stops both with the same message.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "store: {enabled: false}\n").unwrap();
    let (ok, _, stderr) = helm_template(Some(&bad));
    let ours = render_with(&[serde_yaml::from_str("store: {enabled: false}").unwrap()]);
    let message = format!("{:#}", ours.map(|_| ()).unwrap_err());
    let message = message.rsplit(": export.endpoint").next().unwrap();
    assert!(!ok && stderr.contains(message), "{stderr}");
}
