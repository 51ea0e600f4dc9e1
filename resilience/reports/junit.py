"""JUnit XML for CI: one testcase per measurement.

Mapping (documented in docs/reports.md):
  met           → a passing testcase
  reported only → no testcase (it tests nothing): a property "reported: <name>" with the figure
  breached      → <failure>
  inconclusive  → <error type="inconclusive"> (not <skipped>: CI tools show
                  skipped tests as green, and an inconclusive run is not a pass)
  aborted run   → an extra testcase "run" with <error type="aborted">
  deviations    → an extra testcase "deviations" with <failure>
  no measurements (and not aborted) → an extra testcase "measurements" with <error>
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from .run import RunView, fmt_number, fmt_target, measurement_label


def junit_tree(run: RunView) -> ET.ElementTree:
    suite = ET.Element("testsuite", name=run.experiment)
    if run.result.started_at:
        suite.set("timestamp", junit_timestamp(run.result.started_at))
    duration = run.result.duration_s
    suite.set("time", f"{float(duration):.3f}" if isinstance(duration, (int, float)) else "0")
    properties = ET.SubElement(suite, "properties")
    for name, value in (("target", run.target), ("run_dir", run.result.run_dir or str(run.run_dir)),
                        ("verdict", run.verdict), ("experiment", run.experiment)):
        ET.SubElement(properties, "property", name=name, value=value)
    for m in run.measurements:
        if m.target is None:  # context, never judged: a passing testcase would claim a test that did not happen
            ET.SubElement(properties, "property", name=f"reported: {measurement_label(m)}",
                          value=fmt_number(m.value, m.unit))
    classname = f"resilience.{run.experiment}"
    failures = errors = 0
    for m in (m for m in run.measurements if m.target is not None):
        case = ET.SubElement(suite, "testcase", classname=classname, name=measurement_label(m), time="0")
        summary = f"{measurement_label(m)} = {fmt_number(m.value, m.unit)}, target {fmt_target(m)}"
        if m.status == "breached":
            failures += 1
            failure = ET.SubElement(case, "failure", type="breached", message=f"{summary}: breached")
            failure.text = m.definition
        elif m.status == "inconclusive":
            errors += 1
            reason = (m.detail or {}).get("reason") or "could not be measured"
            error = ET.SubElement(case, "error", type="inconclusive", message=f"{summary}: inconclusive ({reason})")
            error.text = m.definition
        ET.SubElement(case, "system-out").text = m.definition
    if run.verdict == "aborted":
        errors += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name="run", time="0")
        ET.SubElement(case, "error", type="aborted",
                      message=f"run aborted: {run.result.aborted_reason or 'no reason recorded'}")
    elif not run.measurements:
        errors += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name="measurements", time="0")
        ET.SubElement(case, "error", type="inconclusive", message="no measurements were made")
    deviations = run.result.deviations
    if deviations:
        failures += 1
        case = ET.SubElement(suite, "testcase", classname=classname, name="deviations", time="0")
        failure = ET.SubElement(case, "failure", type="deviation", message="; ".join(map(str, deviations)))
        failure.text = "\n".join(map(str, deviations))
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    root = ET.Element("testsuites", name="resilience", tests=suite.get("tests", "0"), failures=str(failures),
                      errors=str(errors))
    root.append(suite)
    ET.indent(root)
    return ET.ElementTree(root)


def junit_timestamp(iso: str) -> str:
    """UTC, to the second, without a zone: the JUnit schema's timestamp (xs:dateTime with no offset)."""
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


# characters XML 1.0 cannot hold at all (not even escaped): C0 controls but tab/newline/CR, surrogates, U+FFFE/F
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_safe(text: str | None) -> str | None:
    """`text` with characters XML cannot hold shown as \\xNN (a run's strings are data, whatever they hold)."""
    return None if text is None else _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write_junit(run: RunView, path: Path) -> Path:
    tree = junit_tree(run)
    for element in tree.iter():
        element.text, element.tail = _xml_safe(element.text), _xml_safe(element.tail)
        for key, value in element.attrib.items():
            element.set(key, _xml_safe(value) or "")
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
