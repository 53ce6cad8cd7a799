//! Which lease stored each staged file, told by the file itself.
//! `.leases/<category>/<file>` holds one line per upload that placed that name,
//! `<lease> <key>`, newest last, where the key is the placed file's identity
//! ([`crate::binhost::file_key`]: device, inode, size, mtime). A release judges the file
//! it linked by that very file's line. With the lease alone, a record read at another
//! moment than the link named another build when an upload replaced the file in
//! between, and a file put in place outside the upload path (an operator's copy) kept
//! the lease of the upload it replaced, whose failed build then had the operator's file
//! removed (h111 F5, F7). A record written before keys were kept (one line, the lease
//! alone) stands, as it did, for whatever file has the name.
//!
//! The lines are appended under `staged_path::PLACING`, with the file's rename, so a
//! reader holding that lock sees a placed file together with its line.

use std::path::{Path, PathBuf};

/// Lines kept per name: the files a create running meanwhile may have linked.
const KEEP: usize = 8;

/// Where the lines of `category/file` are kept.
pub(crate) fn record_path(staging: &Path, category: &str, file: &str) -> PathBuf {
    super::lease_files::records_dir(staging)
        .join(category)
        .join(file)
}

struct Line {
    lease: u64,
    /// `None` in a record written before keys were kept.
    key: Option<String>,
}

fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let lease = words.next()?.parse::<u64>().ok()?;
            Some(Line {
                lease,
                key: words.next().map(str::to_string),
            })
        })
        .collect()
}

fn lines(staging: &Path, category: &str, file: &str) -> std::io::Result<Vec<Line>> {
    match std::fs::read_to_string(record_path(staging, category, file)) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// The lease whose upload placed the file with identity `key` under `category/file`;
/// `None` when no upload did (a v3 drone's copy, an operator's).
pub(crate) fn lease_of(
    staging: &Path,
    category: &str,
    file: &str,
    key: &str,
) -> std::io::Result<Option<u64>> {
    let lines = lines(staging, category, file)?;
    if let [Line { lease, key: None }] = lines.as_slice() {
        return Ok(Some(*lease));
    }
    Ok(lines
        .iter()
        .rev()
        .find(|l| l.key.as_deref() == Some(key))
        .map(|l| l.lease))
}

/// The lease whose upload placed what `category/file` holds now; `None` when the
/// file is not there or no upload placed it.
pub(crate) fn current(staging: &Path, category: &str, file: &str) -> std::io::Result<Option<u64>> {
    let meta = match std::fs::metadata(staging.join(category).join(file)) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    lease_of(staging, category, file, &crate::binhost::file_key(&meta))
}

/// Adds the line of the file just placed at `category/file` under `lease`, durably,
/// keeping the newest [`KEEP`]. Called under `PLACING`, after the rename.
pub(crate) fn append(
    staging: &Path,
    category: &str,
    file: &str,
    lease: u64,
) -> std::io::Result<()> {
    let meta = std::fs::metadata(staging.join(category).join(file))?;
    let key = crate::binhost::file_key(&meta);
    // A line without a key stood for the file this one replaced.
    let mut kept: Vec<String> = lines(staging, category, file)?
        .into_iter()
        .filter_map(|l| l.key.map(|k| format!("{} {k}", l.lease)))
        .collect();
    kept.push(format!("{lease} {key}"));
    let from = kept.len().saturating_sub(KEEP);
    let mut text = kept[from..].join("\n");
    text.push('\n');
    super::lease_files::write_durably(&record_path(staging, category, file), &text)
}

#[cfg(test)]
mod tests {
    use super::{append, current, lease_of, record_path};
    use std::path::Path;

    fn place(staging: &Path, name: &str, body: &[u8]) -> String {
        let dir = staging.join("app-misc");
        std::fs::create_dir_all(&dir).expect("dir");
        let tmp = dir.join(".tmp");
        std::fs::write(&tmp, body).expect("write");
        std::fs::rename(&tmp, dir.join(name)).expect("rename");
        crate::binhost::file_key(&std::fs::metadata(dir.join(name)).expect("stat"))
    }

    #[test]
    fn each_file_is_judged_by_its_own_line_and_a_copy_from_outside_by_none() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        let first = place(s, f, b"first build");
        append(s, "app-misc", f, 7).expect("append");
        // A link a release made of the first file, then a newer upload replaces it.
        let linked = s.join("linked");
        std::fs::hard_link(s.join("app-misc").join(f), &linked).expect("link");
        let second = place(s, f, b"second build, longer");
        append(s, "app-misc", f, 9).expect("append");
        assert_eq!(lease_of(s, "app-misc", f, &first).expect("read"), Some(7));
        assert_eq!(lease_of(s, "app-misc", f, &second).expect("read"), Some(9));
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(9));
        // An operator's copy over the name: no upload placed it.
        place(s, f, b"an operator's own file");
        assert_eq!(current(s, "app-misc", f).expect("read"), None);
        assert_eq!(
            current(s, "app-misc", "absent.gpkg.tar").expect("read"),
            None
        );
    }

    #[test]
    fn a_record_without_keys_stands_for_the_file_and_old_lines_are_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        place(s, f, b"build");
        std::fs::create_dir_all(record_path(s, "app-misc", f).parent().expect("parent"))
            .expect("dir");
        std::fs::write(record_path(s, "app-misc", f), "5\n").expect("old record");
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(5));
        for lease in 10..30 {
            place(s, f, format!("build {lease}").as_bytes());
            append(s, "app-misc", f, lease).expect("append");
        }
        let text = std::fs::read_to_string(record_path(s, "app-misc", f)).expect("read");
        assert_eq!(text.lines().count(), super::KEEP, "{text}");
        assert!(!text.lines().any(|l| l == "5"), "{text}");
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(29));
    }
}
