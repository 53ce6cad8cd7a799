//! The Portage snapshot a queue was computed on, in one normalised form, and
//! the gate that keeps every drone building against that snapshot.
//!
//! A snapshot is named by the Portage tree's `metadata/timestamp.chk`
//! (`Mon, 16 Feb 2026 00:45:01 +0000`). Build Swarm v3 drones send it as
//! `2026-02-16 00:45` (UTC, minutes), which is the normalised form here: every
//! accepted spelling of the same minute compares equal, so an operator who
//! pastes `timestamp.chk`'s own text does not send drones that already have
//! that tree into a sync loop.
//!
//! The gate (v3's rule, tightened): while the queue names a snapshot, a drone
//! whose snapshot differs from it (older or newer) or is unknown is told to
//! sync to it, at most once per [`SYNC_RETRY_MS`] for the same expected
//! snapshot. Between two requests it gets no work, so a sync that cannot reach
//! the snapshot (a mirror ahead of the queue) costs one sync per interval, not
//! one per poll.

use crate::time::{Timestamp, MINUTE_MS};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::format_description::well_known::{Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// How long a drone told to sync is left to do it before it is told again.
pub const SYNC_RETRY_MS: u64 = 15 * MINUTE_MS;

/// Longest snapshot text accepted (timestamp.chk's form is 31 bytes).
const MAX_LEN: usize = 64;

/// A Portage snapshot in the normalised form `YYYY-MM-DD HH:MM` (UTC).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortageSnapshot(String);

/// Why a text names no Portage snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Nothing was given.
    #[error("the Portage snapshot is empty")]
    Empty,
    /// Far longer than any accepted form.
    #[error("the Portage snapshot is {len} bytes long; no accepted form is over {MAX_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// No accepted form.
    #[error(
        "{given:?} is not a Portage snapshot: give timestamp.chk's text \
         (`Mon, 16 Feb 2026 00:45:01 +0000`), `2026-02-16 00:45`, RFC 3339 \
         (`2026-02-16T00:45:01Z`), a date (`2026-02-16` or `20260216`) or Unix seconds"
    )]
    Unknown {
        /// The text, trimmed.
        given: String,
    },
}

impl PortageSnapshot {
    /// Reads a snapshot in any accepted form: timestamp.chk's RFC 2822 text,
    /// v3's `YYYY-MM-DD HH:MM[:SS]`, RFC 3339, `YYYY-MM-DD`, `YYYYMMDD`
    /// (`emerge-webrsync --revert`), or Unix seconds. Times with an offset
    /// are converted to UTC; seconds are dropped, as v3 did.
    pub fn parse(text: &str) -> Result<PortageSnapshot, SnapshotError> {
        let t = text.trim();
        if t.is_empty() {
            return Err(SnapshotError::Empty);
        }
        if t.len() > MAX_LEN {
            return Err(SnapshotError::TooLong { len: t.len() });
        }
        let unknown = || SnapshotError::Unknown {
            given: t.to_owned(),
        };
        let at = parse_any(t).ok_or_else(unknown)?;
        let utc = at.to_offset(UtcOffset::UTC);
        let s = utc
            .format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
            .map_err(|_| unknown())?;
        Ok(PortageSnapshot(s))
    }

    /// The normalised text, `YYYY-MM-DD HH:MM`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The date alone, `YYYYMMDD`: what `emerge-webrsync --revert` takes.
    pub fn date_compact(&self) -> String {
        self.0.get(..10).unwrap_or_default().replace('-', "")
    }
}

impl fmt::Display for PortageSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_any(t: &str) -> Option<OffsetDateTime> {
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc2822) {
        return Some(at);
    }
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Some(at);
    }
    let utc = |p: PrimitiveDateTime| p.assume_utc();
    let forms = [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ];
    for form in forms {
        if let Ok(p) = PrimitiveDateTime::parse(t, &form) {
            return Some(utc(p));
        }
    }
    for form in [
        format_description!("[year]-[month]-[day]"),
        format_description!("[year][month][day]"),
    ] {
        if let Ok(d) = Date::parse(t, &form) {
            return Some(utc(d.midnight()));
        }
    }
    // Unix seconds: 9 to 11 digits (1973 to 5138); 8 digits are a date above.
    if (9..=11).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = t.parse().ok()?;
        return OffsetDateTime::from_unix_timestamp(secs).ok();
    }
    None
}

