#!/usr/bin/env bash
# The main job on a fresh Debian/Ubuntu machine: install everything, then run the release gate
# (lose the zone holding the database primary under load) on the local stack.
# Extra arguments go to `resilience run`, e.g. `bash scripts/demo.sh --profile short`.
set -euo pipefail
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/resilience run zone-failure "$@"
