"""What an experiment file may make the harness execute: checked before anything is imported or run.

An experiment file is code: Chaos Toolkit imports the module a python activity
names and calls its function, runs a `process` provider's executable, calls an
`http` provider's URL, and the load process executes the locustfile. Runs are
often root on the test machine, so by default an experiment may only use our
own extension:

- python activities and controls: `resilience.faults` (its public faults and
  probes) and `resilience.control`; other modules only when listed in
  `experiments.allowed_modules` (a name, or a package prefix).
- `process` providers: only executables listed, by absolute path, in
  `experiments.allowed_executables` (none by default).
- `http` providers: only to 127.0.0.0/8, ::1 or localhost, or hosts listed in
  `experiments.allowed_http_hosts`.
- locustfiles: only from the project's `scenarios/` folder or folders listed
  in `load.allowed_locustfile_dirs`.

Everything here reads names only; nothing is imported, so `validate` cannot be
made to run code by naming a module.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urljoin

from .errors import UserError
from .fault_registry import FAULTS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SCENARIOS_DIR = PROJECT_ROOT / "scenarios"
# our extension: module -> the functions an experiment may call (None: a control module, no functions)
BUILTIN_MODULES: dict[str, tuple[str, ...] | None] = {
    "resilience.faults": (*FAULTS, "rollback", "platform_serving"),
    "resilience.control": None,
}
PROVIDER_TYPES = ("python", "process", "http")
LOCAL_HOSTS = ("localhost",)
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
log = logging.getLogger(__name__)
_CHAOS_SECTIONS = ("configuration", "secrets", "controls", "steady-state-hypothesis", "method", "rollbacks")


@dataclass(frozen=True)
class Policy:
    """The operator's allow-lists (from settings) and where they came from, for messages."""

    allowed_modules: tuple[str, ...] = ()
    allowed_executables: tuple[str, ...] = ()
    allowed_http_hosts: tuple[str, ...] = ()
    allowed_locustfile_dirs: tuple[str, ...] = ()
    source: str = "defaults"

    @classmethod
    def from_settings(cls, settings: Any) -> "Policy":
        e = settings.experiments
        return cls(tuple(e.allowed_modules), tuple(e.allowed_executables), tuple(e.allowed_http_hosts),
                   tuple(settings.load.allowed_locustfile_dirs), settings.source)

    def module_allowed(self, module: str) -> bool:
        """Built-in extension modules, or a listed name / package prefix of one."""
        if module in BUILTIN_MODULES:
            return True
        return any(module == prefix or module.startswith(prefix + ".") for prefix in self.allowed_modules)

    def settings_file(self) -> str:
        """Where the operator would add the setting, for messages."""
        if self.source == "defaults":
            return "a settings file (resilience.yaml in the working directory, or --config FILE)"
        return f"the settings file {self.source}"

    def locustfile_dirs(self) -> list[Path]:
        return [SCENARIOS_DIR.resolve()] + [Path(d).resolve() for d in self.allowed_locustfile_dirs]


def _label(path: str, node: dict[str, Any]) -> str:
    name = node.get("name")
    return f"{path} (name {name!r})" if isinstance(name, str) else path


