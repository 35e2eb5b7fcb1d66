//! Wire protocols Sonde understands; pure parsers over byte slices.
pub mod http1;
