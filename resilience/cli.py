"""The `resilience` command.

Exit codes: 0 every target met (or the command succeeded) · 1 a target missed
or the run deviated · 2 invalid input or harness error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .config import Settings, defaults_yaml, load_settings
from .errors import HarnessError, UserError

EPILOG = """\
examples:
  resilience up                      start the platform on this machine (real PostgreSQL, Redis, HAProxy, API)
  resilience status                  every component, its zone, role and health
  resilience run zone-failure        the release gate: lose a zone under load, measure RTO/RPO/P99/availability
  resilience list                    the experiment catalogue
  resilience check reports/<run>     recompute verdicts from a stored history, offline
  resilience down                    stop everything and remove namespaces

exit codes: 0 targets met · 1 a target missed or the run deviated · 2 invalid input or harness error
"""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


def cmd_up(args: argparse.Namespace) -> int:
    from .targets import make_target
    target = make_target(args.target, _settings(args), context=getattr(args, "context", None))
    already = target.status() if args.target == "local" and target.status().running else None
    status = target.up()
    if already:
        print(f"the {args.target} stack is already running at {status.url} (not starting a second one).")
    _print_status(status.to_json())
    return 0 if status.healthy else 1


def cmd_down(args: argparse.Namespace) -> int:
    from .targets import make_target
    target = make_target(args.target, _settings(args), context=getattr(args, "context", None))
    target.down()
    print(f"the {args.target} stack is down; nothing it started is left running.")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from .targets import make_target
    target = make_target(args.target, _settings(args), context=getattr(args, "context", None))
    status = target.status()
    if args.json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        _print_status(status.to_json())
    return 0 if status.healthy else 1


def _print_status(data: dict[str, Any]) -> None:
    if not data["running"]:
        print(f"target {data['target']}: not running. Start it with `resilience up`.")
        return
    print(f"target {data['target']}: {'healthy' if data['healthy'] else 'DEGRADED'}   "
          f"url {data['url']}   zones as {data['zone_mode']}")
    print(f"{'component':<12} {'kind':<9} {'role':<13} {'zone':<8} {'pid':>7}  {'address':<21} healthy")
    for c in data["components"]:
        print(f"{c['name']:<12} {c['kind']:<9} {c['role']:<13} {c['zone'] or '-':<8} {c['pid'] or '-':>7}  "
              f"{c['address']:<21} {'yes' if c['healthy'] else 'NO'}")
    detail = data.get("detail", {})
    if "ready_replicas" in detail:
        print(f"replicas ready {detail['ready_replicas']}/{detail['desired_replicas']}; "
              f"PostgreSQL primary {detail.get('pg_leader')} (zone {detail.get('primary_zone')}); "
              f"Redis master {detail.get('redis_master')}; state in {detail.get('state_dir')}")


def cmd_config(args: argparse.Namespace) -> int:
    if args.defaults:
        print(defaults_yaml(), end="")
    else:
        print(json.dumps(_settings(args).to_json(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilience", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Chaos and resilience testing for the school-meal ordering platform: deploy it, drive "
                    "Locust load, inject faults, and measure RTO, RPO, autoscaling, P99 and availability "
                    "against the platform's stated targets.")
    parser.add_argument("--version", action="version", version=f"resilience {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, target: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--config", metavar="FILE", help="settings file (YAML); default: resilience.yaml if present")
        if target:
            p.add_argument("--target", default="local", help="local (default), kubernetes or aws")
            p.add_argument("--context", help="kubeconfig context (kubernetes target; must be allow-listed)")
        p.set_defaults(func=func)
        return p

    add("up", cmd_up, "deploy the platform and wait until it is healthy (reports an existing stack instead)")
    add("down", cmd_down, "stop everything the target started and remove its namespaces and state")
    p = add("status", cmd_status, "show every component: name, kind, role, zone, pid, address, health")
    p.add_argument("--json", action="store_true", help="print JSON (schema in the README)")
    p = add("config", cmd_config, "print the resolved settings", target=False)
    p.add_argument("--defaults", action="store_true", help="print a complete settings file with every default")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (UserError, HarnessError) as exc:
        print(f"resilience: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("resilience: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
