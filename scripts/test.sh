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
setsid nice -n 10 "${PYTEST[@]}" --durations=15 -n "$workers" --dist loadfile -m "not stack and not serial" tests >"$others_log" 2>&1 &
others=$!
trap 'kill -TERM -- "-$others" 2>/dev/null || true; exit 130' INT TERM
echo "test.sh: unit, fake-cloud and integration tests running on $workers worker(s) (shown when they end);" \
     "the local-stack tests and the serial ones, one at a time:"
stack_log=$(mktemp -t resilience-stack-tests.XXXXXX.log)
trap 'kill -TERM -- "-$others" 2>/dev/null || true; rm -f "$others_log" "$stack_log"' EXIT
stack_rc=0
"${PYTEST[@]}" --durations=30 -m "stack or serial" tests 2>&1 | tee "$stack_log" || stack_rc=$?  # pipefail: pytest's code
others_rc=0
wait "$others" || others_rc=$?
echo
echo "test.sh: unit, fake-cloud and integration tests:"
cat "$others_log"
# one closing line for both runs: pytest's own counts, added up
count() { tail -n 3 "$stack_log" "$others_log" | { grep -Eo "[0-9]+ $1" || true; } | awk '{n += $1} END {print n + 0}'; }
passed=$(count passed); failed=$(( $(count failed) + $(count error) )); skipped=$(count skipped)
if [ "$stack_rc" -ne 0 ] || [ "$others_rc" -ne 0 ]; then
  echo "test.sh: FAILED (local-stack and serial tests: exit $stack_rc; the others: exit $others_rc)" >&2
  [ "$failed" -gt 0 ] || failed=1
  echo "test.sh: $passed passed, $failed failed, $skipped skipped"
  exit 1
fi
echo "test.sh: $passed passed, $failed failed, $skipped skipped"
