//! Files an operator names are read as such: regular files of a bounded
//! size, never a FIFO that holds the start or a device read until memory
//! runs out (h15); and the way to the binhost on disk is judged as
//! configured, links and all.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[test]
fn pem_files_must_be_small_regular_files() {
    let zero = Path::new("/dev/zero");
    let Err(e) = swarm_net::server::TlsServer::from_pem_files(zero, zero) else {
        panic!("a device is no certificate");
    };
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let Err(e) = swarm_net::client::TlsClient::from_ca_file(zero) else {
        panic!("a device is no CA");
    };
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let dir = tempfile::tempdir().expect("dir");
    let big = dir.path().join("big.pem");
    std::fs::write(&big, vec![b'A'; (1 << 20) + 1]).expect("write");
    let Err(e) = swarm_net::client::TlsClient::from_ca_file(&big) else {
        panic!("too big");
    };
    assert!(e.to_string().contains("bytes, more than the"), "{e}");
}

#[test]
fn a_binhost_behind_a_link_in_a_closed_directory_is_closed_too() {
    let dir = tempfile::tempdir().expect("dir");
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
    };
    mode(dir.path(), 0o755);
    let open = dir.path().join("open");
    let tree = open.join("binhost");
    std::fs::create_dir_all(&tree).expect("mkdir");
    mode(&open, 0o755);
    mode(&tree, 0o755);
    let closed = dir.path().join("closed");
    std::fs::create_dir(&closed).expect("mkdir");
    mode(&closed, 0o700);
    let link = closed.join("binhost");
    std::os::unix::fs::symlink(&tree, &link).expect("symlink");
    assert_eq!(swarm_net::binhost::closed_to_others(&tree), None);
    assert_eq!(
        swarm_net::binhost::closed_to_others(&link),
        Some((closed.clone(), 0o700)),
        "nginx cannot follow the link out of a 0700 directory"
    );
}

#[test]
fn a_stream_that_says_no_size_is_read_to_its_bound_and_no_further() {
    use swarm_net::regular_file::read_text_at_most;
    assert_eq!(read_text_at_most(&b"abcd"[..], 4).expect("fits"), "abcd");
    let e = read_text_at_most(&b"abcd"[..], 3).expect_err("one byte over");
    assert!(e.to_string().contains("is 4 bytes, more than the 3"), "{e}");
    // An endless one (a pipe from /dev/zero) ends at the bound.
    let e = read_text_at_most(std::io::repeat(b'z'), 1 << 20).expect_err("endless");
    assert!(e.to_string().contains("more than the 1048576"), "{e}");
}
