//! The in-process hand-off from the agent's exporter to the embedded store (`sonde all`): the
//! same request form as OTLP, no network round trip, and the store's refusals mapped to the
//! exporter's retry-or-drop decisions.
use sonde_store::{IngestError, Store, ids::SINGLE_TENANT};

use crate::export::{ExportError, Payload, PayloadForm, SendFuture, SendOutcome, Transport};

const ENDPOINT: &str = "in-process store";

/// The in-process hand-off from the agent's exporter to the store.
pub(crate) struct StoreTransport {
    pub(crate) store: Store,
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
