//! The staging directory's mode: one the server makes is 0755 whatever the
//! umask (a web server publishes it); one the operator made, maybe through
//! a symlink to a binhost tree that is group-writable and setgid on
//! purpose, keeps its mode (it was chmodded to 0755 at every start).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use swarm_net::server;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn a_staging_dir_the_server_makes_is_0755_and_the_operators_keeps_its_mode() {
    // The one test of this binary: a umask that would make the directory
    // 0700 if the server did not set its mode.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = server::start(common::options(&dir.path().join("fresh"), "t")).expect("start");
    fresh.shutdown();
    assert_eq!(mode(&dir.path().join("fresh/staging")), 0o755);

    let tree = dir.path().join("binhost-tree");
    std::fs::create_dir(&tree).expect("mkdir");
    std::fs::set_permissions(&tree, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
    let data = dir.path().join("linked");
    std::fs::create_dir(&data).expect("mkdir");
    std::os::unix::fs::symlink(&tree, data.join("staging")).expect("symlink");
    let linked = server::start(common::options(&data, "t")).expect("start");
    linked.shutdown();
    assert_eq!(mode(&tree), 0o2775, "the operator's mode");
}
