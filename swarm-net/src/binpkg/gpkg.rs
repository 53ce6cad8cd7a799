//! Reading and checking a GLEP 78 gpkg, following Portage's `gpkg._verify_binpkg`.

use super::compress::{classify, Bounded, Compression};
use super::digest::{FileDigests, Hashed, MemberDigests, Tee};
use super::manifest;
use super::meta;
use super::model::Source;
use super::model::{BinPkg, BinPkgError, Format, Limits};
use super::tar_member::{Kind, Member};
use super::tarwalk::{read_small, walk, walk_image};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, SeekFrom};

/// What the walk over the outer tar collected.
#[derive(Default)]
struct Container {
    prefix: Option<String>,
    names: BTreeSet<String>,
    /// Every member but the Manifest: file name, size, Manifest digests.
    hashed: Vec<Hashed>,
    manifest: Option<Vec<u8>>,
    metadata: Option<(String, Compression, Vec<u8>)>,
    image: Option<String>,
    has_version: bool,
    has_sig: bool,
    /// Where the last member's data (padded to a block) ends.
    end: u64,
}

pub(super) fn inspect(
    src: &mut dyn Source,
    size: u64,
    limits: &Limits,
) -> Result<BinPkg, BinPkgError> {
    let io = BinPkgError::read;
    src.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut tee = Tee::new(&mut *src, FileDigests::default());
    let mut c = Container::default();
    {
        let mut archive = tar::Archive::new(&mut tee);
        let mut visit =
            |m: &Member<'_>, entry: &mut tar::Entry<'_, _>| c.member(m, entry, size, limits);
        walk(
            &mut archive,
            "the gpkg container",
            limits.max_members,
            limits.max_tar_extension_bytes,
            &mut visit,
        )?;
    }
    tee.drain()
        .map_err(|e| classify(e, "the gpkg container", BinPkgError::Tar))?;
    let digests = tee.sink.finish();
    if c.end > 0 && size < c.end + 512 {
        return Err(BinPkgError::Truncated(format!(
            "the file ends at {size} bytes, right after a member and without the tar's end-of-archive block"
        )));
    }
    let (metadata, signed) = c.verify(limits)?;
    meta::build(Format::Gpkg, &metadata, size, digests, signed)
}

