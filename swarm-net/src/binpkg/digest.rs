//! Digests computed while the bytes stream past, so a package is read from disk once.

use blake2::Blake2b512;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use std::io::{self, Read};

/// The digests of a whole file that a `Packages` index can carry.
#[derive(Default)]
pub(super) struct FileDigests {
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    blake2b: Blake2b512,
}

/// Lowercase hex of each [`FileDigests`] digest.
pub(super) struct FileHex {
    pub(super) md5: String,
    pub(super) sha1: String,
    pub(super) sha256: String,
    pub(super) blake2b: String,
}

impl FileDigests {
    fn update(&mut self, data: &[u8]) {
        self.md5.update(data);
        self.sha1.update(data);
        self.sha256.update(data);
        self.blake2b.update(data);
    }

    pub(super) fn finish(self) -> FileHex {
        FileHex {
            md5: hex::encode(self.md5.finalize()),
            sha1: hex::encode(self.sha1.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
            blake2b: hex::encode(self.blake2b.finalize()),
        }
    }
}

/// `[("BLAKE2B", hex), ("SHA512", hex)]` of one member.
pub(super) type ManifestDigests = [(&'static str, String); 2];

/// A member's file name, size and Manifest digests.
pub(super) type Hashed = (String, u64, ManifestDigests);

/// The digests a gpkg Manifest records per member (Portage's `MANIFEST2_HASH_DEFAULTS`).
#[derive(Default)]
pub(super) struct MemberDigests {
    blake2b: Blake2b512,
    sha512: Sha512,
}

impl MemberDigests {
    pub(super) fn update(&mut self, data: &[u8]) {
        self.blake2b.update(data);
        self.sha512.update(data);
    }

    /// `[("BLAKE2B", hex), ("SHA512", hex)]`, the Manifest's names.
    pub(super) fn finish(self) -> ManifestDigests {
        [
            ("BLAKE2B", hex::encode(self.blake2b.finalize())),
            ("SHA512", hex::encode(self.sha512.finalize())),
        ]
    }
}

/// Something fed with every byte a [`Tee`] passes on.
pub(super) trait Sink {
    fn feed(&mut self, data: &[u8]);
}

impl Sink for FileDigests {
    fn feed(&mut self, data: &[u8]) {
        self.update(data);
    }
}

impl Sink for MemberDigests {
    fn feed(&mut self, data: &[u8]) {
        self.update(data);
    }
}

/// A reader that feeds what it reads to a [`Sink`] and counts it.
pub(super) struct Tee<R, S> {
    pub(super) inner: R,
    pub(super) sink: S,
    pub(super) count: u64,
}

impl<R: Read, S: Sink> Tee<R, S> {
    pub(super) fn new(inner: R, sink: S) -> Self {
        Tee {
            inner,
            sink,
            count: 0,
        }
    }

    /// Reads the rest of the input, so the sink has seen every byte.
    pub(super) fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }
}

impl<R: Read, S: Sink> Read for Tee<R, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = buf.get(..n).unwrap_or(&[]);
        self.sink.feed(got);
        self.count += n as u64;
        Ok(n)
    }
}