def providers(raw: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Every provider in the Chaos Toolkit parts of an experiment: (where, its activity/control, provider).

    Walks every section Chaos Toolkit executes from (method, steady state and its
    tolerance probes, rollbacks, controls at any level, dynamic configuration and
    secrets), and anything else shaped like a provider, so a new place to hide
    one is still found. Our own extension block is data and is skipped.
    """
    def walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
        if isinstance(node, dict):
            provider = node.get("provider")
            if "provider" in node:
                yield _label(path, node), node, provider if isinstance(provider, dict) else {"type": provider}
            elif node.get("type") in PROVIDER_TYPES and path.rsplit(".", 1)[-1] != "provider":
                yield _label(path, node), node, node  # a bare provider where an activity was expected
            for key, value in node.items():
                if key != "provider":
                    yield from walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")

    for key, value in raw.items():
        if key != "extensions":
            yield from walk(value, key)


def check_experiment(raw: dict[str, Any], where: str, policy: Policy) -> None:
    """Refuse any provider the policy does not allow, naming the activity and the setting that would allow it."""
    for path, activity, provider in providers(raw):
        kind = provider.get("type")
        if kind == "python":
            _check_python(path, provider, where, policy)
        elif kind == "process":
            _check_process(path, provider, where, policy)
        elif kind == "http":
            _check_http(path, provider, where, policy)
        else:
            raise UserError(f"{where}: {path}: provider type {kind!r} is not one Chaos Toolkit runs here; use "
                            f"type: python with module resilience.faults (see experiments/pod-kill.yaml).")


def _check_python(path: str, provider: dict[str, Any], where: str, policy: Policy) -> None:
    module = provider.get("module")
    if not isinstance(module, str) or not _MODULE_NAME.match(module):
        raise UserError(f"{where}: {path}: provider.module must be a python module name such as resilience.faults; "
                        f"got {module!r}.")
    if not policy.module_allowed(module):
        raise UserError(f"{where}: {path} calls a function of module {module!r}, which experiments may not use: "
                        f"experiment files may only call resilience.faults and resilience.control unless the "
                        f"operator allows more. If you trust {module!r}, add it to 'experiments.allowed_modules' in "
                        f"{policy.settings_file()}.")
    if module in BUILTIN_MODULES and "${" in repr(provider.get("arguments")):
        raise UserError(f"{where}: {path}: the arguments of {module} activities may not use ${{...}}: Chaos Toolkit "
                        f"would substitute a configuration or secret value after they were checked. Write the "
                        f"values themselves.")
    func = provider.get("func")
    allowed = BUILTIN_MODULES.get(module, ())
    if func is None and "func" not in provider:
        return  # a control module: Chaos Toolkit calls its well-known hooks
    if not isinstance(func, str) or not func.isidentifier() or func.startswith("_"):
        raise UserError(f"{where}: {path}: provider.func must be the name of a public function; got {func!r}.")
    if module in BUILTIN_MODULES and func not in (allowed or ()):
        raise UserError(f"{where}: {path}: {module} has no activity {func!r}. Use one of: "
                        f"{', '.join(allowed or ()) or 'none (it is a control)'}.")


def _check_process(path: str, provider: dict[str, Any], where: str, policy: Policy) -> None:
    exe = provider.get("path")
    if isinstance(exe, str) and exe in policy.allowed_executables:
        return
    raise UserError(f"{where}: {path} runs the program {exe!r} (a process provider); experiments may not run "
                    f"programs unless the operator allows each one. If you trust it, add its absolute path to "
                    f"'experiments.allowed_executables' in {policy.settings_file()} and use that exact "
                    f"path here.")


def _check_http(path: str, provider: dict[str, Any], where: str, policy: Policy) -> None:
    url = provider.get("url")
    host = url_host(url) if isinstance(url, str) else None
    if host is not None and _host_allowed(host, policy):
        return
    raise UserError(f"{where}: {path} calls the URL {url!r} (an http provider); experiments may call only "
                    f"http(s) URLs on this machine (127.0.0.0/8, ::1, localhost) with the host written out (no "
                    f"${{...}}, no user@, no backslash, whitespace or %-escapes before the path). To allow "
                    f"another host, add it to 'experiments.allowed_http_hosts' in {policy.settings_file()}.")


_AUTHORITY = re.compile(r"^(?P<scheme>https?)://(?P<authority>[^/?#\\]*)(?P<rest>.*)$", re.DOTALL)
_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?$")


def url_host(url: str) -> str | None:
    """The host an HTTP client (requests/urllib3) would connect to for `url`, or None if it is not plain.

    The authority is what follows `scheme://` up to the first `/`, `\\`, `?` or `#`
    (urllib3 ends it at a backslash; urlsplit does not, which let
    `http://evil.com\\@127.0.0.1/` pass as 127.0.0.1). Anything but a plain
    host[:port] there is refused: user@ parts, %-escapes, whitespace, `$`.
    """
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7f for c in url):
        return None
    match = _AUTHORITY.match(url)
    if match is None or match["rest"].startswith("\\"):
        return None
    parts = _HOST_PORT.match(match["authority"])
    if parts is None or (parts["port"] is not None and not 0 < int(parts["port"]) < 65536):
        return None
    return parts["ipv6"] or parts["host"]


def _host_allowed(host: str, policy: Policy) -> bool:
    host = host.lower()
    if host in LOCAL_HOSTS or host in (h.lower() for h in policy.allowed_http_hosts):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    for entry in policy.allowed_http_hosts:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def check_locustfile(locustfile: str, where: str, policy: Policy, base: Path | None = None) -> Path:
    """The locustfile's resolved path, if it lies in an allowed folder (symlinks resolved first)."""
    raw = Path(locustfile)
    candidates = [raw] if raw.is_absolute() else [(base or Path.cwd()) / raw, PROJECT_ROOT / raw]
    path = next((c for c in candidates if c.is_file()), candidates[-1])
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        resolved = path
    dirs = policy.locustfile_dirs()
    if any(resolved == d or d in resolved.parents for d in dirs):
        return resolved
    raise UserError(f"{where}: 'locustfile' {locustfile!r} ({resolved}) is outside the folders locustfiles may "
                    f"come from ({', '.join(str(d) for d in dirs)}): a locustfile is code the load process "
                    f"runs. Move it into scenarios/, or add its folder to 'load.allowed_locustfile_dirs' in "
                    f"{policy.settings_file()}.")


_GUARD = threading.local()  # the policy while Chaos Toolkit runs an http provider in this thread


def guard_http_providers(policy: Policy) -> None:
    """Make Chaos Toolkit's http provider stop at a redirect to a host the policy does not allow.

    chaoslib 1.44's http provider has no option to turn redirects off (requests
    follows them), so an allowed loopback URL could send the request on to any
    host. While an http activity runs, requests' redirect step checks the next
    URL like the experiment's own; a refused redirect is not followed (the
    activity sees the 3xx response). Installing it twice is harmless.
    """
    import chaoslib.activity as chaos_activity
    import requests

    original = getattr(chaos_activity.run_http_activity, "__wrapped__", chaos_activity.run_http_activity)

    def run_http_activity(activity: Any, configuration: Any = None, secrets: Any = None) -> Any:
        _GUARD.policy = policy
        try:
            return original(activity, configuration, secrets)
        finally:
            _GUARD.policy = None

    run_http_activity.__wrapped__ = original  # type: ignore[attr-defined]
    chaos_activity.run_http_activity = run_http_activity
    if getattr(requests.Session.get_redirect_target, "_resilience_guard", False):
        return
    follow = requests.Session.get_redirect_target

    def get_redirect_target(self: Any, response: Any) -> Any:
        target = follow(self, response)
        guard = getattr(_GUARD, "policy", None)
        if target and guard is not None:
            host = url_host(urljoin(response.url, target if isinstance(target, str) else target.decode("latin-1")))
            if host is None or not _host_allowed(host, guard):
                log.warning("http provider: not following the redirect from %s to %r: that host is not allowed "
                            "(experiments.allowed_http_hosts)", response.url, target)
                return None
        return target

    get_redirect_target._resilience_guard = True  # type: ignore[attr-defined]
    requests.Session.get_redirect_target = get_redirect_target  # type: ignore[method-assign, assignment]


__all__ = ["BUILTIN_MODULES", "Policy", "check_experiment", "check_locustfile", "guard_http_providers", "providers",
           "url_host"]
