//! From a package's metadata files to a [`BinPkg`]: its identity and the keys a
//! `Packages` index carries, read as Portage's `binarytree._read_metadata` reads them.

use super::digest::FileHex;
use super::meta_rules;
use super::model::{BinPkg, BinPkgError, Format};
use std::collections::BTreeMap;
use swarm_core::Atom;

/// The per-package keys Portage's `Packages` index carries that come from the package's
/// metadata (`bindbapi._aux_cache_keys` without the file-derived MD5, SIZE and mtime).
/// `emaint binhost --fix` writes these, when not empty.
pub const INDEX_KEYS: &[&str] = &[
    "BDEPEND",
    "BUILD_ID",
    "BUILD_TIME",
    "CHOST",
    "DEFINED_PHASES",
    "DEPEND",
    "EAPI",
    "IDEPEND",
    "IUSE",
    "KEYWORDS",
    "LICENSE",
    "PDEPEND",
    "PROPERTIES",
    "PROVIDES",
    "RDEPEND",
    "REQUIRES",
    "RESTRICT",
    "SLOT",
    "USE",
    "USER_PATCHES",
    "repository",
];

/// Keys [`BinPkg::metadata`] carries beyond [`INDEX_KEYS`]. Portage's index accepts them
/// (DESCRIPTION is written as `DESC`) but `emaint binhost --fix` leaves them out.
pub const EXTRA_KEYS: &[&str] = &["DESCRIPTION"];

/// Longest metadata value kept (a DEPEND of a meta-package can be long, but not this long).
const MAX_VALUE_BYTES: usize = 1 << 20;

/// Builds the [`BinPkg`] from metadata files (`KEY` → raw bytes) and the file's digests.
pub(super) fn build(
    format: Format,
    files: &BTreeMap<String, Vec<u8>>,
    size: u64,
    digests: FileHex,
    signed: bool,
) -> Result<BinPkg, BinPkgError> {
    let bad = |m: String| BinPkgError::Metadata(m);
    let get = |k: &str| -> Option<String> {
        files
            .get(k)
            .map(|v| normalise(&String::from_utf8_lossy(&v[..v.len().min(MAX_VALUE_BYTES)])))
    };
    let category = get("CATEGORY").filter(|s| !s.is_empty());
    let pf = get("PF").filter(|s| !s.is_empty());
    let slot = get("SLOT").filter(|s| !s.is_empty());
    let missing: Vec<&str> = [("CATEGORY", &category), ("PF", &pf), ("SLOT", &slot)]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| *k)
        .collect();
    let (Some(category), Some(pf), Some(_)) = (category, pf, slot) else {
        return Err(bad(format!(
            "missing {}: Portage calls such a package not recoverable",
            missing.join(", ")
        )));
    };
    let cpv = check_cpv(&category, &pf)?;
    let build_id = match get("BUILD_ID").filter(|s| !s.is_empty()) {
        None => None,
        Some(id) => Some(
            id.parse::<u64>()
                .map_err(|_| bad(format!("BUILD_ID {id:?} is not a number")))?,
        ),
    };
    let mut metadata = BTreeMap::new();
    for key in INDEX_KEYS.iter().chain(EXTRA_KEYS) {
        let value = match get(key) {
            None if *key == "EAPI" => "0".to_string(),
            None => continue,
            Some(v) => v,
        };
        if !value.is_empty() {
            metadata.insert(key.to_string(), value);
        }
    }
    meta_rules::check(&metadata)?;
    Ok(BinPkg {
        format,
        cpv,
        build_id,
        size,
        md5: digests.md5,
        sha1: digests.sha1,
        sha256: digests.sha256,
        blake2b: digests.blake2b,
        metadata,
        signed,
    })
}

/// Collapses runs of whitespace to one space and trims, as Portage's `" ".join(v.split())`.
fn normalise(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `category/pf` when it is a valid versioned package name.
fn check_cpv(category: &str, pf: &str) -> Result<String, BinPkgError> {
    let cpv = format!("{category}/{pf}");
    let atom = Atom::parse(&format!("={cpv}"))
        .map_err(|e| BinPkgError::Metadata(format!("CATEGORY/PF {cpv:?} is not a package: {e}")))?;
    if atom.category() != category || atom.pf() != pf || atom.pn() == pf {
        return Err(BinPkgError::Metadata(format!(
            "CATEGORY/PF {cpv:?} is not a versioned package name"
        )));
    }
    Ok(cpv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex() -> FileHex {
        FileHex {
            md5: String::new(),
            sha1: String::new(),
            sha256: String::new(),
            blake2b: String::new(),
        }
    }

    fn files(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn values_are_normalised_and_empty_ones_left_out() {
        let f = files(&[
            ("CATEGORY", "dev-libs\n"),
            ("PF", "foo-1.0\n"),
            ("SLOT", "0/1\n"),
            ("EAPI", "8\n"),
            ("RDEPEND", "  a/b\n\tc/d  \n"),
            ("DEPEND", "\n"),
            ("BUILD_ID", "7\n"),
            ("HOMEPAGE", "https://x\n"),
        ]);
        let p = build(Format::Gpkg, &f, 1, hex(), false).expect("valid");
        assert_eq!(p.cpv, "dev-libs/foo-1.0");
        assert_eq!(p.build_id, Some(7));
        assert_eq!(p.metadata["RDEPEND"], "a/b c/d");
        assert_eq!(p.metadata["EAPI"], "8");
        assert!(!p.metadata.contains_key("DEPEND"));
        assert!(!p.metadata.contains_key("HOMEPAGE"), "not an index key");
        assert_eq!((p.slot(), p.sub_slot()), ("0", Some("1")));
        assert_eq!(p.file_name(), "foo-1.0-7.gpkg.tar");
    }

    #[test]
    fn identity_keys_are_required_and_checked() {
        let e = build(Format::Gpkg, &files(&[("PF", "foo-1")]), 1, hex(), false)
            .expect_err("no CATEGORY");
        assert!(e.to_string().contains("missing CATEGORY, SLOT"), "{e}");
        for (cat, pf) in [("dev-libs", "foo"), ("dev libs", "foo-1"), ("a/b", "foo-1")] {
            let f = files(&[("CATEGORY", cat), ("PF", pf), ("SLOT", "0")]);
            assert!(
                build(Format::Gpkg, &f, 1, hex(), false).is_err(),
                "{cat}/{pf}"
            );
        }
        let f = files(&[
            ("CATEGORY", "a"),
            ("PF", "b-1"),
            ("SLOT", "0"),
            ("BUILD_ID", "x"),
        ]);
        assert!(build(Format::Gpkg, &f, 1, hex(), false).is_err());
        let f = files(&[("CATEGORY", "a"), ("PF", "b-1"), ("SLOT", "0")]);
        let p = build(Format::Gpkg, &f, 1, hex(), false).expect("valid");
        assert_eq!(p.metadata["EAPI"], "0", "Portage's default EAPI");
    }
}
