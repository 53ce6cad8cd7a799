#!/usr/bin/env python3
"""Packs a grown fuzz corpus into the small committed one (at most 30 files).

libFuzzer leaves thousands of small inputs in a working corpus. This keeps a greedy set of them
that covers every edge the whole working corpus covers, and concatenates those into a few files
separated by `--restart--` (swarm_core::fuzzing::RESTART: each part runs on a fresh swarm), so
`cargo test` replays all of it in about a second. Hand-written `seed-*` files are kept as they are.

Usage, from the repository root, after `RUSTC_BOOTSTRAP=1 cargo fuzz build handle`:
    python3 fuzz/pack_corpus.py fuzz/target/handle-work fuzz/corpus/handle
"""
import os
import shutil
import subprocess
import sys
import tempfile

RESTART = b"--restart--"
MAX_FILES = 30
BINARY = "fuzz/target/x86_64-unknown-linux-gnu/release/handle"


def main(work, out):
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        empty = os.path.join(tmp, "empty")
        os.mkdir(empty)
        subprocess.run(
            [BINARY, "-merge=1", "-max_len=1000000", f"-merge_control_file={control}", empty, work],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lines = open(control).read().split("\n")
    n = int(lines[0])
    files = lines[2 : 2 + n]
    cov = {}
    for line in lines[2 + n :]:
        parts = line.split()
        if parts and parts[0] == "COV":
            cov[int(parts[1])] = set(map(int, parts[2:]))
    every = set().union(*cov.values())
    seeds = [i for i, f in enumerate(files) if os.path.basename(f).startswith("seed-")]
    got, chosen = set(), []
    for i in seeds:
        got |= cov.get(i, set())
    while got != every:
        best = max(
            (i for i in cov if i not in chosen and i not in seeds),
            key=lambda i: (len(cov[i] - got), -os.path.getsize(files[i])),
        )
        chosen.append(best)
        got |= cov[best]
    groups = max(1, MAX_FILES - len(seeds))
    parts = [[] for _ in range(groups)]
    sizes = [0] * groups
    for path in sorted((files[i] for i in chosen), key=lambda f: -os.path.getsize(f)):
        k = sizes.index(min(sizes))
        data = open(path, "rb").read()
        parts[k].append(data)
        sizes[k] += len(data)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for k, part in enumerate(parts):
        if part:
            open(os.path.join(out, f"runs-{k:02d}"), "wb").write(RESTART.join(part))
    for i in seeds:
        shutil.copy(files[i], out)
    print(f"{len(every)} edges: {len(chosen)} inputs in {len(os.listdir(out))} files in {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
