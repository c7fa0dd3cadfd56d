//! The fuzz targets' shared harness; `tests/fuzz_regressions.rs` includes the same file.
pub mod harness;
