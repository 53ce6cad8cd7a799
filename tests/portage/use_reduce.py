#!/usr/bin/env python3
"""Portage's own reduction of USE-conditional values, as its binary tree writes an index entry.

    python use_reduce.py > use_reduce.tsv

Run it with the Portage venv's python (tests/portage/venv.sh; $SWARM_PORTAGE_VENV/bin/python).
Cases are generated deterministically: dependency strings and licence/restrict lists with
`flag? ( )`, `!flag? ( )`, `|| ( )`, plain groups, nesting, atoms with USE dependencies
(conditional or not), and malformed mutations; each is reduced with a few USE sets the way
`binarytree._eval_use_flags` does it: `paren_enclose(use_reduce(value, uselist=USE,
token_class=Atom for *DEPEND))`.

Fixture columns: kind (dep|plain), USE (comma-separated), value, result ("ERR" when Portage
refuses the value).
"""

import random
import sys

from portage.dep import Atom, paren_enclose, use_reduce
from portage.exception import InvalidDependString

FLAGS = ["a", "b", "ssl", "x"]
ATOMS = [
    "dev-libs/foo", ">=dev-libs/bar-1.2", "sys-libs/baz:2", "dev-lang/q:=", "=x11-libs/gtk+-3*",
    "virtual/libc", "dev-libs/s:1/2=", "!dev-libs/old", "!!dev-libs/older",
]
USEDEP_FORMS = ["{}?", "!{}?", "{}=", "!{}=", "{}", "-{}", "{}(+)?", "{}(-)=", "!{}(+)?"]
WORDS = ["GPL-2", "BSD", "MIT", "test", "mirror", "bindist", "live", "strip"]


def atom(rng):
    a = rng.choice(ATOMS)
    if rng.random() < 0.4:
        flags = rng.sample(FLAGS, rng.randint(1, 3))
        a += "[" + ",".join(rng.choice(USEDEP_FORMS).format(f) for f in flags) + "]"
    return a


def expr(rng, depth, leaf):
    """A list of tokens: a value of up to four members."""
    out = []
    for _ in range(rng.randint(1, 4)):
        r = rng.random()
        if depth >= 3 or r < 0.4:
            out.append(leaf(rng))
            continue
        inner = expr(rng, depth + 1, leaf)
        if r < 0.6:
            out += [rng.choice(FLAGS) + "?", "("] + inner + [")"]
        elif r < 0.7:
            out += ["!" + rng.choice(FLAGS) + "?", "("] + inner + [")"]
        elif r < 0.9:
            out += ["||", "("] + inner + [")"]
        else:
            out += ["("] + inner + [")"]
    return out


def mutate(rng, tokens):
    t = list(tokens)
    r = rng.random()
    i = rng.randrange(len(t))
    if r < 0.3:
        del t[i]
    elif r < 0.5:
        t.insert(i, rng.choice(["(", ")", "||", "a?"]))
    elif r < 0.7:
        t.insert(i, "( )")
    else:
        t[i] = t[i] + "?"
    return t


def reduce(value, use, dep):
    try:
        return paren_enclose(
            use_reduce(value, uselist=frozenset(use), token_class=Atom if dep else None)
        )
    except InvalidDependString:
        return "ERR"


def main():
    rng = random.Random(12)
    uses = [[], ["a"], ["a", "ssl"], ["b", "x"], FLAGS]
    seen = set()
    print("# kind\tUSE\tvalue\tPortage's reduction (ERR: refused); made by use_reduce.py")
    for n in range(700):
        dep = n % 2 == 0
        tokens = expr(rng, 0, atom if dep else (lambda r: r.choice(WORDS)))
        if rng.random() < 0.15:
            tokens = mutate(rng, tokens)
        value = " ".join(tokens)
        use = rng.choice(uses)
        key = (dep, value, tuple(use))
        if key in seen:
            continue
        seen.add(key)
        kind = "dep" if dep else "plain"
        print(f"{kind}\t{','.join(use)}\t{value}\t{reduce(value, use, dep)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
