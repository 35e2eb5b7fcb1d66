//! The Kubernetes manifests in deploy/kubernetes validate against the Kubernetes API schemas
//! (the `kubernetes-validate` package, `--strict`: unknown fields are errors), and keep the promises their
//! comments make: the agent is not privileged, drops every capability but three, and has
//! memory limits; the store runs as non-root. agent.yaml and store.yaml are the Helm chart's
//! default render (tests/tests/helm_chart.rs keeps them so).
use std::path::PathBuf;

fn manifests() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    assert!(files.len() >= 3, "{files:?}");
    let text = sonde_e2e::deploy::kubernetes_validate(&files);
    for kind in [
        "daemonset/sonde-agent",
        "statefulset/sonde-store",
        "service/sonde-store",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
}

#[test]
fn the_agent_is_unprivileged_with_three_capabilities_and_limits() {
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/agent.yaml"),
    )
    .unwrap();
    assert!(text.contains("privileged: false") && !text.contains("privileged: true"));
    assert!(text.contains(r#"drop: ["ALL"]"#));
    assert!(text.contains(r#"add: ["BPF", "PERFMON", "DAC_READ_SEARCH"]"#));
    assert!(text.contains("readOnlyRootFilesystem: true"));
    assert!(text.contains("limits:") && text.contains("memory: 256Mi"));
    let store = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes/store.yaml"),
    )
    .unwrap();
    assert!(store.contains("runAsNonRoot: true") && store.contains("storage: 10Gi"));
}
