//! Which lease stored each staged file, told by the file itself.
//! `.leases/<category>/<file>` holds one line per upload that placed that name,
//! `<lease> <sha256> <ino:size:mtime_ns>`, newest last: the placed file's content digest,
//! and a quick key that spares hashing it again while it stays where it was put. A
//! release judges the file it linked by the line of that very content. With the lease
//! alone, a record read at another moment than the link named another build when an
//! upload replaced the file in between, and a file put in place outside the upload path
//! (an operator's copy, a v3 rsync) kept the lease of the upload it replaced, whose failed
//! build then had it removed (h111 F5, F7). The content decides, not the inode: a restore,
//! a move to another disk or a `touch` changes the quick key but not which build the bytes
//! are (h113 F1), and only the quick key's miss costs a hash.
//!
//! The line is written under `staged_path::PLACING` before the upload's rename (from the
//! temporary file, whose inode, size and mtime the rename keeps), so a placed file always
//! has its line, even when the write fails or the process dies between the two (h113 F2).
//! A record of the old form (the lease alone) is given its file's digest at start
//! ([`upgrade`]); until then it stands for whatever file has the name, as it did.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Lines kept per name: a create running meanwhile judges each file it linked by its
/// line, so a name re-uploaded more often than this during one create would let an older
/// file through as no upload's.
const KEEP: usize = 32;

/// Where the lines of `category/file` are kept.
pub(crate) fn record_path(staging: &Path, category: &str, file: &str) -> PathBuf {
    super::lease_files::records_dir(staging)
        .join(category)
        .join(file)
}

/// The key that tells a file is still the one a line was written for, without reading it.
fn quick_key(meta: &std::fs::Metadata) -> String {
    let mtime_ns = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    format!("{}:{}:{}", meta.ino(), meta.len(), mtime_ns)
}

struct Line {
    lease: u64,
    /// `(sha256, quick key)`; `None` in a record of the old form.
    placed: Option<(String, String)>,
}

impl Line {
    fn text(&self) -> String {
        match &self.placed {
            Some((sha, quick)) => format!("{} {sha} {quick}", self.lease),
            None => self.lease.to_string(),
        }
    }
}

/// The record's lines; `None` when a line is in no known form. Such a record is an error,
/// not "no upload": its file would be released unchecked (h114 F2).
fn parse(text: &str) -> Option<Vec<Line>> {
    let mut lines = Vec::new();
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = l.split_whitespace().collect();
        let lease = words.first()?.parse::<u64>().ok()?;
        let placed = match words[1..] {
            [] => None,
            [sha, quick] if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some((sha.to_string(), quick.to_string()))
            }
            _ => return None,
        };
        lines.push(Line { lease, placed });
    }
    // The lease alone is the old form, one line and nothing else.
    if lines.len() > 1 && lines.iter().any(|l| l.placed.is_none()) {
        return None;
    }
    Some(lines)
}

fn lines(staging: &Path, category: &str, file: &str) -> std::io::Result<Vec<Line>> {
    let path = record_path(staging, category, file);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is not a lease record swarm wrote (a line in no known form); remove it \
                     if its file is not an upload's",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn write(staging: &Path, category: &str, file: &str, lines: &[Line]) -> std::io::Result<()> {
    let from = lines.len().saturating_sub(KEEP);
    let mut text: String = lines[from..].iter().map(|l| l.text() + "\n").collect();
    if text.is_empty() {
        text.push('\n');
    }
    super::lease_files::write_durably(&record_path(staging, category, file), &text)
}

/// A record of the old form: one line, the lease alone, standing for whatever file has
/// the name.
fn old_form(lines: &[Line]) -> Option<u64> {
    match lines {
        [Line {
            lease,
            placed: None,
        }] => Some(*lease),
        _ => None,
    }
}

/// The lease whose upload placed the content `sha256` under `category/file`; `None` when
/// no upload did (a v3 drone's copy, an operator's).
pub(crate) fn lease_of(
    staging: &Path,
    category: &str,
    file: &str,
    sha256: &str,
) -> std::io::Result<Option<u64>> {
    let lines = lines(staging, category, file)?;
    if let Some(lease) = old_form(&lines) {
        return Ok(Some(lease));
    }
    Ok(lines
        .iter()
        .rev()
        .find(|l| l.placed.as_ref().is_some_and(|(s, _)| s == sha256))
        .map(|l| l.lease))
}

