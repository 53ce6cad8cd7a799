//! What a binary package is once validated, the bounds on reading one, and
//! why one is refused: the types every reader in `binpkg` shares, kept in a
//! leaf so the readers depend on it rather than on each other.

use std::collections::BTreeMap;
use std::path::Path;

/// Which of Portage's two binary package formats a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// GLEP 78 `.gpkg.tar`: Portage's default since 3.0.
    Gpkg,
    /// The older `.tbz2` / `.xpak`: a compressed tar with an XPAK metadata trailer.
    Xpak,
}

impl Format {
    /// The file extension Portage gives this format (without a build id).
    pub fn extension(self) -> &'static str {
        match self {
            Format::Gpkg => ".gpkg.tar",
            Format::Xpak => ".tbz2",
        }
    }
}

/// A binary package that passed [`inspect`]: what a `Packages` index entry needs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BinPkg {
    /// Which format the file is, by content.
    pub format: Format,
    /// `category/pf` from the package's own CATEGORY and PF, e.g. `dev-libs/libfoo-1.2`.
    pub cpv: String,
    /// The package's BUILD_ID (binpkg-multi-instance), when it has one.
    pub build_id: Option<u64>,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// Lowercase hex MD5 of the whole file (an index digest Portage checks).
    pub md5: String,
    /// Lowercase hex SHA1 of the whole file (an index digest Portage checks).
    pub sha1: String,
    /// Lowercase hex SHA256 of the whole file.
    pub sha256: String,
    /// Lowercase hex BLAKE2B (512-bit) of the whole file.
    pub blake2b: String,
    /// The per-entry keys of Portage's `Packages` index ([`INDEX_KEYS`], plus DESCRIPTION),
    /// whitespace-normalised; empty values are left out, as Portage leaves them out.
    pub metadata: BTreeMap<String, String>,
    /// Whether the package carries signatures (`.sig` members or a signed Manifest).
    /// They are not verified here.
    pub signed: bool,
}

impl BinPkg {
    /// The SLOT without its sub-slot (`0` for `0/1.2`).
    pub fn slot(&self) -> &str {
        let slot = self.metadata.get("SLOT").map(String::as_str).unwrap_or("0");
        slot.split('/').next().unwrap_or(slot)
    }

    /// The sub-slot, when the SLOT has one (`1.2` for `0/1.2`).
    pub fn sub_slot(&self) -> Option<&str> {
        self.metadata.get("SLOT")?.split_once('/').map(|(_, s)| s)
    }

    /// The category part of the CPV.
    pub fn category(&self) -> &str {
        self.cpv.split_once('/').map(|(c, _)| c).unwrap_or("")
    }

    /// The `pf` part of the CPV (name and version).
    pub fn pf(&self) -> &str {
        self.cpv.split_once('/').map(|(_, pf)| pf).unwrap_or("")
    }

    /// The file name Portage gives this package in a multi-instance PKGDIR:
    /// `<pf>-<build id>.gpkg.tar`, or `<pf>.gpkg.tar` / `<pf>.tbz2` without a build id.
    pub fn file_name(&self) -> String {
        match (self.format, self.build_id) {
            (Format::Gpkg, Some(id)) => format!("{}-{id}.gpkg.tar", self.pf()),
            (Format::Xpak, Some(id)) => format!("{}-{id}.xpak", self.pf()),
            (format, None) => format!("{}{}", self.pf(), format.extension()),
        }
    }
}

