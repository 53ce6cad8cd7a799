//! The compressions Portage packs binary packages with (`BINPKG_COMPRESS`), read through
//! their crates with bounded memory, and a reader that stops a zip bomb.

use super::model::{BinPkgError, Limits};
use std::io::{self, Read};

/// A compression method of a metadata or image archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compression {
    /// A plain tar (`BINPKG_COMPRESS=none`).
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    Lz4,
    /// Portage can write lzip and lzop; no well-kept crate reads them, so they are refused.
    Lzip,
    Lzop,
}

/// Extensions in the order Portage's `gpkg.ext_list` names them.
const EXTENSIONS: [(&str, Compression); 8] = [
    (".tar", Compression::None),
    (".tar.gz", Compression::Gzip),
    (".tar.bz2", Compression::Bzip2),
    (".tar.lz4", Compression::Lz4),
    (".tar.lz", Compression::Lzip),
    (".tar.lzo", Compression::Lzop),
    (".tar.xz", Compression::Xz),
    (".tar.zst", Compression::Zstd),
];

impl Compression {
    /// Splits `metadata.tar.zst` into `("metadata", Zstd)`, as Portage's
    /// `_extract_filename_compression` does; `None` for a name that is no archive.
    pub(super) fn split_member(name: &str) -> Option<(&str, Compression)> {
        EXTENSIONS
            .iter()
            .find_map(|(ext, c)| name.strip_suffix(ext).map(|stem| (stem, *c)))
    }

    /// Tells the compression from magic bytes, as Portage's `compression_probe` does.
    pub(super) fn sniff(head: &[u8]) -> Option<Compression> {
        let starts = |m: &[u8]| head.starts_with(m);
        if starts(b"BZh") {
            Some(Compression::Bzip2)
        } else if starts(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if starts(&[0x04, 0x22, 0x4d, 0x18]) || starts(&[0x02, 0x21, 0x4c, 0x18]) {
            Some(Compression::Lz4)
        } else if starts(b"LZIP") {
            Some(Compression::Lzip)
        } else if starts(&[0x89, b'L', b'Z', b'O']) {
            Some(Compression::Lzop)
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Some(Compression::Xz)
        } else if head.len() >= 4
            && (0x22..=0x28).contains(&head[0])
            && head[1..4] == [0xb5, 0x2f, 0xfd]
        {
            Some(Compression::Zstd)
        } else {
            None
        }
    }

    /// The name Portage uses in `BINPKG_COMPRESS`.
    pub(super) fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
            Compression::Lzip => "lzip",
            Compression::Lzop => "lzop",
        }
    }

    /// A decoder over `r` whose memory use is bounded by `limits`.
    pub(super) fn decoder<'a>(
        self,
        r: impl Read + 'a,
        what: &str,
        limits: &Limits,
    ) -> Result<Box<dyn Read + 'a>, BinPkgError> {
        let setup = |e: io::Error| {
            BinPkgError::Compression(format!(
                "{what}: cannot start the {} decoder: {e}",
                self.name()
            ))
        };
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
            Compression::Xz => {
                let stream = liblzma::stream::Stream::new_stream_decoder(
                    limits.xz_memlimit_bytes,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(|e| setup(e.into()))?;
                Box::new(liblzma::read::XzDecoder::new_stream(r, stream))
            }
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::new(r).map_err(setup)?;
                d.window_log_max(limits.zstd_window_log_max)
                    .map_err(setup)?;
                Box::new(d)
            }
            Compression::Lz4 => Box::new(lz4_flex::frame::FrameDecoder::new(r)),
            Compression::Lzip | Compression::Lzop => {
                return Err(BinPkgError::Compression(format!(
                    "{what}: {} is not supported; use BINPKG_COMPRESS=zstd (Portage's default), xz, bzip2, gzip or lz4",
                    self.name()
                )))
            }
        })
    }
}

/// Why every package a drone with these Portage settings builds would be refused here, if
/// it would: the agent checks its own `BINPKG_FORMAT` and `BINPKG_COMPRESS` at start, so a
/// setting rolled out to the fleet stops the agents with the fix named, instead of each
/// build being refused and each drone held in turn. An empty format is Portage's default,
/// gpkg; a name Portage itself does not know is left to Portage.
pub fn drone_setting_refusal(format: &str, compress: &str) -> Option<String> {
    let (format, compress) = (format.trim(), compress.trim());
    let gpkg = format.is_empty() || format == "gpkg";
    let instead = "use BINPKG_COMPRESS=zstd (Portage's default), xz, bzip2, gzip or lz4";
    match compress {
        "lzip" | "lzop" => Some(format!(
            "BINPKG_COMPRESS={compress}: no well-kept library reads {compress}, so the server \
             refuses such packages; {instead}"
        )),
        "" | "none" if gpkg => Some(format!(
            "BINPKG_COMPRESS={compress:?} with BINPKG_FORMAT=gpkg packs the image uncompressed, \
             which a Portage client set to any compression cannot install (its emerge hangs), \
             so the server refuses such packages; {instead}"
        )),
        _ => None,
    }
}

