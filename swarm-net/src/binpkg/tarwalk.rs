//! Walks a tar with the `tar` crate in raw mode, applying GNU long names and PAX paths
//! itself so that their size is bounded: the crate would read an extension header of any
//! size into memory, and a decompressed image can make one as large as it likes.
//!
//! Portage extracts with Python's `tarfile`, so every member must mean the same to both
//! readers: a header the two would read differently is refused rather than guessed at
//! (each rule below names the difference it closes).

use super::compress::classify;
use super::image_rules::ImageTree;
use super::model::BinPkgError;
use super::tar_member::{Kind, Member};
use std::io::Read;

/// The visitor: each member and the entry to read its data from.
pub(super) type Visit<'v, R> =
    dyn FnMut(&Member<'_>, &mut tar::Entry<'_, R>) -> Result<(), BinPkgError> + 'v;

/// Names and link targets that extension headers set for the next member.
#[derive(Default)]
struct Pending {
    name: Option<String>,
    link: Option<String>,
}

impl Pending {
    /// Sets the next member's name or link target once: with two (a GNU long name and a
    /// PAX `path`, or two PAX headers) `tarfile` and the `tar` crate pick different ones.
    fn set(
        slot: &mut Option<String>,
        value: String,
        what: &str,
        archive: &str,
    ) -> Result<(), BinPkgError> {
        if slot.is_some() {
            return Err(BinPkgError::Tar(format!(
                "{archive}: two extension headers give one member's {what}"
            )));
        }
        *slot = Some(value);
        Ok(())
    }
}

/// Calls `visit` with each member (long names and links applied) and returns how many
/// members there were. Refuses more than `max_entries` members, an extension header over
/// `max_ext` bytes, and every header that Python's `tarfile` would read differently from
/// the `tar` crate (see [`member_kind`], [`check_pax`] and [`check_prefix`]).
pub(super) fn walk<R: Read>(
    archive: &mut tar::Archive<R>,
    what: &str,
    max_entries: u64,
    max_ext: u64,
    visit: &mut Visit<'_, R>,
) -> Result<u64, BinPkgError> {
    let bad = |m: String| BinPkgError::Tar(m);
    let entries = archive
        .entries()
        .map_err(|e| classify(e, what, bad))?
        .raw(true);
    let mut count = 0u64;
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(|e| classify(e, what, bad))?;
        let kind = entry.header().entry_type();
        let is_ext = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if is_ext {
            if entry.size() > max_ext {
                return Err(BinPkgError::Limit(format!(
                    "{what}: a {} byte tar extension header (limit {max_ext})",
                    entry.size()
                )));
            }
            let mut data = Vec::new();
            (&mut entry)
                .take(max_ext)
                .read_to_end(&mut data)
                .map_err(|e| classify(e, what, bad))?;
            if (data.len() as u64) < entry.size() {
                return Err(BinPkgError::Truncated(format!(
                    "{what}: a tar extension header ends early"
                )));
            }
            let until_nul = |d: &[u8]| {
                let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
                String::from_utf8_lossy(&d[..end]).into_owned()
            };
            if kind.is_gnu_longname() {
                Pending::set(&mut pending.name, until_nul(&data), "name", what)?;
            } else if kind.is_gnu_longlink() {
                Pending::set(&mut pending.link, until_nul(&data), "link target", what)?;
            } else {
                check_pax(&data, kind.is_pax_global_extensions(), &mut pending, what)?;
            }
            continue;
        }
        count += 1;
        if count > max_entries {
            return Err(BinPkgError::Limit(format!(
                "{what} has more than {max_entries} members"
            )));
        }
        let header_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let member_kind = member_kind(entry.header(), &header_name, what)?;
        check_prefix(entry.header(), &header_name, what)?;
        let pending = std::mem::take(&mut pending);
        let mut name = pending.name.unwrap_or(header_name);
        if member_kind == Kind::Dir {
            name.truncate(name.trim_end_matches('/').len().max(1));
        }
        let link = match member_kind {
            Kind::Hardlink | Kind::Symlink => Some(pending.link.unwrap_or_else(|| {
                entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            })),
            _ => None,
        };
        if name.contains('\0') || link.as_deref().is_some_and(|l| l.contains('\0')) {
            return Err(bad(format!(
                "{what}: member {name:?} has a NUL byte in its name or link target"
            )));
        }
        if member_kind != Kind::File && entry.size() != 0 {
            // `tarfile` skips data only after files: it would read these bytes as headers.
            return Err(bad(format!(
                "{what}: member {name:?} is not a regular file but claims {} bytes of data",
                entry.size()
            )));
        }
        let member = Member {
            name: &name,
            link: link.as_deref(),
            kind: member_kind,
        };
        visit(&member, &mut entry)?;
    }
    if pending.name.is_some() || pending.link.is_some() {
        return Err(bad(format!(
            "{what}: the archive ends with an extension header and no member after it"
        )));
    }
    Ok(count)
}

