//! Kernel side, seen from userspace: load and attach the programs, decode ring-buffer records.
pub mod record;
