#!/bin/sh
# swarm STAND-IN BUILDER -- NOT A REAL BUILDER. It compiles nothing.
#
# It stands in for `emerge` in `swarm demo` and in swarm's tests so a whole
# swarm can run on one laptop. `swarm drone --builder standin` runs it as
#     sh standin-builder.sh {atom} {category} {pf}
# It pretends to build a package: it sleeps for a time proportional to the
# package's size, then has `swarm standin-gpkg` write a small but VALID gpkg
# (GLEP 78, Manifest included; real Portage installs it) to
#     $PKGDIR/<category>/<pf>.gpkg.tar
# holding one text file (none for virtual/*).
#
# Environment:
#   PKGDIR                  where to write the package (set by the agent)
#   SWARM_BIN               the swarm binary that packs the gpkg (set by the
#                           agent; default: swarm on PATH)
#   SWARM_STANDIN_KEYWORDS  the package's KEYWORDS (default amd64)
#   SWARM_STANDIN_SCALE_MS  milliseconds of sleep per size unit (default 1000)
#   SWARM_STANDIN_SIZES     optional file of "atom units" lines (units = seconds
#                           at the default scale); '#' starts a comment. Atoms
#                           match with or without their leading '='.
#                           Default size: (length of <pf> mod 5) + 1 units.
#   SWARM_STANDIN_FAIL      atoms (space/comma separated) that fail: exit 1
#   SWARM_STANDIN_FAIL_FILE optional file of atoms (one a line or space/comma
#                           separated) that fail, read at each build: an atom
#                           taken out of it builds on its next try ("fixed")
#   SWARM_STANDIN_OOM       atoms that "run out of memory": print
#                           "Out of memory: Killed process ..." and exit 137
#
# The sleep runs as a background child that the script waits for, so a build
# has a grandchild process, as emerge -> make -> gcc has: stopping a build must
# kill the whole process group, not only this script.
set -u

atom=${1:?usage: standin-builder.sh ATOM CATEGORY PF}
category=${2:?usage: standin-builder.sh ATOM CATEGORY PF}
pf=${3:?usage: standin-builder.sh ATOM CATEGORY PF}
bare=${atom#=}
: "${PKGDIR:?PKGDIR must be set}"

listed() { # listed "LIST": is this atom in the space/comma separated LIST?
	for a in $(printf '%s' "$1" | tr ',' ' '); do
		a=${a#=}
		if [ "$a" = "$bare" ] || [ "$a" = "$category/$pf" ]; then
			return 0
		fi
	done
	return 1
}

echo ">>> STAND-IN build of $atom (swarm stand-in builder, nothing is compiled)"

units=""
if [ -n "${SWARM_STANDIN_SIZES:-}" ] && [ -r "${SWARM_STANDIN_SIZES}" ]; then
	units=$(awk -v a="$bare" '
		/^[ \t]*#/ { next }
		{ x = $1; sub(/^=/, "", x); if (x == a) { print $2; exit } }' "$SWARM_STANDIN_SIZES")
fi
if [ -z "$units" ]; then
	units=$(( ${#pf} % 5 + 1 ))
fi
scale=${SWARM_STANDIN_SCALE_MS:-1000}
secs=$(awk -v u="$units" -v s="$scale" 'BEGIN { printf "%.3f", u * s / 1000 }')
echo ">>> compiling for ${secs}s ($units units at ${scale} ms)"

sleep "$secs" &
wait $!

if listed "${SWARM_STANDIN_OOM:-}"; then
	echo "Out of memory: Killed process $$ (standin-builder) total-vm:1048576kB" >&2
	exit 137
fi
fail_file=""
if [ -n "${SWARM_STANDIN_FAIL_FILE:-}" ] && [ -r "${SWARM_STANDIN_FAIL_FILE}" ]; then
	fail_file=$(tr '\n' ' ' < "$SWARM_STANDIN_FAIL_FILE")
fi
if listed "${SWARM_STANDIN_FAIL:-} $fail_file"; then
	echo " * ERROR: $bare::gentoo failed (compile phase): stand-in failure requested by SWARM_STANDIN_FAIL or SWARM_STANDIN_FAIL_FILE" >&2
	exit 1
fi

mkdir -p "$PKGDIR/$category" || exit 1
"${SWARM_BIN:-swarm}" standin-gpkg "$category/$pf" "$PKGDIR/$category/$pf.gpkg.tar" || exit 1
echo ">>> wrote $PKGDIR/$category/$pf.gpkg.tar"