/// A member's type as `tarfile` reads it. GNU sparse members and Solaris `X` extension
/// headers are refused: `tarfile` applies them (a sparse map, a path) and the `tar` crate
/// in raw mode does not, so the two would disagree on the member's name or data.
fn member_kind(header: &tar::Header, name: &str, what: &str) -> Result<Kind, BinPkgError> {
    let refuse = |why: &str| Err(BinPkgError::Tar(format!("{what}: member {name:?} {why}")));
    Ok(match header.as_old().linkflag[0] {
        b'1' => Kind::Hardlink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Device("a character device"),
        b'4' => Kind::Device("a block device"),
        b'5' => Kind::Dir,
        b'6' => Kind::Device("a FIFO"),
        b'S' => return refuse("is a GNU sparse file, which is not supported"),
        b'X' => return refuse("is a Solaris extension header, which is not supported"),
        // `tarfile` turns an old-style regular member named `…/` into a directory,
        // judging by the header's own name field.
        0 if header.as_old().name.iter().take_while(|b| **b != 0).last() == Some(&b'/') => {
            Kind::Dir
        }
        _ => Kind::File,
    })
}

/// Applies a PAX header's `path` and `linkpath` to the next member. Refuses the records
/// `tarfile` would apply and this walk does not: `size` (members over 8 GiB), the
/// `GNU.sparse.*` family (which renames and resizes), and `path`, `linkpath` or `size` in a
/// global header (`tarfile` applies those to every later member, the `tar` crate to none).
fn check_pax(
    data: &[u8],
    global: bool,
    pending: &mut Pending,
    what: &str,
) -> Result<(), BinPkgError> {
    let bad = |m: String| BinPkgError::Tar(m);
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|e| bad(format!("{what}: bad PAX record: {e}")))?;
        let key = String::from_utf8_lossy(ext.key_bytes());
        let value = || String::from_utf8_lossy(ext.value_bytes()).into_owned();
        match (key.as_ref(), global) {
            ("path" | "linkpath" | "size", true) => {
                return Err(bad(format!(
                "{what}: a global PAX header sets {key}, which would apply to every later member"
            )))
            }
            ("path", false) => {
                let path = value();
                let path = path.trim_end_matches('/').to_string();
                Pending::set(&mut pending.name, path, "name", what)?
            }
            ("linkpath", false) => Pending::set(&mut pending.link, value(), "link target", what)?,
            ("size", false) => {
                return Err(bad(format!(
                    "{what}: PAX size records (members over 8 GiB) are not supported"
                )))
            }
            (k, _) if k.starts_with("GNU.sparse.") => {
                return Err(bad(format!(
                    "{what}: PAX record {k} (a GNU sparse file) is not supported"
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Refuses a header that is not POSIX ustar (magic `ustar\0`, version `00`) but has a
/// non-empty prefix field (bytes 345..500). The `tar` crate reads the prefix only under
/// that magic; `tarfile` prepends it whatever the magic says, so a v7 header named
/// `usr/x` with prefix `image/../..` is harmless to one and an escape to the other.
/// Refusing only this case, rather than every non-ustar header, keeps GNU and v7 archives
/// (GNU tar's default format, and what Portage's own tbz2s use) readable; their prefix
/// bytes are zero unless something put a name there.
fn check_prefix(header: &tar::Header, name: &str, what: &str) -> Result<(), BinPkgError> {
    let bytes = header.as_bytes();
    let ustar = &bytes[257..263] == b"ustar\0" && &bytes[263..265] == b"00";
    if !ustar && bytes[345] != 0 {
        return Err(BinPkgError::Tar(format!(
            "{what}: member {name:?} has a name prefix in a header that is not ustar, which \
             Python's tarfile applies and the tar crate ignores"
        )));
    }
    Ok(())
}

/// Reads a member's data whole, when it is at most `max` bytes (else a limit error).
pub(super) fn read_small<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    what: &str,
    max: u64,
) -> Result<Vec<u8>, BinPkgError> {
    if entry.size() > max {
        return Err(BinPkgError::Limit(format!(
            "{what} is {} bytes (limit {max})",
            entry.size()
        )));
    }
    let mut data = Vec::with_capacity(entry.size() as usize);
    entry
        .take(max)
        .read_to_end(&mut data)
        .map_err(|e| classify(e, what, BinPkgError::Tar))?;
    if (data.len() as u64) < entry.size() {
        return Err(BinPkgError::Truncated(format!(
            "{what} has {} of its {} bytes",
            data.len(),
            entry.size()
        )));
    }
    Ok(data)
}

/// Checks that a path inside an image stays inside it: relative, no `..`, under `prefix`
/// (`image` for a gpkg, nothing for a tbz2). `what` names the path in the error
/// (`image member "x"`, or a hard link's target). A leading `./` is what GNU tar writes
/// for `tar -C dir -c .`, and the root entry `.` with it: Portage extracts the whole
/// archive into a temporary directory and takes `image/` from there, so `./image/x` is
/// `image/x` to it, and `.` that directory (h19).
fn check_image_path(path: &str, prefix: Option<&str>, what: &str) -> Result<(), BinPkgError> {
    let bad = |why: &str| BinPkgError::Tar(format!("{what} {why}"));
    let path = path.trim_start_matches("./");
    if prefix.is_some() && matches!(path, "" | ".") {
        return Ok(());
    }
    if path.starts_with('/') {
        return Err(bad("is an absolute path"));
    }
    if path.split('/').any(|c| c == "..") {
        return Err(bad("climbs out of the image with `..`"));
    }
    if let Some(prefix) = prefix {
        let rest = path.strip_prefix(prefix);
        if !matches!(rest, Some("") | Some("/")) && !rest.is_some_and(|r| r.starts_with('/')) {
            return Err(bad(&format!("is not under {prefix}/")));
        }
    }
    Ok(())
}

/// Decompresses an image archive read from `raw` and walks it: every path inside the image,
/// at most `limits.max_image_entries` members, at most the allowed decompressed size
/// (`max_image_bytes`, and `max_image_ratio` times the compressed size above 64 MiB).
/// Reads `raw` to its end, so a digest fed by it sees every byte. Returns the member count.
pub(super) fn walk_image(
    raw: impl Read,
    compression: super::compress::Compression,
    compressed_size: u64,
    what: &str,
    prefix: Option<&str>,
    limits: &super::model::Limits,
) -> Result<u64, BinPkgError> {
    use super::compress::Bounded;
    let allowed = compressed_size
        .saturating_mul(limits.max_image_ratio)
        .saturating_add(64 << 20)
        .min(limits.max_image_bytes);
    let decoder = compression.decoder(raw, what, limits)?;
    let bounded = Bounded::new(decoder, allowed, format!("{what} decompressed"));
    let mut archive = tar::Archive::new(bounded);
    let mut tree = ImageTree::new();
    let mut visit = |m: &Member<'_>, _: &mut tar::Entry<'_, _>| -> Result<(), BinPkgError> {
        check_image_path(m.name, prefix, &format!("image member {:?}", m.name))?;
        if let Some(target) = m.link.filter(|_| m.kind == Kind::Hardlink) {
            let what = format!(
                "image member {:?} is a hard link whose target {target:?}",
                m.name
            );
            check_image_path(target, prefix, &what)?;
        }
        tree.check(m)
    };
    let count = walk(
        &mut archive,
        what,
        limits.max_image_entries,
        limits.max_tar_extension_bytes,
        &mut visit,
    )?;
    tree.finish(prefix)?;
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| classify(e, what, BinPkgError::Compression))?;
    Ok(count)
}
