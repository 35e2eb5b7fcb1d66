//! Tests for process resource detection and the resource cache.
use std::{os::unix::fs::symlink, path::Path};

use rstest::rstest;

use super::*;

#[rstest]
#[case::empty("", &[])]
#[case::one("a=b", &[("a", "b")])]
#[case::two_trimmed(" a = b , c=d ", &[("a", "b"), ("c", "d")])]
#[case::percent("service.name=my%20app,k=a%2Cb", &[("service.name", "my app"), ("k", "a,b")])]
#[case::value_with_equals("k=a=b", &[("k", "a=b")])]
#[case::no_equals_skipped("garbage,a=b", &[("a", "b")])]
#[case::empty_key_skipped("=v,a=", &[("a", "")])]
#[case::trailing_comma("a=b,", &[("a", "b")])]
fn key_values(#[case] input: &str, #[case] want: &[(&str, &str)]) {
    let got = parse_key_values(input);
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[rstest]
#[case::plain("abc", "abc")]
#[case::space("a%20b", "a b")]
#[case::utf8("caf%C3%A9", "café")]
#[case::truncated("a%2", "a%2")]
#[case::bad_hex("a%zzb", "a%zzb")]
#[case::percent_at_end("a%", "a%")]
#[case::invalid_utf8("%FF", "\u{FFFD}")]
fn percent(#[case] input: &str, #[case] want: &str) {
    assert_eq!(percent_decode(input), want);
}

#[rstest]
#[case::v2_service("0::/system.slice/nginx.service\n", Some("nginx"))]
#[case::v2_template(
    "0::/system.slice/system-getty.slice/getty@tty1.service\n",
    Some("getty@tty1")
)]
#[case::v2_nested_under_service("0::/system.slice/app.service/worker\n", Some("app"))]
#[case::v2_user_service(
    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/api.service\n",
    Some("api")
)]
#[case::v2_user_scope(
    "0::/user.slice/user-1000.slice/user@1000.service/app.slice/app-term-12.scope\n",
    None
)]
#[case::v2_user_manager_itself(
    "0::/user.slice/user-1000.slice/user@1000.service\n",
    Some("user@1000")
)]
#[case::v2_session("0::/user.slice/user-1000.slice/session-3.scope\n", None)]
#[case::v2_docker("0::/system.slice/docker-0123abcd.scope\n", None)]
#[case::v1_systemd(
    "12:cpu,cpuacct:/system.slice/x.service\n1:name=systemd:/system.slice/redis.service\n",
    Some("redis")
)]
#[case::root("0::/\n", None)]
#[case::empty("", None)]
#[case::garbage("not a cgroup file", None)]
#[case::bare_suffix("0::/system.slice/.service\n", None)]
fn unit_from_cgroup(#[case] cgroup: &str, #[case] want: Option<&str>) {
    assert_eq!(systemd_unit(cgroup).as_deref(), want);
}

#[rstest]
#[case::simple(
    "1234 (python3) S 1 1234 1234 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 2",
    Some(98765)
)]
#[case::comm_with_paren_and_space(
    "7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 1 2",
    Some(42)
)]
#[case::truncated("1 (x) S 1 2", None)]
#[case::empty("", None)]
#[case::not_a_number("1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 abc", None)]
fn start_ticks(#[case] stat: &str, #[case] want: Option<u64>) {
    assert_eq!(stat_start_ticks(stat), want);
}

fn facts(environ: &str, cgroup: Option<&str>, exe: Option<&str>, comm: Option<&str>) -> ProcFacts {
    ProcFacts {
        environ: Some(environ.replace(';', "\0").into_bytes()),
        cgroup: cgroup.map(str::to_owned),
        exe: exe.map(PathBuf::from),
        comm: comm.map(str::to_owned),
        stat: None,
        exe_name: None,
        kube: None,
    }
}

#[rstest]
#[case::otel_service_name(
    facts(
        "OTEL_SERVICE_NAME=orders;OTEL_RESOURCE_ATTRIBUTES=service.name=other",
        Some("0::/system.slice/x.service"),
        Some("/usr/bin/py"),
        None
    ),
    "orders"
)]
#[case::resource_attributes(
    facts(
        "A=1;OTEL_RESOURCE_ATTRIBUTES=service.name=my%20app",
        Some("0::/system.slice/x.service"),
        Some("/usr/bin/py"),
        None
    ),
    "my app"
)]
#[case::blank_service_name_ignored(
    facts("OTEL_SERVICE_NAME= ", Some("0::/system.slice/x.service"), None, None),
    "x"
)]
#[case::systemd_unit(
    facts("", Some("0::/system.slice/shop.service"), Some("/usr/bin/py"), None),
    "shop"
)]
#[case::exe(
    facts(
        "",
        Some("0::/user.slice/session-1.scope"),
        Some("/usr/bin/python3.12"),
        Some("python3")
    ),
    "python3.12"
)]
#[case::deleted_exe(facts("", None, Some("/opt/app/server (deleted)"), None), "server")]
#[case::comm_only(facts("", None, None, Some("worker\n")), "unknown_service:worker")]
#[case::nothing(ProcFacts::default(), "unknown_service")]
fn service_name(#[case] facts: ProcFacts, #[case] want: &str) {
    let r = build_resource(42, "node1", &facts);
    assert_eq!(r.service_name, want);
    assert_eq!(
        r.attr("service.name"),
        Some(&AttrValue::Str(want.to_owned()))
    );
}

