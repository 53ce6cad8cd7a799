//! The drone's own `BINPKG_FORMAT` and `BINPKG_COMPRESS`, checked at start when emerge builds:
//! a setting whose packages the server refuses (lzip, lzop, an uncompressed gpkg) would have
//! every build refused and the drone held again and again; rolled out to a fleet, it would
//! hold them all. The agent refuses to start instead, naming the setting and the fix.

use std::path::Path;

/// Asks the Portage the builder runs which format and compression it packs with, and refuses
/// one the server would refuse. A builder that is not emerge is not asked about; a `portageq`
/// that cannot answer is logged and the start goes on (the build environment reports it too).
pub(crate) fn check(template: &[String]) -> anyhow::Result<()> {
    let Some(program) = template.first().map(Path::new) else {
        return Ok(());
    };
    if program.file_name().is_none_or(|n| n != "emerge") {
        return Ok(());
    }
    // The portageq of the same install: beside an emerge given by path, else on PATH.
    let portageq = match program.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join("portageq").to_string_lossy().into_owned(),
        None => "portageq".to_owned(),
    };
    let argv = [
        portageq,
        "envvar".into(),
        "-v".into(),
        "BINPKG_FORMAT".into(),
        "BINPKG_COMPRESS".into(),
    ];
    // `portageq envvar` exits 1 when a variable is empty, after printing the others.
    let vars = match super::buildenv::run_accepting(&argv, 1) {
        Ok(text) => super::buildenv::parse_raw(&text),
        Err(why) => {
            tracing::warn!("BINPKG_FORMAT and BINPKG_COMPRESS not checked: {why}");
            return Ok(());
        }
    };
    let get = |k: &str| vars.get(k).map_or("", String::as_str);
    match swarm_net::binpkg::drone_setting_refusal(get("BINPKG_FORMAT"), get("BINPKG_COMPRESS")) {
        Some(why) => anyhow::bail!(
            "this drone's Portage makes binary packages the server refuses: {why} (set it in \
             make.conf and start the agent again)"
        ),
        None => Ok(()),
    }
}
