#!/usr/bin/env bash
# Creates or refreshes a virtualenv holding one version of the real SkyWalking Python agent
# (apache-skywalking) and prints its python. tests-python/test_agent_e2e.py runs its agent
# subprocess with that interpreter, so the end-to-end tests cover more than the version pinned in
# tests-python/requirements.txt (which lives in .venv, see scripts/python-env.sh).
#
#   scripts/agent-venv.sh 1.3.0   # -> <repo>/.venv/agents/1.3.0/bin/python
#
# The agent is always built from its sdist (--no-binary): the 1.3.0 wheel on PyPI lacks
# skywalking/protocol/, the sdist has it. pip runs only when the version or this file changed
# since the last install, so calling it before every test run is cheap.
set -euo pipefail

version="${1:?usage: scripts/agent-venv.sh AGENT_VERSION (e.g. 1.3.0)}"
[[ "$version" =~ ^[0-9]+(\.[0-9]+)*$ ]] || { echo "agent-venv: not a version: $version" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Under .venv/ (ignored by git, like the main test venv), beside it.
venv="$root/.venv/agents/$version"
stamp="$venv/.agent.sha256"
system_python="${PYTHON:-python3}"

# What tests-python/agent_app.py imports besides the agent, pinned like requirements.txt.
# requests: the agent's agent_protocol="http" reporter (not a dependency of the package).
requirements=(
  "apache-skywalking==$version"
  "grpcio==1.85.1"
  "protobuf==7.36.2"
  "requests==2.34.2"
  "packaging==26.3"
  "psutil==5.9.5"
  "wrapt==2.5.2"
)

if [[ ! -x "$venv/bin/python" ]]; then
  mkdir -p "$(dirname "$venv")"
  "$system_python" -m venv "$venv" >&2
fi

wanted="$( { printf '%s\n' "${requirements[@]}"; sha256sum "${BASH_SOURCE[0]}"; } | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  # apache-skywalking requires grpcio-tools: pinned with grpcio, so pip takes no newer pair.
  "$venv/bin/python" -m pip install --quiet "grpcio-tools==1.85.1" >&2
  "$venv/bin/python" -m pip install --quiet --no-binary apache-skywalking "${requirements[@]}" >&2
  "$venv/bin/python" -c "import skywalking.protocol.language_agent.Tracing_pb2" >&2 || {
    echo "agent-venv: apache-skywalking $version installed without skywalking/protocol/" >&2
    exit 1
  }
  echo "$wanted" > "$stamp"
fi

echo "$venv/bin/python"