#[test]
fn attributes_of_a_full_process() {
    let mut f = facts(
        "OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,host.name=override,process.pid=1,telemetry.sdk.name=evil,telemetry.sdk.language=python",
        Some("0::/system.slice/shop.service"),
        Some("/usr/bin/python3"),
        Some("python3"),
    );
    f.stat = Some("42 (python3) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5555 1 2".to_owned());
    let r = build_resource(42, "node1", &f);
    let owned = |v: &str| AttrValue::Str(v.to_owned());
    assert_eq!(r.attr("service.name"), Some(&owned("shop")));
    assert_eq!(r.attr("service.instance.id"), Some(&owned("node1:42:5555")));
    assert_eq!(r.attr("process.pid"), Some(&AttrValue::Int(42)));
    assert_eq!(r.attr("process.executable.name"), Some(&owned("python3")));
    assert_eq!(
        r.attr("process.executable.path"),
        Some(&owned("/usr/bin/python3"))
    );
    // The process's own attributes may override host.name, not what Sonde owns.
    assert_eq!(r.attr("host.name"), Some(&owned("override")));
    assert_eq!(r.attr("deployment.environment.name"), Some(&owned("prod")));
    assert_eq!(r.attr("telemetry.sdk.name"), Some(&owned("sonde")));
    assert_eq!(r.attr("telemetry.distro.name"), Some(&owned("sonde")));
    assert_eq!(r.attr("telemetry.sdk.version"), Some(&owned(SDK_VERSION)));
    // The app's own SDK language does not describe the spans Sonde makes.
    assert_eq!(r.attr("telemetry.sdk.language"), None);
    let keys: Vec<&str> = r.attributes.iter().map(|a| a.key.as_str()).collect();
    let mut dedup = keys.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(keys.len(), dedup.len(), "duplicate keys in {keys:?}");
}

#[test]
fn gone_process_keeps_pid_and_host() {
    let r = build_resource(99, "node1", &ProcFacts::default());
    assert_eq!(
        r.attr("service.instance.id"),
        Some(&AttrValue::Str("node1:99".to_owned()))
    );
    assert_eq!(r.attr("process.pid"), Some(&AttrValue::Int(99)));
    assert_eq!(r.attr("process.executable.name"), None);
}

fn write_proc(root: &Path, pid: u32, environ: &str, cgroup: &str, exe: &str, comm: &str) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("environ"), environ.replace(';', "\0")).unwrap();
    std::fs::write(dir.join("cgroup"), cgroup).unwrap();
    std::fs::write(dir.join("comm"), comm).unwrap();
    symlink(exe, dir.join("exe")).unwrap();
}

#[test]
fn cache_reads_fixture_caches_forgets_and_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    write_proc(
        tmp.path(),
        10,
        "OTEL_SERVICE_NAME=api",
        "0::/\n",
        "/usr/bin/node",
        "node\n",
    );
    write_proc(
        tmp.path(),
        11,
        "",
        "0::/system.slice/db.service\n",
        "/usr/sbin/pg",
        "pg\n",
    );
    write_proc(tmp.path(), 12, "", "0::/\n", "/usr/bin/ruby", "ruby\n");
    let cache = ResourceCache::with_proc_root("h", 2, tmp.path());

    let a = cache.get(10);
    assert_eq!(a.service_name, "api");
    assert!(
        Arc::ptr_eq(&a, &cache.get(10)),
        "second get must hit the cache"
    );
    assert_eq!(cache.get(11).service_name, "db");
    assert_eq!(cache.len(), 2);

    // A third pid evicts the oldest (10); the cache never exceeds its capacity.
    assert_eq!(cache.get(12).service_name, "ruby");
    assert_eq!(cache.len(), 2);
    assert!(
        !Arc::ptr_eq(&a, &cache.get(10)),
        "10 was evicted and is read again"
    );
    assert_eq!(cache.len(), 2);

    // Pid reuse: forget, change the fixture, read again.
    std::fs::write(tmp.path().join("10/environ"), "OTEL_SERVICE_NAME=new").unwrap();
    assert_eq!(cache.get(10).service_name, "api");
    cache.forget(10);
    assert_eq!(cache.get(10).service_name, "new");

    // A pid with no /proc entry at all.
    assert_eq!(cache.get(999).service_name, "unknown_service");
    for pid in 0..100 {
        cache.get(1000 + pid);
        cache.forget(1000 + pid);
    }
    assert!(
        cache.inner.lock().unwrap().order.len() <= 4,
        "order queue must stay bounded"
    );
}

