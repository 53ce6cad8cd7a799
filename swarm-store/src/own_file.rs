//! Reading a small file of the store's own (the marker, the store-id file) that something else
//! may have put in place: a FIFO there must never hold the thread that reads it (at a start, or
//! the writer's once-a-minute record: h44 F3), and a check made before the open is not enough,
//! since the file can be swapped between the check and the open (h46 F6).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// What is at a path of the store's own.
pub(crate) enum OwnFile {
    /// Nothing.
    Missing,
    /// Something that is not a regular file: what, in words.
    NotAFile(&'static str),
    /// A regular file's first bytes, at most as many as asked for.
    Bytes(Vec<u8>),
}

/// Up to `max` bytes of `path`. What is not a regular file is named without being opened where
/// a `stat` shows it (opening a device can do things), and judged again on the file opened,
/// which is opened without blocking.
pub(crate) fn read(path: &Path, max: u64) -> io::Result<OwnFile> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Ok(OwnFile::NotAFile(kind_of(&m.file_type()))),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OwnFile::Missing),
        Err(e) => return Err(e),
    }
    read_opened(path, max)
}

/// The open and what follows it: the half of [`read`] that holds when the file was swapped
/// after its `stat`.
fn read_opened(path: &Path, max: u64) -> io::Result<OwnFile> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OwnFile::Missing),
        Err(e) => return Err(e),
    };
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Ok(OwnFile::NotAFile(kind_of(&kind)));
    }
    let mut bytes = Vec::new();
    File::take(file, max).read_to_end(&mut bytes)?;
    Ok(OwnFile::Bytes(bytes))
}

/// What a file that is not a regular one is, in words.
pub(crate) fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO (named pipe)"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A FIFO that passed the `stat` (swapped in after it) is still judged on the open file,
    /// without waiting for a writer.
    #[test]
    fn a_fifo_swapped_in_after_the_check_is_named_without_blocking() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fifo = dir.path().join("swarm.store-id");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(read_opened(&fifo, 4096).map(|o| match o {
                OwnFile::NotAFile(kind) => kind,
                OwnFile::Missing => "missing",
                OwnFile::Bytes(_) => "bytes",
            }));
        });
        let kind = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the read waited for a writer")
            .expect("read");
        assert_eq!(kind, "FIFO (named pipe)");
    }

    #[test]
    fn a_regular_file_gives_at_most_what_is_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("write");
        match read(&path, 4).expect("read") {
            OwnFile::Bytes(b) => assert_eq!(b, b"0123"),
            _ => panic!("not read as a file"),
        }
        assert!(matches!(
            read(&dir.path().join("none"), 4).expect("read"),
            OwnFile::Missing
        ));
        assert!(matches!(
            read(dir.path(), 4).expect("read"),
            OwnFile::NotAFile("directory")
        ));
    }
}
