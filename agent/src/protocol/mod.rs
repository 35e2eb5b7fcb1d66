//! Wire protocols Sonde understands; pure parsers over byte slices.
