//! Integration tests: the real binary against the simulator, in temp dirs, reading the
//! Parquet back. One binary, modules by topic.

mod harness;

mod cli;
mod interop;
mod ops;
mod readme;
mod roundtrip;
mod schema;
