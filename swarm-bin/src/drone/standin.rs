//! The STAND-IN builder: `swarm-bin/scripts/standin-builder.sh`, compiled into
//! the binary so `swarm drone --builder standin` (and `swarm demo`) work from
//! an installed `swarm` alone. It compiles nothing: it sleeps in proportion to
//! a package's size, has `swarm standin-gpkg` ([`StandinGpkgArgs`]) write a
//! small valid gpkg to `$PKGDIR`, and fails or "runs out of memory" for the
//! atoms listed in `SWARM_STANDIN_FAIL` / `SWARM_STANDIN_OOM`. The script's
//! header documents its knobs; swarm-bin/tests/standin.rs runs it.

use anyhow::Context;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The script's text.
pub(crate) const SCRIPT: &str = include_str!("../../scripts/standin-builder.sh");

/// The file name it is written under in the work dir.
pub(crate) const FILE_NAME: &str = "standin-builder.sh";

/// Writes the script into `dir` (replacing an older copy) and returns the
/// builder template that runs it.
pub(crate) fn install(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path: PathBuf = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    std::fs::write(&tmp, SCRIPT).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(vec![
        "sh".into(),
        path.to_string_lossy().into_owned(),
        "{atom}".into(),
        "{category}".into(),
        "{pf}".into(),
    ])
}

/// `swarm standin-gpkg CPV OUT`: the stand-in's package, a valid gpkg (Manifest included)
/// that the server's upload validation and real Portage accept.
#[derive(clap::Args, Debug)]
pub(crate) struct StandinGpkgArgs {
    /// The package, `category/pf` (e.g. dev-libs/libfoo-1.2).
    cpv: String,
    /// Where to write it (atomically).
    out: PathBuf,
    /// KEYWORDS of the package [default: $SWARM_STANDIN_KEYWORDS, else amd64].
    #[arg(long)]
    keywords: Option<String>,
    /// SLOT of the package.
    #[arg(long, default_value = "0")]
    slot: String,
}

impl StandinGpkgArgs {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        let cpv = self.cpv.trim_start_matches('=');
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let keywords = self
            .keywords
            .or_else(|| std::env::var("SWARM_STANDIN_KEYWORDS").ok())
            .unwrap_or_else(|| "amd64".into());
        let meta: BTreeMap<String, String> = [
            ("SLOT", self.slot.as_str()),
            ("EAPI", "8"),
            ("KEYWORDS", keywords.as_str()),
            ("LICENSE", "MIT"),
            (
                "DESCRIPTION",
                "built by the swarm stand-in builder, not a real package",
            ),
            ("DEFINED_PHASES", "-"),
            ("BUILD_TIME", &now.to_string()),
            ("repository", "gentoo"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let pf = cpv.rsplit('/').next().unwrap_or(cpv);
        let doc = format!("usr/share/doc/swarm-standin/{pf}.txt");
        let text = format!("stand-in for {cpv}\n");
        // A virtual installs nothing, as a real one does.
        let files: Vec<(&str, &[u8])> = if cpv.starts_with("virtual/") {
            Vec::new()
        } else {
            vec![(doc.as_str(), text.as_bytes())]
        };
        swarm_net::binpkg::write_gpkg(cpv, &meta, &files, &self.out)
            .with_context(|| format!("writing the stand-in package {}", self.out.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_says_it_is_a_stand_in() {
        assert!(SCRIPT.contains("STAND-IN BUILDER -- NOT A REAL BUILDER"));
    }
}
