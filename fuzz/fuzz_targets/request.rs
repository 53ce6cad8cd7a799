//! Arbitrary bytes through the front door's request-head parser (httparse plus swarm's
//! checks: lengths, framing, versions, UTF-8). Run:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run request fuzz/corpus/request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_net::server::fuzzing::request_head_checked(data));
