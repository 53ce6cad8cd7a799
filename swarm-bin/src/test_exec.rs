//! Scripts the unit tests run directly, written so this process never holds them open.
//!
//! Why: a file this process has open for writing is inherited by whatever child another
//! test thread forks at that moment, and until that child execs, running the file fails
//! with "Text file busy" (ETXTBSY). CI saw it once in `buildenv`. `install` writes the
//! executable in a process of its own, so no thread of ours can leak it.

use std::path::Path;

/// Writes `text` to `path` as a 0755 script.
pub(crate) fn write_script(path: &Path, text: &str) {
    let source = path.with_extension("source");
    std::fs::write(&source, text).expect("the script's text is written");
    let status = std::process::Command::new("install")
        .arg("-m")
        .arg("0755")
        .arg(&source)
        .arg(path)
        .status()
        .expect("install runs");
    assert!(
        status.success(),
        "install {} failed: {status}",
        path.display()
    );
}
