//! `sonde all`: the agent and the embedded store in one process. The agent hands its spans to
//! the store in-process (same OTLP request form, no network round trip); the store serves
//! Tempo's API and OTLP receivers for everything else on the box.
use std::{
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
};

use tokio_util::sync::CancellationToken;

use super::{AgentArgs, EXIT_CONFIG, StoreArgs, StoreListenArgs};
use crate::{
    export::{ExportError, Exporter, Payload, PayloadForm, SendFuture, SendOutcome, Transport},
    sinks::{ExportSink, Fanout, PrintSink},
    store::{IngestError, Store, ids::SINGLE_TENANT},
};

/// Flags of `sonde all`: the agent's, plus where the store keeps data and listens.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub store: StoreListenArgs,
}

const ENDPOINT: &str = "in-process store";

/// The in-process hand-off from the agent's exporter to the store.
struct StoreTransport {
    store: Store,
}

impl Transport for StoreTransport {
    fn send(&self, req: Payload) -> SendFuture<'_> {
        let store = self.store.clone();
        Box::pin(async move {
            let req = req.into_proto().map_err(|e| ExportError::Decode {
                endpoint: ENDPOINT.to_owned(),
                message: e.to_string(),
            })?;
            // The WAL append is blocking file I/O: keep it off the async workers.
            let endpoint = ENDPOINT.to_owned();
            let res = tokio::task::spawn_blocking(move || store.ingest(SINGLE_TENANT, req))
                .await
                .map_err(|e| ExportError::Network {
                    endpoint: endpoint.clone(),
                    message: e.to_string(),
                })?;
            match res {
                Ok(o) => Ok(SendOutcome {
                    rejected_spans: o.rejected_spans as u64,
                    message: o.message,
                }),
                // Transient: the exporter retries with backoff, then drops and counts.
                Err(
                    e @ (IngestError::RateLimited { .. }
                    | IngestError::Busy { .. }
                    | IngestError::Storage { .. }),
                ) => Err(ExportError::Network {
                    endpoint,
                    message: e.to_string(),
                }),
                // Permanent: retrying the same request cannot help.
                Err(e) => Err(ExportError::Http {
                    endpoint,
                    status: 400,
                    message: e.to_string(),
                    retry_after: None,
                }),
            }
        })
    }

    fn endpoint(&self) -> &str {
        ENDPOINT
    }

    /// The store ingests structs: encoding them only to decode them again would waste CPU.
    fn payload_form(&self) -> PayloadForm {
        PayloadForm::Proto
    }
}

/// Run agent and store until SIGINT/SIGTERM.
pub fn run_all(args: AllArgs) -> ExitCode {
    let agent_cfg = match super::agent::load_agent(&args.agent) {
        Ok(c) => c.agent,
        Err(e) => {
            eprintln!("sonde: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let store_args = StoreArgs {
        config: args.agent.config.clone(),
        listen: args.store.clone(),
        multitenancy_enabled: false,
    };
    let store_cfg = match store_args.section() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sonde: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if store_cfg.multitenancy_enabled {
        tracing::info!(
            tenant = SINGLE_TENANT,
            "multitenancy is on: the local agent's spans go to this tenant"
        );
    }
    crate::store::limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sonde: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Fail on what the kernel lacks before binding any port.
        if let Err(e) = crate::ebpf::check_environment() {
            eprintln!("sonde: {e}");
            return ExitCode::FAILURE;
        }
        let store = match Store::open(&store_cfg, Arc::new(crate::store::SystemClock)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sonde: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = CancellationToken::new();
        let server = {
            let (store, cfg, shutdown) = (store.clone(), store_cfg.clone(), shutdown.clone());
            tokio::spawn(async move { crate::store::serve(store, &cfg, shutdown).await })
        };
        let exporter = Exporter::spawn(&agent_cfg.export, Arc::new(StoreTransport { store }));
        let mut sinks: Vec<Box<dyn crate::pipeline::SpanSink>> =
            vec![Box::new(ExportSink(exporter.clone()))];
        if let Some(p) = PrintSink::for_mode(&agent_cfg) {
            sinks.push(Box::new(p));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let captured =
            crate::sinks::run_capture(&agent_cfg, Box::new(Fanout(sinks)), Some(exporter), stop)
                .await;
        shutdown.cancel();
        let served = server.await;
        match (captured, served) {
            (Err(e), _) => {
                eprintln!("sonde: {e}");
                ExitCode::FAILURE
            }
            (Ok(()), Ok(Err(e))) => {
                eprintln!("sonde: {e}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        }
    })
}
