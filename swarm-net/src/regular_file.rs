//! Opening a file that something untrusted may have put in place (a drone's upload in staging,
//! a repository's `timestamp.chk`): never blocking on the open and accepting only a regular file.

use std::fs::File;
use std::io;
use std::path::Path;

/// Opens `path` for reading without ever blocking on the open (a FIFO or a device would
/// otherwise hold the thread that reads it until a writer comes) and refuses anything but a
/// regular file, judged on the open file itself: a file swapped after a caller's own check
/// changes nothing. Returns the file and its size.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    open_with(path, rustix::fs::OFlags::NONBLOCK)
}

/// [`open_regular`] for a file swarm itself wrote where it serves from (a build log, a
/// release's file): a symlink in its place was planted, and is refused rather than followed.
pub fn open_regular_not_linked(path: &Path) -> io::Result<(File, u64)> {
    open_with(
        path,
        rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW,
    )
}

fn open_with(path: &Path, flags: rustix::fs::OFlags) -> io::Result<(File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, device or directory)",
        ));
    }
    Ok((file, meta.len()))
}
