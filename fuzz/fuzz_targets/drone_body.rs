//! Arbitrary bytes as the JSON body of the drone endpoints (register, complete, started,
//! return) through the server's parsing and claim bounds. Run:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run drone_body fuzz/corpus/drone_body`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_net::server::fuzzing::drone_body_checked(data));
