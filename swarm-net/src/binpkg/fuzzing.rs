//! The body of the `binpkg` fuzz target (`fuzz/fuzz_targets/binpkg.rs`), here so that
//! `cargo test` also runs the committed corpus (`fuzz/corpus/binpkg/`).

use super::{inspect_bytes, xpak, Limits};

/// Limits small enough that one fuzz input costs milliseconds.
pub fn fuzz_limits() -> Limits {
    Limits {
        max_members: 16,
        max_manifest_bytes: 64 << 10,
        max_metadata_compressed_bytes: 256 << 10,
        max_metadata_bytes: 1 << 20,
        max_metadata_entries: 256,
        max_image_bytes: 4 << 20,
        max_image_ratio: 100,
        max_image_entries: 10_000,
        max_tar_extension_bytes: 4 << 10,
        zstd_window_log_max: 20,
        xz_memlimit_bytes: 16 << 20,
    }
}

/// Inspects `data` as a binary package (and, when it is one, as a bare XPAK segment).
/// Never panics on any input; panics if an accepted package's facts are inconsistent.
pub fn inspect_bytes_checked(data: &[u8]) {
    let limits = fuzz_limits();
    if data.starts_with(b"XPAKPACK") {
        let _ = xpak::parse_segment(data, limits.max_metadata_entries);
    }
    if let Ok(pkg) = inspect_bytes(data, &limits) {
        assert_eq!(pkg.size, data.len() as u64, "size is the file's");
        assert_eq!(
            pkg.sha256,
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(data)),
            "sha256 is over the whole file"
        );
        let (cat, pf) = pkg.cpv.split_once('/').expect("cpv has a category");
        assert!(!cat.is_empty() && !pf.is_empty(), "cpv {}", pkg.cpv);
        assert!(
            pkg.metadata.contains_key("SLOT"),
            "an accepted package has a SLOT"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap stand-in for the fuzzer that `cargo test` can afford: seeded byte flips,
    /// truncations and splices of each corpus file, none of which may panic.
    #[test]
    fn mutations_of_the_corpus_never_panic() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/binpkg");
        let mut m = crate::mutate::Mutator::new(0x5eed_b1a5);
        for entry in std::fs::read_dir(&dir).expect("corpus").flatten() {
            let orig = std::fs::read(entry.path()).expect("read");
            if orig.is_empty() {
                continue;
            }
            for _ in 0..150 {
                let data = m.mutate(&orig);
                inspect_bytes_checked(&data);
            }
        }
    }

    /// Runs every file of the committed corpus, so a crash the fuzzer found stays fixed.
    #[test]
    fn the_committed_corpus_runs_clean() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/binpkg");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/binpkg exists") {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("read");
            inspect_bytes_checked(&data);
            n += 1;
        }
        assert!(n >= 5, "the corpus has {n} files");
    }
}
