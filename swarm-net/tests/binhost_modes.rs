//! The published tree is reachable by a web server whatever the umask:
//! `swarm serve` adds the world's bits to its umask, and the directories a
//! binhost root needs made were then 0750 (a web server could not pass).

use std::os::unix::fs::PermissionsExt;
use swarm_net::binhost::{BinhostOptions, Releases};

#[test]
fn a_binhost_root_and_the_parents_it_needed_are_0755_under_a_tight_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o027));
    let dir = tempfile::tempdir().expect("dir");
    let root = dir.path().join("srv/pub/binhost");
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).expect("staging");
    Releases::open(
        BinhostOptions {
            root: root.clone(),
            ..BinhostOptions::under(dir.path())
        },
        &staging,
    )
    .expect("opens");
    for d in ["srv", "srv/pub", "srv/pub/binhost"] {
        let mode = std::fs::metadata(dir.path().join(d))
            .expect("made")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o755, "{d}");
    }
}
