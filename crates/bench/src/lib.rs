//! Benchmark and evaluation harness for optillm-rs
