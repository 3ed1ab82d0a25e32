//! Integration tests: the real binary against the simulator, in temp dirs, reading the
//! Parquet back. One binary, modules by topic.

mod harness;

mod auth;
mod cli;
mod crash;
mod faults;
mod fleet;
mod foreign;
mod interop;
mod lifecycle;
mod ops;
mod readme;
mod roundtrip;
mod s3;
mod schema;
