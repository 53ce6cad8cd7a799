//! Binary packages as Portage reads them: validation and metadata.
//!
//! [`inspect`] takes a `.gpkg.tar` (GLEP 78) or a `.tbz2` (a compressed tar with an XPAK
//! trailer) and checks it the way Portage does before it installs one, so nothing reaches a
//! binhost that a client would refuse:
//! - gpkg: an outer tar whose members all sit in one `<basename>/` directory, holding
//!   `gpkg-1`, exactly one `metadata.tar[.comp]`, exactly one `image.tar[.comp]` and a
//!   `Manifest` that lists every other member with its size and BLAKE2B/SHA512 digests
//!   (`.sig` members are checked like any other member; signatures themselves are not verified);
//! - tbz2: the `XPAKPACK … XPAKSTOP <len> STOP` trailer and a readable tar in front of it;
//! - both: the image archive decompresses to a tar whose paths stay inside the image and that
//!   passes the checks Portage's `tar_safe_extract` makes (`image_rules`: no devices or FIFOs,
//!   no duplicates, hard links only to earlier members, nothing written through a symlink
//!   that leads out); every tar header means the same to Python's `tarfile` as to the `tar`
//!   crate (`tarwalk`); the metadata names a valid `CATEGORY/PF` with a `SLOT`, and its EAPI,
//!   SLOT, `*DEPEND` and repository are ones a client does not mask (`meta_rules`).
//!
//! It returns the package's identity, the digests of the whole file that Portage checks
//! against a `Packages` index (MD5, SHA1, SHA256, BLAKE2B) and the metadata that the index
//! carries per entry ([`INDEX_KEYS`], normalised as `emaint binhost --fix` writes them).
//!
//! Everything is bounded ([`Limits`]): member counts, metadata size, decompressed image size
//! and ratio, compression windows. A zip bomb or a huge member costs bounded memory and at
//! most a bounded amount of decompression.
//!
//! [`write_gpkg`] makes a valid gpkg (Manifest included) that real Portage installs; the
//! stand-in builder, tests and benchmarks use it.
//!
//! Archive formats are read with the `tar`, `zstd`, `flate2`, `bzip2`, `liblzma` and
//! `lz4_flex` crates; only XPAK's small index format is parsed here.

mod compress;
mod digest;
mod gpkg;
mod image_rules;
mod manifest;
mod meta;
mod meta_rules;
mod model;
pub mod signature;
mod tar_member;
mod tarwalk;
mod write;
mod xpak;

pub mod fuzzing;
#[cfg(test)]
mod tests;

/// The packages a Portage installed-package database (`EPREFIX/var/db/pkg`)
/// lists, as sorted `category/pf`: what a machine really has installed, for
/// the emerge demo's report and the binhost tests. Empty when it does not exist.
pub fn installed(vdb: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for cat in std::fs::read_dir(vdb).into_iter().flatten().flatten() {
        for pkg in std::fs::read_dir(cat.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(format!(
                "{}/{}",
                cat.file_name().to_string_lossy(),
                pkg.file_name().to_string_lossy()
            ));
        }
    }
    out.sort();
    out
}

pub use compress::drone_setting_refusal;
pub use meta::{EXTRA_KEYS, INDEX_KEYS};
use model::Source;
pub use model::{BinPkg, BinPkgError, Format, Limits};
pub use write::write_gpkg;

use std::path::Path;

/// Validates the binary package at `path` fully, with the default [`Limits`].
pub fn inspect(path: &Path) -> Result<BinPkg, BinPkgError> {
    inspect_with(path, &Limits::default())
}

/// A FIFO or device put in staging must not hold the request thread that inspects it.
fn open_regular(path: &Path) -> Result<(std::fs::File, u64), BinPkgError> {
    crate::regular_file::open_regular(path).map_err(|e| BinPkgError::io(path, e))
}

/// Validates the binary package at `path` fully, within `limits`.
pub fn inspect_with(path: &Path, limits: &Limits) -> Result<BinPkg, BinPkgError> {
    inspect_file(path, limits, None)
}

/// Validates the binary package at `path`, which its name says is a `format` package: a
/// `.tbz2` without an XPAK trailer is then refused as such rather than as "not a package".
pub fn inspect_as(path: &Path, format: Format, limits: &Limits) -> Result<BinPkg, BinPkgError> {
    inspect_file(path, limits, Some(format))
}

