"""What can be broken in the local stack, and how: requests to the supervisor's control socket.

The supervisor does the breaking (it owns the processes); this side asks for a
fault, records how to undo it, and for every restoring step waits until the
supervisor reports the restored components whole again (or raises, naming them).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ...errors import HarnessError
from ...fault_registry import ROLLBACK_NONE, FaultCall
from ..base import Nemesis, Recorder, RollbackStep, no_record
from . import LocalPlatform

REPLACE_TIMEOUT_S = 60.0


class LocalNemesis(Nemesis):
    name = "local"
    SUPPORT = {"kill_replicas": None, "lose_zone": None, "fail_over_database": None, "stop_cache": None,
               "pause_replicas": None, "hold_replication": None}

    def __init__(self, platform: LocalPlatform) -> None:
        self.platform = platform
        self.zones = platform.s.zones

    def argument_refusal(self, call: FaultCall) -> str | None:
        zone = call.get("zone")
        if call.fault == "lose_zone" and zone not in (None, "primary") and zone not in self.zones:
            return (f"zone {zone!r} is not one of the local stack's zones ({', '.join(self.zones)}, setting "
                    f"stack.zones); use one of them, or 'primary' for the zone of the database primary.")
        return None

    # -- plans -----------------------------------------------------------------
    def plan(self, call: FaultCall) -> list[str]:
        lines = {
            "kill_replicas": ["kill_replicas: SIGKILL {what} API replicas chosen at random (seed {seed})",
                              "rollback wait_replicas: wait until the replica controller has replaced them"],
            "lose_zone": ["lose_zone: cut zone {zone} off the network (its namespace's link down) and stop every "
                          "component in it",
                          "rollback restore_zone: network back, the zone's services restarted; wait until they "
                          "rejoin (stack.heal_timeout_s)"],
            "fail_over_database": ["fail_over_database: {mode} the PostgreSQL primary (Patroni promotes the "
                                   "synchronous standby)",
                                   "rollback restore_db: restart the old primary so it rejoins as a replica "
                                   "(rewind or re-clone); wait until it streams"],
            "stop_cache": ["stop_cache: SIGKILL {cache} (Sentinel promotes a replica when the master dies)",
                           "rollback restore_cache: restart the stopped Redis servers; wait until they rejoin"],
            "pause_replicas": ["pause_replicas: SIGSTOP every API replica",
                               "rollback resume_replicas: SIGCONT every API replica"],
            "hold_replication": ["hold_replication: SIGSTOP the primary's WAL senders, then kill the primary",
                                 "rollback resume_replication: SIGCONT the held WAL senders"],
        }[call.fault]
        what = f"{call.get('percent'):g}% of the" if call.get("percent") is not None else str(call.get("count"))
        cache = "the Redis master" if call.get("mode") == "failover" else "every Redis server"
        zone = call.get("zone")
        zone_text = "<the zone of the PostgreSQL primary, asked of the supervisor>" if zone == "primary" else zone
        return [line.format(what=what, seed=call.get("seed"), zone=zone_text, mode=call.get("mode"), cache=cache)
                for line in lines]

    # -- faults ------------------------------------------------------------------
    def inject(self, call: FaultCall, seed: int | None = None, record: Recorder = no_record) -> RollbackStep:
        if call.fault == "lose_zone":
            return self._lose_zone(call, record)
        handlers: dict[str, Callable[[FaultCall, int | None], RollbackStep]] = {
            "kill_replicas": self._kill_replicas,
            "fail_over_database": self._fail_over_database, "stop_cache": self._stop_cache,
            "pause_replicas": self._pause_replicas, "hold_replication": self._hold_replication}
        return handlers[call.fault](call, seed)

    def _request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        return self.platform.request(op, timeout=timeout, **args)

    def _kill_replicas(self, call: FaultCall, seed: int | None) -> RollbackStep:
        desired = int(self._request("ready_replicas")["desired"])
        self._request("kill_replicas", count=call.get("count"), percent=call.get("percent"),
                      seed=call.get("seed") if call.get("seed") is not None else seed)
        return RollbackStep("wait_replicas", {"count": desired},
                            "wait until the controller has replaced the killed replicas")

    def _pause_replicas(self, call: FaultCall, seed: int | None) -> RollbackStep:
        self._request("pause_replicas", pause=True)
        return RollbackStep("resume_replicas", {}, "SIGCONT every API replica")

    def _lose_zone(self, call: FaultCall, record: Recorder) -> RollbackStep:
        zone = call.get("zone")
        if zone in (None, "primary"):
            zone = self.platform.primary_zone()
        step = RollbackStep("restore_zone", {"zone": zone}, f"restore {zone}: network back, its services restarted")
        record(step)
        self._request("lose_zone", zone=zone)
        return step

    def _fail_over_database(self, call: FaultCall, seed: int | None) -> RollbackStep:
        result = self._request("kill_db_primary", mode=call.get("mode"))
        return RollbackStep("restore_db", {"member": result["member"]},
                            f"restart {result['member']} so it rejoins as a replica")

    def _stop_cache(self, call: FaultCall, seed: int | None) -> RollbackStep:
        result = self._request("stop_cache", mode=call.get("mode"))
        return RollbackStep("restore_cache", {"members": result["members"]}, "restart the stopped Redis servers")

    def _hold_replication(self, call: FaultCall, seed: int | None) -> RollbackStep:
        self._request("pause_replication", pause=True)
        return RollbackStep("resume_replication", {}, "SIGCONT the primary's held WAL senders")

    # -- undoing -----------------------------------------------------------------
    def heal(self) -> None:
        """Undo every fault the stack knows of (rollback of last resort after a crash), and wait until it is whole."""
        self._request("heal", timeout=self.platform.heal_wait_s())

    def rollback(self, step: RollbackStep) -> None:
        """Undo one fault; returns once every restored component has rejoined (or raises, naming what did not)."""
        args = step.arguments
        wait = self.platform.heal_wait_s()
        if step.capability == ROLLBACK_NONE:
            return
        if step.capability == "restore_zone":
            self._request("restore_zone", timeout=wait, zone=args["zone"])
        elif step.capability == "restore_db":
            self._request("restore_db", timeout=wait, member=args["member"])
        elif step.capability == "restore_cache":
            self._request("restore_cache", timeout=wait, members=args.get("members", []))
        elif step.capability == "resume_replicas":
            self._request("pause_replicas", pause=False)
        elif step.capability == "resume_replication":
            try:
                self._request("pause_replication", pause=False)
            except HarnessError:
                pass  # the senders died with the primary
        elif step.capability == "heal":
            self.heal()
        elif step.capability == "wait_replicas":
            self._wait_replicas(int(args.get("count", 1)))
        else:
            raise HarnessError(f"local target: unknown rollback step {step.capability!r}")

    def _wait_replicas(self, count: int) -> None:
        deadline = time.monotonic() + REPLACE_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.platform.ready_replicas() >= count:
                return
            time.sleep(0.2)
        raise HarnessError(f"the controller did not restore {count} ready replicas within {REPLACE_TIMEOUT_S:.0f} s")