/// Bounds on what inspecting one package may cost. The defaults fit every real package
/// (a full texlive or a browser) with room to spare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Members of a gpkg's outer tar (a real one has 4 to 7).
    pub max_members: u64,
    /// Bytes of the Manifest.
    pub max_manifest_bytes: u64,
    /// Bytes of the compressed metadata archive (held in memory).
    pub max_metadata_compressed_bytes: u64,
    /// Bytes of the decompressed metadata archive (held in memory).
    pub max_metadata_bytes: u64,
    /// Entries in the metadata archive or XPAK index.
    pub max_metadata_entries: u64,
    /// Decompressed bytes of the image archive (streamed, never held).
    pub max_image_bytes: u64,
    /// Decompressed bytes per compressed byte of the image, above a 64 MiB allowance.
    pub max_image_ratio: u64,
    /// Entries (files, directories, links) in the image.
    pub max_image_entries: u64,
    /// Bytes of a tar extension header (long name, PAX record).
    pub max_tar_extension_bytes: u64,
    /// Largest zstd window, as log2 of bytes (27 = 128 MiB, zstd's default limit). A file
    /// over it is read again with Portage's [`super::ZSTD_WINDOW_LOG_PORTAGE`], one at a time.
    pub zstd_window_log_max: u32,
    /// Memory the xz decoder may use.
    pub xz_memlimit_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_members: 32,
            max_manifest_bytes: 1 << 20,
            max_metadata_compressed_bytes: 32 << 20,
            max_metadata_bytes: 64 << 20,
            max_metadata_entries: 1024,
            max_image_bytes: 64 << 30,
            max_image_ratio: 1000,
            max_image_entries: 4_000_000,
            max_tar_extension_bytes: 64 << 10,
            zstd_window_log_max: 27,
            xz_memlimit_bytes: 256 << 20,
        }
    }
}

/// Why a file is not a valid binary package. Each message names the problem so an
/// uploader can fix it; [`BinPkgError::kind`] gives a stable short code for scripts.
#[derive(Debug, thiserror::Error)]
pub enum BinPkgError {
    /// The file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Zero bytes.
    #[error("the file is empty")]
    Empty,
    /// Starts with a block of zero bytes, as a zero-filled or preallocated file does.
    #[error("the file starts with {0} zero bytes: not a binary package (a zero-filled file?)")]
    Zeros(u64),
    /// Neither a gpkg nor a tbz2.
    #[error("not a binary package: {0}")]
    UnknownFormat(String),
    /// The file ends before its archive does.
    #[error("truncated: {0}")]
    Truncated(String),
    /// A tar archive that cannot be read.
    #[error("bad tar archive: {0}")]
    Tar(String),
    /// A gpkg whose members are not what GLEP 78 requires.
    #[error("bad gpkg layout: {0}")]
    Layout(String),
    /// A Manifest that is missing, malformed or does not match the members.
    #[error("Manifest: {0}")]
    Manifest(String),
    /// Package metadata that is missing or invalid.
    #[error("bad metadata: {0}")]
    Metadata(String),
    /// A tbz2 whose XPAK trailer is missing or malformed.
    #[error("bad xpak: {0}")]
    Xpak(String),
    /// Compressed data that is corrupt or uses an unsupported method.
    #[error("compression: {0}")]
    Compression(String),
    /// Over one of the [`Limits`].
    #[error("over a limit: {0}")]
    Limit(String),
    /// [`write_gpkg`] was given something it cannot write.
    #[error("cannot write a gpkg: {0}")]
    Write(String),
}

impl BinPkgError {
    /// A stable short code: `io`, `empty`, `zeros`, `unknown-format`, `truncated`, `tar`,
    /// `layout`, `manifest`, `metadata`, `xpak`, `compression`, `limit`, `write`.
    pub fn kind(&self) -> &'static str {
        match self {
            BinPkgError::Io { .. } => "io",
            BinPkgError::Empty => "empty",
            BinPkgError::Zeros(_) => "zeros",
            BinPkgError::UnknownFormat(_) => "unknown-format",
            BinPkgError::Truncated(_) => "truncated",
            BinPkgError::Tar(_) => "tar",
            BinPkgError::Layout(_) => "layout",
            BinPkgError::Manifest(_) => "manifest",
            BinPkgError::Metadata(_) => "metadata",
            BinPkgError::Xpak(_) => "xpak",
            BinPkgError::Compression(_) => "compression",
            BinPkgError::Limit(_) => "limit",
            BinPkgError::Write(_) => "write",
        }
    }

    /// An IO error on the package being read; [`super::inspect_with`] adds the path.
    pub(super) fn read(source: std::io::Error) -> Self {
        BinPkgError::Io {
            path: String::new(),
            source,
        }
    }

    /// An IO error on the file at `path`.
    pub(super) fn io(path: &Path, source: std::io::Error) -> Self {
        BinPkgError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Anything `inspect` can read: a file or an in-memory buffer.
pub(super) trait Source: std::io::Read + std::io::Seek {}
impl<T: std::io::Read + std::io::Seek> Source for T {}
