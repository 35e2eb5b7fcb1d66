//! `sonde store`: its flags (shared with `sonde all` for where data lives and what it listens
//! on), loading file → flags, and the job's entry.
use std::{path::PathBuf, process::ExitCode, sync::Arc};

use sonde_store::{Store, StoreSection, SystemClock};

use super::EXIT_CONFIG;
use crate::config::{Config, ConfigError};

/// Where the store keeps data and listens: flags shared by `sonde store` and `sonde all`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreListenArgs {
    /// Directory for the WAL and blocks. [default: /var/lib/sonde/store]
    #[arg(long = "data-dir", env = "SONDE_STORE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address (IP) the three store listeners bind, each keeping its port: `0.0.0.0` opens the
    /// store to the network. Explicit listen-address flags win. [default: 127.0.0.1]
    #[arg(long = "listen-host", env = "SONDE_STORE_LISTEN_HOST")]
    pub listen_host: Option<String>,
    /// Tempo HTTP API listen address. [default: 127.0.0.1:3200]
    #[arg(long = "http-listen-address", env = "SONDE_STORE_HTTP_LISTEN_ADDRESS")]
    pub http_listen_address: Option<String>,
    /// OTLP gRPC listen address. [default: 127.0.0.1:4317]
    #[arg(
        long = "otlp-grpc-listen-address",
        env = "SONDE_STORE_OTLP_GRPC_LISTEN_ADDRESS"
    )]
    pub otlp_grpc_listen_address: Option<String>,
    /// OTLP HTTP listen address. [default: 127.0.0.1:4318]
    #[arg(
        long = "otlp-http-listen-address",
        env = "SONDE_STORE_OTLP_HTTP_LISTEN_ADDRESS"
    )]
    pub otlp_http_listen_address: Option<String>,
    /// Make span metrics and service graphs from ingested spans (served on
    /// `/metrics/generator`, remote-written with `--remote-write-url`). [default: true]
    #[arg(long = "metrics-generator", env = "SONDE_STORE_METRICS_GENERATOR")]
    pub metrics_generator: Option<bool>,
    /// Prometheus remote-write URL for the generated series, e.g.
    /// http://127.0.0.1:9090/api/v1/write (Prometheus started with
    /// --web.enable-remote-write-receiver). [default: none]
    #[arg(long = "remote-write-url", env = "SONDE_STORE_REMOTE_WRITE_URL")]
    pub remote_write_url: Option<String>,
}

impl StoreListenArgs {
    /// Layer these flags over the file's section.
    pub fn apply(&self, s: &mut StoreSection) {
        if let Some(d) = &self.data_dir {
            s.data_dir.clone_from(d);
        }
        if let Some(h) = &self.listen_host {
            for a in [
                &mut s.http_listen_address,
                &mut s.otlp_grpc_listen_address,
                &mut s.otlp_http_listen_address,
            ] {
                *a = with_host(a, h);
            }
        }
        if let Some(a) = &self.http_listen_address {
            s.http_listen_address.clone_from(a);
        }
        if let Some(a) = &self.otlp_grpc_listen_address {
            s.otlp_grpc_listen_address.clone_from(a);
        }
        if let Some(a) = &self.otlp_http_listen_address {
            s.otlp_http_listen_address.clone_from(a);
        }
        if let Some(on) = self.metrics_generator {
            s.generator.enabled = on;
        }
        if let Some(u) = &self.remote_write_url {
            s.generator.remote_write.url.clone_from(u);
        }
    }
}

/// `addr` with its host replaced by `host` (an IPv6 host gets brackets); a bad host is left for
/// `validate` to name.
fn with_host(addr: &str, host: &str) -> String {
    let port = addr.rsplit_once(':').map_or("", |(_, p)| p);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Flags of `sonde store` (each overrides the config file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StoreArgs {
    /// Config file (YAML; the `store:` section is used).
    #[arg(long = "config", env = "SONDE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub listen: StoreListenArgs,
    /// Require X-Scope-OrgID on ingest and query.
    #[arg(
        long = "multitenancy-enabled",
        env = "SONDE_STORE_MULTITENANCY_ENABLED"
    )]
    pub multitenancy_enabled: bool,
}

