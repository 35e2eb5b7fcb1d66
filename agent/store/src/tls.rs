//! TLS on the store's three listeners when `store.tls_cert_file` and `store.tls_key_file` are
//! set: rustls for the two HTTP listeners (a listener whose handshakes run off the accept
//! loop, each with a deadline, so a silent client cannot hold up others) and tonic's own TLS
//! for gRPC, from the same PEM files.
use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tokio_rustls::{TlsAcceptor, server::TlsStream};

use crate::StoreError;

/// A TLS handshake not done by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's certificate chain and key, ready for both stacks.
#[derive(Clone)]
pub struct Tls {
    pub rustls: Arc<rustls::ServerConfig>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(<certificate and key>)")
    }
}

impl Tls {
    /// Load the PEM certificate chain and private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, StoreError> {
        let cert_pem = std::fs::read(cert).map_err(|e| StoreError::io(cert, e))?;
        let key_pem = std::fs::read(key).map_err(|e| StoreError::io(key, e))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::corrupt(cert, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(StoreError::corrupt(cert, "no certificate in the file"));
        }
        let pkey = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| StoreError::corrupt(key, format!("not a PEM private key: {e}")))?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::corrupt(cert, e))?
        .with_no_client_auth()
        .with_single_cert(chain, pkey)
        .map_err(|e| StoreError::corrupt(key, format!("does not match the certificate: {e}")))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            rustls: Arc::new(cfg),
            cert_pem,
            key_pem,
        })
    }

    /// tonic's server TLS from the same files.
    pub fn tonic(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(
            &self.cert_pem,
            &self.key_pem,
        ))
    }
}

/// A listener handing out connections whose TLS handshake finished.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accept on `l`, handshaking each connection in its own task.
    pub fn new(l: TcpListener, tls: &Tls) -> std::io::Result<Self> {
        let local = l.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(tls.rustls.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    r = l.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => {
                            let _ = tx.send((s, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop ended: serve no more (shutdown ends the server).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
