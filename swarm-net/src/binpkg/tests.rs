//! Round trips through [`write_gpkg`] and [`inspect`], and each way a package can be bad.

use super::*;
use std::collections::BTreeMap;
use std::io::Write;

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sample(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("dev-libs/libfoo/libfoo-1.2-3.gpkg.tar");
    let m = meta(&[
        ("SLOT", "0/1.2"),
        ("EAPI", "8"),
        ("KEYWORDS", "amd64"),
        ("USE", "amd64 ssl"),
        ("IUSE", "+ssl debug"),
        ("RDEPEND", "dev-libs/libbar\n  sys-libs/zlib:="),
        ("BUILD_ID", "3"),
        ("BUILD_TIME", "1700000000"),
        ("DESCRIPTION", "a test library"),
        ("repository", "gentoo"),
    ]);
    write_gpkg(
        "dev-libs/libfoo-1.2",
        &m,
        &[
            ("usr/lib/libfoo.so.1", b"\x7fELF not really"),
            ("/usr/share/doc/libfoo/README", b"hello\n"),
        ],
        &out,
    )
    .expect("write_gpkg");
    out
}

/// The outer tar's members, to tamper with.
fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(std::fs::File::open(path).expect("open"));
    a.entries()
        .expect("entries")
        .map(|e| {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).expect("read");
            (name, data)
        })
        .collect()
}

fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.into_inner().expect("tar")
}

fn refused(bytes: &[u8]) -> BinPkgError {
    inspect_bytes(bytes, &Limits::default()).expect_err("a bad package was accepted")
}

#[test]
fn a_written_gpkg_inspects_with_its_identity_and_index_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let path = sample(dir.path());
    let pkg = inspect(&path).expect("valid");
    assert_eq!(pkg.format, Format::Gpkg);
    assert_eq!(pkg.cpv, "dev-libs/libfoo-1.2");
    assert_eq!(pkg.build_id, Some(3));
    assert_eq!(pkg.slot(), "0");
    assert_eq!(pkg.sub_slot(), Some("1.2"));
    assert_eq!(pkg.metadata["RDEPEND"], "dev-libs/libbar sys-libs/zlib:=");
    assert_eq!(pkg.metadata["USE"], "amd64 ssl");
    assert_eq!(pkg.metadata["repository"], "gentoo");
    assert_eq!(pkg.metadata["DESCRIPTION"], "a test library");
    assert_eq!(pkg.file_name(), "libfoo-1.2-3.gpkg.tar");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(pkg.size, bytes.len() as u64);
    use sha2::Digest;
    assert_eq!(pkg.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
    assert_eq!(pkg.md5, hex::encode(md5::Md5::digest(&bytes)));
    assert_eq!(pkg.sha1, hex::encode(sha1::Sha1::digest(&bytes)));
    assert_eq!(pkg.blake2b, hex::encode(blake2::Blake2b512::digest(&bytes)));
    assert!(!pkg.signed);
    let names: Vec<String> = members(&path).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "libfoo-1.2-3/gpkg-1",
            "libfoo-1.2-3/metadata.tar.zst",
            "libfoo-1.2-3/image.tar.zst",
            "libfoo-1.2-3/Manifest"
        ]
    );
}

#[test]
fn empty_and_zero_filled_files_are_refused_by_name() {
    assert_eq!(refused(&[]).kind(), "empty");
    let e = refused(&[0u8; 2048]);
    assert_eq!(e.kind(), "zeros", "{e}");
    assert!(e.to_string().contains("zero bytes"), "{e}");
    assert_eq!(refused(b"hello").kind(), "unknown-format");
}

#[test]
fn a_truncated_gpkg_is_refused_as_truncated() {
    let dir = tempfile::tempdir().expect("dir");
    let bytes = std::fs::read(sample(dir.path())).expect("read");
    // Every cut short of the end-of-archive block, at any byte, is called truncated.
    let end_of_members = bytes.len() - 1024;
    for cut in (300..end_of_members).step_by(97).chain([end_of_members]) {
        let e = refused(&bytes[..cut]);
        assert_eq!(
            e.kind(),
            "truncated",
            "cut at {cut} of {}: {e}",
            bytes.len()
        );
    }
}

