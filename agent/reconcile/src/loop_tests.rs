//! The reconcile loop: a pass at start, another when the config file changes, none for an
//! invalid change, and a clean stop.
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;

fn config(dir: &Path, tempo_url: &str) -> String {
    format!(
        "reconcile:\n  mode: provisioning\n  interval: 1h\n  output_dir: {}\n  grafanas:\n    - id: g1\n  \
         tempos:\n    - name: traces\n      url: {tempo_url}\n  metrics:\n    - uid: prom-1\n      grafana: g1\n",
        dir.join("out").display()
    )
}

/// The `reconcile:` section of the file at `path`, checked (what the binary's reload does).
fn load(path: &Path) -> Result<ReconcileSection, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut file: serde_yaml::Mapping = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
    let section = file.remove("reconcile").ok_or("no reconcile: section")?;
    let section: ReconcileSection = serde_yaml::from_value(section).map_err(|e| e.to_string())?;
    section.validate().map_err(|e| format!("{e:?}"))?;
    Ok(section)
}

#[tokio::test]
async fn loop_reconciles_on_start_and_on_config_change_then_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("sonde.yaml");
    std::fs::write(&cfg, config(dir.path(), "http://tempo-a:3200")).expect("write");
    let section = load(&cfg).expect("valid");
    let stop = tokio_util::sync::CancellationToken::new();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = {
        let stop = stop.clone();
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let reload = || load(&cfg);
            let how = Run {
                once: false,
                dry_run: false,
                config: Some(&cfg),
                reload: &reload,
            };
            run_loop(&how, section, &stop, |r| {
                let _ = tx.send(r.iter().map(|r| r.writes).sum::<usize>());
            })
            .await;
        })
    };
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("first pass"),
        Some(1),
        "the Tempo file (the Prometheus backlink fails: it is in no file Sonde may write)"
    );
    let out = dir.path().join("out/g1/datasources/sonde.yaml");
    assert!(
        std::fs::read_to_string(&out)
            .expect("written")
            .contains("tempo-a")
    );

    std::fs::write(&cfg, config(dir.path(), "http://tempo-b:3200")).expect("rewrite");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("pass on change"),
        Some(1),
        "only the main file"
    );
    assert!(
        std::fs::read_to_string(&out)
            .expect("written")
            .contains("tempo-b")
    );

    std::fs::write(&cfg, "reconcile:\n  interval: never\n").expect("break config");
    assert!(
        tokio::time::timeout(Duration::from_millis(1500), rx.recv())
            .await
            .is_err(),
        "an invalid config does not trigger a pass"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("no panic");
}

fn report(outcome: Option<Outcome>, error: bool) -> GrafanaReport {
    let mut r = GrafanaReport::new("g");
    if error {
        r.error = Some("down".into());
    }
    if let Some(o) = outcome {
        let d = desired::DesiredDatasource {
            uid: "u".into(),
            name: "n".into(),
            kind: "tempo".into(),
            role: desired::Role::Owned,
            sets: Vec::new(),
            unlink_if_dangling: Vec::new(),
            lists: Vec::new(),
            secure: Default::default(),
            headers: Vec::new(),
            depends_on: Vec::new(),
        };
        let mut item = Item::skipped(&d, String::new());
        item.outcome = o;
        r.items.push(item);
    }
    r
}

#[rstest::rstest]
#[case::nothing(vec![], false, 0)]
#[case::unchanged(vec![report(Some(Outcome::Unchanged), false)], true, 0)]
#[case::pending_dry(vec![report(Some(Outcome::Planned), false)], true, 2)]
#[case::applied(vec![report(Some(Outcome::Applied), false)], false, 0)]
#[case::conflict(vec![report(Some(Outcome::Conflict("x".into())), false)], true, 1)]
#[case::failure_wins_over_pending(
    vec![report(Some(Outcome::Planned), false), report(None, true)], true, 1)]
#[case::skipped_is_not_failure(vec![report(Some(Outcome::Skipped("x".into())), false)], true, 0)]
fn exit_codes(#[case] reports: Vec<GrafanaReport>, #[case] dry_run: bool, #[case] want: u8) {
    assert_eq!(exit_code(&reports, dry_run), want);
}
