//! Per-connection state: turns a stream of records into complete HTTP exchanges.
