"""Label and field selectors, label-selector objects, tolerations and JSON merge patch, as the API defines them."""

from __future__ import annotations

import copy
import re
from typing import Any

Obj = dict[str, Any]


def _split_selector(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def matches_labels(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector syntax: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b)."""
    for term in _split_selector(selector):
        set_match = re.match(r"^([^\s!=]+)\s+(in|notin)\s+\((.*)\)$", term)
        if set_match:
            key, op, values = set_match.group(1), set_match.group(2), {v.strip() for v in set_match.group(3).split(",")}
            if (op == "in") != (labels.get(key) in values):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def matches_fields(selector: str, obj: Obj) -> bool:
    """Field selectors as the target and chaosk8s use them: dotted.path=value and !=."""
    for term in _split_selector(selector):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        current: Any = obj
        for part in path.strip().split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if (str(current if current is not None else "") == value.strip()) == negate:
            return False
    return True


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object ({matchLabels, matchExpressions}). An empty selector matches everything;
    a missing (None) one matches nothing, as for PDBs and topology spread constraints."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def labels_of(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    """Does one of the pod's tolerations tolerate this taint (key, value, effect)?"""
    for toleration in tolerations or []:
        effect = toleration.get("effect")
        if effect and effect != taint.get("effect"):
            continue
        operator = toleration.get("operator", "Equal")
        key = toleration.get("key")
        if not key and operator == "Exists":
            return True
        if key != taint.get("key"):
            continue
        if operator == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def merge(base: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386); lists are replaced, null deletes."""
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return copy.deepcopy(patch)
    result = dict(base)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(base.get(key), value)
    return result


def selected(obj: Obj | None, labels: str, fields: str) -> bool:
    """Whether `obj` matches a label selector and a field selector (either may be empty)."""
    if obj is None:
        return False
    return (not labels or matches_labels(labels, labels_of(obj))) and (not fields or matches_fields(fields, obj))
