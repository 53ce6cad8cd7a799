//! Which profiles a drone serves (issue 17). Drift is judged against every profile, not only
//! the default one: a drone set up for profile `fast` is not "drifted" because it differs from
//! `default`. For each drone: the profiles whose expectation admits its environment, and when
//! none does, the closest profile (fewest differing variables) and what differs there. A drone
//! that stops matching a profile it matched is a drift event; this module decides those events,
//! purely, from what matched before and what matches now.

use crate::buildenv::{describe_differences, BuildEnv, EnvDiff};
use crate::id::DroneName;
use crate::output::Event;
use crate::profile::{Profiles, DEFAULT_PROFILE};
use serde::Serialize;

/// Every profile, the default one (`expect_env`'s) first, then the named ones by name.
fn all<'a>(
    expected: &'a BuildEnv,
    profiles: &'a Profiles,
) -> impl Iterator<Item = (&'a str, &'a BuildEnv)> {
    std::iter::once((DEFAULT_PROFILE, expected))
        .chain(profiles.0.iter().map(|(n, e)| (n.as_str(), e)))
}

/// Whether each profile admits one environment, by profile, in [`all`]'s order: what a drone
/// matched before a change, to say afterwards which profiles it stopped (or started) matching.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Matches(Vec<(String, bool)>);

/// Which profile admits `env`, for each profile there is.
pub(crate) fn matches(expected: &BuildEnv, profiles: &Profiles, env: &BuildEnv) -> Matches {
    Matches(
        all(expected, profiles)
            .map(|(n, e)| (n.to_owned(), e.admits(env)))
            .collect(),
    )
}

/// The profile a drone comes closest to when none admits it, and what differs there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Closest {
    /// The profile with the fewest differing variables (ties: the default one, then by name).
    pub profile: String,
    /// What differs from it.
    pub differences: Vec<EnvDiff>,
}

/// What a drone serves: the profiles that admit its environment, or the closest one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Serving {
    /// The profiles whose packages it may build, default first, then by name.
    pub(crate) serves: Vec<String>,
    /// When it serves none: the closest profile and the differences.
    pub(crate) closest: Option<Closest>,
}

/// Judges `env` against every profile.
pub(crate) fn serving(expected: &BuildEnv, profiles: &Profiles, env: &BuildEnv) -> Serving {
    let serves: Vec<String> = all(expected, profiles)
        .filter(|(_, e)| e.admits(env))
        .map(|(n, _)| n.to_owned())
        .collect();
    let closest = if serves.is_empty() {
        all(expected, profiles)
            .map(|(n, e)| (n, e.differences(env)))
            // `min_by_key` keeps the first of equals: the default profile, then name order.
            .min_by_key(|(_, d)| d.len())
            .map(|(n, d)| Closest {
                profile: n.to_owned(),
                differences: d,
            })
    } else {
        None
    };
    Serving { serves, closest }
}

/// The events for a drone whose environment, or a profile's expectation, changed: one
/// [`Event::EnvChanged`] per profile that existed before and still does and that the drone
/// stopped or started matching. A profile created or removed meanwhile says nothing.
pub(crate) fn match_events(
    expected: &BuildEnv,
    profiles: &Profiles,
    drone: &DroneName,
    env: &BuildEnv,
    before: &Matches,
) -> Vec<Event> {
    all(expected, profiles)
        .filter_map(|(name, e)| {
            let was = before.0.iter().find(|(n, _)| n == name).map(|(_, m)| *m)?;
            let now = e.admits(env);
            (was != now).then(|| Event::EnvChanged {
                drone: drone.clone(),
                matches: now,
                differences: if now {
                    String::new()
                } else {
                    describe_differences(&e.differences(env))
                },
                profile: (name != DEFAULT_PROFILE).then(|| name.to_owned()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildenv::env;
    use std::collections::BTreeMap;

    fn profiles(named: &[(&str, BuildEnv)]) -> Profiles {
        Profiles(
            named
                .iter()
                .map(|(n, e)| ((*n).to_owned(), e.clone()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn a_drone_serves_every_profile_that_admits_it_and_otherwise_hears_the_closest() {
        let expected = env(&[("CFLAGS", "-O2"), ("CHOST", "x86_64"), ("USE", "a")]);
        let named = profiles(&[
            ("fast", env(&[("CFLAGS", "-O3"), ("CHOST", "x86_64")])),
            (
                "arm",
                env(&[("CHOST", "aarch64"), ("CFLAGS", "-O2"), ("USE", "a")]),
            ),
        ]);
        let o3 = serving(
            &expected,
            &named,
            &env(&[("CFLAGS", "-O3"), ("CHOST", "x86_64"), ("USE", "a")]),
        );
        assert_eq!(o3.serves, ["fast"]);
        assert_eq!(o3.closest, None);
        let o2 = serving(
            &expected,
            &named,
            &env(&[("CFLAGS", "-O2"), ("CHOST", "x86_64"), ("USE", "a")]),
        );
        assert_eq!(o2.serves, ["default"]);

        // -Os on x86_64: one variable differs from default and from fast (two from arm); the
        // default profile comes first.
        let os = serving(
            &expected,
            &named,
            &env(&[("CFLAGS", "-Os"), ("CHOST", "x86_64"), ("USE", "a")]),
        );
        assert!(os.serves.is_empty());
        let closest = os.closest.expect("closest");
        assert_eq!(closest.profile, "default");
        assert_eq!(
            describe_differences(&closest.differences),
            "environment differs in CFLAGS (-Os vs -O2)"
        );

        // An arm drone with another USE: arm differs in one variable, default and fast in two.
        let arm = serving(
            &expected,
            &named,
            &env(&[("CFLAGS", "-O2"), ("CHOST", "aarch64"), ("USE", "b")]),
        );
        let closest = arm.closest.expect("closest");
        assert_eq!(closest.profile, "arm");
        assert_eq!(closest.differences.len(), 1);
    }

    #[test]
    fn drift_is_an_event_per_profile_it_stopped_or_started_matching() {
        let expected = BuildEnv::default();
        let named = profiles(&[
            ("fast", env(&[("CFLAGS", "-O3")])),
            ("lean", env(&[("CFLAGS", "-O2")])),
        ]);
        let drone = DroneName::new("drone-a").expect("name");
        let o3 = env(&[("CFLAGS", "-O3")]);
        let before = matches(&expected, &named, &o3);
        assert!(match_events(&expected, &named, &drone, &o3, &before).is_empty());
        let o2 = env(&[("CFLAGS", "-O2")]);
        let events = match_events(&expected, &named, &drone, &o2, &before);
        assert_eq!(
            events,
            [
                Event::EnvChanged {
                    drone: drone.clone(),
                    matches: false,
                    differences: "environment differs in CFLAGS (-O2 vs -O3)".into(),
                    profile: Some("fast".into()),
                },
                Event::EnvChanged {
                    drone: drone.clone(),
                    matches: true,
                    differences: String::new(),
                    profile: Some("lean".into()),
                },
            ],
            "the default profile expects nothing: it admitted -O3 and admits -O2"
        );
        // A profile made after `before` was taken says nothing; one removed neither.
        let more = profiles(&[
            ("lean", env(&[("CFLAGS", "-O2")])),
            ("new", env(&[("CFLAGS", "-O2")])),
        ]);
        let events = match_events(&expected, &more, &drone, &o2, &before);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(matches!(&events[0], Event::EnvChanged { profile: Some(p), .. } if p == "lean"));
    }
}