#[test]
fn a_manifest_that_lies_is_refused_naming_the_member() {
    let dir = tempfile::tempdir().expect("dir");
    let path = sample(dir.path());
    let orig = members(&path);
    // A changed image: the Manifest's digest no longer matches.
    let mut m = orig.clone();
    let image = m
        .iter_mut()
        .find(|(n, _)| n.ends_with("image.tar.zst"))
        .expect("image");
    let replacement = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, "image/evil", &b"evil"[..])
            .expect("append");
        zstd::bulk::compress(&b.into_inner().expect("tar"), 3).expect("zstd")
    };
    image.1 = replacement;
    let e = refused(&pack(&m));
    assert_eq!(e.kind(), "manifest", "{e}");
    assert!(e.to_string().contains("image.tar.zst"), "{e}");
    // A Manifest whose digest of the image is off by one hex digit (sizes all right).
    let mut m = orig.clone();
    let manifest = m
        .iter_mut()
        .find(|(n, _)| n.ends_with("Manifest"))
        .expect("Manifest");
    let text = String::from_utf8(manifest.1.clone()).expect("utf8");
    let line = text
        .lines()
        .find(|l| l.contains("image.tar.zst"))
        .expect("image line");
    let at = line.find("SHA512 ").expect("sha512") + "SHA512 ".len();
    let mut changed = line.to_string();
    let digit = if &line[at..at + 1] == "0" { "1" } else { "0" };
    changed.replace_range(at..at + 1, digit);
    manifest.1 = text.replace(line, &changed).into_bytes();
    let e = refused(&pack(&m));
    assert!(
        e.to_string()
            .contains("SHA512 of image.tar.zst does not match"),
        "{e}"
    );
    // A Manifest that lies about a size.
    let mut m = orig.clone();
    let manifest = m
        .iter_mut()
        .find(|(n, _)| n.ends_with("Manifest"))
        .expect("Manifest");
    let text = String::from_utf8(manifest.1.clone()).expect("utf8");
    manifest.1 = text
        .replacen("DATA gpkg-1 0 ", "DATA gpkg-1 1 ", 1)
        .into_bytes();
    let e = refused(&pack(&m));
    assert!(e.to_string().contains("says gpkg-1 is 1 bytes"), "{e}");
    // A Manifest that lists a member the package lacks.
    let mut m = orig.clone();
    let manifest = m
        .iter_mut()
        .find(|(n, _)| n.ends_with("Manifest"))
        .expect("Manifest");
    manifest.1.extend_from_slice(b"DATA extra 0 SHA512 00\n");
    assert!(refused(&pack(&m)).to_string().contains("lists extra"));
    // No Manifest at all (the old stand-in's output).
    let m: Vec<_> = orig
        .iter()
        .filter(|(n, _)| !n.ends_with("Manifest"))
        .cloned()
        .collect();
    let e = refused(&pack(&m));
    assert!(e.to_string().contains("Manifest: not found"), "{e}");
    // A member the Manifest does not list.
    let mut m = orig.clone();
    m.insert(1, ("libfoo-1.2-3/extra".into(), b"x".to_vec()));
    assert!(refused(&pack(&m))
        .to_string()
        .contains("does not list the member extra"));
    // The untouched members still pass: the tampering is what was caught.
    inspect_bytes(&pack(&orig), &Limits::default()).expect("repacked original is valid");
}

#[test]
fn a_gpkg_layout_that_portage_refuses_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let orig = members(&sample(dir.path()));
    let renamed = |f: &dyn Fn(&str) -> String| -> Vec<(String, Vec<u8>)> {
        orig.iter().map(|(n, d)| (f(n), d.clone())).collect()
    };
    let two_dirs = renamed(&|n| {
        if n.ends_with("Manifest") {
            "other/Manifest".into()
        } else {
            n.into()
        }
    });
    assert!(refused(&pack(&two_dirs))
        .to_string()
        .contains("two directories"));
    let deep = renamed(&|n| format!("x/{n}"));
    assert_eq!(refused(&pack(&deep)).kind(), "layout");
    let no_marker: Vec<_> = orig
        .iter()
        .filter(|(n, _)| !n.ends_with("gpkg-1"))
        .cloned()
        .collect();
    assert!(refused(&pack(&no_marker)).to_string().contains("no gpkg-1"));
    let mut dup = orig.clone();
    dup.push(orig[0].clone());
    assert!(refused(&pack(&dup)).to_string().contains("twice"));
}

