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

/// The text of a small file an operator names (a config file, a token
/// file): a regular file only, opened without blocking, of at most `max`
/// bytes. `--config` naming a FIFO waited for a writer for ever, and
/// `/dev/zero` was read until memory ran out (h13).
pub fn read_small_text(path: &Path, max: u64) -> io::Result<String> {
    // `--config /dev/null` is the usual way to say "no file": read as empty.
    if path == Path::new("/dev/null") {
        return Ok(String::new());
    }
    let (file, len) = open_regular(path)?;
    if len > max {
        return Err(too_long(len, max));
    }
    read_text_at_most(file, max)
}

/// The text `from` gives, or an error once it gives more than `max` bytes
/// (a pipe says no size before).
pub fn read_text_at_most(from: impl io::Read, max: u64) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    from.take(max.saturating_add(1)).read_to_string(&mut text)?;
    match text.len() as u64 {
        n if n > max => Err(too_long(n, max)),
        _ => Ok(text),
    }
}

fn too_long(len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("is {len} bytes, more than the {max} such a file may have"),
    )
}

/// The most a config file may hold: far above any real one.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// The most a PEM file (a CA, a certificate chain, a key) may hold.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// The most a token file may hold: a token and some blank lines.
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 << 10;

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
