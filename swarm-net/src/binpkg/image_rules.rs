//! The checks Portage's `tar_safe_extract._check_member` (`lib/portage/gpkg.py`) makes on
//! each image member before extracting it, replayed without a disk: a package that fails
//! one is refused by every client ("Danger: … detected"), so it must not be published.
//!
//! - no device files: character and block devices and FIFOs (`TarInfo.isdev()`);
//! - no member twice (the same name, or `./` + a name already seen);
//! - a hard link names a member that came earlier, by its exact name;
//! - no member is written through a symbolic link that leads out of the extraction root:
//!   Portage resolves each member's path and its parent with `os.path.realpath` against
//!   what it has extracted so far. Here the symlinks seen so far stand in for the disk; an
//!   absolute target or a `..` above the root is outside, as is a path through a symlink
//!   loop (the extraction would fail on it).
//!
//! The same rules apply to a tbz2's image, which Portage extracts with GNU tar: a device,
//! a hard link to nothing or a write through an escaping symlink is no more welcome there.

use super::model::BinPkgError;
use super::tar_member::{Kind, Member};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

/// Most bytes of symlink paths and targets kept for resolving later members (a real
/// image has a few thousand symlinks of a hundred bytes or so).
const MAX_SYMLINK_BYTES: usize = 64 << 20;
/// Symlinks followed while resolving one path before it counts as a loop (Linux's limit).
const MAX_HOPS: usize = 40;
/// Path components one resolution may visit (a real one visits a few dozen): bounds the
/// work a member can cause through long symlink chains.
const MAX_STEPS: usize = 4096;

/// The members seen so far, as much of them as the checks need.
pub(super) struct ImageTree {
    /// Every member name, hashed with two random keys so that memory stays small with
    /// millions of members and no upload can aim for a collision.
    names: HashSet<(u64, u64)>,
    keys: (RandomState, RandomState),
    /// The paths leading to symlinks, as a tree of components: node 0 is the root,
    /// `children[n]` maps a component to its node, `links[n]` is a symlink's target.
    children: Vec<HashMap<String, usize>>,
    links: Vec<Option<String>>,
    symlink_bytes: usize,
}

/// Where resolving a path ended.
enum Resolved {
    Inside,
    Outside(String),
    Loop,
}

impl ImageTree {
    pub(super) fn new() -> ImageTree {
        ImageTree {
            names: HashSet::new(),
            keys: (RandomState::new(), RandomState::new()),
            children: vec![HashMap::new()],
            links: vec![None],
            symlink_bytes: 0,
        }
    }

    fn key(&self, name: &str) -> (u64, u64) {
        (self.keys.0.hash_one(name), self.keys.1.hash_one(name))
    }

    /// Checks `member` against the members before it and records it.
    pub(super) fn check(&mut self, member: &Member<'_>) -> Result<(), BinPkgError> {
        let name = member.name;
        let bad = |why: String| BinPkgError::Tar(format!("image member {name:?} {why}"));
        if let Kind::Device(what) = member.kind {
            return Err(bad(format!(
                "is {what}: Portage refuses device files and FIFOs in an image"
            )));
        }
        if self.names.contains(&self.key(name))
            || self.names.contains(&self.key(&format!("./{name}")))
        {
            return Err(bad("appears twice: Portage refuses duplicate files".into()));
        }
        if member.kind == Kind::Hardlink {
            let target = member.link.unwrap_or_default();
            if !self.names.contains(&self.key(target)) {
                return Err(bad(format!(
                    "is a hard link to {target:?}, which is not an earlier member: \
                     Portage calls this a hardlink escape"
                )));
            }
        }
        let parent = name.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        self.inside(parent, name)?;
        self.inside(name, name)?;
        if member.kind == Kind::Hardlink {
            let target = member.link.unwrap_or_default();
            self.inside(target, name)?;
            // A hard link to a symlink is a symlink whose target now reads from here.
            if let Some(to) = self.link_at(target).map(str::to_string) {
                if to.starts_with('/') {
                    return Err(self.escape(name, &to));
                }
                // `tarfile` makes the link with `os.link`, which follows the symlink: what
                // it leads to must be extracted already, or the extraction fails (it cannot
                // seek back in a stream for the fallback; h19).
                let from = target.rsplit_once('/').map_or("", |(dir, _)| dir);
                let led_to = lexical(&format!("{from}/{to}"));
                if !self.names.contains(&self.key(&led_to))
                    && !self.names.contains(&self.key(&format!("./{led_to}")))
                {
                    return Err(bad(format!(
                        "is a hard link to the symlink {target:?}, which leads to {led_to:?}, \
                         not an earlier member: Portage cannot extract it"
                    )));
                }
                self.inside(&format!("{parent}/{to}"), name)?;
                self.add_symlink(name, to)?;
            }
        }
        if member.kind == Kind::Symlink {
            self.add_symlink(name, member.link.unwrap_or_default().to_string())?;
        }
        self.names.insert(self.key(name));
        Ok(())
    }

