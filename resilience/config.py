"""Typed settings: the stack, the targets, and the harness, with validation.

Settings come from defaults, overridden by a YAML file (`--config FILE`, or
`resilience.yaml` in the working directory, or `$RESILIENCE_CONFIG`). Every
validation error names the file, the field and the fix, and exits 2.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# The sections that need more than a type check live with their checks (and are part of this module's API).
from .config_checks import (IN_CLUSTER_CONTEXT, BackupSettings, ExperimentsSettings, KubernetesSettings,
                            validate_backup, validate_experiments, validate_kubernetes, validate_trusted_keys)
from .errors import UserError
from .monitoring_settings import CloudWatchAlarmSettings, validate_alarms, validate_monitoring

DEFAULT_CONFIG_NAMES = ("resilience.yaml", "resilience.yml")


@dataclass(frozen=True)
class Ports:
    """Every TCP port the local stack uses. Replica slot i (1-based) listens on api_base + i."""

    lb: int = 8080  # HAProxy frontend: the platform URL
    lb_stats: int = 8404  # HAProxy stats page (127.0.0.1)
    api_base: int = 8100
    postgres_base: int = 5440  # member i: postgres_base + i
    patroni_base: int = 8010  # member i: patroni REST API on patroni_base + i
    etcd_client_base: int = 2390  # member i: client port
    etcd_peer_base: int = 2490  # member i: peer port
    redis_base: int = 6390  # member i
    sentinel_base: int = 26390  # sentinel i


@dataclass(frozen=True)
class Autoscaling:
    """Kubernetes HPA (autoscaling/v2) settings for the local controller."""

    min_replicas: int = 3
    max_replicas: int = 9
    target_cpu_utilization: int = 70  # percent of the replica's CPU limit
    tolerance: float = 0.1
    sync_period_s: float = 1.0  # how often the controller evaluates (Kubernetes: 15 s)
    scale_up_stabilization_s: float = 0.0
    scale_down_stabilization_s: float = 30.0  # Kubernetes default 300 s; shortened for experiments
    scale_up_percent: int = 100  # per scale_up_period_s
    scale_up_pods: int = 4  # per scale_up_period_s
    scale_up_period_s: float = 15.0
    scale_down_percent: int = 100
    scale_down_period_s: float = 15.0


@dataclass(frozen=True)
class StackSettings:
    """The local stack: zones, replicas, CPU limits, replication, ports, state directory."""

    zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c")
    replicas: int = 3  # initial API replicas, spread over zones
    replica_cpu_limit: float = 0.25  # CPUs per API replica (cgroup cfs quota): CPU utilisation drives the HPA
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    synchronous_replication: bool = True
    zone_mode: str = "auto"  # auto | netns | process
    zone_subnet: str = "10.231.0.0/16"  # only inside namespaces this project creates
    ports: Ports = field(default_factory=Ports)
    state_dir: str = "/var/lib/resilience"  # $RESILIENCE_STATE_DIR overrides it (see load_settings)
    patroni_ttl_s: int = 10  # leader lock TTL: a dead primary is replaced within about ttl seconds
    patroni_loop_wait_s: int = 1
    patroni_retry_timeout_s: int = 4
    redis_down_after_ms: int = 1000
    redis_failover_timeout_ms: int = 3000
    startup_timeout_s: float = 60.0
    heal_timeout_s: float = 120.0  # a rollback waits this long for every restored component to rejoin
    reinit_after_s: float = 20.0  # a PostgreSQL member not streaming this long after its restart is re-cloned
    backup: BackupSettings = field(default_factory=BackupSettings)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def region2_path(self) -> Path:
        """pgBackRest's repo2 (the second region): never inside state_dir, which `down` empties."""
        return Path(self.backup.region2_path or self.state_dir.rstrip("/") + "-region2")


@dataclass(frozen=True)
class Targets:
    """The platform's stated objectives; experiments and the CLI may override them."""

    rto_s: float = 900.0
    rpo_s: float = 300.0
    lost_writes: float = 0.0  # acknowledged orders not found on read-back: none may be lost
    availability: float = 0.999  # judged outside the fault window (steady + recovery)
    availability_fault: float = 0.0  # judged during the fault only when > 0 (e.g. pod-kill: 0.99)
    p99_ms: float = 200.0
    autoscale_s: float = 120.0
    rto_hold_s: float = 10.0  # RTO: the service must stay healthy this long
    rto_success_ratio: float = 0.99  # per second, during the hold window
    p99_fault_ms: float = 0.0  # P99 during the fault (a degraded-mode objective), judged only when > 0
    recovered_s: float = 0.0  # the fault removed until normal again (success and P99), judged only when > 0
    detection_s: float = 0.0  # impact to the first expected alert's notification; > 0: judged, else against the bound
    alert_cleared_s: float = 0.0  # recovery to its resolved notification; > 0: judged, else it must only clear


