#!/usr/bin/env bash
# Re-resolves requirements.lock, the exact versions (with hashes) that scripts/bootstrap.sh installs,
# from the ranges in pyproject.toml (the harness and its test extra), for Python 3.11 on Linux x86-64.
#   bash scripts/lock.sh                          keep every pin that still fits pyproject.toml
#   bash scripts/lock.sh --upgrade                the newest versions the ranges allow
#   bash scripts/lock.sh --upgrade-package redis  move one package (and what it needs)
# pip-tools runs from its own throw-away virtualenv, never from .venv; only PyPI is asked.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
tools=${LOCK_TOOLS_VENV:-${TMPDIR:-/tmp}/resilience-lock-tools}
# Only PyPI: a machine's own pip.conf (extra indexes, local wheels) must not leak into the lock.
export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_INDEX_URL PIP_CONSTRAINT
if [ ! -x "$tools/bin/pip-compile" ]; then
  "$PY" -m venv "$tools"
  "$tools/bin/python" -m pip install -q "pip-tools==7.7.0"
fi
"$tools/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "lock.sh: needs Python 3.11 (set PYTHON=...)"'
# kubernetes<37.0.2 (in pyproject.toml) keeps the resolver from backtracking for minutes against botocore.
"$tools/bin/pip-compile" --quiet --extra test --generate-hashes --strip-extras --allow-unsafe \
  --no-emit-index-url --no-emit-trusted-host --resolver backtracking \
  --output-file requirements.lock "$@" pyproject.toml
echo "lock.sh: requirements.lock updated; run bash scripts/bootstrap.sh to install it"
