#!/usr/bin/env python3
"""Portage's own verdict on package atoms given to emerge as build targets.

    python atoms.py                 generate the corpus and print the fixture (TSV) on stdout
    python atoms.py --inputs FILE   print the fixture again for the atoms of FILE (the drift check)

Run it with the Portage venv's python (tests/portage/venv.sh; $SWARM_PORTAGE_VENV/bin/python).
The corpus is generated, deterministically, from real-looking atoms and their mutations: operators,
versions with suffixes and revisions, build ids, slots, sub-slots, slot operators, repositories, USE
deps, wildcards, blockers, category-less names and garbage. Every atom is judged the way emerge judges
a command-line target: `_emerge.is_valid_package_atom.is_valid_package_atom(atom, allow_repo=True)`;
for an accepted atom, `portage.dep.Atom` gives its cp, its cpv (no build id) and its build id.

Fixture columns: atom, verdict (ok|no), cp, cpv, build id ("-" when none). A category-less atom is
judged as emerge judges it (with a placeholder category); the placeholder is not recorded.
"""

import random
import sys

from _emerge.is_valid_package_atom import insert_category_into_atom, is_valid_package_atom
from portage.dep import Atom

CPS = [
    "dev-libs/openssl", "sys-apps/systemd-utils", "x11-libs/gtk+", "dev-qt/qtwebengine",
    "media-fonts/font-adobe-100dpi", "dev-lang/python", "sys-devel/gcc", "dev-libs/libxml2",
    "app-misc/hello", "www-client/firefox", "dev-python/pyyaml", "dev-perl/Locale-gettext",
    "sys-libs/glibc", "dev-libs/icu", "virtual/libcrypt", "acct-user/portage",
    "kde-frameworks/kcoreaddons", "dev-util/cmake", "net-misc/curl", "app-text/docbook-xml-dtd",
    "dev-cpp/abseil-cpp", "dev-libs/libsigc++", "dev-java/openjdk-bin", "sys-kernel/linux-firmware",
    "gui-wm/sway", "x11-libs/libxcb", "media-libs/x264", "dev-ml/ocaml-ssl", "app-emacs/s",
    "dev-db/sqlite", "acct-group/audio", "dev-python/setuptools_scm", "media-video/ffmpeg",
    "dev-libs/libpcre2", "sys-libs/ncurses", "dev-lang/lang", "dev-libs/libfoo", "dev-libs/circ-a",
    "x11-libs/gtk2+", "dev-util/pkgconf", "app-arch/p7zip", "dev-libs/foo-bar-2x", "sci-libs/blas-2d",
    "dev-texlive/texlive-latex", "media-libs/libva-intel-media-driver", "net-dns/c-ares",
    "dev-python/python_dateutil", "app-crypt/gnupg", "sys-fs/e2fsprogs", "dev-libs/A_B",
]
NAMES = ["hello", "gtk+", "foo", "libfoo-2x", "python", "c-ares"]
VERSIONS = [
    "0", "1", "1.0", "1.2.3", "2.5", "13.2.1_p20240113", "6.7.2", "1.0a", "3.0.1-r1", "1_alpha",
    "1_beta2", "1_pre3", "1_rc1", "1_p", "1.2_rc1_p2", "2024.01.02", "9999", "1.0-r0", "1.0-r12",
    "0.9.8zh", "1.0_alpha1_beta2", "01.2", "1.2.3.4.5", "1.0_pre-r1", "3.12.4_p1-r2", "5", "1b",
]
BAD_VERSIONS = [
    "1.0_bad", "1..0", ".1", "1.", "1.0-r", "1.0-rc1", "1.0_", "1.0ab", "1.0A", "v1.0", "1.0-r1-r2",
    "1.0_p-1", "1_alpha_", "1.0-rr1", "1.0-r1a", "1.0__p1", "1.0_P1", "1.0_beta.1", "1.0-r-1", "a1",
    "1,0", "1.0 ", "1.0-r1_p1",
]
BUILD_IDS = ["1", "2", "10", "0", "01", "007", "1.5", "r1", "x"]
OPERATORS = ["", "=", ">=", "<=", ">", "<", "~", "!", "!!", "!>=", "!!<", "=<", "=>", ">>", "~>=", "==", "!=", "<>"]
SLOTS = [
    "", ":0", ":2", ":6", ":0/1.2", ":=", ":*", ":2=", ":2/3=", ":0/0=", ":2*", ":", ":/", ":/1",
    ":.1", ":-1", ":+1", ":a/b/c", ":2/", ":==", ":**", ":_1", ":1.2-r1", ":3.12", ":0/", ":=*",
    ":*=", ":2/*", ":slot+1", ":A_b",
]
REPOS = ["", "::gentoo", "::guru", "::my-overlay", "::my_repo", "::-bad", "::x.y", "::", ":::gentoo",
         "::gentoo::guru", "::a+b", "::9repo", "::_x"]
