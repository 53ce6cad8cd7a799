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
    let mut manifest = String::new();
    for (name, data) in m.iter_mut() {
        if name.ends_with("metadata.tar.zst") {
            *data = meta_tar.clone();
        }
    }
    for (name, data) in &m {
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