@dataclass(frozen=True)
class AwsSettings:
    allowed_accounts: tuple[str, ...] = ()
    region: str = "ap-south-1"
    rds_cluster: str = "school-meals-db"
    elasticache_group: str = "school-meals-cache"
    endpoint_url: str | None = None  # e.g. a moto server in tests
    allowed_regions: tuple[str, ...] = ()  # every call is refused outside these (empty: none allowed)
    # identifiers faults may act on: the DB cluster, the replication group, the VPC and subnets (NACL blackhole)
    allowed_resources: tuple[str, ...] = ()
    blackhole_subnets: bool = False  # a zone loss also cuts the zone's allowed subnets with a deny-all NACL
    elasticache_tls: bool = True  # in-transit encryption on the replication group: the API uses rediss://
    # the subnets the harness reaches AWS through (where it runs, its NAT gateway): a blackhole never cuts them
    harness_subnets: tuple[str, ...] = ()
    # fis: faults are AWS FIS experiments that end by themselves (a killed harness leaves nothing broken);
    # chaosaws: direct API calls (failovers, our own NACL blackhole) that only the harness undoes
    injection: str = "fis"
    fis_role_arn: str | None = None  # the IAM role FIS runs experiments as (required with injection: fis)
    fis_stop_alarms: tuple[str, ...] = ()  # CloudWatch alarm ARNs: FIS stops the experiment when one fires
    fis_duration_s: int = 900  # the longest a FIS fault lasts if the harness never stops it (1 min .. 12 h)
    eks_cluster: str | None = None  # the EKS cluster's name: FIS pod network faults target its pods (clusterIdentifier)
    # the Kubernetes ServiceAccount FIS's pod actions run as, in the app's namespace, with the Role FIS documents
    fis_kubernetes_service_account: str = "fis-experiment"
    gameday_cooldown_s: float = 60.0  # a game-day's pause between experiments, before waiting for `available`
    settle_timeout_s: float = 1800.0  # how long a game-day waits for RDS/ElastiCache to be available again
    # restore_database: keep the restored DB cluster (resilience-<cluster>-restored) after the rollback points the
    # app back at aws.rds_cluster (default: delete it)
    keep_restored: bool = False
    alarms: CloudWatchAlarmSettings = field(default_factory=CloudWatchAlarmSettings)  # CloudWatch alarms: detection, stop


@dataclass(frozen=True)
class EvidenceSettings:
    reports_dir: str = "reports"
    signing_key: str | None = None  # path to an Ed25519 private key (resilience keygen)
    # paths to Ed25519 public keys (PEM, the .pub files keygen writes): when set, `verify` requires a valid
    # signature by one of them, so an unsigned, re-sealed or re-signed run does not pass as intact
    trusted_public_keys: tuple[str, ...] = ()
    frameworks_in_scope: tuple[str, ...] = ("SOC 2", "ISO/IEC 27001:2022")