#[test]
fn metadata_without_identity_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("x.gpkg.tar");
    // write_gpkg always writes CATEGORY/PF; build one by hand without PF.
    write_gpkg("dev-libs/x-1", &meta(&[]), &[], &out).expect("write");
    let mut m = members(&out);
    let meta_tar = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(9);
        h.set_mode(0o644);
        b.append_data(&mut h, "metadata/CATEGORY", &b"dev-libs\n"[..])
            .expect("append");
        zstd::bulk::compress(&b.into_inner().expect("tar"), 3).expect("zstd")
    };
    for (name, data) in m.iter_mut() {
        if name.ends_with("metadata.tar.zst") {
            *data = meta_tar.clone();
        }
    }
    remanifest(&mut m);
    let e = refused(&pack(&m));
    assert_eq!(e.kind(), "metadata", "{e}");
    assert!(e.to_string().contains("missing PF, SLOT"), "{e}");
}

#[test]
fn write_gpkg_refuses_what_it_cannot_write_validly() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("x.gpkg.tar");
    for (cpv, m, files) in [
        ("dev-libs/x", meta(&[]), vec![]),
        ("x-1", meta(&[]), vec![]),
        ("dev-libs/x-1", meta(&[("PF", "y-1")]), vec![]),
        ("dev-libs/x-1", meta(&[("BUILD_ID", "one")]), vec![]),
        ("dev-libs/x-1", meta(&[]), vec![("../etc/passwd", &b""[..])]),
        ("dev-libs/x-1", meta(&[("a/b", "c")]), vec![]),
    ] {
        let e = write_gpkg(cpv, &m, &files, &out).expect_err(cpv);
        assert_eq!(e.kind(), "write", "{cpv}: {e}");
    }
    assert!(!out.exists());
}

fn tbz2(tar_members: &[(&str, &[u8])], xpak: Option<&[(&str, &[u8])]>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in tar_members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).expect("append");
    }
    let tar = b.into_inner().expect("tar");
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    enc.write_all(&tar).expect("bzip2");
    let mut out = enc.finish().expect("bzip2");
    if let Some(entries) = xpak {
        let seg = xpak::segment(entries);
        out.extend_from_slice(&seg);
        out.extend_from_slice(&(seg.len() as u32).to_be_bytes());
        out.extend_from_slice(b"STOP");
    }
    out
}

#[test]
fn a_tbz2_with_its_xpak_trailer_inspects() {
    let bytes = tbz2(
        &[("./usr/bin/foo", b"binary")],
        Some(&[
            ("CATEGORY", b"app-misc\n"),
            ("PF", b"foo-2.0-r1\n"),
            ("SLOT", b"0\n"),
            ("EAPI", b"7\n"),
            ("KEYWORDS", b"~amd64\n"),
        ]),
    );
    let pkg = inspect_bytes(&bytes, &Limits::default()).expect("valid tbz2");
    assert_eq!(pkg.format, Format::Xpak);
    assert_eq!(pkg.cpv, "app-misc/foo-2.0-r1");
    assert_eq!(pkg.metadata["KEYWORDS"], "~amd64");
    assert_eq!(pkg.file_name(), "foo-2.0-r1.tbz2");
}

#[test]
fn a_tbz2_without_its_trailer_is_refused_as_such() {
    let bytes = tbz2(&[("./usr/bin/foo", b"binary")], None);
    let e = refused(&bytes);
    assert_eq!(e.kind(), "xpak", "{e}");
    assert!(e.to_string().contains("without an XPAK trailer"), "{e}");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("foo-1.tbz2");
    std::fs::write(&path, &bytes).expect("write");
    let e = inspect_as(&path, Format::Xpak, &Limits::default()).expect_err("no trailer");
    assert!(e.to_string().contains("no XPAK trailer"), "{e}");
    let gpkg = sample(dir.path());
    let e = inspect_as(&gpkg, Format::Xpak, &Limits::default()).expect_err("a gpkg");
    assert_eq!(e.kind(), "xpak", "{e}");
}

