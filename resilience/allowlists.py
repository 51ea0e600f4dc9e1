"""Every allow-list a cloud run needs, checked at once, before any target is built.

The targets check each allow-list where it is used (and again before every call);
a newcomer with no settings file would meet them one at a time: the context, then
the account, the region, each resource. This says all of it in one message, with
a complete resilience.yaml (their settings plus what is missing) to start from.
"""

from __future__ import annotations

from typing import Iterable

import yaml

from .config import IN_CLUSTER_CONTEXT, Settings
from .errors import UserError

CLOUD_TARGETS = ("kubernetes", "aws")
# the faults that act on each AWS resource (aws target): a run needs only the resources its faults touch
DATABASE_FAULTS = ("fail_over_database", "lose_zone")
CACHE_FAULTS = ("stop_cache", "lose_zone")
EXAMPLE_ACCOUNT = "123456789012"


def missing(settings: Settings, target: str, context: str | None, faults: Iterable[str]) -> dict[str, list[str]]:
    """Setting -> the values it lacks for this run (empty: nothing is missing)."""
    faults = list(faults)
    out: dict[str, list[str]] = {}
    if target not in CLOUD_TARGETS:
        return out
    k, a = settings.kubernetes, settings.aws
    if context and context not in k.allowed_contexts:
        out["kubernetes.allowed_contexts"] = [context]
    if target != "aws":
        return out
    if not a.allowed_accounts:
        out["aws.allowed_accounts"] = [EXAMPLE_ACCOUNT]
    if a.region not in a.allowed_regions:
        out["aws.allowed_regions"] = [a.region]
    resources = [r for r, needed in ((a.rds_cluster, DATABASE_FAULTS), (a.elasticache_group, CACHE_FAULTS))
                 if any(f in needed for f in faults) and r not in a.allowed_resources]
    if resources:
        out["aws.allowed_resources"] = resources
    if a.injection == "fis" and not a.fis_role_arn and any(f in DATABASE_FAULTS + CACHE_FAULTS for f in faults):
        out["aws.fis_role_arn"] = [f"arn:aws:iam::{EXAMPLE_ACCOUNT}:role/resilience-fis"]  # FIS runs faults as it
    return out


def check_allowlists(settings: Settings, target: str, context: str | None, faults: Iterable[str]) -> None:
    """Raise one UserError naming every allow-list this run lacks, with a whole settings file to start from."""
    lacking = missing(settings, target, context, faults)
    if not lacking:
        return
    lines = [f"  {setting}: add {', '.join(values)}" for setting, values in lacking.items()]
    account_note = (f" ({EXAMPLE_ACCOUNT} stands for your account's 12-digit id: `aws sts get-caller-identity`)"
                    if "aws.allowed_accounts" in lacking else "")
    context_note = (" ('in-cluster' is the pod's own ServiceAccount, for the CronJob)"
                    if context == IN_CLUSTER_CONTEXT else "")
    raise UserError(
        f"{settings.source}: the {target} target touches only what the settings allow, and they lack:\n"
        + "\n".join(lines)
        + f"\nNothing was called.{account_note}{context_note} Only add what is meant for chaos experiments. "
        + ("A resilience.yaml to start from (save it in this directory, then try again; a run: with --dry-run "
           "first):"
           if settings.source == "defaults" else f"Add to {settings.source}:")
        + "\n\n" + completed_yaml(settings, lacking))


def completed_yaml(settings: Settings, lacking: dict[str, list[str]]) -> str:
    """The settings' kubernetes and aws sections, with the missing values added, as YAML."""
    data = settings.to_json()
    sections = {"kubernetes": data["kubernetes"], "aws": data["aws"]}
    for setting, values in lacking.items():
        section, key = setting.split(".")
        if not isinstance(sections[section][key], (list, tuple)) and values:  # one value (aws.fis_role_arn)
            sections[section][key] = values[0]
            continue
        current = list(sections[section][key] or [])
        sections[section][key] = current + [v for v in values if v not in current]
    if settings.source != "defaults":  # only the allow-lists change: the rest of their file stays as it is
        sections = {s: {k: v for k, v in keys.items() if f"{s}.{k}" in lacking} for s, keys in sections.items()}
        sections = {s: keys for s, keys in sections.items() if keys}
    return yaml.safe_dump(sections, sort_keys=False)