@dataclass(frozen=True)
class LoadSafetySettings:
    """Where Locust scenarios may come from: a locustfile is code the load process executes."""

    # folders (besides the project's scenarios/) whose locustfiles experiments may use; relative paths
    # are taken from the current directory
    allowed_locustfile_dirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    stack: StackSettings = field(default_factory=StackSettings)
    targets: Targets = field(default_factory=Targets)
    experiments: ExperimentsSettings = field(default_factory=ExperimentsSettings)
    load: LoadSafetySettings = field(default_factory=LoadSafetySettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    aws: AwsSettings = field(default_factory=AwsSettings)
    evidence: EvidenceSettings = field(default_factory=EvidenceSettings)
    source: str = "defaults"  # the file these came from

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: Any, where: str, path: str) -> Any:
    """Build a (nested) dataclass from a mapping, naming the bad field on error."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: '{path or 'top level'}' must be a mapping of settings, not {type(data).__name__}. "
                        f"Fix the YAML so that it is 'key: value' pairs.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else key
        if key not in fields or key == "source":
            known = ", ".join(sorted(k for k in fields if k != "source"))
            raise UserError(f"{where}: unknown setting '{dotted}'. Known settings here: {known}. "
                            f"Remove it or fix the spelling.")
        default = getattr(defaults, key)
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, where, dotted)
            continue
        if default is None and str(fields[key].type).startswith("int") and value is not None:
            default = 0  # an optional whole number (`int | None`): check it as one
        kwargs[key] = _coerce(value, default, where, dotted)
    return cls(**kwargs)


def _coerce(value: Any, default: Any, where: str, dotted: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where}: '{dotted}' must be true or false, got {value!r}.")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: '{dotted}' must be a whole number, got {value!r}.")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where}: '{dotted}' must be a number, got {value!r}.")
        return float(value)
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UserError(f"{where}: '{dotted}' must be a list of strings, got {value!r}.")
        return tuple(value)
    if default is None or isinstance(default, str):
        if value is not None and not isinstance(value, str):
            raise UserError(f"{where}: '{dotted}' must be a string, got {value!r}.")
        return value
    return value


def validate(settings: Settings) -> Settings:
    """Check cross-field rules; raise UserError naming the field and the fix."""
    where = settings.source
    s = settings.stack
    a = s.autoscaling
    if len(s.zones) < 1 or len(set(s.zones)) != len(s.zones):
        raise UserError(f"{where}: 'stack.zones' must list at least one zone, each once; got {list(s.zones)}.")
    if len(s.zones) != 3:
        raise UserError(f"{where}: 'stack.zones' must name exactly 3 zones (one etcd member, one Sentinel per zone); "
                        f"got {len(s.zones)}.")
    for z in s.zones:
        if not z.replace("-", "").isalnum() or len(z) > 12:
            raise UserError(f"{where}: zone name {z!r} in 'stack.zones' must be short (<= 12) letters, digits, '-'.")
    if not 1 <= a.min_replicas <= a.max_replicas:
        raise UserError(f"{where}: need 1 <= 'stack.autoscaling.min_replicas' <= 'max_replicas'; "
                        f"got {a.min_replicas} and {a.max_replicas}.")
    if a.max_replicas > 50:
        raise UserError(f"{where}: 'stack.autoscaling.max_replicas' is at most 50 on the local target; got {a.max_replicas}.")
    if not a.min_replicas <= s.replicas <= a.max_replicas:
        raise UserError(f"{where}: 'stack.replicas' ({s.replicas}) must lie between min_replicas ({a.min_replicas}) "
                        f"and max_replicas ({a.max_replicas}).")
    if not 1 <= a.target_cpu_utilization <= 100:
        raise UserError(f"{where}: 'stack.autoscaling.target_cpu_utilization' is a percentage 1..100; got {a.target_cpu_utilization}.")
    if not 0.05 <= s.replica_cpu_limit <= 4:
        raise UserError(f"{where}: 'stack.replica_cpu_limit' is CPUs per replica, 0.05..4; got {s.replica_cpu_limit}.")
    if s.zone_mode not in ("auto", "netns", "process"):
        raise UserError(f"{where}: 'stack.zone_mode' must be auto, netns or process; got {s.zone_mode!r}.")
    try:
        net = ipaddress.ip_network(s.zone_subnet)
    except ValueError as exc:
        raise UserError(f"{where}: 'stack.zone_subnet' is not a network ({exc}); use e.g. 10.231.0.0/16.") from None
    if net.prefixlen > 16 or net.version != 4:
        raise UserError(f"{where}: 'stack.zone_subnet' must be an IPv4 /16 or larger; got {s.zone_subnet}.")
    if s.patroni_loop_wait_s + 2 * s.patroni_retry_timeout_s > s.patroni_ttl_s or s.patroni_loop_wait_s < 1:
        raise UserError(f"{where}: Patroni needs loop_wait >= 1 and loop_wait + 2 * retry_timeout <= ttl; got "
                        f"loop_wait={s.patroni_loop_wait_s}, retry_timeout={s.patroni_retry_timeout_s}, ttl={s.patroni_ttl_s}.")
    if not 0 < s.reinit_after_s < s.heal_timeout_s:
        raise UserError(f"{where}: 'stack.reinit_after_s' must be positive and below 'stack.heal_timeout_s'; got "
                        f"reinit_after_s={s.reinit_after_s}, heal_timeout_s={s.heal_timeout_s}.")
    ports = dataclasses.asdict(s.ports)
    for name, port in ports.items():
        if not 1024 <= port <= 65000:
            raise UserError(f"{where}: 'stack.ports.{name}' must be 1024..65000; got {port}.")
    if not s.state_dir.startswith("/"):
        raise UserError(f"{where}: 'stack.state_dir' must be an absolute path; got {s.state_dir!r}.")
    problem = state_dir_problem(Path(s.state_dir))
    if problem:
        raise UserError(f"{where}: 'stack.state_dir' {s.state_dir!r} cannot hold the local stack's state: {problem}. "
                        f"`resilience down` deletes what is in it, so it must be missing, empty or one the stack "
                        f"made (it holds {STATE_MARKER}). Choose a dedicated folder, e.g. /var/lib/resilience.")
    validate_backup(s.backup, s.state_path, s.region2_path, where)
    t = settings.targets
    if not 0 <= t.availability_fault <= 1:
        raise UserError(f"{where}: 'targets.availability_fault' is a fraction in [0, 1] (0: not judged); got {t.availability_fault}.")
    if not 0 < t.availability <= 1:
        raise UserError(f"{where}: 'targets.availability' is a fraction in (0, 1], e.g. 0.999; got {t.availability}.")
    for name, value in dataclasses.asdict(t).items():
        if not math.isfinite(value):
            raise UserError(f"{where}: 'targets.{name}' must be a finite number; got {value}.")
    for name in ("p99_fault_ms", "recovered_s", "detection_s", "alert_cleared_s"):
        if getattr(t, name) < 0:
            raise UserError(f"{where}: 'targets.{name}' is >= 0 (0: not judged); got {getattr(t, name)}.")
    if t.lost_writes < 0:
        raise UserError(f"{where}: 'targets.lost_writes' is how many acknowledged writes may be lost (0: none); "
                        f"got {t.lost_writes}.")
    for name in ("rto_s", "rpo_s", "p99_ms", "autoscale_s", "rto_hold_s"):
        if getattr(t, name) <= 0:
            raise UserError(f"{where}: 'targets.{name}' must be positive; got {getattr(t, name)}.")
    validate_kubernetes(settings.kubernetes, where)
    validate_monitoring(settings.kubernetes.monitoring, where)
    validate_alarms(settings.aws.alarms, where)
    validate_trusted_keys(settings.evidence.trusted_public_keys, where)
    validate_experiments(settings.experiments, where)
    for entry in settings.load.allowed_locustfile_dirs:
        if not entry.strip() or "\0" in entry:
            raise UserError(f"{where}: 'load.allowed_locustfile_dirs' has the entry {entry!r}; list folders that "
                            f"hold trusted locustfiles, e.g. [scenarios-extra].")
    return settings


STATE_MARKER = ".resilience-state-dir"  # written by `resilience up`: this directory is the stack's


def state_dir_problem(path: Path) -> str | None:
    """Why `path` cannot be the stack's state directory, or None: it must be missing, empty or the stack's own.

    The stack's own: it holds STATE_MARKER, or only what an older version left
    (logs/, or logs/ with settings.json). A directory we may not list is judged
    by `resilience up`, which runs as root.
    """
    try:
        if not path.exists() or (path / STATE_MARKER).is_file():
            return None
        if not path.is_dir():
            return "it is not a directory"
        names = set(os.listdir(path))
    except OSError:
        return None
    if names <= {"logs"} or {"logs", "settings.json"} <= names:
        return None
    shown = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
    return f"it already holds files the stack did not create ({shown})"


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overridden by the YAML file at `path` (or the default locations)."""
    if path is None:
        env = os.environ.get("RESILIENCE_CONFIG")
        if env:
            path = env
        else:
            for name in DEFAULT_CONFIG_NAMES:
                if Path(name).is_file():
                    path = name
                    break
    if path is None:
        return validate(_state_dir_from_env(Settings()))
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file {p} does not exist. Pass an existing file with --config, or omit it to use the defaults.")
    from .inputs import load_yaml
    data = load_yaml(p, "settings file") or {}
    settings = _build(Settings, data, str(p), "")
    settings = dataclasses.replace(settings, source=str(p))
    if "state_dir" not in (data.get("stack") or {}):
        settings = _state_dir_from_env(settings)
    return validate(settings)


def _state_dir_from_env(settings: Settings) -> Settings:
    """$RESILIENCE_STATE_DIR moves all local-stack state (e.g. a test stack beside a user's)."""
    env = os.environ.get("RESILIENCE_STATE_DIR")
    if not env:
        return settings
    return dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, state_dir=env))


def override_targets(targets: Targets, overrides: dict[str, Any], where: str) -> Targets:
    """Targets with per-experiment or per-run overrides applied (validated)."""
    merged = _build(Targets, {**_targets_dict(targets), **overrides}, where, "targets")
    return validate(Settings(targets=merged, source=where)).targets


def _targets_dict(targets: Targets) -> dict[str, Any]:
    return dataclasses.asdict(targets)


def defaults_yaml() -> str:
    """A complete, valid settings file with every default (for `resilience config --defaults`)."""
    data = Settings().to_json()
    data.pop("source")
    return yaml.safe_dump(data, sort_keys=False)
