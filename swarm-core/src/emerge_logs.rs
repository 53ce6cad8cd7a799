//! Excerpts of real emerge output, one per failure cause: what the
//! classifier's tests and the simulator's stale-queue scenario feed through
//! [`crate::failure::diagnose`]. The unsatisfied-dependency text was printed
//! by Portage 3.0.83 over tests/portage/repo; the slot conflict is the one
//! Portage's own resolver tests quote; the others are emerge's and gcc's
//! messages as their sources write them.

/// `emerge` resolving a queue computed on another tree: a slot conflict.
pub const SLOT_CONFLICT: &str = "\
Calculating dependencies... done!
Dependency resolution took 4.21 s (backtrack: 20/20).

!!! Multiple package instances within a single package slot have been pulled
!!! into the dependency graph, resulting in a slot conflict:

sys-apps/systemd-utils:0

  (sys-apps/systemd-utils-254.13:0/0::gentoo, ebuild scheduled for merge) USE=\"kmod tmpfiles udev -boot\" pulled in by
    =sys-apps/systemd-utils-254.13 (Argument)

  (sys-apps/systemd-utils-255.4:0/0::gentoo, installed) USE=\"kmod tmpfiles udev -boot\" pulled in by
    >=sys-apps/systemd-utils-255[udev] required by (sys-fs/udev-255:0/0::gentoo, installed)
    ^^                       ^^^^^

It may be possible to solve this problem by using package.mask to
prevent one of those packages from being selected.
";

/// Real emerge 3.0.83: a dependency no ebuild satisfies.
pub const UNSATISFIED: &str = "
These are the packages that would be merged, in order:

Calculating dependencies ... done!
Dependency resolution took 0.01 s (backtrack: 0/20).


emerge: there are no ebuilds to satisfy \">=dev-libs/libfoo-9\".
(dependency required by \"app-misc/hello-2.0::gentoo\" [ebuild])
";

/// Every candidate masked.
pub const MASKED: &str = "\
!!! All ebuilds that could satisfy \">=dev-libs/openssl-4\" have been masked.
!!! One of the following masked packages is required to complete your request:
- dev-libs/openssl-4.0.0::gentoo (masked by: ~amd64 keyword)
";

/// An unsolved blocker (the error text wraps at 72 columns).
pub const BLOCKER: &str = "\
[ebuild  N     ] sys-apps/openrc-0.54
[blocks B      ] <sys-apps/sysvinit-2.86-r6 (\"<sys-apps/sysvinit-2.86-r6\" is blocking sys-apps/openrc-0.54)

 * Error: The above package list contains packages which cannot be
 * installed at the same time on the same system.
";

/// A download that failed.
pub const FETCH: &str = "\
>>> Downloading 'https://distfiles.gentoo.org/distfiles/ab/zlib-1.3.1.tar.xz'
!!! Couldn't download 'zlib-1.3.1.tar.xz'. Aborting.
 * Fetch failed for 'sys-libs/zlib-1.3.1-r1', Log file:
 *  '/var/tmp/portage/sys-libs/zlib-1.3.1-r1/temp/build.log'
";

/// gcc killed by the OOM killer mid-compile.
pub const OOM: &str = "\
x86_64-pc-linux-gnu-g++: fatal error: Killed signal terminated program cc1plus
compilation terminated.
ninja: build stopped: subcommand failed.
 * ERROR: dev-qt/qtwebengine-6.8.0::gentoo failed (compile phase):
";

/// A sandbox access violation.
pub const SANDBOX: &str = "\
 * ACCESS DENIED:  open_wr:      /usr/lib/python3.12/site-packages/foo.pth
 * ERROR: dev-python/foo-1.0::gentoo failed (install phase):
 *   Sandbox violation
";

/// A full disk.
pub const DISK_FULL: &str = "\
/usr/bin/install: error writing '/var/tmp/portage/dev-lang/rust-1.82.0/image/usr/lib/librustc.so': No space left on device
 * ERROR: dev-lang/rust-1.82.0::gentoo failed (install phase):
";

/// A package's own compile error.
pub const COMPILE: &str = "\
foo.c:12:5: error: implicit declaration of function 'bar' [-Wimplicit-function-declaration]
make: *** [Makefile:42: foo.o] Error 1
 * ERROR: app-misc/foo-1.0::gentoo failed (compile phase):
 *   emake failed
";
