//! The jobs the binary runs (`all`, `agent`, `store`, `reconcile`) and what they share: one
//! runtime builder, one shutdown path (SIGINT or SIGTERM cancels a token every part watches),
//! the agent's lifecycle and `/metrics` server, and the in-process hand-off from agent to store.
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

pub mod agent;
pub mod all;
pub mod capture;
pub mod doctor;
mod handoff;
pub mod reconcile;
pub mod selfmetrics;
pub mod store;

/// Exit code for invalid configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// How many threads a job's runtime has.
pub(crate) enum Threads {
    /// Everything on the calling thread.
    Current,
    /// This many worker threads.
    Workers(usize),
    /// One worker per core.
    PerCore,
}

/// The async runtime a job runs on. Fewer glibc malloc arenas keep the resident set small when
/// threads come and go, so that is set first.
pub(crate) fn runtime(job: &str, threads: Threads) -> Result<tokio::runtime::Runtime, ExitCode> {
    limit_malloc_arenas();
    let mut builder = match threads {
        Threads::Current => tokio::runtime::Builder::new_current_thread(),
        Threads::Workers(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build().map_err(|e| {
        eprintln!("sonde {job}: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// A token cancelled on the first SIGINT or SIGTERM: the one shutdown signal every job's parts
/// watch. Must be called inside the runtime.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; stop with Ctrl-C");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

/// Cap glibc's malloc arenas at two: with many threads each gets its own arena, and freed
/// block-building buffers stay mapped per arena, which inflates RSS under steady ingest.
/// Called once, early, before threads start.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator tunable; called before other threads allocate.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