#[test]
fn an_image_that_escapes_is_refused() {
    // The tar crate refuses `..` when building, so the name goes into the header raw.
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().expect("ustar").name[..16].copy_from_slice(b"../../etc/passwd");
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend_from_slice(&[0u8; 1024]);
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    enc.write_all(&raw).expect("bzip2");
    let mut bytes = enc.finish().expect("bzip2");
    let seg = xpak::segment(&[("CATEGORY", b"a\n"), ("PF", b"b-1\n"), ("SLOT", b"0\n")]);
    bytes.extend_from_slice(&seg);
    bytes.extend_from_slice(&(seg.len() as u32).to_be_bytes());
    bytes.extend_from_slice(b"STOP");
    let e = refused(&bytes);
    assert!(e.to_string().contains("climbs out of the image"), "{e}");
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    let dir = tempfile::tempdir().expect("dir");
    let big = vec![0u8; 8 << 20];
    let out = dir.path().join("bomb.gpkg.tar");
    write_gpkg("dev-libs/bomb-1", &meta(&[]), &[("zeros", &big)], &out).expect("write");
    assert!(
        std::fs::metadata(&out).expect("stat").len() < 64 << 10,
        "compresses well"
    );
    inspect(&out).expect("within the default limits");
    let tight = Limits {
        max_image_bytes: 1 << 20,
        ..Limits::default()
    };
    let e = inspect_with(&out, &tight).expect_err("over the image limit");
    assert_eq!(e.kind(), "limit", "{e}");
    assert!(
        e.to_string()
            .contains("image.tar.zst decompressed is larger than"),
        "{e}"
    );
}

/// Writes the committed fuzz corpus (`fuzz/corpus/binpkg/`):
/// `cargo test -p swarm-net --lib binpkg::tests::write_the_fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/binpkg"]
fn write_the_fuzz_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/binpkg");
    std::fs::create_dir_all(&corpus).expect("mkdir");
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("small.gpkg.tar");
    write_gpkg(
        "app-misc/hello-1.0",
        &meta(&[("SLOT", "0/1"), ("BUILD_ID", "1"), ("KEYWORDS", "amd64")]),
        &[("usr/bin/hello", b"hi")],
        &out,
    )
    .expect("write");
    let gpkg = std::fs::read(&out).expect("read");
    let mut m = members(&out);
    m.retain(|(n, _)| !n.ends_with("Manifest"));
    let valid_tbz2 = tbz2(
        &[("./usr/bin/foo", b"binary")],
        Some(&[
            ("CATEGORY", b"app-misc\n"),
            ("PF", b"foo-2.0\n"),
            ("SLOT", b"0\n"),
        ]),
    );
    let files: [(&str, Vec<u8>); 7] = [
        ("valid-gpkg", gpkg.clone()),
        ("truncated-gpkg", gpkg[..gpkg.len() / 2].to_vec()),
        ("no-manifest-gpkg", pack(&m)),
        ("valid-tbz2", valid_tbz2.clone()),
        ("no-trailer-tbz2", tbz2(&[("./x", b"x")], None)),
        (
            "xpak-segment",
            xpak::segment(&[("CATEGORY", b"a"), ("PF", b"b-1")]),
        ),
        ("zeros", vec![0u8; 1024]),
    ];
    for (name, data) in files {
        std::fs::write(corpus.join(name), data).expect("write");
    }
}

/// Figures for the report, not assertions: `cargo test --release -p swarm-net --lib
/// binpkg::tests::measure -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run it in release mode"]
fn measure_write_and_inspect() {
    let dir = tempfile::tempdir().expect("dir");
    let m = meta(&[("SLOT", "0"), ("KEYWORDS", "amd64")]);
    let n = 1000;
    let t = std::time::Instant::now();
    for i in 0..n {
        let out = dir.path().join(format!("s/p{i}-1.gpkg.tar"));
        write_gpkg(&format!("dev-libs/p{i}-1"), &m, &[("usr/x", b"x")], &out).expect("write");
    }
    let write_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    for i in 0..n {
        inspect(&dir.path().join(format!("s/p{i}-1.gpkg.tar"))).expect("inspect");
    }
    let inspect_s = t.elapsed().as_secs_f64();
    println!(
        "small gpkg: write_gpkg {:.0}/s, inspect {:.0}/s",
        n as f64 / write_s,
        n as f64 / inspect_s
    );
    // 64 MiB of poorly compressible data.
    let mut seed = 1u64;
    let data: Vec<u8> = (0..64usize << 20)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 56) as u8
        })
        .collect();
    let out = dir.path().join("big-1.gpkg.tar");
    write_gpkg("dev-libs/big-1", &m, &[("usr/big", &data)], &out).expect("write");
    let size = std::fs::metadata(&out).expect("stat").len();
    let t = std::time::Instant::now();
    inspect(&out).expect("inspect");
    let s = t.elapsed().as_secs_f64();
    println!(
        "64 MiB image: file {} MiB, inspect {:.2} s = {:.0} MiB/s",
        size >> 20,
        s,
        (size >> 20) as f64 / s
    );
}

