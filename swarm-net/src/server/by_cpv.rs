//! What the store recorded per queued atom (a build's drone, its environment), found for the
//! CPV of a staged file. `=cat/foo-1.0` is recorded under that atom, but a package queued as
//! `cat/foo` (a profile's world set, say) is recorded under `cat/foo` and staged as whatever
//! version emerge built: its `cat/foo-1.0` must still find what its build recorded, or a named
//! profile's release refuses it ("no build environment recorded") and it is never released.

use super::upload_lease::covers;
use std::collections::BTreeMap;
use swarm_core::Atom;

/// Records keyed by atom text, looked up by CPV.
pub(crate) struct ByCpv<'a, V> {
    exact: &'a BTreeMap<String, V>,
    /// The records of atoms naming no version, by package name.
    loose: BTreeMap<String, Vec<(Atom, &'a V)>>,
}

impl<'a, V> ByCpv<'a, V> {
    /// Indexes `records` once (the unversioned atoms by name), so each lookup is cheap.
    pub(crate) fn new(records: &'a BTreeMap<String, V>) -> Self {
        let mut loose: BTreeMap<String, Vec<(Atom, &'a V)>> = BTreeMap::new();
        for (text, v) in records {
            if let Ok(atom) = Atom::parse(text) {
                if !atom.is_exact() {
                    loose
                        .entry(atom.pn().to_owned())
                        .or_default()
                        .push((atom, v));
                }
            }
        }
        Self {
            exact: records,
            loose,
        }
    }

    /// The record of `cpv`'s own atom (`=cpv` or `cpv`), else of the one unversioned atom it is
    /// a build of; `None` when there is none, or several (then none is known to be its).
    pub(crate) fn get(&self, cpv: &str) -> Option<&'a V> {
        if let Some(v) = self
            .exact
            .get(&format!("={cpv}"))
            .or_else(|| self.exact.get(cpv))
        {
            return Some(v);
        }
        let file = Atom::parse(&format!("={cpv}")).ok()?;
        let mut found = self
            .loose
            .get(file.pn())?
            .iter()
            .filter(|(a, _)| covers(a, &file))
            .map(|(_, v)| *v);
        let one = found.next()?;
        found.next().is_none().then_some(one)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpv_finds_its_own_atom_else_the_one_unversioned_atom_it_is_a_build_of() {
        let records: BTreeMap<String, u8> = [
            ("=dev-libs/foo-1.0", 1),
            ("dev-libs/bar", 2),
            ("dev-libs/baz", 3),
            ("baz", 4),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let by = ByCpv::new(&records);
        assert_eq!(by.get("dev-libs/foo-1.0"), Some(&1));
        assert_eq!(by.get("dev-libs/foo-2.0"), None);
        assert_eq!(by.get("dev-libs/bar-3.1"), Some(&2));
        assert_eq!(by.get("x11-libs/bar-3.1"), None);
        assert_eq!(by.get("dev-libs/baz-1"), None, "two atoms cover it");
    }
}
