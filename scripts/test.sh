#!/usr/bin/env bash
# The tests on a fresh Debian/Ubuntu machine: install everything, then run the unit, fake-cloud and
# integration tests and the tests against the real local stack (needs root: namespaces, cgroups,
# PostgreSQL as 'postgres'). Extra arguments run just those tests, e.g. `bash scripts/test.sh tests/unit`.
#
# Without arguments, two pytest runs go side by side:
# - the stack tests (marked `stack`), one after another in the foreground: one local stack per machine
#   (shared ports and names). They measure time (RTO, latency), so they keep the normal CPU priority;
#   the tests marked `serial` (they need the CPU at once, e.g. a healthy load generator) run with them;
# - everything else at a lower priority (nice) on pytest-xdist, one worker per core but one (that core is
#   the stack's), one file per worker at a time (a file's fixtures may hold fixed ports). Its output is
#   shown when it ends.
# The script fails if either run fails (pytest's exit code 5, "no tests ran", is a failure too).
set -euo pipefail
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
PYTEST=(.venv/bin/python -m pytest -q -p no:cacheprovider)
if [ $# -gt 0 ]; then
  exec "${PYTEST[@]}" "$@"
fi

cores=$(nproc)
workers=${RESILIENCE_TEST_WORKERS:-$(( cores > 1 ? cores - 1 : 1 ))}
others_log=$(mktemp -t resilience-tests.XXXXXX.log)
# In its own session (setsid): a Ctrl-C here stops it through the trap below, with everything it started.
setsid nice -n 10 "${PYTEST[@]}" -n "$workers" --dist loadfile -m "not stack and not serial" tests >"$others_log" 2>&1 &
others=$!
trap 'kill -TERM -- "-$others" 2>/dev/null || true; exit 130' INT TERM
trap 'kill -TERM -- "-$others" 2>/dev/null || true; rm -f "$others_log"' EXIT
echo "test.sh: unit, fake-cloud and integration tests running on $workers worker(s) (shown when they end);" \
     "the local-stack tests and the serial ones, one at a time:"
stack_rc=0
"${PYTEST[@]}" -m "stack or serial" tests || stack_rc=$?
others_rc=0
wait "$others" || others_rc=$?
echo
echo "test.sh: unit, fake-cloud and integration tests:"
cat "$others_log"
if [ "$stack_rc" -ne 0 ] || [ "$others_rc" -ne 0 ]; then
  echo "test.sh: FAILED (local-stack and serial tests: exit $stack_rc; the others: exit $others_rc)" >&2
  exit 1
fi
echo "test.sh: all passed"
