//! Runs the store's three listeners (Tempo API, OTLP gRPC, OTLP HTTP) and its background
//! loops (block cutting/compaction/retention, WAL fsync) until the shutdown token fires.
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Store, StoreError, api, ingest};
use crate::config::StoreSection;

async fn bind(addr: &str, what: &'static str) -> Result<tokio::net::TcpListener, StoreError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StoreError::Listen {
            addr: addr.to_string(),
            what,
            source,
        })
}

/// Serve the Tempo API, OTLP gRPC and OTLP HTTP on the configured addresses.
pub async fn serve(
    store: Store,
    cfg: &StoreSection,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let api_l = bind(&cfg.http_listen_address, "Tempo HTTP API").await?;
    let grpc_l = bind(&cfg.otlp_grpc_listen_address, "OTLP gRPC").await?;
    let http_l = bind(&cfg.otlp_http_listen_address, "OTLP HTTP").await?;
    serve_on(store, api_l, grpc_l, http_l, shutdown).await
}

/// Serve on already bound listeners (tests bind port 0).
pub async fn serve_on(
    store: Store,
    api_l: tokio::net::TcpListener,
    grpc_l: tokio::net::TcpListener,
    http_l: tokio::net::TcpListener,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    tracing::info!(
        api = ?api_l.local_addr().ok(),
        otlp_grpc = ?grpc_l.local_addr().ok(),
        otlp_http = ?http_l.local_addr().ok(),
        data_dir = %store.config().data_dir.display(),
        tls = store.inner.tls.is_some(),
        auth = store.inner.auth.is_some(),
        "store listening"
    );
    let bg = background(store.clone(), shutdown.clone());
    let generator = store
        .inner
        .generator
        .clone()
        .map(|g| tokio::spawn(crate::generator::remote_write::run(g, shutdown.clone())));
    let tls = store.inner.tls.clone();
    let api = serve_http(
        api_l,
        api::router(store.clone()),
        tls.as_ref(),
        shutdown.clone(),
    );
    let http = serve_http(
        http_l,
        ingest::otlp::http_router(store.clone()),
        tls.as_ref(),
        shutdown.clone(),
    );
    let sd = shutdown.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = &tls {
        builder = builder
            .tls_config(t.tonic())
            .map_err(|e| StoreError::Serve {
                what: "OTLP gRPC",
                detail: format!("TLS: {e}"),
            })?;
    }
    let grpc = builder
        .layer(tower::util::MapRequestLayer::new(
            ingest::otlp::grpc_count_body(store.clone()),
        ))
        .layer(tower::util::MapResponseLayer::new(
            ingest::otlp::grpc_size_status,
        ))
        .add_service(ingest::otlp::grpc_service(store.clone()))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_l).with_nodelay(Some(true)),
            async move { sd.cancelled().await },
        );
    let (a, h, g, ()) = tokio::join!(
        async {
            api.await.map_err(|e| StoreError::Serve {
                what: "Tempo HTTP API",
                detail: e.to_string(),
            })
        },
        async {
            http.await.map_err(|e| StoreError::Serve {
                what: "OTLP HTTP",
                detail: e.to_string(),
            })
        },
        async {
            grpc.await.map_err(|e| StoreError::Serve {
                what: "OTLP gRPC",
                detail: e.to_string(),
            })
        },
        bg,
    );
    if let Some(task) = generator {
        let _ = task.await;
    }
    store.sync_wal();
    a.and(h).and(g)
}

/// Serve `router` on `l`, over TLS when configured, until shutdown.
async fn serve_http(
    l: tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<&crate::tls::Tls>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let done = async move { shutdown.cancelled().await };
    match tls {
        Some(t) => {
            axum::serve(crate::tls::TlsListener::new(l, t)?, router)
                .with_graceful_shutdown(done)
                .await
        }
        // Without TCP_NODELAY an HTTP/2 answer's last frame (gRPC trailers) waits for the
        // peer's delayed ACK: 40 ms on every streaming call.
        None => {
            use axum::serve::ListenerExt as _;
            let l = l.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(l, router).with_graceful_shutdown(done).await
        }
    }
}

/// Block cutting every 250 ms, compaction and retention every second (separate loops, so a
/// long compaction never holds up cutting), WAL fsync at the configured interval.
async fn background(store: Store, shutdown: CancellationToken) {
    let fsync_ns = store.config().wal_fsync_interval_ns();
    let s2 = store.clone();
    let sd = shutdown.clone();
    let fsync = async move {
        if fsync_ns == 0 {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_nanos(fsync_ns));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let s = s2.clone();
                    let _ = tokio::task::spawn_blocking(move || s.sync_wal()).await;
                }
                () = sd.cancelled() => return,
            }
        }
    };
    let s3 = store.clone();
    let sd = shutdown.clone();
    let cut = async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let s = s3.clone();
                    let _ = tokio::task::spawn_blocking(move || s.cut_blocks(false)).await;
                }
                () = sd.cancelled() => return,
            }
        }
    };
    let maint = async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let s = store.clone();
                    let _ = tokio::task::spawn_blocking(move || s.compact_blocks()).await;
                }
                () = shutdown.cancelled() => return,
            }
        }
    };
    tokio::join!(fsync, cut, maint);
}
