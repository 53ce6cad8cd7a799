//! Where the files beside a database live: its WAL, shared memory, lock
//! and acknowledgement marker all sit beside the file its path resolves to,
//! as SQLite puts its own there, whichever path (a symbolic link or its
//! target) opened it.

use std::path::PathBuf;

/// `<db><suffix>` (the `-wal` or `-shm` file) where SQLite keeps it:
/// beside the file the database path resolves to. SQLite resolves symbolic
/// links in the path it opens, so the WAL of a symlinked `swarm.db` lives
/// beside the link's target, and an fsync of the name beside the link
/// would sync another file, or fail on none. A database not created yet
/// is resolved too (a link to it followed, its directory's real path
/// taken), so the lock taken before it exists is the one every later open,
/// by either path, takes.
pub(crate) fn beside_database(db: &std::path::Path, suffix: &str) -> PathBuf {
    let mut path = resolve(db).into_os_string();
    path.push(suffix);
    PathBuf::from(path)
}

/// The real path of `db`, whether or not it exists yet.
fn resolve(db: &std::path::Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(db) {
        return real;
    }
    let mut p = db.to_owned();
    // A few hops: a loop of links is SQLite's to refuse.
    for _ in 0..8 {
        let Ok(target) = std::fs::read_link(&p) else {
            break;
        };
        p = match p.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
    }
    let dir = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match (std::fs::canonicalize(dir), p.file_name()) {
        (Ok(real_dir), Some(name)) => real_dir.join(name),
        _ => p,
    }
}

/// Device and inode of the file at `path` (links followed): what tells one
/// file from another however its path is spelt.
pub(crate) fn file_id(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}