#[test]
fn a_fifo_or_directory_in_staging_is_refused_at_once_never_waited_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("zlib-1.3.1.gpkg.tar");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("mkfifo");
    let sub = dir.path().join("a-dir.gpkg.tar");
    std::fs::create_dir(&sub).expect("dir");
    for path in [fifo, sub] {
        // A plain open of a FIFO blocks until a writer comes: run it aside
        // and give it 10 s (it answers in microseconds when it does not block).
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(super::inspect(&p).map(|_| ()).map_err(|e| e.to_string()));
        });
        let got = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("inspect of {} is still waiting", path.display()));
        let err = got.expect_err("not a package");
        assert!(err.contains("not a regular file"), "{err}");
    }
}

/// A raw tar header: name, type, link target and size written as given (the tar crate's
/// setters refuse the hostile names these tests need). ustar unless changed afterwards.
fn raw_header(name: &str, kind: u8, link: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let old = h.as_old_mut();
    old.name = [0; 100];
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    old.linkflag = [kind];
    h.set_size(size);
    h.set_mode(if kind == b'5' { 0o755 } else { 0o644 });
    h.set_cksum();
    h
}

/// A member of a raw tar: its header and data.
fn raw(name: &str, kind: u8, link: &str, data: &[u8]) -> (tar::Header, Vec<u8>) {
    (
        raw_header(name, kind, link, data.len() as u64),
        data.to_vec(),
    )
}

/// An extension header (`L`, `K`, `x`, `g`) carrying `data`.
fn ext(kind: u8, data: &[u8]) -> (tar::Header, Vec<u8>) {
    raw("././@LongLink", kind, "", data)
}

