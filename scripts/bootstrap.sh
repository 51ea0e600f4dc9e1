#!/usr/bin/env bash
# Installs everything resilience needs on a fresh Debian/Ubuntu machine (root or sudo):
# the platform's services from apt, and a virtualenv (.venv) with the project and its deps.
# Idempotent: a second run installs nothing new.
set -euo pipefail
source "$(dirname "$0")/as-root.sh"
cd "$(dirname "$0")/.."

APT_PACKAGES=(postgresql-15 redis-server redis-sentinel haproxy patroni etcd-server etcd-client pgbackrest
              iproute2 nftables procps python3 python3-venv python3-dev gcc chromium fonts-dejavu-core
              poppler-utils
              prometheus prometheus-alertmanager prometheus-postgres-exporter prometheus-redis-exporter)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing apt packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
# The Python dependencies come from requirements.lock (exact versions with hashes, what CI tested;
# scripts/lock.sh re-resolves it); the project itself goes in editable, without touching them.
# Re-installed whenever pyproject.toml or the lock changes.
stamp=.venv/.resilience-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing the locked Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --require-hashes -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
  # a dependency added to pyproject.toml but not yet locked shows up here
  .venv/bin/python -m pip check >/dev/null || {
    .venv/bin/python -m pip check
    echo "bootstrap: requirements.lock does not satisfy pyproject.toml: run bash scripts/lock.sh" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
# The platform's Patroni (deploy/patroni.lock says which and why): a venv the postgres user can run, outside the
# checkout (which may sit in a directory only root can enter), on Debian's Python and Patroni's Debian libraries.
PATRONI_VENV=/opt/resilience/patroni
pstamp=$PATRONI_VENV/.resilience-installed
pwant=$(sha256sum deploy/patroni.lock | cut -d' ' -f1)
if [ ! -f "$pstamp" ] || [ "$(cat "$pstamp")" != "$pwant" ]; then
  echo "bootstrap: installing Patroni (deploy/patroni.lock) into $PATRONI_VENV"
  rm -rf "$PATRONI_VENV"
  /usr/bin/python3 -m venv --system-site-packages "$PATRONI_VENV"
  "$PATRONI_VENV/bin/python" -m pip install -q --no-deps --require-hashes -r deploy/patroni.lock
  "$PATRONI_VENV/bin/patroni" --version
  echo "$pwant" > "$pstamp"
fi
echo "bootstrap: ready (.venv/bin/resilience)"
