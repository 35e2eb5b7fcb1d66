//! Checks of the deployment files shared by the manifest and chart tests: Kubernetes schema
//! validation (`kubernetes-validate`) and the security scan (`checkov`), both installed by
//! `cargo xtask setup`.
use std::{path::PathBuf, process::Command};

/// `python3 -m kubernetes_validate --strict` over `files` (unknown fields are errors):
/// panics with its output when anything fails, else returns that output.
pub fn kubernetes_validate(files: &[PathBuf]) -> String {
    let out = Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict"])
        .args(files)
        .output()
        .expect("kubernetes-validate (cargo xtask setup installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text
}

/// Where `cargo xtask setup` installs checkov (its own virtualenv, so that its pinned
/// dependencies leave the system's Python packages alone) and helm.
pub const CHECKOV: &str = "/opt/sonde-checkov/bin/checkov";
pub const HELM: &str = "/opt/sonde-helm/helm/helm";

/// The checkov executable: `$SONDE_CHECKOV`, setup's, or `checkov` on PATH.
pub fn checkov() -> Result<PathBuf, String> {
    tool("SONDE_CHECKOV", CHECKOV, "checkov", "--version")
}

/// The helm executable: `$SONDE_HELM`, setup's, or `helm` on PATH.
pub fn helm() -> Result<PathBuf, String> {
    tool("SONDE_HELM", HELM, "helm", "version")
}

fn tool(var: &str, installed: &str, name: &str, probe: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os(var)
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(installed)])
        .chain(std::env::split_paths(&path).map(|d| d.join(name)));
    for c in candidates {
        if Command::new(&c)
            .arg(probe)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(c);
        }
    }
    Err(format!(
        "{name} not found (${var}, {installed}, PATH): run `cargo xtask setup`"
    ))
}

/// Skip the calling test (return) when a tool it needs is missing, printing why; with
/// `SONDE_REQUIRE_KERNEL=1` (set by CI, as for the kernel tests) a skip is a failure.
#[macro_export]
macro_rules! require_tool {
    ($found:expr) => {
        match $found {
            Ok(tool) => tool,
            Err(why) => {
                if std::env::var("SONDE_REQUIRE_KERNEL").is_ok_and(|v| v == "1") {
                    panic!("test cannot run and SONDE_REQUIRE_KERNEL=1: {why}");
                }
                eprintln!("SKIPPED: {why}");
                return;
            }
        }
    };
}
