#!/usr/bin/env python3
"""Portage's own verdict on which versions a versioned atom admits.

    python matches.py      print the fixture (TSV) on stdout

Run it with the Portage venv's python (tests/portage/venv.sh; $SWARM_PORTAGE_VENV/bin/python).
Every atom is an operator (=, ~, >=, >, <=, <, and =...*) before one of VERSIONS; every candidate is
`app-misc/foo-V` for each of VERSIONS. The verdict is `portage.dep.match_from_list`'s: whether the
candidate is in the list it returns. swarm's `Atom::admits` must agree on every row.

Fixture columns: atom, candidate version, verdict (yes|no).
"""

from portage.dep import Atom, match_from_list

VERSIONS = [
    "0", "00", "0.1", "01", "1", "1.0", "1.00", "1.0.0", "1.01", "1.010", "1.1", "1.10", "1.2",
    "1.2a", "1.2b", "1.2_alpha", "1.2_alpha1", "1.2_beta", "1.2_beta_alpha", "1.2_pre3", "1.2_rc1",
    "1.2_rc1_p2", "1.2_rc1_alpha", "1.2_p", "1.2_p0", "1.2_p1", "1.2-r1", "1.2-r01", "1.2-r0",
    "1.2.3", "1.2.3_p1-r2", "2", "10", "10.0", "1_p1", "1a_p1", "5", "5.1", "99999",
    "123456789012345678901234567890", "20240101",
]
OPERATORS = ["=", "~", ">=", ">", "<=", "<"]


def main():
    print("# Portage: portage.dep.match_from_list(Atom(atom), [candidate]); made by tests/portage/matches.py")
    print("# atom\tcandidate\tverdict")
    atoms = [f"{op}app-misc/foo-{v}" for op in OPERATORS for v in VERSIONS]
    atoms += [f"=app-misc/foo-{v}*" for v in VERSIONS]
    for text in atoms:
        try:
            atom = Atom(text)
        except Exception:
            continue
        for v in VERSIONS:
            cpv = f"app-misc/foo-{v}"
            verdict = "yes" if match_from_list(atom, [cpv]) else "no"
            print(f"{text}\t{v}\t{verdict}")


main()