#[test]
fn real_current_process() {
    let pid = std::process::id();
    let cache = ResourceCache::new("testhost", 8);
    let r = cache.get(pid);
    let exe = std::env::current_exe().unwrap();
    let name = exe.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(r.attr("process.pid"), Some(&AttrValue::Int(i64::from(pid))));
    assert_eq!(
        r.attr("process.executable.name"),
        Some(&AttrValue::Str(name.clone()))
    );
    assert_eq!(
        r.attr("process.executable.path"),
        Some(&AttrValue::Str(exe.to_string_lossy().into_owned()))
    );
    let Some(AttrValue::Str(instance)) = r.attr("service.instance.id") else {
        panic!("no service.instance.id in {r:?}");
    };
    assert!(
        instance.starts_with(&format!("testhost:{pid}:")),
        "{instance}"
    );
    // Unless the test runner sets OTEL_SERVICE_NAME or runs in a systemd service, the name is
    // the test binary's.
    let own_env = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let want = own_env.or_else(|| systemd_unit(&cgroup)).unwrap_or(name);
    assert_eq!(r.service_name, want);
}

/// A short-lived client gone from /proc before its spans are built keeps the name the kernel
/// sent while it was alive, and its naming variables; the rest of its environment is gone.
#[test]
fn a_process_gone_from_proc_is_named_from_what_the_kernel_sent() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ResourceCache::with_proc_root("h", 16, dir.path());
    let before = cache.get_named(77, Some("curl"));
    assert_eq!(before.service_name, "unknown_service:curl");
    cache.remember(
        77,
        AliveFacts {
            exe_name: Some("curl".into()),
            environ: b"OTEL_SERVICE_NAME=nightly-export\0".to_vec(),
        },
    );
    let after = cache.get_named(77, Some("curl"));
    assert_eq!(after.service_name, "nightly-export");
    assert_eq!(
        after.attr("process.executable.name"),
        Some(&AttrValue::Str("curl".into()))
    );
    cache.remember(
        78,
        AliveFacts {
            exe_name: Some("wget".into()),
            environ: Vec::new(),
        },
    );
    assert_eq!(cache.get_named(78, None).service_name, "wget");
    cache.forget(77);
    assert_eq!(cache.get_named(77, None).service_name, "unknown_service");
}

/// A process in a Kubernetes pod is told apart by its container and pod, from its cgroup.
#[test]
fn a_containerised_process_carries_its_container_and_pod() {
    let cgroup = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5d1a8f2e_3b4c_4d5e_8f90_a1b2c3d4e5f6.slice/cri-containerd-3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150.scope\n";
    let r = build_resource(
        9,
        "node-1",
        &facts("", Some(cgroup), Some("/app/server"), None),
    );
    assert_eq!(
        r.attr("container.id"),
        Some(&AttrValue::Str(
            "3f8a2bd95c0e4c1f9d7b6a5e4d3c2b1a0f9e8d7c6b5a49382716051423324150".into()
        ))
    );
    assert_eq!(
        r.attr("k8s.pod.uid"),
        Some(&AttrValue::Str(
            "5d1a8f2e-3b4c-4d5e-8f90-a1b2c3d4e5f6".into()
        ))
    );
    let host = build_resource(
        9,
        "node-1",
        &facts("", Some("0::/system.slice/nginx.service\n"), None, None),
    );
    assert_eq!(host.attr("container.id"), None);
}

/// A resource read from the process's own /proc is kept when the kernel's facts arrive: they
/// add nothing, and /proc is not read twice.
#[test]
fn a_resource_built_from_proc_is_kept_when_the_kernel_describes_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("55");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("environ"), b"OTEL_SERVICE_NAME=from-proc\0").unwrap();
    let cache = ResourceCache::with_proc_root("h", 16, dir.path());
    let first = cache.get_named(55, Some("x"));
    assert_eq!(first.service_name, "from-proc");
    cache.remember(
        55,
        AliveFacts {
            exe_name: Some("x".into()),
            environ: b"OTEL_SERVICE_NAME=from-proc\0".to_vec(),
        },
    );
    assert!(Arc::ptr_eq(&first, &cache.get_named(55, Some("x"))));
}
