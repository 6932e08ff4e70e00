//! Test and benchmark tools for the event receivers (not part of the shipped binary):
//! `events-load` pushes signed, encrypted webhook deliveries and reports throughput and ack
//! latency; [`s3`] (and the `s3-test-server` binary) serves a directory over the S3 protocol
//! with atomic conditional writes, for the tests and the benchmarks.

pub mod s3;
