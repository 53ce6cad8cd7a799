//! A byte-encoded stream of operations through `Swarm::handle`, every invariant checked after
//! every step. The decoder and the checks live in `swarm_core::fuzzing`, so `cargo test` runs the
//! committed corpus too. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run handle` from the repository root.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_core::fuzzing::run_bytes(data));
