//! A tar member as the extractor will see it: the types `tarwalk` hands its
//! visitors and `image_rules` judges, in a leaf of their own so neither of
//! those two imports the other.

/// What a member is, as Python's `tarfile` (Portage's extractor) reads its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A regular file, or a type neither reader knows (`tarfile` extracts those as files).
    File,
    /// A directory (`5`, or an old-style regular member whose name ends in `/`).
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier member.
    Hardlink,
    /// A character device, block device or FIFO, named so.
    Device(&'static str),
}

/// One member as the visitor sees it: the name and link target the extractor will use
/// (long names, PAX `path` and `linkpath` applied) and its kind.
pub(super) struct Member<'m> {
    /// The full path, as `tarfile` gives it (a directory's trailing `/` removed).
    pub(super) name: &'m str,
    /// A link's target (hard or symbolic), with long links applied.
    pub(super) link: Option<&'m str>,
    /// The member's type.
    pub(super) kind: Kind,
}
