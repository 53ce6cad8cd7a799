//! The `Packages` index, written the way Portage's own `PackageIndex.write`
//! writes it for a binary tree (`portage/getbinpkg.py`, configured as
//! `binarytree._new_pkgindex()` configures it):
//!
//! - a header block, keys sorted, empty values left out: `VERSION: 0`,
//!   `TIMESTAMP`, `PACKAGES`, `CHOST` (inherited by the entries), plus the
//!   configuration keys (`PROFILE`, `ACCEPT_KEYWORDS`, ..., see [`super::header`]);
//! - one block per package, sorted by CPV, keys sorted by Portage's internal
//!   names and written with its translations (`_mtime_` → `MTIME`,
//!   `repository` → `REPO`), with the default values left out (`EAPI: 0`,
//!   `SLOT: 0`, empty strings) and `CHOST` left out when the header has it;
//! - LICENSE, RESTRICT, PROPERTIES and the `*DEPEND` fields reduced with the
//!   package's USE ([`super::use_reduce`]);
//! - `MD5` and `SHA1` of the whole file, the digests Portage verifies (its
//!   index reader drops any other digest key), `SIZE` and `PATH`.

use super::use_reduce::{reduce, USE_EVALUATED};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Values Portage leaves out of an entry because its reader fills them in.
const DEFAULTS: &[(&str, &str)] = &[("EAPI", "0"), ("SLOT", "0")];

/// Header keys a caller may not set: the index owns them.
pub const OWN_HEADER_KEYS: &[&str] = &["VERSION", "TIMESTAMP", "PACKAGES"];

/// One package of the index.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexEntry {
    /// `category/pf`.
    pub cpv: String,
    /// The file, relative to the tree the index describes.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// The file's modification time, seconds (Portage's `MTIME`).
    pub mtime_s: u64,
    /// Hex MD5 of the file.
    pub md5: String,
    /// Hex SHA1 of the file.
    pub sha1: String,
    /// The package's metadata, Portage's key names (`SLOT`, `repository`, ...).
    pub metadata: BTreeMap<String, String>,
}

/// The CHOST most entries have (the header carries it once); ties go to the
/// smallest name so the choice is stable.
pub fn common_chost(entries: &[IndexEntry]) -> Option<String> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for e in entries {
        if let Some(c) = e.metadata.get("CHOST").filter(|c| !c.is_empty()) {
            *count.entry(c.as_str()).or_default() += 1;
        }
    }
    let best = count.values().copied().max()?;
    count
        .into_iter()
        .find(|(_, n)| *n == best)
        .map(|(c, _)| c.to_string())
}

