//! The Grafana datasource-correlation reconciler.
