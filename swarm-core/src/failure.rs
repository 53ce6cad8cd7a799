//! One failure classifier for the whole system: an emerge log (or a drone's
//! error text) → a [`FailureClass`] and a normalised [`Cause`].
//!
//! The agent classifies each failed build's log with it, the simulator runs
//! real emerge log excerpts through it, and the brake groups recent failures
//! by the cause it finds, so "14 packages failed with a slot conflict on
//! sys-apps/systemd-utils on 5 drones" is seen as one problem (a stale queue),
//! not 14 unlucky packages.
//!
//! The cause's text is the start of the detail the agent reports
//! (`slot conflict on sys-apps/systemd-utils: <log line>`), and [`diagnose`]
//! reads that form back to the same cause, so the server, which only sees
//! reports, groups exactly what the agent classified. A v3 drone's free-text
//! `error_detail` is read the same way.

use crate::input::FailureClass;
use std::fmt;

/// What made a build fail, normalised so the same problem on different
/// packages and drones compares equal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// emerge pulled two packages into one slot: the queue was computed on
    /// another tree.
    SlotConflict {
        /// `category/name` of the slot in conflict.
        package: String,
    },
    /// No ebuild satisfies a dependency.
    UnsatisfiedDependency {
        /// The dependency as emerge printed it.
        atom: String,
    },
    /// Every ebuild that could satisfy a dependency is masked.
    MaskedDependency {
        /// The dependency as emerge printed it.
        atom: String,
    },
    /// Packages that cannot be installed together.
    Blocker {
        /// The blocking atom.
        atom: String,
    },
    /// A distfile could not be downloaded (mirrors, network).
    FetchFailed,
    /// The compiler or the kernel ran out of memory.
    OutOfMemory,
    /// The sandbox denied an access (or broke).
    Sandbox,
    /// The disk is full.
    DiskFull,
    /// An ebuild phase failed for the package's own reasons.
    PhaseFailed {
        /// The phase (`compile`, `install`, ...).
        phase: String,
    },
}

impl Cause {
    /// The class of failure this cause is: whose fault it is.
    pub fn class(&self) -> FailureClass {
        match self {
            Cause::OutOfMemory => FailureClass::Oom,
            Cause::FetchFailed | Cause::Sandbox | Cause::DiskFull => FailureClass::Infra,
            _ => FailureClass::Build,
        }
    }

    /// A cause that says the queue no longer matches the tree drones build
    /// from: the cure is `swarm fresh`.
    pub fn means_stale_queue(&self) -> bool {
        matches!(
            self,
            Cause::SlotConflict { .. }
                | Cause::UnsatisfiedDependency { .. }
                | Cause::MaskedDependency { .. }
                | Cause::Blocker { .. }
        )
    }

    /// A cause that can be common to many packages on many drones (so the
    /// brake may group by it); a package's own phase failure or memory need is
    /// not.
    pub fn may_be_shared(&self) -> bool {
        !matches!(self, Cause::PhaseFailed { .. } | Cause::OutOfMemory)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::SlotConflict { package } => write!(f, "slot conflict on {package}"),
            Cause::UnsatisfiedDependency { atom } => write!(f, "unsatisfied dependency {atom}"),
            Cause::MaskedDependency { atom } => write!(f, "masked dependency {atom}"),
            Cause::Blocker { atom } => write!(f, "blocker {atom}"),
            Cause::FetchFailed => f.write_str("fetch failed"),
            Cause::OutOfMemory => f.write_str("out of memory"),
            Cause::Sandbox => f.write_str("sandbox violation"),
            Cause::DiskFull => f.write_str("disk full"),
            Cause::PhaseFailed { phase } => write!(f, "{phase} phase failed"),
        }
    }
}

/// Longest text looked at: the end of a log is where emerge says why.
const MAX_SCAN: usize = 256 * 1024;

