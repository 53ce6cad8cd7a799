//! Arbitrary bytes through `swarm_net::binpkg::inspect` (gpkg, tbz2 and the XPAK parser),
//! with small limits. Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run binpkg fuzz/corpus/binpkg`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| swarm_net::binpkg::fuzzing::inspect_bytes_checked(data));
