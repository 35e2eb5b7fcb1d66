//! Library half of xtask: what the tests crate reuses (the Helm chart renderer).
pub mod helm;
