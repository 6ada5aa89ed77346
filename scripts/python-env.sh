#!/usr/bin/env bash
# Creates or refreshes the virtualenv used by tests-python/ and prints its python.
# pip runs only when tests-python/requirements.txt changed since the last install,
# so calling this before every test run is cheap.
#
#   PY="$(scripts/python-env.sh)" && "$PY" -m pytest tests-python
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
requirements="$root/tests-python/requirements.txt"
stamp="$venv/.requirements.sha256"
system_python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/python" ]]; then
  "$system_python" -m venv "$venv" >&2
fi

wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -r "$requirements" >&2
  echo "$wanted" > "$stamp"
fi

echo "$venv/bin/python"
