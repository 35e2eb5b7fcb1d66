//! Exporting spans: OTLP conversion, batching, retry, bounded queue.
pub mod otlp;

#[cfg(test)]
mod testutil;