USES = [
    "", "[a]", "[a,-b]", "[ssl]", "[-ssl]", "[ssl?]", "[!ssl?]", "[ssl=]", "[!ssl=]", "[ssl(+)]",
    "[-ssl(-)]", "[ssl(+)?]", "[python_targets_python3_12]", "[a,b,c]", "[]", "[,]", "[a,]", "[-a?]",
    "[!a]", "[a(x)]", "[a][b]", "[a b]", "[@a]", "[a@b]", "[a,a]", "[a(+),a]", "[=a]", "[ssl",
    "ssl]", "[a=?]", "[a(-)=]", "[+a]", "[a+]", "[-a=]", "[a,-a]", "[a(+),a(-)]", "[A_b-c]",
    "[abi_x86_32(-)?]", "[a?,b]", "[a]]",
]
WILDCARDS = [
    "*/*", "dev-libs/*", "*/foo", "=dev-libs/foo-1*", "=dev-libs/foo-1.2*", "=dev-libs/foo-*",
    "dev-libs/foo*", "*", ">=dev-libs/foo-1*", "~dev-libs/foo-1*", "=dev-libs/foo-1.0-r1*",
    "=dev-libs/foo-1_*", "=dev-libs/foo-1**", "=*/foo-1*", "=dev-libs/*-1*", "dev-*/foo", "*-libs/foo",
    "=dev-libs/foo-1*:2", "=dev-libs/foo-1*::gentoo", "=dev-libs/foo-1*[ssl]", "=dev-libs/foo-1.0-1*",
]
GARBAGE = [
    "", " ", "foo", "/", "//", "dev-libs/", "/foo", "dev-libs//foo", "dev-libs/foo/", "../etc/passwd",
    "dev-libs/foo;rm -rf /", "dev-libs/$(id)", "dev-libs/`id`", "dev-libs/foo bar", "dev-libs/foo\u00e9",
    "d\u00e9v-libs/foo", "@world", "@system", "-dev-libs/foo", ".dev/foo", "dev-libs/.foo",
    "dev-libs/-foo", "dev-libs/+foo", "+dev/foo", "_dev/_foo", "dev.libs/foo", "dev-libs/foo.bar",
    "DEV-LIBS/FOO", "1/2", "dev-libs/foo-", "dev-libs/foo--", "dev-libs/1", "dev-libs/1-1",
    "dev-libs/foo-1-", "=", ">=", "!", "!!", "::gentoo", ":2", "[a]", "=/foo-1", "=dev-libs/-1",
    "dev-libs/foo\t1", "dev-libs/foo%20", "dev-libs/foo#1", "dev-libs/foo?", "dev-libs/foo&",
    "dev-libs/foo|bar", "dev-libs/foo>1", "dev-libs/foo<1", "dev-libs/foo=1", "dev-libs/foo~1",
    "dev-libs/foo!", "dev-libs/foo@1", "dev-libs/foo,bar", "dev-libs/foo'", 'dev-libs/foo"',
]
MUTATION_CHARS = list(".-_+*/:[]!=<>~@ ,?()0129azAZ") + ["\u00e9"]


def judge(atom):
    """(verdict, cp, cpv, build_id) as emerge sees `atom` as a target."""
    try:
        ok = is_valid_package_atom(atom, allow_repo=True)
    except Exception:  # noqa: BLE001 - anything but a clean yes is a refusal
        ok = False
    if not ok:
        return ("no", "-", "-", "-")
    text, placeholder = atom, False
    if "/" not in atom.split(":")[0]:
        text, placeholder = insert_category_into_atom(atom, "cat"), True
    parsed = Atom(text, allow_repo=True, allow_build_id=True)
    cp, cpv = parsed.cp, parsed.cpv
    if placeholder:
        cp, cpv = cp[len("cat/"):], cpv[len("cat/"):]
    build_id = "-" if parsed.build_id is None else str(parsed.build_id)
    return ("ok", cp, cpv, build_id)


