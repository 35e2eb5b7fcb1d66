//! `sonde all`: the agent and the embedded store in one process. The agent hands its spans to
//! the store in-process (same OTLP request form, no network round trip); the store serves
//! Tempo's API and OTLP receivers for everything else on the box.
use std::{process::ExitCode, sync::Arc};

use sonde_store::{Store, SystemClock, ids::SINGLE_TENANT};

use super::{
    EXIT_CONFIG,
    agent::AgentArgs,
    capture::{ExportSink, Fanout, PrintSink},
    handoff::StoreTransport,
    store::{StoreArgs, StoreListenArgs},
};
use crate::export::Exporter;

/// Flags of `sonde all`: the agent's, plus where the store keeps data and listens.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AllArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    #[command(flatten)]
    pub store: StoreListenArgs,
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
    let runtime = match super::runtime("all", super::Threads::Workers(2)) {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    runtime.block_on(async move {
        // Fail on what the kernel lacks before binding any port.
        if let Err(e) = crate::ebpf::check_environment() {
            eprintln!("sonde: {e}");
            return ExitCode::FAILURE;
        }
        let store = match Store::open(&store_cfg, Arc::new(SystemClock)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sonde: {e}");
                return ExitCode::FAILURE;
            }
        };
        let shutdown = super::shutdown_on_signal();
        let server = {
            let (store, cfg, shutdown) = (store.clone(), store_cfg.clone(), shutdown.clone());
            tokio::spawn(async move { sonde_store::serve(store, &cfg, shutdown).await })
        };
        let exporter = Exporter::spawn(&agent_cfg.export, Arc::new(StoreTransport { store }));
        let mut sinks: Vec<Box<dyn crate::pipeline::SpanSink>> =
            vec![Box::new(ExportSink(exporter.clone()))];
        if let Some(p) = PrintSink::for_mode(&agent_cfg) {
            sinks.push(Box::new(p));
        }
        let captured = super::capture::run_capture(
            &agent_cfg,
            Box::new(Fanout(sinks)),
            Some(exporter),
            shutdown.clone(),
        )
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
