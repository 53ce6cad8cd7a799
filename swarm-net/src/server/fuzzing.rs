//! The bodies of the `request` and `drone_body` fuzz targets
//! (`fuzz/fuzz_targets/`), here so that `cargo test` also runs their
//! committed corpus (`fuzz/corpus/request/`, `fuzz/corpus/drone_body/`) and
//! seeded mutations of it.

use super::claims;
use super::front::HttpLimits;
use crate::wire::{CompleteRequest, LeaseRequest, RegisterRequest};

/// Runs the front door's request-head parser over `data` with the default
/// limits. Never panics; a refusal is one of the statuses the front door
/// answers with, and a complete head never claims more bytes than it had.
pub fn request_head_checked(data: &[u8]) {
    let limits = HttpLimits::default();
    match super::front::parse_head(data, &limits) {
        Ok(Some(used)) => assert!(used <= data.len(), "used {used} of {}", data.len()),
        Ok(None) => assert!(
            data.len() < limits.max_header_bytes,
            "a partial head past the cap"
        ),
        Err((status, why)) => {
            assert!(
                matches!(status, 400 | 414 | 417 | 431 | 501),
                "status {status}: {why}"
            );
            assert!(!why.is_empty(), "a refusal says why");
        }
    }
}

/// Parses `data` as each drone endpoint's JSON body and runs the checks the
/// server runs before acting on one. Never panics.
pub fn drone_body_checked(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<RegisterRequest>(data) {
        if claims::check_register(&r).is_ok() {
            if let Some(c) = r.capabilities.as_ref().and_then(|c| c.cores) {
                assert!(c <= claims::MAX_CORES, "cores {c} passed the bound");
            }
        }
        for name in [&r.name, &r.node_name, &r.id].into_iter().flatten() {
            let _ = swarm_core::DroneName::new(name.clone());
        }
    }
    if let Ok(r) = serde_json::from_slice::<CompleteRequest>(data) {
        let _ = claims::check_complete(&r);
        if let Some(p) = &r.package {
            let _ = swarm_core::Atom::parse(p);
        }
        if let Some(d) = r.error_detail {
            let cut = claims::cut(d, claims::MAX_DETAIL);
            assert!(cut.len() <= claims::MAX_DETAIL + " [cut]".len());
        }
    }
    if let Ok(r) = serde_json::from_slice::<LeaseRequest>(data) {
        if let Some(p) = &r.package {
            let _ = swarm_core::Atom::parse(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each corpus file, then seeded byte flips, truncations and splices of
    /// it: none may panic (a stand-in for the fuzzer that `cargo test` affords).
    fn corpus_and_mutations(dir: &str, check: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(dir);
        let mut m = crate::mutate::Mutator::new(0x5eed_0b0d);
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).expect("corpus").flatten() {
            let orig = std::fs::read(entry.path()).expect("read");
            files += 1;
            check(&orig);
            if orig.is_empty() {
                continue;
            }
            for _ in 0..300 {
                let data = m.mutate(&orig);
                check(&data);
            }
        }
        assert!(files >= 5, "the corpus {} has {files} files", dir.display());
    }

    #[test]
    fn the_request_corpus_and_its_mutations_never_panic() {
        corpus_and_mutations("request", request_head_checked);
    }

    #[test]
    fn the_drone_body_corpus_and_its_mutations_never_panic() {
        corpus_and_mutations("drone_body", drone_body_checked);
    }

    #[test]
    fn the_parser_refuses_what_the_front_door_refuses() {
        let limits = HttpLimits::default();
        let status = |b: &[u8]| {
            super::super::front::parse_head(b, &limits)
                .err()
                .map(|e| e.0)
        };
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Some(400)
        );
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), Some(400));
        assert_eq!(status(b"GET /\xff HTTP/1.1\r\n\r\n"), Some(400));
        let whole = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(
            super::super::front::parse_head(whole, &limits),
            Ok(Some(whole.len()))
        );
        assert_eq!(
            super::super::front::parse_head(&whole[..20], &limits),
            Ok(None)
        );
    }
}
