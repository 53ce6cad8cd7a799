//! The `.tbz2` format: a compressed tar followed by an XPAK segment and a trailer,
//!
//! ```text
//! <compressed tar> XPAKPACK <index len: u32 BE> <data len: u32 BE> <index> <data> XPAKSTOP
//!                  <segment len: u32 BE> STOP
//! ```
//!
//! where each index entry is `<name len: u32> <name> <data offset: u32> <data len: u32>`.
//! No crate reads XPAK, so this small parser is ours: every length is checked before it is
//! used, and it is fuzzed (`fuzz/fuzz_targets/binpkg.rs`).

use super::compress::{classify, Compression};
use super::digest::{FileDigests, Tee};
use super::meta;
use super::model::Source;
use super::model::{BinPkg, BinPkgError, Format, Limits};
use super::tarwalk::walk_image;
use std::collections::BTreeMap;
use std::io::{Read, SeekFrom};

/// `XPAKPACK` + two lengths, and `XPAKSTOP`.
const SEGMENT_OVERHEAD: u64 = 16 + 8;

pub(super) fn inspect(
    src: &mut dyn Source,
    size: u64,
    limits: &Limits,
) -> Result<BinPkg, BinPkgError> {
    let io = BinPkgError::read;
    let bad = |m: String| BinPkgError::Xpak(m);
    if size < SEGMENT_OVERHEAD + 8 {
        return Err(bad(format!(
            "{size} bytes is too short for an XPAK trailer"
        )));
    }
    let mut tail = [0u8; 16];
    src.seek(SeekFrom::Start(size - 16)).map_err(io)?;
    src.read_exact(&mut tail).map_err(io)?;
    let seg_len = u64::from(u32::from_be_bytes([tail[8], tail[9], tail[10], tail[11]]));
    if seg_len < SEGMENT_OVERHEAD || seg_len + 8 > size {
        return Err(bad(format!(
            "the trailer gives an XPAK segment of {seg_len} bytes in a {size} byte file"
        )));
    }
    if seg_len > limits.max_metadata_bytes.saturating_add(SEGMENT_OVERHEAD) {
        return Err(BinPkgError::Limit(format!(
            "the XPAK segment is {seg_len} bytes (limit {})",
            limits.max_metadata_bytes
        )));
    }
    let tar_len = size - 8 - seg_len;
    if tar_len == 0 {
        return Err(bad("nothing but XPAK: no archive in front of it".into()));
    }
    let mut segment = vec![0u8; seg_len as usize];
    src.seek(SeekFrom::Start(tar_len)).map_err(io)?;
    src.read_exact(&mut segment).map_err(io)?;
    let metadata = parse_segment(&segment, limits.max_metadata_entries)?;

    let mut head = vec![0u8; tar_len.min(512) as usize];
    src.seek(SeekFrom::Start(0)).map_err(io)?;
    src.read_exact(&mut head).map_err(io)?;
    let comp =
        match Compression::sniff(&head) {
            Some(c) => c,
            None if head.get(257..262) == Some(b"ustar".as_slice()) => Compression::None,
            None => return Err(BinPkgError::Compression(
                "the archive in front of the XPAK segment is neither a known compression nor a tar"
                    .into(),
            )),
        };
    src.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut tee = Tee::new(&mut *src, FileDigests::default());
    let what = format!("the {} archive", comp.name());
    walk_image((&mut tee).take(tar_len), comp, tar_len, &what, None, limits)?;
    tee.drain()
        .map_err(|e| classify(e, "the tbz2", BinPkgError::Tar))?;
    if tee.count != size {
        return Err(BinPkgError::Truncated(format!(
            "read {} of {size} bytes",
            tee.count
        )));
    }
    meta::build(Format::Xpak, &metadata, size, tee.sink.finish(), false)
}

fn be32(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u64::from(u32::from_be_bytes([s[0], s[1], s[2], s[3]])))
}

