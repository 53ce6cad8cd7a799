//! Writing a valid gpkg, as Portage's `gpkg.compress` lays one out: `<basename>/gpkg-1`,
//! `metadata.tar.zst`, `image.tar.zst` and a Manifest with BLAKE2B and SHA512 digests.

use super::digest::MemberDigests;
use super::model::BinPkgError;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use swarm_core::Atom;

/// Writes a gpkg for `cpv` (`category/pf`, e.g. `dev-libs/libfoo-1.2`) to `out`, atomically
/// (a temporary file in the same directory, then a rename), creating `out`'s directory.
///
/// `metadata` holds Portage's metadata keys (`SLOT`, `EAPI`, `KEYWORDS`, `USE`, `RDEPEND`,
/// `BUILD_ID`, ...); CATEGORY and PF come from `cpv`, SLOT defaults to `0` and EAPI to `8`.
/// With a BUILD_ID the package's directory inside the archive is `<pf>-<id>`, as Portage
/// names it. `files` are the installed files, by path relative to the root (`usr/bin/x`).
/// Real Portage installs the result (`emerge --usepkgonly`); [`super::inspect`] accepts it.
pub fn write_gpkg(
    cpv: &str,
    metadata: &BTreeMap<String, String>,
    files: &[(&str, &[u8])],
    out: &Path,
) -> Result<(), BinPkgError> {
    let bad = |m: String| BinPkgError::Write(m);
    let cpv = cpv.trim_start_matches('=');
    let atom = Atom::parse(&format!("={cpv}")).map_err(|e| bad(format!("{cpv:?}: {e}")))?;
    if atom.pf() == atom.pn() || format!("{}/{}", atom.category(), atom.pf()) != cpv {
        return Err(bad(format!("{cpv:?} is not category/name-version")));
    }
    let mut meta = metadata.clone();
    for (key, value) in [("CATEGORY", atom.category()), ("PF", atom.pf())] {
        match meta.get(key) {
            Some(v) if v.trim() != value => {
                return Err(bad(format!("{key} {v:?} contradicts the CPV {cpv}")))
            }
            _ => {
                meta.insert(key.to_string(), value.to_string());
            }
        }
    }
    meta.entry("SLOT".into()).or_insert_with(|| "0".into());
    meta.entry("EAPI".into()).or_insert_with(|| "8".into());
    let basename = match meta.get("BUILD_ID").map(|s| s.trim()) {
        Some(id) if !id.is_empty() => {
            id.parse::<u64>()
                .map_err(|_| bad(format!("BUILD_ID {id:?} is not a number")))?;
            format!("{}-{id}", atom.pf())
        }
        _ => atom.pf().to_string(),
    };
    let mtime = meta
        .get("BUILD_TIME")
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or_else(now_s);

    let metadata_tar = zstd_tar(|b| {
        for (key, value) in &meta {
            if key.is_empty() || key.contains(['/', '\0']) || key.len() > 90 {
                return Err(bad(format!("metadata key {key:?} is not a file name")));
            }
            let mut text = value.clone().into_bytes();
            if !text.ends_with(b"\n") {
                text.push(b'\n');
            }
            append(
                b,
                &format!("metadata/{key}"),
                &text,
                0o644,
                mtime,
                tar::EntryType::Regular,
            )?;
        }
        let env = environment(&meta)?;
        append(
            b,
            "metadata/environment.bz2",
            &env,
            0o644,
            mtime,
            tar::EntryType::Regular,
        )?;
        Ok(())
    })?;
    let image_tar = zstd_tar(|b| {
        append(b, "image", &[], 0o755, mtime, tar::EntryType::Directory)?;
        let mut dirs = std::collections::BTreeSet::new();
        for (path, data) in files {
            let rel = path.trim_start_matches('/');
            if rel.is_empty()
                || rel
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
            {
                return Err(bad(format!(
                    "file path {path:?} is not a plain relative path"
                )));
            }
            let mut parent = String::from("image");
            for comp in rel
                .split('/')
                .collect::<Vec<_>>()
                .split_last()
                .map(|(_, d)| d)
                .unwrap_or(&[])
            {
                parent = format!("{parent}/{comp}");
                if dirs.insert(parent.clone()) {
                    append(b, &parent, &[], 0o755, mtime, tar::EntryType::Directory)?;
                }
            }
            append(
                b,
                &format!("image/{rel}"),
                data,
                0o644,
                mtime,
                tar::EntryType::Regular,
            )?;
        }
        Ok(())
    })?;

    let members: [(&str, &[u8]); 3] = [
        ("gpkg-1", &[]),
        ("metadata.tar.zst", &metadata_tar),
        ("image.tar.zst", &image_tar),
    ];
    let mut manifest = String::new();
    for (name, data) in &members {
        let mut d = MemberDigests::default();
        d.update(data);
        let [(h1, x1), (h2, x2)] = d.finish();
        manifest.push_str(&format!("DATA {name} {} {h1} {x1} {h2} {x2}\n", data.len()));
    }

    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e: std::io::Error| BinPkgError::Io {
        path: out.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.{}.partial",
        out.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut b = tar::Builder::new(std::io::BufWriter::new(file));
        for (name, data) in members
            .iter()
            .copied()
            .chain([("Manifest", manifest.as_bytes())])
        {
            append(
                &mut b,
                &format!("{basename}/{name}"),
                data,
                0o644,
                mtime,
                tar::EntryType::Regular,
            )?;
        }
        let w = b.into_inner().map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, out).map_err(io)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The saved ebuild environment Portage sources for a binary package's merge phases
/// (`environment.bz2`): here only the metadata, as `declare -x` lines.
fn environment(meta: &BTreeMap<String, String>) -> Result<Vec<u8>, BinPkgError> {
    let mut text = String::new();
    for (key, value) in meta {
        let ident = key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if ident {
            text.push_str(&format!(
                "declare -x {key}='{}'\n",
                value.trim().replace('\'', "'\\''")
            ));
        }
    }
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    enc.write_all(text.as_bytes())
        .and_then(|_| enc.finish())
        .map_err(|e| BinPkgError::Write(format!("environment.bz2: {e}")))
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A zstd-compressed tar built by `fill`.
fn zstd_tar(
    fill: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> Result<(), BinPkgError>,
) -> Result<Vec<u8>, BinPkgError> {
    let mut b = tar::Builder::new(Vec::new());
    fill(&mut b)?;
    let tar = b
        .into_inner()
        .map_err(|e| BinPkgError::Write(format!("tar: {e}")))?;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3)
        .map_err(|e| BinPkgError::Write(format!("zstd: {e}")))?;
    enc.write_all(&tar)
        .map_err(|e| BinPkgError::Write(format!("zstd: {e}")))?;
    enc.finish()
        .map_err(|e| BinPkgError::Write(format!("zstd: {e}")))
}

/// Appends one ustar member (the `tar` crate adds a GNU long-name record when needed).
fn append<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    data: &[u8],
    mode: u32,
    mtime: u64,
    kind: tar::EntryType,
) -> Result<(), BinPkgError> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, path, data)
        .map_err(|e| BinPkgError::Write(format!("{path}: {e}")))
}