/// Renders the header block for `packages` entries.
pub fn render_header(
    extra: &BTreeMap<String, String>,
    chost: Option<&str>,
    timestamp: u64,
    packages: usize,
) -> String {
    let mut h: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in extra {
        if !OWN_HEADER_KEYS.contains(&k.as_str()) {
            h.insert(k.as_str(), v.clone());
        }
    }
    if let Some(c) = chost {
        h.insert("CHOST", c.to_string());
    }
    h.insert("PACKAGES", packages.to_string());
    h.insert("TIMESTAMP", timestamp.to_string());
    h.insert("VERSION", "0".to_string());
    let mut out = String::new();
    for (k, v) in h {
        let v = one_line(&v);
        if !v.is_empty() {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
    out.push('\n');
    out
}

/// Renders one entry block; `path_prefix` is put before `PATH` (a release
/// name when the index lives above the release's tree).
pub fn render_entry(
    e: &IndexEntry,
    header_chost: Option<&str>,
    path_prefix: &str,
    out: &mut String,
) {
    let mut m: BTreeMap<&str, String> = BTreeMap::new();
    let use_flags: BTreeSet<&str> = e
        .metadata
        .get("USE")
        .map(|u| u.split_whitespace().collect())
        .unwrap_or_default();
    for k in crate::binpkg::INDEX_KEYS {
        let Some(v) = e.metadata.get(*k) else {
            continue;
        };
        let v = if USE_EVALUATED.contains(k) {
            match reduce(v, &use_flags, k.ends_with("DEPEND")) {
                Ok(reduced) => reduced,
                Err(why) => {
                    // Portage's own indexer refuses such a package; keep what is stored.
                    tracing::warn!(cpv = %e.cpv, key = %k, "not reduced with USE: {why}");
                    one_line(v)
                }
            }
        } else {
            one_line(v)
        };
        if v.is_empty() || DEFAULTS.iter().any(|(dk, dv)| dk == k && *dv == v) {
            continue;
        }
        if *k == "CHOST" && Some(v.as_str()) == header_chost {
            continue;
        }
        m.insert(k, v);
    }
    m.insert("CPV", e.cpv.clone());
    m.insert("MD5", e.md5.clone());
    m.insert("SHA1", e.sha1.clone());
    m.insert("PATH", format!("{path_prefix}{}", e.path));
    m.insert("SIZE", e.size.to_string());
    m.insert("_mtime_", e.mtime_s.to_string());
    for (k, v) in m {
        let name = match k {
            "_mtime_" => "MTIME",
            "repository" => "REPO",
            other => other,
        };
        let _ = writeln!(out, "{name}: {v}");
    }
    out.push('\n');
}

/// The whole index. Entries are sorted by CPV here, as Portage sorts them.
pub fn render(
    extra: &BTreeMap<String, String>,
    timestamp: u64,
    entries: &mut [IndexEntry],
) -> String {
    entries.sort_by(|a, b| a.cpv.cmp(&b.cpv));
    let chost = common_chost(entries);
    let mut out = render_header(extra, chost.as_deref(), timestamp, entries.len());
    out.reserve(entries.len() * 640);
    for e in entries.iter() {
        render_entry(e, chost.as_deref(), "", &mut out);
    }
    out
}

/// Rewrites an index for serving from the directory above its tree: a new
/// header `TIMESTAMP` and every `PATH` prefixed with `prefix`. Everything
/// else is kept byte for byte, so this is one pass over the text.
pub fn republish(index: &str, timestamp: u64, prefix: &str) -> String {
    let mut out = String::with_capacity(index.len() + index.len() / 20);
    let mut in_header = true;
    for line in index.split_inclusive('\n') {
        if in_header {
            if line == "\n" {
                in_header = false;
            } else if line.starts_with("TIMESTAMP:") {
                let _ = writeln!(out, "TIMESTAMP: {timestamp}");
                continue;
            }
            out.push_str(line);
        } else if let Some(rest) = line.strip_prefix("PATH: ") {
            out.push_str("PATH: ");
            out.push_str(prefix);
            out.push_str(rest);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Reads the `KEY: value` lines of an index's header (the first block).
pub fn read_header(index: &str) -> BTreeMap<String, String> {
    index
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()))
        .collect()
}

/// Most bytes of a reference header read; Portage's own are a few KiB.
const MAX_HEADER_BYTES: u64 = 64 * 1024;

/// The header keys of a `Packages` file Portage wrote (a reference drone's
/// `$PKGDIR/Packages`), minus the ones each index owns (VERSION, TIMESTAMP,
/// PACKAGES) and CHOST, which comes from the entries so that they inherit
/// the right one. Only the first block is read, at most 64 KiB of it.
pub fn header_from_file(path: &std::path::Path) -> Result<BTreeMap<String, String>, String> {
    use std::io::Read as _;
    // An operator's file: a FIFO there held the start for ever.
    let (file, _) =
        crate::regular_file::open_regular(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut head = Vec::new();
    file.take(MAX_HEADER_BYTES + 1)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read: {e}"))?;
    let text = String::from_utf8_lossy(&head);
    let Some(end) = text.find("\n\n") else {
        return Err(if head.len() as u64 > MAX_HEADER_BYTES {
            "the header block is longer than 64 KiB".into()
        } else {
            "no header block (a Packages file starts with `KEY: value` lines and a blank line)"
                .into()
        });
    };
    let mut out = BTreeMap::new();
    for (n, line) in text[..end].lines().enumerate() {
        let Some((k, v)) = line.split_once(':') else {
            return Err(format!(
                "line {}: expected `KEY: value`, got {line:?}",
                n + 1
            ));
        };
        let well_formed = k.starts_with(|c: char| c.is_ascii_uppercase())
            && k.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !well_formed {
            return Err(format!(
                "line {}: {k:?} is not a Packages header key",
                n + 1
            ));
        }
        if OWN_HEADER_KEYS.contains(&k) || k == "CHOST" {
            continue;
        }
        out.insert(k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string());
    }
    if !out.contains_key("PROFILE") && !out.keys().any(|k| k.starts_with("ACCEPT_")) {
        return Err(
            "its header has no PROFILE or ACCEPT_* key: Portage wrote it without a profile".into(),
        );
    }
    Ok(out)
}

/// Index values are one line; Portage joins whitespace runs with one space.
fn one_line(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(cpv: &str, meta: &[(&str, &str)]) -> IndexEntry {
        IndexEntry {
            cpv: cpv.into(),
            path: format!("{cpv}.gpkg.tar"),
            size: 10240,
            mtime_s: 1_796_210_073,
            md5: "m".into(),
            sha1: "s".into(),
            metadata: meta
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn writes_what_portage_writes() {
        let mut entries = vec![
            entry(
                "dev-libs/libfoo-1.2",
                &[
                    ("SLOT", "0/1.2"),
                    ("EAPI", "8"),
                    ("CHOST", "x86_64-pc-linux-gnu"),
                    ("repository", "gentoo"),
                    ("USE", "amd64  elibc_glibc\n"),
                    ("LICENSE", "|| ( MIT BSD ) ssl? ( BSD ) !ssl? ( GPL-2 )"),
                    ("DESCRIPTION", "not an index key"),
                    ("RESTRICT", ""),
                ],
            ),
            entry(
                "app-misc/a-1",
                &[
                    ("SLOT", "0"),
                    ("EAPI", "0"),
                    ("CHOST", "x86_64-pc-linux-gnu"),
                ],
            ),
        ];
        let text = render(&BTreeMap::new(), 42, &mut entries);
        let expected = "CHOST: x86_64-pc-linux-gnu\nPACKAGES: 2\nTIMESTAMP: 42\nVERSION: 0\n\n\
            CPV: app-misc/a-1\nMD5: m\nPATH: app-misc/a-1.gpkg.tar\nSHA1: s\nSIZE: 10240\nMTIME: 1796210073\n\n\
            CPV: dev-libs/libfoo-1.2\nEAPI: 8\nLICENSE: || ( MIT BSD ) GPL-2\nMD5: m\nPATH: dev-libs/libfoo-1.2.gpkg.tar\nSHA1: s\nSIZE: 10240\nSLOT: 0/1.2\nUSE: amd64 elibc_glibc\nMTIME: 1796210073\nREPO: gentoo\n\n";
        assert_eq!(text, expected);
        let again = republish(&text, 43, "r1/");
        assert!(again.contains("TIMESTAMP: 43\n") && !again.contains("TIMESTAMP: 42"));
        assert!(again.contains("PATH: r1/app-misc/a-1.gpkg.tar\n"));
        assert_eq!(again.replace("r1/", "").replace(": 43", ": 42"), text);
        assert_eq!(
            read_header(&again).get("PACKAGES").map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn a_reference_header_gives_its_profile_keys_but_not_the_ones_each_index_owns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("Packages");
        std::fs::write(
            &file,
            "ACCEPT_KEYWORDS: amd64\nCHOST: x86_64-pc-linux-gnu\nPACKAGES: 3\nPROFILE: default/linux/amd64\n\
             TIMESTAMP: 7\nUSE_EXPAND_VALUES_ARCH: amd64\nVERSION: 0\n\nCPV: a/b-1\n\n",
        )
        .expect("write");
        let h = header_from_file(&file).expect("a Portage header");
        assert_eq!(
            h.keys().map(String::as_str).collect::<Vec<_>>(),
            ["ACCEPT_KEYWORDS", "PROFILE", "USE_EXPAND_VALUES_ARCH"]
        );
        let text = render(
            &h,
            9,
            &mut [entry("a/b-1", &[("CHOST", "x86_64-pc-linux-gnu")])],
        );
        assert!(
            text.starts_with(
                "ACCEPT_KEYWORDS: amd64\nCHOST: x86_64-pc-linux-gnu\nPACKAGES: 1\n\
                 PROFILE: default/linux/amd64\nTIMESTAMP: 9\nUSE_EXPAND_VALUES_ARCH: amd64\nVERSION: 0\n\n"
            ),
            "{text}"
        );

        for (content, why) in [
            ("", "no header block"),
            ("VERSION: 0\nTIMESTAMP: 1\n\n", "no PROFILE"),
            ("PROFILE x\n\n", "expected `KEY: value`"),
            ("profile: x\n\n", "not a Packages header key"),
        ] {
            std::fs::write(&file, content).expect("write");
            let err = header_from_file(&file).expect_err(content);
            assert!(err.contains(why), "{content:?}: {err}");
        }
        std::fs::write(&file, "A: b\n".repeat(20_000)).expect("write");
        assert!(header_from_file(&file)
            .expect_err("huge")
            .contains("64 KiB"));
        assert!(header_from_file(&dir.path().join("nope"))
            .expect_err("missing")
            .contains("cannot open"));
    }
}
