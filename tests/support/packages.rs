//! Valid gpkgs made on the spot (`swarm_net::binpkg::write_gpkg`, which real
//! Portage installs), for uploads in the end-to-end tests.

use std::collections::BTreeMap;
use std::path::Path;
use swarm_net::binpkg::write_gpkg;

/// A gpkg of `cpv` (`app-misc/foo-1`) with `slot`, made under `dir`; its bytes.
pub fn gpkg_of_slot(dir: &Path, cpv: &str, slot: &str) -> Vec<u8> {
    let out = dir.join(format!("{}-{slot}.gpkg.tar", cpv.replace('/', "_")));
    let meta: BTreeMap<String, String> = [("SLOT", slot), ("KEYWORDS", "amd64")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    write_gpkg(
        cpv,
        &meta,
        &[("usr/share/doc/x/README", b"hello\n".as_slice())],
        &out,
    )
    .expect("write_gpkg");
    std::fs::read(out).expect("read")
}