/// Parses an XPAK segment (`XPAKPACK` … `XPAKSTOP`) into its named values.
pub(super) fn parse_segment(
    seg: &[u8],
    max_entries: u64,
) -> Result<BTreeMap<String, Vec<u8>>, BinPkgError> {
    let bad = |m: &str| BinPkgError::Xpak(m.to_string());
    if !seg.starts_with(b"XPAKPACK") {
        return Err(bad("the segment does not start with XPAKPACK"));
    }
    if !seg.ends_with(b"XPAKSTOP") || seg.len() < SEGMENT_OVERHEAD as usize {
        return Err(bad("the segment does not end with XPAKSTOP"));
    }
    let index_len = be32(seg, 8).ok_or_else(|| bad("short header"))?;
    let data_len = be32(seg, 12).ok_or_else(|| bad("short header"))?;
    if SEGMENT_OVERHEAD + index_len + data_len != seg.len() as u64 {
        return Err(bad(
            "the index and data lengths do not add up to the segment's length",
        ));
    }
    let index = &seg[16..16 + index_len as usize];
    let data = &seg[16 + index_len as usize..seg.len() - 8];
    let mut out = BTreeMap::new();
    let mut pos = 0usize;
    while pos < index.len() {
        if out.len() as u64 >= max_entries {
            return Err(BinPkgError::Limit(format!(
                "the XPAK index has more than {max_entries} entries"
            )));
        }
        let cut = || bad("an index entry runs past the end of the index");
        let name_len = be32(index, pos).ok_or_else(cut)? as usize;
        let name_at = pos + 4;
        let name = index.get(name_at..name_at.checked_add(name_len).ok_or_else(cut)?);
        let name = name.ok_or_else(cut)?;
        let at = name_at + name_len;
        let offset = be32(index, at).ok_or_else(cut)? as usize;
        let len = be32(index, at + 4).ok_or_else(cut)? as usize;
        pos = at + 8;
        let value = offset
            .checked_add(len)
            .and_then(|end| data.get(offset..end))
            .ok_or_else(|| bad("an index entry points outside the data"))?;
        if name.is_empty() {
            return Err(bad("an index entry has an empty name"));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        if out.insert(name.clone(), value.to_vec()).is_some() {
            return Err(BinPkgError::Xpak(format!("the index names {name} twice")));
        }
    }
    Ok(out)
}

/// Builds an XPAK segment (for tests: Portage's `xpak_mem` layout).
#[cfg(test)]
pub(super) fn segment(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut index = Vec::new();
    let mut data = Vec::new();
    for (name, value) in entries {
        index.extend_from_slice(&(name.len() as u32).to_be_bytes());
        index.extend_from_slice(name.as_bytes());
        index.extend_from_slice(&(data.len() as u32).to_be_bytes());
        index.extend_from_slice(&(value.len() as u32).to_be_bytes());
        data.extend_from_slice(value);
    }
    let mut seg = b"XPAKPACK".to_vec();
    seg.extend_from_slice(&(index.len() as u32).to_be_bytes());
    seg.extend_from_slice(&(data.len() as u32).to_be_bytes());
    seg.extend_from_slice(&index);
    seg.extend_from_slice(&data);
    seg.extend_from_slice(b"XPAKSTOP");
    seg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_round_trips() {
        let seg = segment(&[("CATEGORY", b"dev-libs\n"), ("PF", b"foo-1\n")]);
        let m = parse_segment(&seg, 10).expect("parses");
        assert_eq!(m["CATEGORY"], b"dev-libs\n");
        assert_eq!(m["PF"], b"foo-1\n");
    }

    #[test]
    fn a_segment_with_lying_lengths_is_refused() {
        let seg = segment(&[("CATEGORY", b"dev-libs\n")]);
        for cut in [9usize, 13, 17, 29, 33] {
            let mut bad = seg.clone();
            bad[cut] = 0xff;
            assert!(parse_segment(&bad, 10).is_err(), "byte {cut} changed");
        }
        assert!(parse_segment(b"XPAKPACKXPAKSTOP", 10).is_err());
        let many = segment(&[("A", b"1"), ("B", b"2"), ("C", b"3")]);
        assert_eq!(parse_segment(&many, 2).expect_err("limit").kind(), "limit");
    }
}
