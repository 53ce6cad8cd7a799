//! JSON-lines envelopes (the store's input-log format) through `Swarm::handle`; lines that do not
//! parse are skipped. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run json_lines`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| swarm_core::fuzzing::run_json_lines(data, |line| {
        serde_json::from_str(line).ok()
    })
);