/// The payload of an `io::Error` that a [`Bounded`] reader raises, so callers can tell
/// "over a limit" from "corrupt data".
#[derive(Debug)]
pub(super) struct LimitHit(pub(super) String);

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitHit {}

/// Passes at most `limit` bytes through; one byte more is an error, not a silent stop, so
/// a bomb is refused rather than read as a short archive.
pub(super) struct Bounded<R> {
    inner: R,
    limit: u64,
    count: u64,
    what: String,
}

impl<R: Read> Bounded<R> {
    pub(super) fn new(inner: R, limit: u64, what: String) -> Self {
        Bounded {
            inner,
            limit,
            count: 0,
            what,
        }
    }

    #[cfg(test)]
    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::other(LimitHit(format!(
                "{} is larger than {} bytes",
                self.what, self.limit
            ))));
        }
        Ok(n)
    }
}

/// Turns an `io::Error` met while reading `what` into the error that names it: a limit, a
/// file that ends early, or data that does not decode (`otherwise`).
pub(super) fn classify(
    e: io::Error,
    what: &str,
    otherwise: impl FnOnce(String) -> BinPkgError,
) -> BinPkgError {
    if let Some(hit) = e.get_ref().and_then(|r| r.downcast_ref::<LimitHit>()) {
        return BinPkgError::Limit(hit.0.clone());
    }
    // The tar crate reports a header cut short as "failed to read entire block", and padding
    // cut short as "unexpected EOF during skip", both as `Other`.
    if e.kind() == io::ErrorKind::UnexpectedEof || {
        let m = e.to_string();
        m.contains("failed to read entire block") || m.contains("unexpected EOF")
    } {
        return BinPkgError::Truncated(format!("{what} ends early: {e}"));
    }
    otherwise(format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_split_into_stem_and_compression() {
        assert_eq!(
            Compression::split_member("metadata.tar.zst"),
            Some(("metadata", Compression::Zstd))
        );
        assert_eq!(
            Compression::split_member("image.tar"),
            Some(("image", Compression::None))
        );
        assert_eq!(
            Compression::split_member("image.tar.lz"),
            Some(("image", Compression::Lzip))
        );
        assert_eq!(Compression::split_member("Manifest"), None);
    }

    #[test]
    fn a_drone_setting_is_refused_exactly_when_its_packages_would_be() {
        for (format, compress) in [("gpkg", "lzip"), ("xpak", "lzop"), ("gpkg", "none")] {
            let why = drone_setting_refusal(format, compress).expect("refused");
            assert!(
                why.contains("BINPKG_COMPRESS") && why.contains("zstd"),
                "{why}"
            );
        }
        // Portage's default format is gpkg; "" packs it uncompressed as "none" does.
        assert!(drone_setting_refusal("", "").is_some());
        assert!(drone_setting_refusal(" gpkg ", "").is_some());
        for (format, compress) in [
            ("gpkg", "zstd"),
            ("gpkg", "xz"),
            ("gpkg", "bzip2"),
            ("gpkg", "gzip"),
            ("gpkg", "lz4"),
            ("xpak", "zstd"),
            // An xpak's compression is sniffed: an uncompressed one is read and installed.
            ("xpak", ""),
            ("xpak", "none"),
            // Portage warns of a name it does not know; it is not the server's to judge.
            ("gpkg", "brotli"),
        ] {
            assert_eq!(
                drone_setting_refusal(format, compress),
                None,
                "{format} {compress}"
            );
        }
    }

    #[test]
    fn a_bounded_reader_refuses_the_byte_past_its_limit() {
        let mut r = Bounded::new(&[7u8; 100][..], 99, "the image".into());
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).expect_err("over the limit");
        let e = classify(e, "x", BinPkgError::Compression);
        assert_eq!(e.kind(), "limit", "{e}");
        let mut r = Bounded::new(&[7u8; 100][..], 100, "the image".into());
        assert_eq!(r.read_to_end(&mut out).expect("at the limit"), 100);
        assert_eq!(r.count(), 100);
    }

    #[test]
    fn a_zstd_frame_with_a_window_over_the_limit_is_refused() {
        let data = vec![1u8; 1 << 20];
        let packed = zstd::bulk::compress(&data, 3).expect("compress");
        let limits = Limits {
            zstd_window_log_max: 10,
            ..Limits::default()
        };
        let mut d = Compression::Zstd
            .decoder(&packed[..], "image.tar.zst", &limits)
            .expect("decoder");
        let mut out = Vec::new();
        assert!(
            d.read_to_end(&mut out).is_err(),
            "a 1 MiB window passed a 1 KiB limit"
        );
        let mut d = Compression::Zstd
            .decoder(&packed[..], "image.tar.zst", &Limits::default())
            .expect("decoder");
        out.clear();
        d.read_to_end(&mut out).expect("default window");
        assert_eq!(out, data);
    }
}
