//! Exporting spans: OTLP conversion, batching, retry, bounded queue.
