//! Embeds the fixture ebuild repository of tests/portage/repo in the binary,
//! so `swarm demo --builder emerge` can build it on any machine with Portage.
//! The files stay where the real-Portage tests use them: one copy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let portage = manifest.join("../tests/portage");
    let repo = portage.join("repo");
    println!("cargo:rerun-if-changed={}", repo.display());
    let mut files = Vec::new();
    walk(&repo, &mut files)?;
    files.sort();
    let mut code = String::from(
        "/// The fixture repository (tests/portage/repo): (relative path, contents).\n\
         pub(crate) const FIXTURE_REPO: &[(&str, &[u8])] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&repo)?.to_string_lossy().replace('\\', "/");
        let abs = f.canonicalize()?;
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )?;
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("fixture_repo.rs");
    std::fs::write(out, code)?;
    Ok(())
}
