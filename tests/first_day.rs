//! The operator's first day (issue 16) at 80 columns: runs
//! `docs/first-day/run.sh` (the demo, a server with its own data dir, two real
//! drones, a queue import, one drone stopped with SIGTERM and one killed with
//! SIGKILL while they build, a blocked package explained, `control fresh`
//! refused without a terminal, `monitor --once`) with `COLUMNS=80 LINES=24`,
//! and fails when a line the CLI printed passes 80 columns, or when the flow
//! does not show what the issue asks for. The daemons' log lines (one
//! timestamped record per line, for grep) are the only lines exempt. The
//! committed transcript (`docs/first-day/transcript.txt`) is held to the same
//! width. The run's output is kept in `target/first-day-transcript.txt`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::swarm_bin;

const WIDTH: usize = 80;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A daemon's log record: `2026-12-02T14:37:31.875002Z  INFO ...`.
fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T'
}

/// Every line of CLI output wider than the terminal, with its number.
fn too_wide(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !is_log_line(l) && l.chars().count() > WIDTH)
        .map(|(i, l)| format!("line {} ({} columns): {l}", i + 1, l.chars().count()))
        .collect()
}

#[test]
fn the_first_day_fits_80_columns_and_says_what_happened() {
    let out = Command::new("bash")
        .arg(root().join("docs/first-day/run.sh"))
        .env("SWARM", swarm_bin())
        .env("COLUMNS", WIDTH.to_string())
        .env("LINES", "24")
        .env_remove("SWARM_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run docs/first-day/run.sh");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let _ = std::fs::write(target.join("first-day-transcript.txt"), &text);
    assert!(
        out.status.success(),
        "run.sh failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wide = too_wide(&text);
    assert!(
        wide.is_empty(),
        "lines past {WIDTH} columns:\n{}",
        wide.join("\n")
    );

    // What each step must show (the points 1, 3, 4, 7, 8, 9, 10, 11).
    for expected in [
        "swarm 0.1.0",
        "pass `--data-dir DIR` here, or set",
        "queued 12 new packages",
        "stopped cleanly; back when its agent starts",
        "no word: drone suspect",
        "1 offline, 1 stopped",
        "held up by: =sys-libs/ncurses-6.4_p20240414",
        "swarm control unblock =sys-libs/ncurses-6.4_p20240414",
        "is not in the queue",
        "there is no terminal to ask on; pass --yes",
        "swarm monitor",
        "(q quits)",
    ] {
        assert!(
            text.contains(expected),
            "the transcript lacks {expected:?}:\n{text}"
        );
    }
    for wrong in [
        "Some(",
        "stack backtrace",
        "1 builds",
        "1 failures",
        "1 drones",
    ] {
        assert!(
            !text.contains(wrong),
            "the transcript shows {wrong:?}:\n{text}"
        );
    }
    // A killed drone's package is not "building" with an ETA.
    let killed = text
        .split("# drone-b loses power")
        .nth(1)
        .expect("the SIGKILL step");
    let fleet = killed
        .split("$ swarm queue list")
        .next()
        .unwrap_or_default();
    assert!(!fleet.contains("building"), "{fleet}");
}

#[test]
fn the_committed_transcript_fits_80_columns() {
    let text = std::fs::read_to_string(root().join("docs/first-day/transcript.txt"))
        .expect("docs/first-day/transcript.txt");
    let wide = too_wide(&text);
    assert!(
        wide.is_empty(),
        "lines past {WIDTH} columns:\n{}",
        wide.join("\n")
    );
    assert!(
        text.contains("$ swarm monitor --once"),
        "a whole run: {text}"
    );
}