impl StoreArgs {
    /// The effective store section: file, then flags.
    pub fn section(&self) -> Result<StoreSection, ConfigError> {
        let file = self.config.as_deref();
        let mut s = Config::load(file)?.store;
        self.listen.apply(&mut s);
        if self.multitenancy_enabled {
            s.multitenancy_enabled = true;
        }
        s.validate().map_err(|e| ConfigError::invalid(file, [e]))?;
        Ok(s)
    }
}

/// Run `sonde store` until SIGINT or SIGTERM.
pub fn run_store(args: StoreArgs) -> ExitCode {
    let section = match args.section() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde store: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match super::runtime("store", super::Threads::PerCore) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        let store = match Store::open(&section, Arc::new(SystemClock)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sonde store: {e}");
                return ExitCode::from(1);
            }
        };
        let shutdown = super::shutdown_on_signal();
        match sonde_store::serve(store, &section, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sonde store: {e}");
                ExitCode::from(1)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "store:\n  data_dir: /from/file\n  http_listen_address: 127.0.0.1:1\n",
        )
        .unwrap();
        let args = StoreArgs {
            config: Some(path.clone()),
            listen: StoreListenArgs {
                data_dir: Some("/from/flag".into()),
                ..StoreListenArgs::default()
            },
            ..StoreArgs::default()
        };
        let s = args.section().unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(s.http_listen_address, "127.0.0.1:1");
        std::fs::write(&path, "store:\n  retention: 0s\n").unwrap();
        let e = args.section().unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("store.retention"),
            "{e}"
        );
    }

    #[test]
    fn the_store_listens_on_loopback_until_one_flag_opens_it() {
        let closed = StoreArgs::default().section().unwrap();
        for a in [
            &closed.http_listen_address,
            &closed.otlp_grpc_listen_address,
            &closed.otlp_http_listen_address,
        ] {
            assert!(a.starts_with("127.0.0.1:"), "{a}");
        }
        let open = |host: &str| StoreArgs {
            listen: StoreListenArgs {
                listen_host: Some(host.into()),
                otlp_http_listen_address: Some("127.0.0.1:9318".into()),
                ..StoreListenArgs::default()
            },
            ..StoreArgs::default()
        };
        let s = open("0.0.0.0").section().unwrap();
        assert_eq!(s.http_listen_address, "0.0.0.0:3200");
        assert_eq!(s.otlp_grpc_listen_address, "0.0.0.0:4317");
        // An explicit address still wins.
        assert_eq!(s.otlp_http_listen_address, "127.0.0.1:9318");
        assert_eq!(
            open("::").section().unwrap().http_listen_address,
            "[::]:3200"
        );
        let e = open("not-an-ip").section().unwrap_err().to_string();
        assert!(e.contains("store.http_listen_address"), "{e}");
    }

    #[test]
    fn the_generator_is_on_by_default_and_flags_set_it() {
        let s = StoreArgs::default().section().unwrap();
        assert!(s.generator.enabled);
        assert!(s.generator.remote_write.url.is_empty());
        let args = |on: bool, url: &str| StoreArgs {
            listen: StoreListenArgs {
                metrics_generator: Some(on),
                remote_write_url: Some(url.into()),
                ..StoreListenArgs::default()
            },
            ..StoreArgs::default()
        };
        let s = args(false, "http://127.0.0.1:9090/api/v1/write")
            .section()
            .unwrap();
        assert!(!s.generator.enabled);
        assert_eq!(
            s.generator.remote_write.url,
            "http://127.0.0.1:9090/api/v1/write"
        );
        let e = args(true, "127.0.0.1:9090")
            .section()
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.generator.remote_write.url"), "{e}");
    }
}
