# Sourced by the scripts in this folder: they need root (apt, network namespaces, cgroups,
# PostgreSQL as 'postgres'). As root nothing happens; as a user with sudo the calling script
# re-runs itself through sudo (asking for the password once); without either it says how.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    echo "$(basename "$0"): needs root; re-running with sudo" >&2
    exec sudo -E bash "$(realpath "$0")" "$@"
  fi
  echo "$(basename "$0"): needs root (apt packages, network namespaces, cgroups) and sudo is not installed:" \
       "run it in a root shell (su -), e.g. 'su -c \"bash $0\"'." >&2
  exit 2
fi
