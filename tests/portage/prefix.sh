#!/usr/bin/env bash
# Make one isolated Portage "machine" (a drone, a binhost client, a reference box) for tests and the
# demo, using the real Portage from PyPI. See ../../../shared/PORTAGE-PREFIX.md for the why of each step.
#
#   tests/portage/prefix.sh MACHINE_DIR [--repo DIR] [--make-conf-extra 'LINE'...]
#
# Prints, on stdout, shell `export` lines that make emerge in this machine work; `eval` them, or use
# MACHINE_DIR/env.sh, which holds the same lines. The venv comes from $SWARM_PORTAGE_VENV (default:
# the repository's target/portage-venv, made by tests/portage/venv.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 MACHINE_DIR [--repo DIR] [--make-conf-extra LINE]..." >&2; exit 2; }
machine=$1; shift
repo="$here/repo"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --repo) repo=$(cd "$2" && pwd); shift 2 ;;
    --make-conf-extra) extra+=("$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
venv=${SWARM_PORTAGE_VENV:-$here/../../target/portage-venv}
[ -x "$venv/bin/emerge" ] || { echo "no Portage venv at $venv (run tests/portage/venv.sh, or set SWARM_PORTAGE_VENV)" >&2; exit 3; }
venv=$(cd "$venv" && pwd)
for tool in bash tar zstd; do command -v "$tool" >/dev/null || { echo "$tool is not on PATH (Portage needs it)" >&2; exit 3; }; done

mkdir -p "$machine"
machine=$(cd "$machine" && pwd)
p="$machine/prefix"
mkdir -p "$p/etc/portage/repos.conf" "$p/var/db/pkg" "$p/var/lib/portage" "$p/var/cache/edb" \
  "$p/var/log" "$p/var/tmp" "$p/share" "$machine/pkgdir" "$machine/distfiles" "$machine/tmp" "$machine/depcache"
ln -sfn "$venv/share/portage" "$p/share/portage"
ln -sfn "$repo/profiles/default/linux/amd64" "$p/etc/portage/make.profile"
cat > "$p/etc/portage/repos.conf/gentoo.conf" <<CONF
[DEFAULT]
main-repo = gentoo

[gentoo]
location = $repo
auto-sync = no
CONF
{
  echo 'FEATURES="-sandbox -usersandbox -userpriv -usersync -ipc-sandbox -network-sandbox -pid-sandbox -news buildpkg -binpkg-request-signature -binpkg-signing"'
  echo "PKGDIR=\"$machine/pkgdir\""
  echo "DISTDIR=\"$machine/distfiles\""
  echo "PORTAGE_TMPDIR=\"$machine/tmp\""
  echo 'BINPKG_FORMAT="gpkg"'
  echo 'ACCEPT_LICENSE="*"'
  for line in "${extra[@]+"${extra[@]}"}"; do echo "$line"; done
} > "$p/etc/portage/make.conf"
touch "$p/var/lib/portage/world"
user=$(id -un); group=$(id -gn)
cat > "$machine/env.sh" <<ENV
export PORTAGE_OVERRIDE_EPREFIX="$p"
export PORTAGE_USERNAME="$user"
export PORTAGE_GRPNAME="$group"
export PORTAGE_TMPDIR="$machine/tmp"
export PORTAGE_DEPCACHEDIR="$machine/depcache"
export PKGDIR="$machine/pkgdir"
export PATH="$venv/bin:\$PATH"
ENV
cat "$machine/env.sh"
