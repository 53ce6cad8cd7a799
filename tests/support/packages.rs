//! Valid gpkgs made on the spot (`swarm_net::binpkg::write_gpkg`, which real
//! Portage installs), for uploads in the end-to-end tests.

use std::collections::BTreeMap;
use std::path::Path;
use swarm_net::binpkg::write_gpkg;

/// A gpkg of `cpv` (`app-misc/foo-1`) with `slot`, made under `dir`; its bytes.
pub fn gpkg_of_slot(dir: &Path, cpv: &str, slot: &str) -> Vec<u8> {
    let out = dir.join(format!("{}-{slot}.gpkg.tar", cpv.replace('/', "_")));
    write(cpv, slot, b"hello\n", &out);
    std::fs::read(out).expect("read")
}

/// A gpkg of `cpv` at `out` holding `bytes` of data that do not compress: a
/// package as big as a real one (a toolchain, a browser).
pub fn big_gpkg(cpv: &str, bytes: usize, out: &Path) {
    // xorshift64: reproducible, and no compressor shrinks it.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = Vec::with_capacity(bytes + 8);
    while data.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(bytes);
    write(cpv, "0", &data, out);
}

fn write(cpv: &str, slot: &str, data: &[u8], out: &Path) {
    let meta: BTreeMap<String, String> = [("SLOT", slot), ("KEYWORDS", "amd64")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    write_gpkg(cpv, &meta, &[("usr/share/doc/x/README", data)], out).expect("write_gpkg");
}