/// The largest zstd window Portage decodes (`zstd -d --long=31`, `compression_probe.py`):
/// `BINPKG_COMPRESS_FLAGS="--long=31"` is a valid setting.
pub const ZSTD_WINDOW_LOG_PORTAGE: u32 = 31;

/// One package at a time is read with a window over [`Limits::zstd_window_log_max`]: such
/// a window may take up to 2 GiB, so many at once could exhaust the server's memory.
static LONG_WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn inspect_file(
    path: &Path,
    limits: &Limits,
    format: Option<Format>,
) -> Result<BinPkg, BinPkgError> {
    let once = |limits: &Limits| {
        let (mut file, size) = open_regular(path)?;
        inspect_reader(&mut file, size, limits, format).map_err(|e| match e {
            BinPkgError::Io { source, .. } => BinPkgError::io(path, source),
            other => other,
        })
    };
    match once(limits) {
        // zstd's own words for a frame whose window is over the limit.
        Err(e)
            if limits.zstd_window_log_max < ZSTD_WINDOW_LOG_PORTAGE
                && e.to_string().contains("Frame requires too much memory") =>
        {
            let _one = LONG_WINDOW.lock().unwrap_or_else(|p| p.into_inner());
            once(&Limits {
                zstd_window_log_max: ZSTD_WINDOW_LOG_PORTAGE,
                ..limits.clone()
            })
        }
        other => other,
    }
}

/// Validates a binary package held in memory (the fuzz target and small tests use this).
pub fn inspect_bytes(bytes: &[u8], limits: &Limits) -> Result<BinPkg, BinPkgError> {
    inspect_reader(
        &mut std::io::Cursor::new(bytes),
        bytes.len() as u64,
        limits,
        None,
    )
}

fn inspect_reader(
    src: &mut dyn Source,
    size: u64,
    limits: &Limits,
    expected: Option<Format>,
) -> Result<BinPkg, BinPkgError> {
    let format = detect(src, size, expected)?;
    match format {
        Format::Gpkg => gpkg::inspect(src, size, limits),
        Format::Xpak => xpak::inspect(src, size, limits),
    }
}

/// Tells the format from the content, as Portage's `get_binpkg_format(check_file=True)`
/// does: an XPAK trailer at the end, or a tar header at the start.
fn detect(
    src: &mut dyn Source,
    size: u64,
    expected: Option<Format>,
) -> Result<Format, BinPkgError> {
    use std::io::SeekFrom;
    let io = BinPkgError::read;
    if size == 0 {
        return Err(BinPkgError::Empty);
    }
    let mut head = vec![0u8; size.min(512) as usize];
    src.seek(SeekFrom::Start(0)).map_err(io)?;
    src.read_exact(&mut head).map_err(io)?;
    if head.iter().all(|b| *b == 0) {
        return Err(BinPkgError::Zeros(head.len() as u64));
    }
    if size >= 16 {
        let mut tail = [0u8; 16];
        src.seek(SeekFrom::End(-16)).map_err(io)?;
        src.read_exact(&mut tail).map_err(io)?;
        if &tail[12..] == b"STOP" && &tail[..8] == b"XPAKSTOP" {
            if expected == Some(Format::Gpkg) {
                return Err(BinPkgError::Layout(
                    "the file is a tbz2 (it ends in an XPAK trailer), not a gpkg".into(),
                ));
            }
            return Ok(Format::Xpak);
        }
    }
    if expected == Some(Format::Xpak) {
        return Err(BinPkgError::Xpak(
            "no XPAK trailer: a tbz2 must end in XPAKSTOP, the XPAK length and STOP".into(),
        ));
    }
    if head.get(257..262) == Some(b"ustar".as_slice()) {
        return Ok(Format::Gpkg);
    }
    if let Some(c) = compress::Compression::sniff(&head) {
        return Err(BinPkgError::Xpak(format!(
            "{} data without an XPAK trailer: a tbz2 must end in XPAKSTOP, the XPAK length and STOP",
            c.name()
        )));
    }
    Err(BinPkgError::UnknownFormat(
        "neither a gpkg (no tar header at the start) nor a tbz2 (no XPAK trailer at the end)"
            .into(),
    ))
}