/// The cause of a failure from an emerge log or a failure detail, or `None`
/// when nothing in it is recognised.
pub fn diagnose(text: &str) -> Option<Cause> {
    let text = tail(text, MAX_SCAN);
    if let Some(c) = normalised(text) {
        return Some(c);
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("no space left on device") {
        return Some(Cause::DiskFull);
    }
    if lower.contains("virtual memory exhausted")
        || lower.contains("out of memory allocating")
        || lower.contains("cannot allocate memory")
        || lower.contains("killed signal terminated program")
    {
        return Some(Cause::OutOfMemory);
    }
    if lower.contains("access denied") && lower.contains("sandbox")
        || lower.contains("* access denied:")
        || lower.contains("* ise:")
    {
        return Some(Cause::Sandbox);
    }
    if let Some(c) = slot_conflict(text) {
        return Some(c);
    }
    if let Some(atom) = quoted_after(text, "have been masked", "All ebuilds that could satisfy ") {
        return Some(Cause::MaskedDependency { atom });
    }
    if let Some(atom) = quoted_after(text, "", "there are no ebuilds to satisfy ").or_else(|| {
        quoted_after(
            text,
            "",
            "there are no ebuilds built with USE flags to satisfy ",
        )
    }) {
        return Some(Cause::UnsatisfiedDependency { atom });
    }
    if lower.contains("cannot be installed at the same time")
        || lower.contains("cannot be\n * installed at the same time")
    {
        let atom = blocker_atom(text).unwrap_or_else(|| "(unnamed)".into());
        return Some(Cause::Blocker { atom });
    }
    if lower.contains("fetch failed for") || lower.contains("couldn't download") {
        return Some(Cause::FetchFailed);
    }
    phase_failed(text)
}

/// Diagnoses already made, by failure text. The brake asks for the cause of every
/// failure in its window on each new failure, and a fleet failing on a stale queue
/// reports the same few texts again and again; reading each text once keeps that
/// scan from lowercasing and searching the same logs on every report.
///
/// Derived data: two memos always compare equal, so a state's index rebuilt from
/// scratch still equals the live one.
#[derive(Clone, Debug)]
pub(crate) struct Diagnoses {
    seen: std::collections::BTreeMap<String, Option<Cause>>,
    bytes: usize,
    /// Bound on the text the memo holds; past it the memo starts over.
    max_bytes: usize,
}

impl Default for Diagnoses {
    fn default() -> Self {
        Diagnoses::bounded(4 << 20)
    }
}

impl Diagnoses {
    /// A memo holding at most `max_bytes` of text.
    pub(crate) fn bounded(max_bytes: usize) -> Self {
        Diagnoses {
            seen: Default::default(),
            bytes: 0,
            max_bytes,
        }
    }

    /// The cause of `text`, as [`diagnose`] finds it.
    pub(crate) fn of(&mut self, text: &str) -> Option<Cause> {
        if let Some(cause) = self.seen.get(text) {
            return cause.clone();
        }
        let cause = diagnose(text);
        if text.len() > self.max_bytes {
            return cause;
        }
        if self.bytes + text.len() > self.max_bytes {
            self.seen.clear();
            self.bytes = 0;
        }
        self.bytes += text.len();
        self.seen.insert(text.to_owned(), cause.clone());
        cause
    }
}

impl PartialEq for Diagnoses {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Diagnoses {}

/// The class and cause of a failure text: the cause's class, or `fallback`
/// when no cause is recognised.
pub fn classify(text: &str, fallback: FailureClass) -> (FailureClass, Option<Cause>) {
    match diagnose(text) {
        Some(c) => (c.class(), Some(c)),
        None => (fallback, None),
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A detail that starts with a cause's own text (what the agent reports).
fn normalised(text: &str) -> Option<Cause> {
    let head = text.split(": ").next().unwrap_or_default().trim();
    let word = |prefix: &str| {
        head.strip_prefix(prefix)
            .filter(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
            .map(str::to_owned)
    };
    if let Some(package) = word("slot conflict on ") {
        return Some(Cause::SlotConflict { package });
    }
    if let Some(atom) = word("unsatisfied dependency ") {
        return Some(Cause::UnsatisfiedDependency { atom });
    }
    if let Some(atom) = word("masked dependency ") {
        return Some(Cause::MaskedDependency { atom });
    }
    if let Some(atom) = word("blocker ") {
        return Some(Cause::Blocker { atom });
    }
    if let Some(phase) = head.strip_suffix(" phase failed") {
        if !phase.is_empty() && phase.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Some(Cause::PhaseFailed {
                phase: phase.to_owned(),
            });
        }
    }
    match head {
        "fetch failed" => Some(Cause::FetchFailed),
        "out of memory" => Some(Cause::OutOfMemory),
        "sandbox violation" => Some(Cause::Sandbox),
        "disk full" => Some(Cause::DiskFull),
        _ => None,
    }
}

/// `category/name` of a plausible package text (`cat/pkg:slot` → `cat/pkg`).
fn package_of(token: &str) -> Option<String> {
    let t = token.split(':').next()?;
    let (cat, name) = t.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b))
    };
    (ok(cat) && ok(name) && !name.contains('/')).then(|| t.to_owned())
}

/// `!!! Multiple package instances within a single package slot ...` then,
/// after the header, the conflicting slot on a line of its own.
fn slot_conflict(text: &str) -> Option<Cause> {
    let at = text.find("slot conflict")?;
    let after = &text[at..];
    let package = after
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("!!!"))
        .find_map(|l| {
            let token = l.split_whitespace().next()?;
            (l.split_whitespace().count() == 1).then(|| package_of(token))?
        })
        .unwrap_or_else(|| "(unnamed)".into());
    Some(Cause::SlotConflict { package })
}

/// The `"…"` text following `lead` on a line that contains `also`.
fn quoted_after(text: &str, also: &str, lead: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = &l[l.find(lead)? + lead.len()..];
        if !l.contains(also) {
            return None;
        }
        let rest = rest.strip_prefix('"')?;
        let atom = &rest[..rest.find('"')?];
        (!atom.is_empty() && !atom.contains(char::is_whitespace)).then(|| atom.to_owned())
    })
}

/// The atom of the first `[blocks B ...] atom` line.
fn blocker_atom(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("[blocks")?;
        let rest = &rest[rest.find(']')? + 1..];
        rest.split_whitespace().next().map(str::to_owned)
    })
}

/// ` * ERROR: cat/pkg-1.0::repo failed (compile phase):`
fn phase_failed(text: &str) -> Option<Cause> {
    text.lines().rev().find_map(|l| {
        if !l.contains("ERROR:") {
            return None;
        }
        let rest = &l[l.find("failed (")? + "failed (".len()..];
        let phase = rest.strip_suffix("):").or_else(|| rest.strip_suffix(')'))?;
        let phase = phase.trim().strip_suffix(" phase")?;
        (!phase.is_empty() && phase.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')).then(
            || Cause::PhaseFailed {
                phase: phase.to_owned(),
            },
        )
    })
}

#[cfg(test)]
#[path = "failure_tests.rs"]
mod tests;
