//! RED metrics (rate, errors, duration) derived from spans, and route templating.
pub mod route;
