//! Walks a tar with the `tar` crate in raw mode, applying GNU long names and PAX paths
//! itself so that their size is bounded: the crate would read an extension header of any
//! size into memory, and a decompressed image can make one as large as it likes.

use super::compress::classify;
use super::model::BinPkgError;
use std::io::Read;

/// One member as the visitor sees it: its full path and the entry to read its data from.
pub(super) type Visit<'v, R> =
    dyn FnMut(&str, &mut tar::Entry<'_, R>) -> Result<(), BinPkgError> + 'v;

/// Calls `visit` with each member's full path (long names applied) and returns how many
/// members there were. Refuses more than `max_entries` members, an extension header over
/// `max_ext` bytes and a PAX `size` record (which raw mode would not apply).
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
    let mut pending_name: Option<String> = None;
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
            if kind.is_gnu_longname() {
                let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
                pending_name = Some(String::from_utf8_lossy(&data[..end]).into_owned());
            } else if kind.is_pax_local_extensions() {
                for ext in tar::PaxExtensions::new(&data) {
                    let ext = ext.map_err(|e| bad(format!("{what}: bad PAX record: {e}")))?;
                    match ext.key_bytes() {
                        b"path" => {
                            pending_name =
                                Some(String::from_utf8_lossy(ext.value_bytes()).into_owned())
                        }
                        b"size" => {
                            return Err(bad(format!(
                                "{what}: PAX size records (members over 8 GiB) are not supported"
                            )))
                        }
                        _ => {}
                    }
                }
            }
            continue;
        }
        count += 1;
        if count > max_entries {
            return Err(BinPkgError::Limit(format!(
                "{what} has more than {max_entries} members"
            )));
        }
        let name = match pending_name.take() {
            Some(n) => n,
            None => String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
        };
        visit(&name, &mut entry)?;
    }
    Ok(count)
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
/// (`image` for a gpkg, nothing for a tbz2).
pub(super) fn check_image_path(name: &str, prefix: Option<&str>) -> Result<(), BinPkgError> {
    let bad = |why: &str| BinPkgError::Tar(format!("image member {name:?} {why}"));
    if name.starts_with('/') {
        return Err(bad("is an absolute path"));
    }
    if name.split('/').any(|c| c == "..") {
        return Err(bad("climbs out of the image with `..`"));
    }
    if let Some(prefix) = prefix {
        let rest = name.strip_prefix(prefix);
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
    let mut visit = |name: &str, entry: &mut tar::Entry<'_, _>| -> Result<(), BinPkgError> {
        check_image_path(name, prefix)?;
        if entry.header().entry_type().is_hard_link() {
            let target = entry
                .link_name_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            check_image_path(&target, prefix)?;
        }
        Ok(())
    };
    let count = walk(
        &mut archive,
        what,
        limits.max_image_entries,
        limits.max_tar_extension_bytes,
        &mut visit,
    )
    .map_err(|e| match e {
        BinPkgError::Tar(m) => BinPkgError::Tar(m),
        other => other,
    })?;
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| classify(e, what, BinPkgError::Compression))?;
    Ok(count)
}
