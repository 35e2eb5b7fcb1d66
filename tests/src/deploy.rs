//! Checks of the deployment files shared by the manifest and chart tests: Kubernetes schema
//! validation (`kubernetes-validate`) and the security scan (`checkov`), both installed by
//! `cargo xtask setup`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

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
/// dependencies leave the system's Python packages alone).
pub const CHECKOV_VENV: &str = "/opt/sonde-checkov";

/// The checkov executable: `$SONDE_CHECKOV`, setup's virtualenv, or `checkov` on PATH.
pub fn checkov() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::var_os("SONDE_CHECKOV")
        .map(PathBuf::from)
        .into_iter()
        .chain([Path::new(CHECKOV_VENV).join("bin/checkov")])
        .chain(std::env::split_paths(&path).map(|d| d.join("checkov")));
    for c in candidates {
        if Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Ok(c);
        }
    }
    Err(format!(
        "checkov not found (SONDE_CHECKOV, {CHECKOV_VENV}/bin/checkov, PATH): run `cargo xtask setup`"
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