/// The lease whose upload placed what `category/file` holds now; `None` when the file is
/// not there or no upload placed it. Reads the file only when no line's quick key matches.
pub(crate) fn current(staging: &Path, category: &str, file: &str) -> std::io::Result<Option<u64>> {
    let path = staging.join(category).join(file);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let lines = lines(staging, category, file)?;
    if let Some(lease) = old_form(&lines) {
        return Ok(Some(lease));
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let quick = quick_key(&meta);
    if let Some(l) = lines
        .iter()
        .rev()
        .find(|l| l.placed.as_ref().is_some_and(|(_, q)| *q == quick))
    {
        return Ok(Some(l.lease));
    }
    let sha = hashed(&path, &meta)?;
    Ok(lines
        .iter()
        .rev()
        .find(|l| l.placed.as_ref().is_some_and(|(s, _)| *s == sha))
        .map(|l| l.lease))
}

/// Digests of files whose quick key missed, by device, inode, size and mtime: a file moved,
/// restored or copied over an uploaded name is hashed once per run, not on every lookup
/// (some of which hold `PLACING`; h114 F1).
static HASHED: std::sync::Mutex<BTreeMap<String, String>> = std::sync::Mutex::new(BTreeMap::new());

/// Entries [`HASHED`] holds before it starts over.
const HASHED_MAX: usize = 4096;

fn hashed(path: &Path, meta: &std::fs::Metadata) -> std::io::Result<String> {
    let key = format!("{}:{}", meta.dev(), quick_key(meta));
    let cache = || HASHED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(sha) = cache().get(&key) {
        return Ok(sha.clone());
    }
    let sha = sha256_of(path)?;
    let mut c = cache();
    if c.len() >= HASHED_MAX {
        c.clear();
    }
    c.insert(key, sha.clone());
    Ok(sha)
}

fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Adds the line of the file about to be placed at `category/file` under `lease` of `farm`:
/// its digest and the metadata of the temporary file the rename will put there. Durable
/// before it returns; called under `PLACING`, before the rename.
pub(crate) fn append(
    staging: &Path,
    farm: &str,
    category: &str,
    file: &str,
    lease: u64,
    sha256: &str,
    placed: &std::fs::Metadata,
) -> std::io::Result<()> {
    let marker = farm_marker(staging);
    if !marker.exists() {
        super::lease_files::write_durably(&marker, &format!("{farm}\n"))?;
    }
    let mut lines = lines(staging, category, file)?;
    // A line of the old form stood for the file this one replaces.
    lines.retain(|l| l.placed.is_some());
    lines.push(Line {
        lease,
        placed: Some((sha256.to_string(), quick_key(placed))),
    });
    write(staging, category, file, &lines)
}

/// The file in `.leases` naming the farm whose leases the records name.
fn farm_marker(staging: &Path) -> PathBuf {
    super::lease_files::records_dir(staging).join(".farm")
}

/// At start: sets aside the records of another farm. A staging volume may outlive its farm,
/// and a new farm's lease numbers start at 1 again: its lease N judged the old farm's files
/// of lease N, releasing them if that unrelated build succeeded and removing them if it
/// failed (h114 F8). They go to `.leases-of-<farm>` beside `.leases`, and their files count
/// as no upload's, as files whose leases the history forgot do. Records written before the
/// marker was kept are taken as this farm's. Where the records went, if they were moved.
pub(crate) fn claim_for_farm(staging: &Path, farm: &str) -> std::io::Result<Option<PathBuf>> {
    let records = super::lease_files::records_dir(staging);
    let marker = farm_marker(staging);
    let theirs = match std::fs::read_to_string(&marker) {
        Ok(t) => t.trim().to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if records.is_dir() {
                super::lease_files::write_durably(&marker, &format!("{farm}\n"))?;
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if theirs == farm {
        return Ok(None);
    }
    let safe: String = theirs
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let mut aside = staging.join(format!(".leases-of-{safe}"));
    let mut n = 1;
    while aside.exists() {
        n += 1;
        aside = staging.join(format!(".leases-of-{safe}-{n}"));
    }
    std::fs::rename(&records, &aside)?;
    std::fs::File::open(staging)?.sync_all()?;
    Ok(Some(aside))
}

/// Every name that has a record in `staging`, as `(category, file)`: `.by-lease` (the
/// other direction; no category starts with a dot) and records being written (`*.tmp`)
/// left out.
pub(crate) fn recorded(staging: &Path) -> std::io::Result<Vec<(String, String)>> {
    let root = super::lease_files::records_dir(staging);
    let categories = match std::fs::read_dir(&root) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for category in categories {
        let category = category?.file_name().to_string_lossy().into_owned();
        if category.starts_with('.') {
            continue;
        }
        for f in std::fs::read_dir(root.join(&category))? {
            let file = f?.file_name().to_string_lossy().into_owned();
            if !file.ends_with(".tmp") {
                out.push((category.clone(), file));
            }
        }
    }
    Ok(out)
}

/// Takes back the line [`append`] added for an upload whose file then did not go in place
/// (its rename failed): left, it would name a file no upload placed, and push out lines a
/// running create needs (h114 F3). Called under `PLACING`.
pub(crate) fn retract(
    staging: &Path,
    category: &str,
    file: &str,
    lease: u64,
    sha256: &str,
) -> std::io::Result<()> {
    let mut lines = lines(staging, category, file)?;
    let ours = lines
        .iter()
        .rposition(|l| l.lease == lease && l.placed.as_ref().is_some_and(|(s, _)| s == sha256));
    if let Some(i) = ours {
        lines.remove(i);
        if lines.is_empty() {
            return match std::fs::remove_file(record_path(staging, category, file)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write(staging, category, file, &lines)?;
    }
    Ok(())
}

/// At start: gives each record of the old form (the lease alone) its file's digest and
/// quick key, so a later copy over the name is no longer taken for that lease's upload
/// (h113 F3). Records whose file is gone are left to `lease_files::tidy`. Returns how many
/// were rewritten.
pub(crate) fn upgrade(staging: &Path) -> usize {
    let names = recorded(staging).unwrap_or_else(|e| {
        tracing::warn!(staging = %staging.display(), error = %e, "cannot list the lease records to give them their files' digests");
        Vec::new()
    });
    let mut done = 0;
    for (category, file) in names {
        let Ok(lines) = lines(staging, &category, &file) else {
            continue;
        };
        let Some(lease) = old_form(&lines) else {
            continue;
        };
        let path = staging.join(&category).join(&file);
        let placed =
            std::fs::metadata(&path).and_then(|meta| Ok((sha256_of(&path)?, quick_key(&meta))));
        let Ok(placed) = placed else {
            continue;
        };
        let line = Line {
            lease,
            placed: Some(placed),
        };
        match write(staging, &category, &file, &[line]) {
            Ok(()) => done += 1,
            Err(e) => {
                tracing::warn!(file = %format!("{category}/{file}"), error = %e, "cannot give a lease record its file's digest")
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::{
        append, claim_for_farm, current, lease_of, record_path, retract, sha256_of, upgrade,
    };
    use std::path::Path;

    /// Places `body` at `app-misc/<name>` as an upload does: the line, then the rename.
    fn upload(staging: &Path, name: &str, body: &[u8], lease: u64) -> String {
        let tmp = stage_tmp(staging, body);
        let sha = sha256_of(&tmp).expect("hash");
        let meta = std::fs::metadata(&tmp).expect("stat");
        append(staging, "farm-a", "app-misc", name, lease, &sha, &meta).expect("append");
        std::fs::rename(&tmp, staging.join("app-misc").join(name)).expect("rename");
        sha
    }

    fn stage_tmp(staging: &Path, body: &[u8]) -> std::path::PathBuf {
        let dir = staging.join("app-misc");
        std::fs::create_dir_all(&dir).expect("dir");
        let tmp = dir.join(".tmp");
        std::fs::write(&tmp, body).expect("write");
        tmp
    }

    /// An operator's copy: a new file put in place under the name.
    fn copy_in(staging: &Path, name: &str, body: &[u8]) {
        let tmp = stage_tmp(staging, body);
        std::fs::rename(&tmp, staging.join("app-misc").join(name)).expect("rename");
    }

    /// A file no upload placed, with a record written by hand.
    fn copied_with_record(staging: &Path, name: &str, record: &str) {
        copy_in(staging, name, b"build");
        let path = record_path(staging, "app-misc", name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        std::fs::write(path, record).expect("record");
    }

    #[test]
    fn each_file_is_judged_by_its_own_content_and_a_copy_from_outside_by_none() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        let first = upload(s, f, b"first build", 7);
        // A release linked the first file; then a newer upload replaced it.
        let second = upload(s, f, b"second build, longer", 9);
        assert_eq!(lease_of(s, "app-misc", f, &first).expect("read"), Some(7));
        assert_eq!(lease_of(s, "app-misc", f, &second).expect("read"), Some(9));
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(9));
        // An operator's copy over the name: no upload placed it.
        copy_in(s, f, b"an operator's own file");
        assert_eq!(current(s, "app-misc", f).expect("read"), None);
        assert_eq!(
            current(s, "app-misc", "absent.gpkg.tar").expect("read"),
            None
        );
    }

    /// A restore, a move to another disk or a `touch` gives the file another inode or
    /// mtime: the content still says which upload it is (h113 F1).
    #[test]
    fn a_file_moved_or_touched_is_still_its_uploads() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        upload(s, f, b"the build", 7);
        copy_in(s, f, b"the build");
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(7));
        let file = std::fs::File::options()
            .append(true)
            .open(s.join("app-misc").join(f))
            .expect("open");
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .expect("touch");
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(7));
    }

    #[test]
    fn a_record_of_the_old_form_gets_its_files_digest_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        copied_with_record(s, f, "5\n");
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(5));
        assert_eq!(upgrade(s), 1);
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(5));
        // Once upgraded, a copy over the name is nobody's upload.
        copy_in(s, f, b"an operator's copy");
        assert_eq!(current(s, "app-misc", f).expect("read"), None);
        for lease in 10..50 {
            upload(s, f, format!("build {lease}").as_bytes(), lease);
        }
        let text = std::fs::read_to_string(record_path(s, "app-misc", f)).expect("read");
        assert_eq!(text.lines().count(), super::KEEP, "{text}");
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(49));
    }

    /// A record with a line in no known form is an error, never "no upload": its file
    /// would be released unchecked (h114 F2).
    #[test]
    fn a_record_in_no_known_form_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        copied_with_record(s, f, "");
        for text in [
            "5 2049:77:4096:1700000000\n5 2049:78:4096:1700000001\n",
            "5\n6\n",
            "x\n",
        ] {
            std::fs::write(record_path(s, "app-misc", f), text).expect("record");
            assert!(current(s, "app-misc", f).is_err(), "{text:?}");
            assert!(
                lease_of(s, "app-misc", f, &"0".repeat(64)).is_err(),
                "{text:?}"
            );
        }
    }

    /// An upload whose rename failed takes its line back; the lines before it stay.
    #[test]
    fn a_line_taken_back_leaves_the_others() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        let first = upload(s, f, b"first", 7);
        let tmp = stage_tmp(s, b"never placed");
        let sha = sha256_of(&tmp).expect("hash");
        append(
            s,
            "farm-a",
            "app-misc",
            f,
            9,
            &sha,
            &std::fs::metadata(&tmp).expect("stat"),
        )
        .expect("append");
        retract(s, "app-misc", f, 9, &sha).expect("retract");
        assert_eq!(lease_of(s, "app-misc", f, &sha).expect("read"), None);
        assert_eq!(lease_of(s, "app-misc", f, &first).expect("read"), Some(7));
        retract(s, "app-misc", f, 7, &first).expect("retract");
        assert!(!record_path(s, "app-misc", f).exists());
    }

    /// A new farm on an old staging volume numbers its leases from 1 again: the old farm's
    /// records are set aside, not judged by the new farm's leases (h114 F8).
    #[test]
    fn another_farms_records_are_set_aside_at_start() {
        let dir = tempfile::tempdir().expect("dir");
        let s = dir.path();
        let f = "foo-1.gpkg.tar";
        upload(s, f, b"the old farm's build", 1);
        assert_eq!(claim_for_farm(s, "farm-a").expect("claim"), None);
        assert_eq!(current(s, "app-misc", f).expect("read"), Some(1));
        let aside = claim_for_farm(s, "farm-b")
            .expect("claim")
            .expect("set aside");
        assert!(aside.join("app-misc").join(f).is_file(), "{aside:?}");
        assert_eq!(current(s, "app-misc", f).expect("read"), None);
        // The next upload marks the new records as its farm's (the helper's, farm-a).
        upload(s, f, b"a new build", 1);
        let marker = s.join(".leases/.farm");
        assert_eq!(std::fs::read_to_string(marker).expect("marker"), "farm-a\n");
    }
}