/// The last sync a drone was told to do: which snapshot, and when.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct SyncAsked {
    pub(crate) expected: String,
    pub(crate) at: Timestamp,
}

/// A drone's last sync request, if any. Hashes to nothing when empty, so the
/// digest of a state without one is what it was before this field existed
/// (stored snapshots keep verifying across the upgrade).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct LastSyncAsk(pub(crate) Option<SyncAsked>);

impl std::hash::Hash for LastSyncAsk {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        if let Some(a) = &self.0 {
            a.hash(state);
        }
    }
}

/// What a drone asking for work must do about its Portage tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// No snapshot is expected, or the drone has it.
    Open,
    /// Tell it to sync to this snapshot.
    Sync(String),
    /// It was told to sync to this snapshot less than [`SYNC_RETRY_MS`] ago:
    /// no work, and no second request yet.
    Syncing(String),
}

/// The gate for a drone that reports `have` while the queue expects `expected`
/// (already normalised). A `have` that does not parse is unknown, like none.
pub(crate) fn gate(
    expected: Option<&str>,
    have: Option<&str>,
    asked: Option<&SyncAsked>,
    now: Timestamp,
) -> Gate {
    let Some(expected) = expected else {
        return Gate::Open;
    };
    let have = have.and_then(|h| PortageSnapshot::parse(h).ok());
    if have.as_ref().is_some_and(|h| h.as_str() == expected) {
        return Gate::Open;
    }
    match asked {
        Some(a) if a.expected == expected && now.since(a.at) < SYNC_RETRY_MS => {
            Gate::Syncing(expected.to_owned())
        }
        _ => Gate::Sync(expected.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(t: &str) -> String {
        PortageSnapshot::parse(t)
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn every_accepted_spelling_of_one_minute_is_the_same_snapshot() {
        for t in [
            "Mon, 16 Feb 2026 00:45:01 +0000",
            "Mon, 16 Feb 2026 02:45:59 +0200\n",
            "2026-02-16 00:45",
            "2026-02-16 00:45:30",
            "2026-02-16T00:45:01Z",
            "2026-02-16T01:45:01+01:00",
            "2026-02-16T00:45",
            "1771202701",
        ] {
            assert_eq!(norm(t), "2026-02-16 00:45", "{t:?}");
        }
        assert_eq!(norm("2026-02-16"), "2026-02-16 00:00");
        assert_eq!(norm("20260216"), "2026-02-16 00:00");
        let s = PortageSnapshot::parse("Mon, 16 Feb 2026 00:45:01 +0000").expect("parses");
        assert_eq!(s.date_compact(), "20260216");
    }

    #[test]
    fn text_that_names_no_snapshot_is_refused_with_the_forms_accepted() {
        for t in [
            "latest",
            "2026-02-30 00:00",
            "16/02/2026",
            "2026-02-16 25:00",
            "12345",
        ] {
            let e = PortageSnapshot::parse(t).expect_err(t);
            assert!(matches!(e, SnapshotError::Unknown { .. }), "{t}: {e}");
            assert!(e.to_string().contains("timestamp.chk"), "{e}");
        }
        assert_eq!(PortageSnapshot::parse("  \n"), Err(SnapshotError::Empty));
        assert!(matches!(
            PortageSnapshot::parse(&"1".repeat(65)),
            Err(SnapshotError::TooLong { len: 65 })
        ));
    }

    const E: &str = "2026-02-16 00:45";

    #[test]
    fn a_drone_on_another_or_an_unknown_snapshot_is_told_to_sync() {
        let now = Timestamp(1_000_000);
        assert_eq!(gate(None, None, None, now), Gate::Open);
        assert_eq!(gate(None, Some("x"), None, now), Gate::Open);
        assert_eq!(gate(Some(E), Some(E), None, now), Gate::Open);
        assert_eq!(
            gate(Some(E), Some("Mon, 16 Feb 2026 00:45:01 +0000"), None, now),
            Gate::Open,
            "timestamp.chk's text is the same snapshot"
        );
        for have in [
            Some("2026-02-15 00:00"),
            Some("2026-02-17 00:00"),
            Some("garbage"),
            None,
        ] {
            assert_eq!(
                gate(Some(E), have, None, now),
                Gate::Sync(E.into()),
                "{have:?}"
            );
        }
    }

    #[test]
    fn a_drone_told_to_sync_is_not_told_again_before_the_retry_interval() {
        let at = Timestamp(1_000_000);
        let asked = SyncAsked {
            expected: E.into(),
            at,
        };
        let have = Some("2026-02-17 00:00");
        assert_eq!(
            gate(
                Some(E),
                have,
                Some(&asked),
                Timestamp(at.0 + SYNC_RETRY_MS - 1)
            ),
            Gate::Syncing(E.into())
        );
        assert_eq!(
            gate(Some(E), have, Some(&asked), Timestamp(at.0 + SYNC_RETRY_MS)),
            Gate::Sync(E.into())
        );
        let other = SyncAsked {
            expected: "2026-01-01 00:00".into(),
            at,
        };
        assert_eq!(
            gate(Some(E), have, Some(&other), at),
            Gate::Sync(E.into()),
            "a new expected snapshot is asked for at once"
        );
        assert_eq!(gate(Some(E), Some(E), Some(&asked), at), Gate::Open);
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent_and_agrees_across_forms(
            secs in 0i64..4_000_000_000,
            // No zone is behind UTC by under an hour; the `time` crate reads
            // `-00MM` as ahead.
            offset_min in (-720i32..=720).prop_filter("no -00:MM zone", |m| !(-59..0).contains(m)),
        ) {
            let at = OffsetDateTime::from_unix_timestamp(secs).expect("in range");
            let off = UtcOffset::from_whole_seconds(offset_min * 60).expect("offset");
            let local = at.to_offset(off);
            let rfc2822 = local.format(&Rfc2822).expect("formats");
            let rfc3339 = local.format(&Rfc3339).expect("formats");
            let a = PortageSnapshot::parse(&rfc2822).expect("rfc 2822");
            let b = PortageSnapshot::parse(&rfc3339).expect("rfc 3339");
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(PortageSnapshot::parse(a.as_str()), Ok(a.clone()));
            if secs >= 100_000_000 {
                prop_assert_eq!(PortageSnapshot::parse(&secs.to_string()), Ok(a.clone()));
            }
        }

        #[test]
        fn the_gate_opens_exactly_for_the_expected_snapshot(
            have_secs in proptest::option::of(0i64..4_000_000_000),
            exp_secs in 0i64..4_000_000_000,
            since in 0u64..2 * SYNC_RETRY_MS,
        ) {
            let s = |secs: i64| PortageSnapshot::parse(&secs.max(100_000_000).to_string()).expect("parses");
            let expected = s(exp_secs);
            let have = have_secs.map(s);
            let now = Timestamp(10 * SYNC_RETRY_MS);
            let asked = SyncAsked { expected: expected.as_str().to_owned(), at: Timestamp(now.0 - since) };
            let g = gate(Some(expected.as_str()), have.as_ref().map(PortageSnapshot::as_str), Some(&asked), now);
            if have.as_ref() == Some(&expected) {
                prop_assert_eq!(g, Gate::Open);
            } else if since < SYNC_RETRY_MS {
                prop_assert_eq!(g, Gate::Syncing(expected.as_str().to_owned()));
            } else {
                prop_assert_eq!(g, Gate::Sync(expected.as_str().to_owned()));
            }
        }
    }
}
