#!/usr/bin/env python3
"""Which dependency atoms Portage accepts under each EAPI, as a client validates a binary package.

    python dep_eapi.py > dep_eapi.tsv

Run it with the Portage venv's python (tests/portage/venv.sh; $SWARM_PORTAGE_VENV/bin/python).
A client masks a binary package whose *DEPEND uses a feature its EAPI lacks
(`Package._validate_deps`: `use_reduce(value, eapi=EAPI, matchall=True, token_class=Atom)`):
slot dependencies (EAPI 1), USE dependencies and strong blockers (EAPI 2), USE dependency
defaults (EAPI 4), slot operators and sub-slots (EAPI 5). Flags are not checked against IUSE
here: a client counts its profile's implicit IUSE too, which a server cannot know.

Fixture columns: EAPI, the atom, "ok" or "ERR".
"""

import itertools
import sys

from portage.dep import Atom, use_reduce
from portage.exception import InvalidDependString

EAPIS = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9-pre1"]
BLOCKERS = ["", "!", "!!"]
HEADS = ["dev-libs/a", ">=dev-libs/a-1.2", "=dev-libs/a-1*", "~dev-libs/a-1"]
SLOTS = ["", ":2", ":2.1", ":2/3", ":=", ":2=", ":2/3=", ":*", ":0/0", ":2*", ":/3"]
USES = ["", "[ssl]", "[ssl,-x]", "[ssl(+)]", "[!ssl(-)?]", "[ssl=]", "[!x?,y(+)=]", "[-ssl(-)?]"]


def main():
    for eapi, blocker, head, slot, use in itertools.product(EAPIS, BLOCKERS, HEADS, SLOTS, USES):
        atom = blocker + head + slot + use
        try:
            use_reduce(atom, eapi=eapi, matchall=True, token_class=Atom, flat=True)
            verdict = "ok"
        except InvalidDependString:
            verdict = "ERR"
        sys.stdout.write(f"{eapi}\t{atom}\t{verdict}\n")


if __name__ == "__main__":
    main()