    /// The final check of `tar_safe_extract.extractall`: the image directory itself does
    /// not lead out of the root.
    pub(super) fn finish(&self, prefix: Option<&str>) -> Result<(), BinPkgError> {
        match prefix {
            Some(p) => self.inside(p, p),
            None => Ok(()),
        }
    }

    /// The target of the symlink at `path` (taken literally, without following others).
    fn link_at(&self, path: &str) -> Option<&str> {
        let mut node = 0;
        for part in components(path) {
            node = *self.children[node].get(part)?;
        }
        self.links[node].as_deref()
    }

    fn add_symlink(&mut self, name: &str, target: String) -> Result<(), BinPkgError> {
        self.symlink_bytes += name.len() + target.len();
        if self.symlink_bytes > MAX_SYMLINK_BYTES {
            return Err(BinPkgError::Limit(format!(
                "the image's symlinks take more than {MAX_SYMLINK_BYTES} bytes"
            )));
        }
        let mut node = 0;
        for part in components(name) {
            node = match self.children[node].get(part) {
                Some(n) => *n,
                None => {
                    self.children.push(HashMap::new());
                    self.links.push(None);
                    let n = self.links.len() - 1;
                    self.children[node].insert(part.to_string(), n);
                    n
                }
            };
        }
        self.links[node] = Some(target);
        Ok(())
    }

    fn escape(&self, name: &str, via: &str) -> BinPkgError {
        BinPkgError::Tar(format!(
            "image member {name:?} is written through a symlink to {via:?}, outside the \
             image: Portage calls this a symlink escape"
        ))
    }

    /// Refuses `path` (for `member`) when it resolves outside the root.
    fn inside(&self, path: &str, member: &str) -> Result<(), BinPkgError> {
        match self.resolve(path) {
            Resolved::Inside => Ok(()),
            Resolved::Outside(via) => Err(self.escape(member, &via)),
            Resolved::Loop => Err(BinPkgError::Tar(format!(
                "image member {member:?} is written through a symlink loop or too long a chain"
            ))),
        }
    }

    /// Resolves `path` as `os.path.realpath` would on the extracted tree: symlinks
    /// followed where they are met, `..` taken after them. The walk keeps, per component
    /// resolved so far, its node in the symlink tree (`None` once off the tree).
    fn resolve(&self, path: &str) -> Resolved {
        if self.links.len() == 1 {
            return Resolved::Inside;
        }
        let mut done: Vec<Option<usize>> = Vec::new();
        let mut todo: Vec<&str> = path.split('/').rev().collect();
        let (mut hops, mut steps) = (0, 0);
        let mut via = path;
        while let Some(part) = todo.pop() {
            steps += 1;
            if steps > MAX_STEPS {
                return Resolved::Loop;
            }
            let here = done.last().copied().unwrap_or(Some(0));
            match part {
                "" | "." => continue,
                ".." => {
                    if done.pop().is_none() {
                        return Resolved::Outside(via.to_string());
                    }
                    continue;
                }
                _ => {}
            }
            let node = here.and_then(|n| self.children[n].get(part).copied());
            done.push(node);
            let Some(target) = node.and_then(|n| self.links[n].as_deref()) else {
                continue;
            };
            hops += 1;
            if hops > MAX_HOPS {
                return Resolved::Loop;
            }
            via = target;
            if target.starts_with('/') {
                return Resolved::Outside(via.to_string());
            }
            done.pop();
            todo.extend(target.split('/').rev());
        }
        Resolved::Inside
    }
}

/// `path` with `.` and `..` taken as text (`a/b/../c` is `a/c`), as member names are
/// written: enough to name the member a symlink leads to in the same tree.
fn lexical(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in components(path) {
        if part == ".." {
            out.pop();
        } else {
            out.push(part);
        }
    }
    out.join("/")
}

/// A path's components without empty ones and `.`.
fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}
