//! Simulator tests over HTTP and on `respond()`.
