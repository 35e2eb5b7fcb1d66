//! Ingest: the OTLP receivers (gRPC and HTTP, JSON or protobuf, gzip) and the split of each
//! export request into per-trace fragments that the tenant's WAL and live traces take.
pub mod inflight;
pub mod otlp;
pub mod split;

#[cfg(test)]
mod tests;
