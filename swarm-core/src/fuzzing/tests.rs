//! Tests of the parent module.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::Event;
use std::path::{Path, PathBuf};

/// Whether an output is an event of this kind; used by the corpus tests to show coverage.
fn is_event(o: &Output, name: &str) -> bool {
    let Output::Event(e) = o else {
        return false;
    };
    let kind = match e {
        Event::Built { .. } => "built",
        Event::BuildFailed { .. } => "build_failed",
        Event::Reclaimed { .. } => "reclaimed",
        Event::Blocked { .. } => "blocked",
        Event::Started { .. } => "started",
        Event::InputRejected { .. } => "input_rejected",
        Event::Grounded { .. } => "grounded",
        Event::Escalated { .. } => "escalated",
        Event::WentOffline { .. } => "went_offline",
        _ => "other",
    };
    kind == name
}

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn outputs_of(data: &[u8]) -> Vec<Output> {
    trace_bytes(data)
        .into_iter()
        .flatten()
        .flat_map(|(_, out)| out)
        .collect()
}

#[test]
fn the_committed_handle_corpus_runs_clean() {
    let files = corpus("handle");
    assert!(!files.is_empty(), "fuzz/corpus/handle is empty");
    let mut outputs = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable corpus file");
        let run = std::panic::catch_unwind(|| run_bytes(&data));
        assert!(run.is_ok(), "{} fails: see the panic above", file.display());
        outputs.extend(outputs_of(&data));
    }
    // The corpus is only worth running if it reaches the interesting paths.
    for event in ["built", "build_failed", "reclaimed", "started", "blocked"] {
        assert!(
            outputs.iter().any(|o| is_event(o, event)),
            "no corpus file reaches a `{event}` event"
        );
    }
}

#[test]
fn the_committed_json_lines_corpus_runs_clean() {
    for file in corpus("json_lines") {
        let data = std::fs::read(&file).expect("a readable corpus file");
        run_json_lines(&data, |line| serde_json::from_str(line).ok());
    }
}

#[test]
fn an_empty_input_is_a_valid_run() {
    run_bytes(&[]);
    run_json_lines(b"", |line| serde_json::from_str(line).ok());
}

#[test]
fn a_small_hand_written_run_builds_a_package() {
    // register drone-a (8 cores), enqueue icu, drone-a asks, starts and finishes it.
    let data = [
        0, 0, 0, 0, 4, 3, 0, 0, // register drone-a, 8 cores, 16 GiB, lxc
        12, 2, 1, 0, 0, 0, 0, 0, // enqueue icu (no deps, priority -1), generation none
        5, 2, 0, 2, // drone-a asks for 2
        8, 2, 0, 0, // drone-a starts the newest lease
        9, 4, 0, 0, 1, 30, // drone-a finishes it: success, 300 s
    ];
    run_bytes(&data);
    let out = outputs_of(&data);
    assert!(out.iter().any(|o| is_event(o, "built")), "{out:?}");
}

#[test]
fn restart_separates_independent_runs() {
    let one = [0u8, 0, 0, 0, 4, 3, 0, 0, 12, 2, 1, 0, 0, 0, 0, 0];
    let mut two = one.to_vec();
    two.extend_from_slice(RESTART);
    two.extend_from_slice(&one);
    let logs = trace_bytes(&two);
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0], logs[1], "each run starts from a fresh swarm");
    assert_eq!(trace_bytes(&[]).len(), 1, "no input is one empty run");
    run_bytes(&two);
}

#[test]
fn json_lines_that_do_not_parse_are_skipped() {
    let log = b"{\"seq\":1,\"at\":5,\"input\":bogus}\n\xff\xfe\nnot json at all\n";
    run_json_lines(log, |line| serde_json::from_str(line).ok());
}

/// Prints the inputs a fuzz input decodes to:
/// `SWARM_FUZZ_TRACE=fuzz/artifacts/handle/crash-... cargo test -p swarm-core --lib
/// fuzzing::tests::trace -- --ignored --nocapture` (paths relative to swarm-core/).
#[test]
#[ignore = "a tool: set SWARM_FUZZ_TRACE to a fuzz input"]
fn trace() {
    let path = std::env::var("SWARM_FUZZ_TRACE").expect("SWARM_FUZZ_TRACE is set");
    let data = std::fs::read(&path).expect("a readable fuzz input");
    for (i, log) in trace_bytes(&data).iter().enumerate() {
        println!("# run {} (a fresh swarm)", i + 1);
        for (env, out) in log {
            println!("{}", serde_json::to_string(env).expect("serialises"));
            for o in out {
                println!("    -> {}", serde_json::to_string(o).expect("serialises"));
            }
        }
    }
    let _ = std::panic::catch_unwind(|| run_bytes(&data));
}