/// A PAX record, `<len> <key>=<value>\n`.
fn pax(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A tar of `members` after an `image/` directory, data padded, two zero blocks at the end.
fn raw_tar(members: &[(tar::Header, Vec<u8>)]) -> Vec<u8> {
    let mut out = raw_header("image/", b'5', "", 0).as_bytes().to_vec();
    for (h, data) in members {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A gpkg whose image archive is `image_tar` (zstd) and whose Manifest matches.
/// Rewrites the Manifest of a gpkg's members to match the others: a package
/// that differs from a valid one only where a test changed it.
fn remanifest(m: &mut [(String, Vec<u8>)]) {
    let mut manifest = String::new();
    for (name, data) in m.iter() {
        if name.ends_with("Manifest") {
            continue;
        }
        let mut d = digest::MemberDigests::default();
        d.update(data);
        let [(h1, x1), (h2, x2)] = d.finish();
        let base = name.rsplit('/').next().expect("name");
        manifest.push_str(&format!("DATA {base} {} {h1} {x1} {h2} {x2}\n", data.len()));
    }
    for (name, data) in m.iter_mut() {
        if name.ends_with("Manifest") {
            *data = manifest.clone().into_bytes();
        }
    }
}

fn gpkg_with_image(image_tar: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    let mut m = members(&sample(dir.path()));
    for (name, data) in m.iter_mut() {
        if name.ends_with("image.tar.zst") {
            *data = zstd::bulk::compress(image_tar, 3).expect("zstd");
        }
    }
    remanifest(&mut m);
    pack(&m)
}

/// Asserts that an image of `members` is refused with a message containing `why`.
fn assert_image_refused(members: &[(tar::Header, Vec<u8>)], why: &str) {
    let e = refused(&gpkg_with_image(&raw_tar(members)));
    assert_eq!(e.kind(), "tar", "{e}");
    assert!(e.to_string().contains(why), "want {why:?}, got: {e}");
}

fn assert_image_accepted(members: &[(tar::Header, Vec<u8>)]) {
    inspect_bytes(&gpkg_with_image(&raw_tar(members)), &Limits::default())
        .unwrap_or_else(|e| panic!("a valid image was refused: {e}"));
}

#[test]
fn device_files_and_fifos_in_an_image_are_refused_as_portage_refuses_them() {
    for (kind, what) in [
        (b'3', "is a character device"),
        (b'4', "is a block device"),
        (b'6', "is a FIFO"),
    ] {
        assert_image_refused(&[raw("image/usr/evil", kind, "", b"")], what);
    }
}

#[test]
fn an_image_packed_from_its_directory_with_dot_slash_names_is_accepted() {
    // `tar -C top -c .`: the root entry, then `./image/...` (h19).
    assert_image_accepted(&[
        raw("./", b'5', "", b""),
        raw("./image/", b'5', "", b""),
        raw("./image/usr/", b'5', "", b""),
        raw("./image/usr/x", b'0', "", b"xxxx"),
        raw("./image/usr/y", b'1', "./image/usr/x", b""),
    ]);
    assert_image_refused(&[raw("./etc/x", b'0', "", b"x")], "is not under image/");
    assert_image_refused(
        &[raw("./image/../../x", b'0', "", b"x")],
        "climbs out of the image",
    );
}

#[test]
fn an_image_member_that_appears_twice_is_refused() {
    let file = raw("image/usr/x", b'0', "", b"AAAA");
    assert_image_refused(&[file.clone(), file], "\"image/usr/x\" appears twice");
    let dir = raw("image/usr/", b'5', "", b"");
    assert_image_refused(&[dir.clone(), dir], "\"image/usr\" appears twice");
}

#[test]
fn a_hard_link_to_a_later_or_missing_member_is_refused() {
    let file = raw("image/usr/b", b'0', "", b"bbbb");
    let link = raw("image/usr/a", b'1', "image/usr/b", b"");
    assert_image_refused(&[link.clone(), file.clone()], "hardlink escape");
    assert_image_refused(
        &[raw("image/usr/a", b'1', "image/usr/nothere", b"")],
        "not an earlier member",
    );
    assert_image_accepted(&[file, link]);
    // Portage's tarfile copies a hard-linked directory rather than failing.
    assert_image_accepted(&[raw("image/usr/a", b'1', "image", b"")]);
    // A hard link to a symlink follows it (`os.link`): what it leads to must be there
    // already (`tar --sort=name` of a symlink with two hard-linked names; h19).
    let alias = raw("image/usr/lib/alias.so", b'2', "libz.so.1.3", b"");
    let hard = raw(
        "image/usr/lib/libz.so.1",
        b'1',
        "image/usr/lib/alias.so",
        b"",
    );
    let real = raw("image/usr/lib/libz.so.1.3", b'0', "", b"zzzz");
    assert_image_refused(
        &[alias.clone(), hard.clone(), real.clone()],
        "which leads to \"image/usr/lib/libz.so.1.3\", not an earlier member",
    );
    assert_image_accepted(&[real, alias, hard]);
}

#[test]
fn a_member_written_through_a_symlink_out_of_the_image_is_refused() {
    let through = raw("image/usr/share/h/pwned", b'0', "", b"x");
    // Four `..` from image/usr/share leave the extraction root; three stay in it (beside
    // image/, which Portage extracts into a temporary directory) and pass, as in Portage.
    for target in [
        "/tmp/victim",
        "../../../../outside",
        "../../../../image/usr",
    ] {
        assert_image_refused(
            &[raw("image/usr/share/h", b'2', target, b""), through.clone()],
            "symlink escape",
        );
    }
    // Through a chain: a relative link to an absolute one.
    assert_image_refused(
        &[
            raw("image/etc", b'2', "/etc", b""),
            raw("image/usr/share/h", b'2', "../../etc", b""),
            through.clone(),
        ],
        "symlink escape",
    );
    // A hard link to an absolute symlink, read from its new place, and a loop.
    assert_image_refused(
        &[
            raw("image/l", b'2', "/", b""),
            raw("image/usr/m", b'1', "image/l", b""),
        ],
        "symlink escape",
    );
    assert_image_refused(
        &[
            raw("image/usr/share/h", b'2', "k", b""),
            raw("image/usr/share/k", b'2', "h", b""),
            through.clone(),
        ],
        "symlink loop",
    );
    // The image directory itself pointing out: refused by the final check.
    let mut no_dir = raw_tar(&[raw("image", b'2', "/", b"")]);
    no_dir.drain(..512);
    let e = refused(&gpkg_with_image(&no_dir));
    assert!(e.to_string().contains("symlink escape"), "{e}");
    // What real packages do passes: absolute symlinks nothing is written through, and
    // files written through relative symlinks that stay inside.
    assert_image_accepted(&[
        raw("image/usr/share/h", b'2', "../../../beside", b""),
        through.clone(),
        raw("image/usr/bin/sh", b'2', "/bin/bash", b""),
        raw("image/usr/lib64/", b'5', "", b""),
        raw("image/usr/lib", b'2', "lib64", b""),
        raw("image/usr/lib/libx.so", b'0', "", b"elf"),
        raw("image/usr/lib/liby.so", b'1', "image/usr/lib/libx.so", b""),
    ]);
}

#[test]
fn a_name_prefix_in_a_header_that_is_not_ustar_is_refused() {
    for magic in [&b"\0\0\0\0\0\0\0\0"[..], b"ustar  \0", b"ustar\0\0\0"] {
        let (mut h, data) = raw("image/usr/x", b'0', "", b"evil\n");
        let bytes = h.as_mut_bytes();
        bytes[257..265].copy_from_slice(magic);
        bytes[345..345 + 17].copy_from_slice(b"image/../../../..");
        h.set_cksum();
        assert_image_refused(&[(h, data)], "name prefix in a header that is not ustar");
    }
    // A ustar prefix is applied by both readers, and checked.
    let (mut h, data) = raw("usr/x", b'0', "", b"fine");
    h.as_mut_bytes()[345..350].copy_from_slice(b"image");
    h.set_cksum();
    assert_image_accepted(&[(h.clone(), data.clone())]);
    h.as_mut_bytes()[345..357].copy_from_slice(b"image/../../");
    h.set_cksum();
    assert_image_refused(&[(h, data)], "climbs out of the image");
}

#[test]
fn link_targets_from_long_link_and_pax_headers_are_the_ones_checked() {
    let escape = format!("image/{}../../../../etc/hostname", "./".repeat(60));
    let mut target = escape.clone().into_bytes();
    target.push(0);
    let link = raw("image/usr/a", b'1', "image/usr/b", b"");
    let file = raw("image/usr/b", b'0', "", b"b");
    assert_image_refused(
        &[file.clone(), ext(b'K', &target), link.clone()],
        "climbs out of the image",
    );
    assert_image_refused(
        &[
            file.clone(),
            ext(b'x', &pax("linkpath", &escape)),
            link.clone(),
        ],
        "climbs out of the image",
    );
    // A symlink target given in a long link is the one a later member is written through.
    assert_image_refused(
        &[
            ext(b'K', b"/tmp/victim\0"),
            raw("image/usr/s", b'2', "inside", b""),
            raw("image/usr/s/pwned", b'0', "", b"x"),
        ],
        "symlink escape",
    );
    // The long name of a member is the one checked.
    assert_image_refused(
        &[ext(b'L', b"image/../../etc/x\0"), file.clone()],
        "climbs out of the image",
    );
    // Applied long links are honoured for valid links too.
    let long = format!("image/usr/{}", "d".repeat(150));
    let mut long0 = long.clone().into_bytes();
    long0.push(0);
    assert_image_accepted(&[
        ext(b'L', &long0),
        file.clone(),
        ext(b'K', &long0),
        raw("image/usr/c", b'1', "image/usr/zzz", b""),
    ]);
}

#[test]
fn headers_python_reads_differently_from_the_tar_crate_are_refused() {
    let file = raw("image/usr/b", b'0', "", b"b");
    // tarfile skips no data after a directory or link: it would read these as headers.
    let mut hidden = raw_header("image/../../etc/x", b'0', "", 0)
        .as_bytes()
        .to_vec();
    hidden.resize(1024, 0);
    for (name, kind) in [
        ("image/usr/", b'5'),
        ("image/usr/s", b'2'),
        ("image/usr/", 0),
    ] {
        assert_image_refused(
            &[raw(name, kind, "b", &hidden)],
            "is not a regular file but claims 1024 bytes",
        );
    }
    assert_image_refused(
        &[ext(b'g', &pax("path", "image/../../x")), file.clone()],
        "a global PAX header sets path",
    );
    assert_image_refused(
        &[
            ext(b'L', b"image/usr/c\0"),
            ext(b'x', &pax("path", "image/usr/d")),
            file.clone(),
        ],
        "two extension headers give one member's name",
    );
    assert_image_refused(
        &[
            ext(b'x', &pax("GNU.sparse.name", "image/../../x")),
            file.clone(),
        ],
        "GNU.sparse.name",
    );
    assert_image_refused(&[raw("image/usr/s", b'S', "", b"")], "GNU sparse file");
    assert_image_refused(
        &[raw("image/usr/x", b'X', "", &pax("path", "../../x"))],
        "Solaris extension header",
    );
    assert_image_refused(&[file, ext(b'L', b"image/usr/c\0")], "no member after it");
}

fn gpkg_with_metadata(pairs: &[(&str, &str)]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("x.gpkg.tar");
    write_gpkg("app-misc/h-1.0", &meta(pairs), &[("usr/x", b"x")], &out).expect("write");
    std::fs::read(out).expect("read")
}

#[test]
fn metadata_a_client_would_mask_is_refused_naming_the_key() {
    for (pairs, why) in [
        (
            vec![("SLOT", "0/../../x y")],
            "SLOT \"0/../../x y\" is not a slot name",
        ),
        (
            vec![("RDEPEND", "|| ( ( >=>=foo")],
            "RDEPEND does not parse",
        ),
        (
            vec![("PDEPEND", ">=>=dev-libs/foo-1")],
            "PDEPEND: \">=>=dev-libs/foo-1\"",
        ),
        (
            vec![("EAPI", "99")],
            "EAPI \"99\" is not one Portage supports",
        ),
        (
            vec![("repository", "evil repo")],
            "repository \"evil repo\"",
        ),
    ] {
        let e = refused(&gpkg_with_metadata(&pairs));
        assert_eq!(e.kind(), "metadata", "{e}");
        assert!(e.to_string().contains(why), "want {why:?}, got: {e}");
    }
    // The tbz2 path reads metadata through the same rules.
    let bytes = tbz2(
        &[("./usr/bin/foo", b"binary")],
        Some(&[
            ("CATEGORY", b"app-misc\n"),
            ("PF", b"foo-2.0\n"),
            ("SLOT", b"0\n"),
            ("EAPI", b"99\n"),
        ]),
    );
    assert!(refused(&bytes).to_string().contains("EAPI \"99\""));
}

/// h20: a gpkg made with `BINPKG_COMPRESS=none` (`image.tar`, `metadata.tar`) installs only
/// on clients set to `none` too; every other client's emerge hung on it.
#[test]
fn a_gpkg_member_without_compression_is_refused_naming_the_setting() {
    for stem in ["image", "metadata"] {
        let dir = tempfile::tempdir().expect("dir");
        let mut m = members(&sample(dir.path()));
        for (name, data) in m.iter_mut() {
            if name.ends_with(&format!("{stem}.tar.zst")) {
                *data = zstd::stream::decode_all(data.as_slice()).expect("unzstd");
                *name = name.trim_end_matches(".zst").to_owned();
            }
        }
        remanifest(&mut m);
        let e = refused(&pack(&m));
        assert!(
            e.to_string().contains(&format!(
                "{stem}.tar is not compressed (BINPKG_COMPRESS=none)"
            )),
            "{e}"
        );
    }
}

/// h20: `BINPKG_COMPRESS_FLAGS="--long=28"` (to 31) is a valid setting that Portage reads
/// (`zstd -d --long=31`); past zstd's default window limit of 27 the package was refused,
/// and the build looped. A file is read again with the long window, one at a time.
#[test]
fn a_gpkg_compressed_with_a_long_zstd_window_is_accepted() {
    let dir = tempfile::tempdir().expect("dir");
    let mut m = members(&sample(dir.path()));
    for (name, data) in m.iter_mut() {
        if name.ends_with("image.tar.zst") {
            let tar = zstd::stream::decode_all(data.as_slice()).expect("unzstd");
            let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
            enc.set_parameter(zstd::zstd_safe::CParameter::WindowLog(28))
                .expect("window");
            enc.set_parameter(zstd::zstd_safe::CParameter::EnableLongDistanceMatching(
                true,
            ))
            .expect("long");
            std::io::Write::write_all(&mut enc, &tar).expect("write");
            *data = enc.finish().expect("finish");
        }
    }
    remanifest(&mut m);
    let bytes = pack(&m);
    let e = refused(&bytes);
    assert!(
        e.to_string().contains("Frame requires too much memory"),
        "{e}"
    );
    let path = dir.path().join("long.gpkg.tar");
    std::fs::write(&path, &bytes).expect("write");
    let pkg = super::inspect(&path).expect("a long window is read as Portage reads it");
    assert_eq!(pkg.cpv, "dev-libs/libfoo-1.2");
}
