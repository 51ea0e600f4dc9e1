"""Availability zones of the local target.

Two ways to have zones on one machine:

- **netns** (root on Linux): each zone is a network namespace with its own
  address. One Linux bridge ``{prefix}br`` in the root namespace holds the first
  address of the subnet (e.g. 10.231.0.1/16); zone k (1-based, in config order)
  is namespace ``{prefix}{zone}`` joined to the bridge by a veth pair
  (host side ``{prefix}z{k}h`` on the bridge, namespace side ``{prefix}z{k}n``
  with 10.231.k.1/16). Everything shares one /16, so zones and the root
  namespace talk over L2 without ip_forward. Losing a zone = taking its
  host-side veth down: the zone is cut off in both directions while its
  processes keep running, like a real AZ network partition.
  Note: a service in the root namespace that zones must reach has to listen on
  the bridge address (`host_address()`) or 0.0.0.0, not on 127.0.0.1.
- **process**: everything on 127.0.0.1; a zone is only a label. Cutting a zone
  is not possible here (the caller freezes the zone's processes instead).

Both classes have the same interface so callers can treat them alike.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from resilience.errors import HarnessError, UserError

IFNAMSIZ = 15  # Linux interface names are at most 15 characters
IP = "ip"


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an `ip` command; raise HarnessError with its stderr when it fails and `check`."""
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise UserError(f"'{args[0]}' is not installed. Install iproute2 (`apt-get install iproute2`) "
                        f"or set stack.zone_mode to 'process'.") from None
    if check and result.returncode != 0:
        raise HarnessError(f"`{' '.join(args)}` failed (exit {result.returncode}): {result.stderr.strip()}")
    return result


def detect_zone_mode(requested: str) -> tuple[str, str]:
    """("netns" | "process", why) for `stack.zone_mode` auto | netns | process."""
    if requested == "process":
        return "process", "stack.zone_mode is 'process': every service on 127.0.0.1, zones are labels"
    if requested not in ("auto", "netns"):
        raise UserError(f"stack.zone_mode must be auto, netns or process; got {requested!r}.")
    ok, why_not = _netns_possible()
    if ok:
        return "netns", "network namespaces work here: each zone has its own network"
    if requested == "netns":
        raise UserError(f"stack.zone_mode is 'netns' but network namespaces cannot be used: {why_not}. "
                        f"Run the harness as root on Linux with iproute2 installed, "
                        f"or set stack.zone_mode to 'auto' or 'process'.")
    return "process", f"network namespaces unavailable ({why_not}): zones are process groups on 127.0.0.1"


def _netns_possible() -> tuple[bool, str]:
    """Try creating and deleting a probe namespace (name outside every zone prefix)."""
    if not sys.platform.startswith("linux"):
        return False, f"not Linux ({sys.platform})"
    if os.geteuid() != 0:
        return False, "not running as root"
    probe = f"rslprobe{os.getpid()}"
    try:
        added = _run([IP, "netns", "add", probe], check=False)
    except UserError as exc:
        return False, str(exc)
    if added.returncode != 0:
        return False, f"`ip netns add` failed: {added.stderr.strip()}"
    _run([IP, "netns", "delete", probe], check=False)
    return True, ""


