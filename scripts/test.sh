#!/usr/bin/env bash
# The tests on a fresh Debian/Ubuntu machine: install everything, then run unit tests and the
# integration tests against the real local stack (needs root: namespaces, cgroups, PostgreSQL as 'postgres').
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit`.
set -euo pipefail
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${@:-tests}"
