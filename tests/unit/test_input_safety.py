"""Issue 10: experiment files are code, and every bad input is exit 2 with one paragraph.

- A corpus of malformed experiment files: `resilience validate FILE` exits 2 with a
  message naming the file, no traceback, quickly.
- The allow-lists: python activities, process and http providers, locustfiles.
- Damaged run directories for `check`; planted symlinks for `report` and the evidence writers.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from resilience import evidence
from resilience.atomic import write_json_atomic
from resilience.cli import main
from resilience.history import History
from resilience.policy import BUILTIN_MODULES
from run_fixtures import load_generator

ROOT = Path(__file__).resolve().parents[2]
BASE = (ROOT / "experiments" / "pod-kill.yaml").read_text()


def _mutate(change: Callable[[dict[str, Any]], None]) -> str:
    """pod-kill.yaml with `change` applied to its data, dumped back as YAML."""
    data = yaml.safe_load(BASE)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def _ext(data: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in data["extensions"] if e.get("name") == "resilience")


def _set_ext(**fields: Any) -> str:
    return _mutate(lambda d: _ext(d).update(fields))


def _set_load(**fields: Any) -> str:
    return _mutate(lambda d: _ext(d)["load"].update(fields))


def _set_method0(**fields: Any) -> str:
    return _mutate(lambda d: d["method"][0].update(fields))


def _set_args(**fields: Any) -> str:
    return _mutate(lambda d: d["method"][0]["provider"]["arguments"].update(fields))


def _add_rollback(provider: dict[str, Any]) -> str:
    return _mutate(lambda d: d["rollbacks"].append({"type": "action", "name": "extra", "provider": provider}))


def _replace(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new)


def _billion_laughs() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return BASE + "\n".join(lines) + "\n"


def _deep_block(levels: int) -> str:
    return BASE + "".join(f"{'  ' * i}k{i}:\n" for i in range(levels)) + f"{'  ' * levels}leaf: 1\n"


# name -> (content, what is wrong); bytes are written as they are
CORPUS: dict[str, tuple[str | bytes, str]] = {
    "not-utf8": (b"title: caf\xe9\n" + BASE.encode(), "Latin-1 byte, not UTF-8"),
    "utf16": (BASE.encode("utf-16"), "UTF-16 with a BOM"),
    "nul-bytes": (BASE.encode() + b"\x00\x00\n", "NUL bytes in the text"),
    "too-big": (BASE + "#" + "x" * (1024 * 1024) + "\n", "larger than 1 MiB"),
    "deep-flow": ("x: " + "[" * 5000 + "]" * 5000 + "\n", "5000 nested flow lists (recursion)"),
    "deep-block": (_deep_block(100), "100 nested block mappings"),
    "alias-bomb": (_billion_laughs(), "billion laughs: aliases expanding to 10^9 strings"),
    "one-alias": (_replace("  - name: resilience\n", "  - &ext\n    name: resilience\n") + "x: *ext\n",
                  "a single anchor and alias"),
    "binary-tag": (BASE + "blob: !!binary aGVsbG8=\n", "explicit !!binary tag"),
    "set-tag": (BASE + "things: !!set {a, b}\n", "explicit !!set tag"),
    "python-tag": (BASE + "x: !!python/object/apply:os.system ['true']\n", "python object tag"),
    "date-value": (_replace("version: 1.0.0", "version: 2024-01-01"), "a date, not a string"),
    "huge-int": (_set_load(users=0).replace("users: 0", "users: " + "9" * 5000), "5000-digit integer"),
    "nan-duration": (_mutate(lambda d: _ext(d)["durations"].update(fault_s=float("nan"))), "NaN duration"),
    "inf-duration": (_mutate(lambda d: _ext(d)["durations"].update(fault_s=float("inf"))), "infinite duration"),
    "negative-duration": (_mutate(lambda d: _ext(d)["durations"].update(steady_s=-5)), "negative duration"),
    "duration-over-24h": (_mutate(lambda d: _ext(d)["durations"].update(recovery_s=90000)), "duration > 24 h"),
    "users-too-many": (_set_load(users=1_000_000), "a million users"),
    "users-negative": (_set_load(users=-5), "negative users"),
    "users-text": (_set_load(users="lots"), "users is text"),
    "stage-too-long": (_set_load(stages="99999h:10"), "stage longer than 24 h"),
    "stage-overflow": (_set_load(stages="9" * 400 + "s:10"), "stage duration overflows to inf"),
    "spawn-rate-huge": (_set_load(spawn_rate=1e12), "spawn rate 1e12"),
    "profiles-list": (_set_ext(profiles=["short"]), "profiles is a list"),
    "profiles-text": (_set_ext(profiles="short"), "profiles is a string"),
    "profile-scalar": (_set_ext(profiles={"short": 5}), "a profile is a number"),
    "profile-unknown": (_set_ext(profiles={"long": {"load": {"users": 5}}}), "a profile name we do not know"),
    "profile-load-list": (_set_ext(profiles={"short": {"load": [1, 2]}}), "a profile's load is a list"),
    "profile-bad-field": (_set_ext(profiles={"short": {"name": "x"}}), "a profile overrides the name"),
    "method-mapping": (_mutate(lambda d: d.update(method={"a": 1})), "method is a mapping"),
    "method-int": (_mutate(lambda d: d.update(method=7)), "method is a number"),
    "method-entry-text": (_mutate(lambda d: d["method"].append("kill")), "a method entry is text"),
    "provider-text": (_set_method0(provider="resilience.faults"), "provider is text"),
    "arguments-list": (_mutate(lambda d: d["method"][0]["provider"].update(arguments=[1, 2])),
                       "python arguments are a list"),
    "steady-state-list": (_mutate(lambda d: d.update({"steady-state-hypothesis": [1]})), "steady state is a list"),
    "probes-text": (_mutate(lambda d: d["steady-state-hypothesis"].update(probes="all")), "probes is text"),
    "rollbacks-mapping": (_mutate(lambda d: d.update(rollbacks={"a": 1})), "rollbacks is a mapping"),
    "controls-text": (_mutate(lambda d: d.update(controls="resilience")), "controls is text"),
    "load-list": (_set_ext(load=[1]), "the extension's load is a list"),
    "measures-nested": (_set_ext(measures=[["rto"]]), "a measure is a list (unhashable)"),
    "measures-mapping": (_set_ext(measures=[{"a": 1}]), "a measure is a mapping"),
    "extension-unknown-field": (_set_ext(hypotesis="typo"), "a misspelt extension field"),
    "stop-condition-text": (_set_ext(stop_condition={"for_s": "x"}), "stop_condition.for_s is text"),
    "name-slash": (_set_ext(experiment="../../etc/cron.d/x"), "experiment name with path separators"),
    "name-dot": (_set_ext(experiment=".hidden"), "experiment name with a leading dot"),
    "name-long": (_set_ext(experiment="x" * 200), "experiment name of 200 characters"),
    "name-number": (_set_ext(experiment=42), "experiment name is a number"),
    "int-key": (BASE + "1: one\n", "a mapping key that is a number"),
    "top-list": ("- title: x\n", "the top level is a list"),
    "top-scalar": ("just text\n", "the top level is a string"),
    "empty": ("", "an empty file"),
    "title-number": (_mutate(lambda d: d.update(title=5)), "title is a number"),
    "tags-mapping": (_mutate(lambda d: d.update(tags={"a": 1})), "tags is a mapping"),
    "configuration-list": (_mutate(lambda d: d.update(configuration=[1])), "configuration is a list"),
    "unclosed": (BASE + "x: [unclosed\n", "broken YAML syntax"),
    "os-system": (_mutate(lambda d: d["method"][0]["provider"].update(module="os", func="system",
                                                                         arguments={"command": "id"})),
                  "a python action calling os.system"),
    "shutil-rmtree": (_add_rollback({"type": "python", "module": "shutil", "func": "rmtree",
                                     "arguments": {"path": "/"}}), "a rollback calling shutil.rmtree"),
    "process-provider": (_add_rollback({"type": "process", "path": "/bin/rm", "arguments": "-rf /"}),
                         "a process provider"),
    "http-external": (_add_rollback({"type": "http", "url": "http://169.254.169.254/latest/meta-data"}),
                      "an http provider to a cloud metadata address"),
    "http-templated": (_add_rollback({"type": "http", "url": "http://${host}/x"}), "an http host from configuration"),
    "control-module": (_mutate(lambda d: d["controls"].append({"name": "evil", "provider": {
        "type": "python", "module": "evil.control"}})), "a control from another module"),
    "dynamic-configuration": (_mutate(lambda d: d.update(configuration={"x": {"type": "probe", "name": "c", "provider": {
        "type": "python", "module": "subprocess", "func": "getoutput", "arguments": {"cmd": "id"}}}})),
                              "dynamic configuration running subprocess"),
    "tolerance-probe": (_mutate(lambda d: d["steady-state-hypothesis"]["probes"][0].update(tolerance={
        "type": "probe", "name": "t", "provider": {"type": "process", "path": "/bin/sh"}})),
                        "a tolerance probe running /bin/sh"),
    "activity-control": (_mutate(lambda d: d["method"][0].update(controls=[{"name": "c", "provider": {
        "type": "python", "module": "os"}}])), "an activity-level control from os"),
    "locustfile-outside": (_set_load(locustfile="/etc/passwd"), "a locustfile outside scenarios/"),
    "locustfile-traversal": (_set_load(locustfile="scenarios/../../../tmp/evil.py"), "a locustfile escaping scenarios/"),
    "private-func": (_mutate(lambda d: d["method"][0]["provider"].update(func="_fault")), "a private function"),
    "unknown-faults-func": (_mutate(lambda d: d["rollbacks"][0]["provider"].update(func="current")),
                            "a resilience.faults name that is not an activity"),
    "hold-negative": (_set_args(hold_s=-1), "a negative hold"),
    "hold-huge": (_set_args(hold_s=1e9), "a hold of 30 years"),
    "percent-500": (_set_args(percent=500), "500 percent"),
    "pauses-huge": (_set_method0(pauses={"before": 1e9}), "a pause of 30 years"),
    "provider-type-unknown": (_mutate(lambda d: d["method"][0]["provider"].update(type="shell")),
                              "a provider type Chaos Toolkit does not know"),
}


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_malformed_experiment_is_exit_2_naming_the_file(case: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    content, _what = CORPUS[case]
    path = tmp_path / "experiment.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    start = time.monotonic()
    code = main(["validate", str(path)])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(path) in err
    assert "Traceback" not in err
    assert err.strip().count("\n") == 0, err  # one paragraph
    assert elapsed < 5, f"{case} took {elapsed:.1f} s"


# -- the allow-lists ----------------------------------------------------------------

def _write(tmp_path: Path, text: str, name: str = "experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _validate(path: Path, capsys: pytest.CaptureFixture[str], *config: str) -> tuple[int, str]:
    code = main(["validate", str(path), *(["--config", config[0]] if config else [])])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def test_os_system_action_is_refused_naming_the_activity_and_the_setting(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(_write(tmp_path, CORPUS["os-system"][0]), capsys)  # type: ignore[arg-type]
    assert code == 2
    assert "method[0] (name 'kill-a-third-of-replicas')" in err or "method[0] (name " in err
    assert "'os'" in err and "experiments.allowed_modules" in err


def test_shutil_rmtree_rollback_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(_write(tmp_path, CORPUS["shutil-rmtree"][0]), capsys)  # type: ignore[arg-type]
    assert code == 2
    assert "rollbacks[1] (name 'extra')" in err and "'shutil'" in err and "experiments.allowed_modules" in err


def test_process_provider_is_refused_unless_its_executable_is_allowed(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    text = _add_rollback({"type": "process", "path": "/bin/true"})
    code, err = _validate(_write(tmp_path, text), capsys)
    assert code == 2 and "rollbacks[1] (name 'extra')" in err and "experiments.allowed_executables" in err
    config = _write(tmp_path, "experiments:\n  allowed_executables: [/bin/true]\n", "resilience.yaml")
    code, out = _validate(_write(tmp_path, text), capsys, str(config))
    assert code == 0, out


def test_http_provider_to_loopback_is_accepted_and_elsewhere_refused(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _validate(_write(tmp_path, _add_rollback({"type": "http", "url": "http://127.0.0.1:8080/health"})),
                          capsys)
    assert code == 0, out
    code, err = _validate(_write(tmp_path, _add_rollback({"type": "http", "url": "https://example.com/"})), capsys)
    assert code == 2 and "experiments.allowed_http_hosts" in err


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, marker: Path) -> None:
    """A module on sys.path that writes `marker` when imported, with a harmless probe."""
    (tmp_path / f"{name}.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n\n"
        f"def all_good(level: int = 1) -> bool:\n    return True\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def _probe_experiment(module: str) -> str:
    return _mutate(lambda d: d["steady-state-hypothesis"]["probes"].append({
        "type": "probe", "name": "custom", "tolerance": True,
        "provider": {"type": "python", "module": module, "func": "all_good", "arguments": {"level": 2}}}))


def test_validate_never_imports_a_module_that_is_not_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "imported.marker"
    _module(tmp_path, monkeypatch, "issue10_evil_marker", marker)
    code, err = _validate(_write(tmp_path, _probe_experiment("issue10_evil_marker")), capsys)
    assert code == 2 and "issue10_evil_marker" in err and "experiments.allowed_modules" in err
    assert not marker.exists()
    assert "issue10_evil_marker" not in sys.modules


def test_an_allowed_module_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "imported.marker"
    _module(tmp_path, monkeypatch, "issue10_trusted_probes", marker)
    config = _write(tmp_path, "experiments:\n  allowed_modules: [issue10_trusted_probes]\n", "resilience.yaml")
    try:
        code, out = _validate(_write(tmp_path, _probe_experiment("issue10_trusted_probes")), capsys, str(config))
    finally:
        sys.modules.pop("issue10_trusted_probes", None)
    assert code == 0, out
    assert marker.exists()  # Chaos Toolkit's validation imported it, as it may for an allowed module


def test_a_prefix_allows_a_package_but_not_a_lookalike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resilience.policy import Policy
    policy = Policy(allowed_modules=("mychaos",))
    assert policy.module_allowed("mychaos") and policy.module_allowed("mychaos.actions")
    assert not policy.module_allowed("mychaosx") and not policy.module_allowed("resilience.run")


def test_run_refuses_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    path = _write(tmp_path, CORPUS["process-provider"][0])  # type: ignore[arg-type]
    assert main(["run", str(path), "--reports-dir", str(reports)]) == 2
    assert "experiments.allowed_executables" in capsys.readouterr().err
    assert not reports.exists()


def test_locustfile_outside_the_allowed_folders_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    locustfile = tmp_path / "mine" / "evil.py"
    locustfile.parent.mkdir()
    locustfile.write_text("class LunchRushUser:\n    pass\n")
    path = _write(tmp_path, _set_load(locustfile=str(locustfile)))
    code, err = _validate(path, capsys)
    assert code == 2 and "load.allowed_locustfile_dirs" in err and str(locustfile) in err
    config = _write(tmp_path, f"load:\n  allowed_locustfile_dirs: [{locustfile.parent}]\n", "resilience.yaml")
    code, out = _validate(path, capsys, str(config))
    assert code == 0, out


def test_a_symlink_in_scenarios_cannot_smuggle_a_locustfile_in(tmp_path: Path) -> None:
    from resilience.errors import UserError
    from resilience.policy import SCENARIOS_DIR, Policy, check_locustfile
    outside = tmp_path / "evil.py"
    outside.write_text("x = 1\n")
    assert check_locustfile("scenarios/lunch_rush.py", "exp", Policy()).parent == SCENARIOS_DIR.resolve()
    link = tmp_path / "link.py"
    link.symlink_to(outside)
    with pytest.raises(UserError, match="allowed_locustfile_dirs"):
        check_locustfile(str(link), "exp", Policy(allowed_locustfile_dirs=(str(tmp_path / "other"),)))


def test_every_catalogue_and_test_experiment_still_validates(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(p for p in (ROOT / "experiments").glob("*.yaml") if p.name != "suites.yaml")
    files += sorted((ROOT / "tests" / "experiments").glob("*.yaml"))
    assert main(["validate", *map(str, files)]) == 0, capsys.readouterr().err


def test_builtin_activities_are_exactly_what_resilience_faults_exports() -> None:
    from resilience import faults
    assert set(BUILTIN_MODULES["resilience.faults"] or ()) == set(faults.__all__)


def test_defaults_show_the_new_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--defaults"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["experiments"] == {"allowed_modules": [], "allowed_executables": [], "allowed_http_hosts": []}
    assert data["load"] == {"allowed_locustfile_dirs": []}


@pytest.mark.parametrize("setting, value", [
    ("experiments:\n  allowed_modules", "['os; rm']"),
    ("experiments:\n  allowed_executables", "[rm]"),
    ("experiments:\n  allowed_http_hosts", "['not a host!']"),
    ("load:\n  allowed_locustfile_dirs", "['']"),
])
def test_bad_allow_list_entries_are_refused(setting: str, value: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, f"{setting}: {value}\n", "resilience.yaml")
    assert main(["config", "--config", str(config)]) == 2
    assert setting.split(":")[-1].strip() in capsys.readouterr().err


# -- damaged run directories, planted links ---------------------------------------------------------

@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    made: Path = load_generator().make_run(tmp_path / "reports", "pass")
    return made


@pytest.mark.parametrize("damage, expect", [
    (lambda text: text[:-25], "line"),  # the last line cut in the middle
    (lambda text: text + "{not json\n", "line"),
    (lambda text: text + '{"an": "object"}\n', "line"),
    (lambda text: "", "line 1"),
])
def test_check_on_a_damaged_history_is_exit_2_naming_the_file_and_line(
        run_dir: Path, damage: Callable[[str], str], expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    history = run_dir / "history.jsonl"
    history.write_text(damage(history.read_text()))
    for command in (["check", str(run_dir)], ["report", str(run_dir), "--format", "md"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert str(history) in err and expect in err and "Traceback" not in err


@pytest.mark.parametrize("name, content", [
    ("result.json", "[1, 2]"), ("result.json", b"\xff\xfe"), ("settings.json", '"text"'),
    ("MANIFEST.sha256", b"\xff\xfe"),
])
def test_damaged_json_files_are_exit_2_naming_the_file(run_dir: Path, name: str, content: str | bytes,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    evidence.write_manifest(run_dir)
    path = run_dir / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if name == "MANIFEST.sha256":  # issue 22: a manifest that cannot be read is evidence of a change (exit 1)
        assert main(["verify", str(run_dir)]) == 1
        out = capsys.readouterr().out
        assert "modified" in out and "MANIFEST.sha256 cannot be read" in out
        return
    commands = [["check", str(run_dir)]]
    if name == "result.json":
        commands.append(["report", str(run_dir), "--format", "json"])
    for command in commands:
        assert main(command) == 2, command
        assert str(path) in capsys.readouterr().err


def test_check_on_a_missing_run_directory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "nothing")]) == 2
    assert "result.json" in capsys.readouterr().err


def _plant(links: list[Path], victim: Path) -> None:
    for link in links:
        link.unlink(missing_ok=True)
        link.symlink_to(victim)


def test_report_does_not_follow_links_planted_at_temporary_names(run_dir: Path, tmp_path: Path) -> None:
    from resilience.reports import FORMATS, render_all
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    old_names = [run_dir / f".{name}.tmp" for name, _ in FORMATS.values()]  # the names the old code used
    _plant(old_names, victim)
    render_all(run_dir)
    assert victim.read_text() == "precious"
    for name, _ in FORMATS.values():
        assert (run_dir / name).is_file() and not (run_dir / name).is_symlink()
    assert sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()) == []


def test_evidence_and_history_writers_do_not_follow_planted_links(run_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    _plant([run_dir / f".result.json.{os.getpid()}.tmp", run_dir / ".MANIFEST.sha256.tmp",
            run_dir / "history.jsonl.tmp"], victim)
    write_json_atomic(run_dir / "result.json", {"written": True})
    evidence.write_manifest(run_dir)
    History.load(run_dir / "history.jsonl").dump(run_dir / "history.jsonl")
    assert victim.read_text() == "precious"
    assert json.loads((run_dir / "result.json").read_text()) == {"written": True}
    assert History.load(run_dir / "history.jsonl").records


def test_a_link_at_the_final_name_is_replaced_not_followed(run_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = run_dir / "rollback.json"
    _plant([target], victim)
    write_json_atomic(target, {"steps": []})
    assert victim.read_text() == "precious" and not target.is_symlink()
