#!/usr/bin/env bash
# Install the real Portage (PyPI `portage`, 3.0.x) into a venv, once. Idempotent.
#   tests/portage/venv.sh [DIR]    (default: $SWARM_PORTAGE_VENV, else target/portage-venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-${SWARM_PORTAGE_VENV:-$here/../../target/portage-venv}}
if [ -x "$venv/bin/emerge" ] && "$venv/bin/python" -c 'import portage' 2>/dev/null; then
  echo "portage venv ready at $venv"; exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check 'portage>=3.0,<3.1'
"$venv/bin/python" -c 'import portage; print("portage", portage.VERSION, "installed in '"$venv"'")'