def list_namespaces() -> list[str]:
    """Names of every named network namespace (`ip netns list`)."""
    out = _run([IP, "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[str]:
    """Names of every interface in the root namespace (without the "@peer" suffix)."""
    out = _run([IP, "-o", "link", "show"]).stdout
    names = []
    for line in out.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


class ZoneNetwork:
    """Zones as network namespaces on one bridge (see the module docstring)."""

    mode = "netns"

    def __init__(self, zones: Sequence[str], subnet: str, prefix: str = "rsl-") -> None:
        self.zones = list(zones)
        self.prefix = prefix
        self.network = ipaddress.ip_network(subnet)
        if self.network.version != 4 or self.network.prefixlen > 16:
            raise UserError(f"zone subnet {subnet} must be an IPv4 /16 or larger (e.g. 10.231.0.0/16).")
        if len(self.zones) > 250:
            raise UserError(f"at most 250 zones fit in {subnet}; got {len(self.zones)}.")
        if len(self.bridge) > IFNAMSIZ or len(self._veth(len(self.zones), "h")) > IFNAMSIZ:
            raise UserError(f"zone prefix {prefix!r} is too long for Linux interface names "
                            f"(at most {IFNAMSIZ} characters, e.g. '{self._veth(len(self.zones), 'h')}'); "
                            f"use a prefix of at most 8 characters.")

    # -- names and addresses -------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    def _index(self, zone: str) -> int:
        try:
            return self.zones.index(zone) + 1
        except ValueError:
            raise UserError(f"unknown zone {zone!r}; the stack's zones are {', '.join(self.zones)}.") from None

    def _veth(self, k: int, side: str) -> str:
        return f"{self.prefix}z{k}{side}"

    def host_veth(self, zone: str) -> str:
        return self._veth(self._index(zone), "h")

    def zone_veth(self, zone: str) -> str:
        return self._veth(self._index(zone), "n")

    def host_address(self) -> str:
        """The root namespace's address on the bridge (first host of the subnet)."""
        return str(self.network.network_address + 1)

    def address(self, zone: str) -> str:
        """The zone's address: 10.231.k.1 for zone k."""
        return str(self.network.network_address + 256 * self._index(zone) + 1)

    def netns(self, zone: str) -> str:
        self._index(zone)
        return f"{self.prefix}{zone}"

    def exec_prefix(self, zone: str) -> list[str]:
        """Prepend to a command to run it inside the zone (`ip netns exec` execs: same PID)."""
        return [IP, "netns", "exec", self.netns(zone)]

    def _cidr(self, address: str) -> str:
        return f"{address}/{self.network.prefixlen}"

    # -- lifecycle -----------------------------------------------------------------
    def exists(self) -> bool:
        """The bridge and every zone namespace are there."""
        namespaces = set(list_namespaces())
        return self.bridge in list_links() and all(self.netns(z) in namespaces for z in self.zones)

    def create(self) -> None:
        """Create the bridge, namespaces and veths that are missing; undo them on failure."""
        made: list[tuple[str, str]] = []  # ("link" | "netns", name), in creation order
        try:
            self._create(made)
        except BaseException:
            for kind, name in reversed(made):
                if kind == "link":
                    _run([IP, "link", "delete", name], check=False)
                else:
                    _run([IP, "netns", "delete", name], check=False)
            raise

    def _create(self, made: list[tuple[str, str]]) -> None:
        links = set(list_links())
        namespaces = set(list_namespaces())
        if self.bridge not in links:
            _run([IP, "link", "add", self.bridge, "type", "bridge"])
            made.append(("link", self.bridge))
        _run([IP, "addr", "replace", self._cidr(self.host_address()), "dev", self.bridge])
        _run([IP, "link", "set", self.bridge, "up"])
        for zone in self.zones:
            ns, host, inner = self.netns(zone), self.host_veth(zone), self.zone_veth(zone)
            if ns not in namespaces:
                _run([IP, "netns", "add", ns])
                made.append(("netns", ns))
            in_ns = [IP, "-n", ns]
            if host not in links:
                _run([IP, "link", "add", host, "type", "veth", "peer", "name", inner, "netns", ns])
                made.append(("link", host))
            _run(in_ns + ["addr", "replace", self._cidr(self.address(zone)), "dev", inner])
            _run([IP, "link", "set", host, "master", self.bridge])
            _run([IP, "link", "set", host, "up"])
            _run(in_ns + ["link", "set", inner, "up"])
            _run(in_ns + ["link", "set", "lo", "up"])

    def destroy(self) -> None:
        """Remove every namespace, veth and bridge with this prefix (also a crashed run's)."""
        for ns in list_namespaces():
            if ns.startswith(self.prefix):
                _run([IP, "netns", "delete", ns], check=False)
        # A process still running in a deleted namespace keeps its veth pair alive:
        # deleting the host side removes both ends.
        for link in list_links():
            if link.startswith(self.prefix) and link != self.bridge:
                _run([IP, "link", "delete", link], check=False)
        if self.bridge in list_links():
            _run([IP, "link", "delete", self.bridge], check=False)
        left = [n for n in list_namespaces() if n.startswith(self.prefix)]
        left += [n for n in list_links() if n.startswith(self.prefix)]
        if left:
            raise HarnessError(f"could not remove {', '.join(left)}; remove them with `ip netns delete NAME` "
                               f"/ `ip link delete NAME`.")

    # -- faults ----------------------------------------------------------------------
    def cut(self, zone: str) -> None:
        """Disconnect the zone from everything (both directions); its processes keep running."""
        _run([IP, "link", "set", self.host_veth(zone), "down"])

    def restore(self, zone: str) -> None:
        _run([IP, "link", "set", self.host_veth(zone), "up"])

    def is_cut(self, zone: str) -> bool:
        """True when the zone's host-side veth is administratively down."""
        out = _run([IP, "-j", "link", "show", "dev", self.host_veth(zone)]).stdout
        flags = json.loads(out)[0].get("flags", [])
        return "UP" not in flags


class ProcessZones:
    """Zones as labels only: every service on 127.0.0.1, no network isolation."""

    mode = "process"

    def __init__(self, zones: Sequence[str]) -> None:
        self.zones = list(zones)

    def _check(self, zone: str) -> None:
        if zone not in self.zones:
            raise UserError(f"unknown zone {zone!r}; the stack's zones are {', '.join(self.zones)}.")

    def host_address(self) -> str:
        return "127.0.0.1"

    def address(self, zone: str) -> str:
        self._check(zone)
        return "127.0.0.1"

    def netns(self, zone: str) -> str | None:
        self._check(zone)
        return None

    def exec_prefix(self, zone: str) -> list[str]:
        self._check(zone)
        return []

    def exists(self) -> bool:
        return True

    def create(self) -> None:
        """Nothing to create."""

    def destroy(self) -> None:
        """Nothing to remove."""

    def cut(self, zone: str) -> None:
        raise NotImplementedError("process zones have no network to cut: freeze the zone's processes instead")

    def restore(self, zone: str) -> None:
        raise NotImplementedError("process zones have no network to restore: thaw the zone's processes instead")

    def is_cut(self, zone: str) -> bool:
        self._check(zone)
        return False
