use super::*;
use crate::emerge_logs as logs;
use proptest::prelude::*;

fn cause(text: &str) -> String {
    diagnose(text).map_or("(none)".into(), |c| c.to_string())
}

#[test]
fn real_emerge_output_is_classified_with_a_normalised_cause() {
    let cases = [
        (
            logs::SLOT_CONFLICT,
            "slot conflict on sys-apps/systemd-utils",
            FailureClass::Build,
        ),
        (
            logs::UNSATISFIED,
            "unsatisfied dependency >=dev-libs/libfoo-9",
            FailureClass::Build,
        ),
        (
            logs::MASKED,
            "masked dependency >=dev-libs/openssl-4",
            FailureClass::Build,
        ),
        (
            logs::BLOCKER,
            "blocker <sys-apps/sysvinit-2.86-r6",
            FailureClass::Build,
        ),
        (logs::FETCH, "fetch failed", FailureClass::Infra),
        (logs::OOM, "out of memory", FailureClass::Oom),
        (logs::SANDBOX, "sandbox violation", FailureClass::Infra),
        (logs::DISK_FULL, "disk full", FailureClass::Infra),
        (logs::COMPILE, "compile phase failed", FailureClass::Build),
    ];
    for (log, want, class) in cases {
        let got = diagnose(log);
        assert_eq!(
            got.as_ref().map(ToString::to_string).as_deref(),
            Some(want),
            "{log}"
        );
        assert_eq!(classify(log, FailureClass::Infra).0, class, "{want}");
    }
    assert_eq!(cause("make: *** [all] Error 2"), "(none)");
    assert_eq!(
        classify("weird", FailureClass::Build),
        (FailureClass::Build, None)
    );
}

#[test]
fn queue_causes_say_stale_queue_and_package_causes_are_never_shared() {
    let stale = |l: &str| diagnose(l).is_some_and(|c| c.means_stale_queue());
    assert!(stale(logs::SLOT_CONFLICT) && stale(logs::UNSATISFIED) && stale(logs::BLOCKER));
    assert!(!stale(logs::FETCH) && !stale(logs::COMPILE));
    let shared = |l: &str| diagnose(l).is_some_and(|c| c.may_be_shared());
    assert!(shared(logs::SLOT_CONFLICT) && shared(logs::FETCH) && shared(logs::DISK_FULL));
    assert!(!shared(logs::COMPILE) && !shared(logs::OOM));
}

fn any_log() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        logs::SLOT_CONFLICT,
        logs::UNSATISFIED,
        logs::MASKED,
        logs::BLOCKER,
        logs::FETCH,
        logs::OOM,
        logs::SANDBOX,
        logs::DISK_FULL,
        logs::COMPILE,
    ])
}

proptest! {
    /// What the agent reports (`<cause>: <line>`) reads back as the same
    /// cause on the server, and noise around a log does not change its cause.
    #[test]
    fn the_reported_detail_reads_back_as_the_same_cause(
        log in any_log(),
        before in "[a-z ]{0,40}\n",
        line in "[ -~]{0,80}",
    ) {
        let c = diagnose(log).expect("every excerpt has a cause");
        prop_assert_eq!(diagnose(&format!("{c}: {line}")), Some(c.clone()));
        prop_assert_eq!(diagnose(&format!("{before}{log}")), Some(c));
    }

    /// Arbitrary text never panics and never yields an empty cause.
    #[test]
    fn any_text_gives_a_cause_or_none_without_panicking(text in "\\PC{0,400}") {
        if let Some(c) = diagnose(&text) {
            prop_assert!(!c.to_string().trim().is_empty());
        }
    }

    /// The brake's memo answers exactly as `diagnose` does, for texts seen before and
    /// new, and after it has started over at its byte bound.
    #[test]
    fn remembered_diagnoses_are_the_diagnoses(
        picks in prop::collection::vec((any_log(), "[ -~]{0,30}", any::<bool>()), 1..60),
    ) {
        let max = 4096;
        let mut memo = Diagnoses::bounded(max);
        for (log, noise, huge) in picks {
            let text = if huge {
                format!("{noise}{}{log}", " ".repeat(max / 3))
            } else {
                format!("{noise}\n{log}")
            };
            prop_assert_eq!(memo.of(&text), diagnose(&text));
            prop_assert_eq!(memo.of(&text), diagnose(&text));
            prop_assert!(memo.bytes <= max, "{} bytes held", memo.bytes);
        }
    }
}