def corpus():
    rng = random.Random(13)
    seen = {}

    def add(atom):
        if "\t" in atom or "\n" in atom or len(atom) > 256:
            return
        seen.setdefault(atom, None)

    for g in GARBAGE + WILDCARDS:
        add(g)
    # Every operator over every base, versioned (good and bad versions) and unversioned.
    for cp in CPS:
        for op in OPERATORS:
            add(op + cp)
            for v in rng.sample(VERSIONS, 2) + rng.sample(BAD_VERSIONS, 1):
                add(f"{op}{cp}-{v}")
    for name in NAMES:
        for op in OPERATORS[:8]:
            add(op + name)
            for v in rng.sample(VERSIONS, 4) + rng.sample(BAD_VERSIONS, 2):
                add(f"{op}{name}-{v}")
            add(f"{op}{name}{rng.choice(SLOTS)}{rng.choice(REPOS)}{rng.choice(USES)}")
    # Build ids, with and without revisions.
    for cp in CPS[:4]:
        for op in ["", "=", ">=", "~", "<"]:
            for v in ["1.0", "1.0-r1", "2.5_p1", "1"]:
                for b in BUILD_IDS:
                    add(f"{op}{cp}-{v}-{b}")
    # Every slot, repo and USE suffix, alone and combined.
    for cp in CPS[:4]:
        for suffix in SLOTS + REPOS + USES:
            add(cp + suffix)
            add(f"={cp}-1.0{suffix}")
    for _ in range(1500):
        cp = rng.choice(CPS)
        op = rng.choice(OPERATORS)
        v = rng.choice(VERSIONS + BAD_VERSIONS + [""] * 6)
        body = f"{op}{cp}-{v}" if v else op + cp
        if rng.randrange(8) == 0:
            body += "*"
        add(body + rng.choice(SLOTS) + rng.choice(REPOS) + rng.choice(USES))
    # Mostly well-formed atoms, so the accepted side is as varied as the refused one.
    good_slots = ["", ":0", ":2", ":0/1.2", ":=", ":*", ":2=", ":2/3=", ":3.12", ":slot+1"]
    good_uses = ["", "[a]", "[a,-b]", "[ssl?]", "[!ssl=]", "[ssl(+)]", "[-ssl(-)]", "[abi_x86_32(-)?]"]
    for _ in range(2000):
        cp = rng.choice(CPS)
        op = rng.choice(["", "=", ">=", "<=", ">", "<", "~"])
        body = f"{op}{cp}-{rng.choice(VERSIONS)}" if op else cp
        if op == "=" and rng.randrange(6) == 0:
            body += "*"
        add(body + rng.choice(good_slots) + rng.choice(REPOS[:5]) + rng.choice(good_uses))
    # Mutations: one or two edits of good-looking atoms.
    bases = list(seen)
    for _ in range(1500):
        atom = list(rng.choice(bases))
        for _ in range(rng.randrange(1, 3)):
            pos = rng.randrange(len(atom) + 1)
            kind = rng.randrange(4)
            if kind == 0 and atom:
                del atom[min(pos, len(atom) - 1)]
            elif kind == 1:
                atom.insert(pos, rng.choice(MUTATION_CHARS))
            elif kind == 2 and atom:
                i = min(pos, len(atom) - 1)
                atom[i] = atom[i].swapcase()
            else:
                atom[pos:pos] = atom[max(0, pos - 3):pos]
        add("".join(atom))
    # swarm ignores surrounding whitespace, and accepts v3's forms (`=` added or taken away):
    # the atoms they turn into are judged too.
    for atom in list(seen):
        add(atom.strip())
    for atom in list(seen):
        if atom[:1] not in "=<>~!":
            add("=" + atom)
        elif atom.startswith("=") and atom[1:2] not in "=<>~!":
            add(atom[1:])
    return list(seen)


def main(argv):
    if len(argv) == 3 and argv[1] == "--inputs":
        with open(argv[2], encoding="utf-8") as f:
            atoms = [line.rstrip("\n").split("\t")[0] for line in f if not line.startswith("#")]
    elif len(argv) == 1:
        atoms = corpus()
    else:
        sys.stderr.write(__doc__)
        return 2
    import portage

    out = sys.stdout
    out.write(f"# Portage {portage.VERSION}: is_valid_package_atom(atom, allow_repo=True); made by tests/portage/atoms.py\n")
    out.write("# atom\tverdict\tcp\tcpv\tbuild_id\n")
    for atom in atoms:
        out.write("\t".join((atom,) + judge(atom)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