impl Container {
    fn member<R: Read>(
        &mut self,
        m: &Member<'_>,
        entry: &mut tar::Entry<'_, R>,
        file_size: u64,
        limits: &Limits,
    ) -> Result<(), BinPkgError> {
        let name = m.name;
        let layout = |m: String| BinPkgError::Layout(m);
        let (prefix, file) = match name.split_once('/') {
            Some((p, f)) if !p.is_empty() && !f.is_empty() && !f.contains('/') => (p, f),
            _ => {
                return Err(layout(format!(
                    "member {name:?} is not <basename>/<file>: a gpkg holds one directory of plain files"
                )))
            }
        };
        match &self.prefix {
            None => self.prefix = Some(prefix.to_string()),
            Some(p) if p != prefix => {
                return Err(layout(format!(
                    "members in two directories, {p}/ and {prefix}/"
                )))
            }
            Some(_) => {}
        }
        if !self.names.insert(file.to_string()) {
            return Err(layout(format!("member {name:?} appears twice")));
        }
        if m.kind != Kind::File || !entry.header().entry_type().is_file() {
            return Err(layout(format!("member {name:?} is not a regular file")));
        }
        let end = entry.raw_file_position().saturating_add(entry.size());
        if end > file_size {
            return Err(BinPkgError::Truncated(format!(
                "member {name:?} needs {} bytes up to offset {end}, but the file ends at {file_size}",
                entry.size()
            )));
        }
        self.end = self.end.max(end.div_ceil(512) * 512);
        if file == "Manifest" {
            self.manifest = Some(read_small(
                entry,
                "the Manifest",
                limits.max_manifest_bytes,
            )?);
            return Ok(());
        }
        let mut tee = Tee::new(&mut *entry, MemberDigests::default());
        let member = Compression::split_member(file);
        if let Some(("metadata" | "image", Compression::None)) = member {
            return Err(uncompressed(file));
        }
        match member {
            Some(("metadata", comp)) => {
                if self.metadata.is_some() {
                    return Err(layout("two metadata archives".into()));
                }
                let mut bytes = Vec::new();
                (&mut tee)
                    .take(limits.max_metadata_compressed_bytes.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(|e| classify(e, file, BinPkgError::Tar))?;
                if bytes.len() as u64 > limits.max_metadata_compressed_bytes {
                    return Err(BinPkgError::Limit(format!(
                        "{file} is larger than {} bytes",
                        limits.max_metadata_compressed_bytes
                    )));
                }
                self.metadata = Some((file.to_string(), comp, bytes));
            }
            Some(("image", comp)) => {
                if self.image.is_some() {
                    return Err(layout("two image archives".into()));
                }
                let compressed = entry_size(&tee);
                walk_image(&mut tee, comp, compressed, file, Some("image"), limits)?;
                self.image = Some(file.to_string());
            }
            _ => {
                self.has_version |= file == "gpkg-1";
                self.has_sig |= file.ends_with(".sig");
            }
        }
        tee.drain()
            .map_err(|e| classify(e, file, BinPkgError::Tar))?;
        let want = tee.inner.size();
        if tee.count != want {
            return Err(BinPkgError::Truncated(format!(
                "member {name:?} has {} of its {want} bytes",
                tee.count
            )));
        }
        self.hashed
            .push((file.to_string(), want, tee.sink.finish()));
        Ok(())
    }

    /// Checks the collected members against GLEP 78 and the Manifest, and reads the
    /// metadata. Returns the metadata files and whether the package is signed.
    fn verify(self, limits: &Limits) -> Result<(BTreeMap<String, Vec<u8>>, bool), BinPkgError> {
        if self.names.is_empty() {
            return Err(BinPkgError::Layout(
                "the tar archive has no members: not a gpkg".into(),
            ));
        }
        if !self.has_version {
            return Err(BinPkgError::Layout(
                "no gpkg-1 member: not a GLEP 78 gpkg".into(),
            ));
        }
        let Some(manifest) = self.manifest else {
            return Err(BinPkgError::Manifest(
                "not found: Portage refuses a gpkg without a Manifest".into(),
            ));
        };
        let Some((meta_name, comp, meta_bytes)) = self.metadata else {
            return Err(BinPkgError::Layout("no metadata.tar archive".into()));
        };
        if self.image.is_none() {
            return Err(BinPkgError::Layout("no image.tar archive".into()));
        }
        let parsed = manifest::parse(&manifest)?;
        manifest::check(&parsed.records, &self.hashed)?;
        let metadata = read_metadata(&meta_name, comp, &meta_bytes, limits)?;
        Ok((metadata, self.has_sig || parsed.signed))
    }
}

fn entry_size<R: Read, S>(tee: &Tee<&mut tar::Entry<'_, R>, S>) -> u64 {
    tee.inner.size()
}

/// Decompresses the metadata archive and returns its files by key (`metadata/SLOT` → `SLOT`).
/// Like Portage's `_check_metadata_files`, every member must be a regular file under `metadata/`.
fn read_metadata(
    name: &str,
    comp: Compression,
    bytes: &[u8],
    limits: &Limits,
) -> Result<BTreeMap<String, Vec<u8>>, BinPkgError> {
    let decoder = comp.decoder(bytes, name, limits)?;
    let bounded = Bounded::new(
        decoder,
        limits.max_metadata_bytes,
        format!("{name} decompressed"),
    );
    let mut archive = tar::Archive::new(bounded);
    let mut files = BTreeMap::new();
    let mut visit = |m: &Member<'_>, entry: &mut tar::Entry<'_, _>| -> Result<(), BinPkgError> {
        let path = m.name;
        let bad = |why: &str| BinPkgError::Metadata(format!("{name}: member {path:?} {why}"));
        let key = path
            .strip_prefix("metadata/")
            .filter(|k| !k.is_empty() && !k.contains('/'))
            .ok_or_else(|| bad("is not metadata/<KEY>"))?;
        if m.kind != Kind::File || !entry.header().entry_type().is_file() {
            return Err(bad("is not a regular file"));
        }
        let data = read_small(entry, path, limits.max_metadata_bytes)?;
        if files.insert(key.to_string(), data).is_some() {
            return Err(bad("appears twice"));
        }
        Ok(())
    };
    walk(
        &mut archive,
        name,
        limits.max_metadata_entries,
        limits.max_tar_extension_bytes,
        &mut visit,
    )?;
    let mut rest = archive.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| classify(e, name, BinPkgError::Compression))?;
    Ok(files)
}

/// A gpkg archive member packed without compression (`BINPKG_COMPRESS=none`): its name carries
/// no compression, so a client decompresses it with its own `BINPKG_COMPRESS`
/// (`gpkg._get_decompression_cmd(None)`), which fails, and its emerge hangs (h20: every client
/// but one set to `none`). Published, it is a package almost no client can install.
fn uncompressed(file: &str) -> BinPkgError {
    BinPkgError::Compression(format!(
        "{file} is not compressed (BINPKG_COMPRESS=none): a Portage client whose BINPKG_COMPRESS \
         is anything else unpacks it with its own decompressor, fails, and its emerge hangs; set \
         BINPKG_COMPRESS to zstd (Portage's default), xz, bzip2, gzip or lz4 on the drone"
    ))
}
