"""Issue 22: the second hardening round — what an input file says reaches no further than it is allowed.

The malformed-input corpus continues here (test_input_safety.CORPUS has the
first round): experiment files for `validate`, settings files for `config`.
Each case is exit 2 with one paragraph naming the file, no traceback, quickly,
and nothing executed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from resilience.cli import main
from test_input_safety import BASE, CORPUS, ROOT, _add_rollback, _ext, _mutate, _replace, _set_args, _set_ext, _set_load

BIG = 10 ** 400  # above the largest float (~1.8e308): float(BIG) raises OverflowError
BIG_TEXT = "1" + "0" * 400


def _big(text: str, old: str) -> str:
    """`text` with the number `old` replaced by a 401-digit one (YAML dumps cannot hold it otherwise)."""
    assert old in text, old
    return text.replace(old, BIG_TEXT, 1)


def _probe_with(arguments: dict[str, Any]) -> str:
    return _mutate(lambda d: d["steady-state-hypothesis"]["probes"][0]["provider"]["arguments"].update(arguments))


JSON_BASE = json.dumps(yaml.safe_load(BASE), indent=1) + "\n"

ZONE = (ROOT / "experiments" / "zone-failure.yaml").read_text()
LEAK = {"leak": {"type": "env", "key": "HOME"}}


def _zone(zone: str, configuration: dict[str, Any] | None = None) -> str:
    data = yaml.safe_load(ZONE)
    data["method"][0]["provider"]["arguments"]["zone"] = zone
    data["configuration"] = configuration or LEAK
    return yaml.safe_dump(data, sort_keys=False)


# name -> (content, what is wrong)
CORPUS2: dict[str, tuple[str | bytes, str]] = {
    # class 1: the http allow-list, checked the way the HTTP client parses the URL
    **{f"http-{name}": (_add_rollback({"type": "http", "url": url}), why) for name, url, why in [
        ("backslash-userinfo", "http://evil.com\\@127.0.0.1/", "requests connects to evil.com (the issue's example)"),
        ("backslash-query", "http://evil.com\\@127.0.0.1/?k=${leak}", "the same, leaking configuration"),
        ("userinfo", "http://user:pw@127.0.0.1/", "credentials in the authority"),
        ("userinfo-at-evil", "http://127.0.0.1@evil.com/", "loopback as the user name"),
        ("percent-host", "http://%31%32%37.0.0.1/", "a percent-escaped host"),
        ("percent-at", "http://evil.com%40127.0.0.1/", "a percent-escaped @"),
        ("space-in-authority", "http://evil.com 127.0.0.1/", "whitespace in the authority"),
        ("tab-in-authority", "http://127.0.0.1\tevil.com/", "a tab in the authority"),
        ("leading-space", " http://127.0.0.1/", "leading whitespace"),
        ("newline", "http://127.0.0.1/\r\nHost: evil.com", "header injection through CR LF"),
        ("backslash-path", "http://127.0.0.1\\evil.com", "a backslash right after the host"),
        ("dollar-port", "http://127.0.0.1:${port}/", "a port from configuration"),
        ("bad-port", "http://127.0.0.1:99999/", "a port above 65535"),
        ("decimal-ip", "http://2130706433/", "127.0.0.1 written as one number"),
        ("short-ip", "http://127.1/", "127.0.0.1 shortened"),
        ("zero-address", "http://0.0.0.0:8080/", "0.0.0.0, not loopback"),
        ("no-slashes", "http:127.0.0.1/", "no // after the scheme"),
        ("file-scheme", "file:///etc/passwd", "a file URL"),
        ("idn-host", "http://127.0.0.1\u3002evil.com/", "an ideographic full stop in the host"),
    ]},
    # class 3: configuration values substituted into fault arguments after they were checked
    "zone-from-env": (_zone("${leak}"), "lose_zone's zone is an env configuration value"),
    "zone-embedded": (_zone("primary-${leak}"), "an env value inside the zone"),
    "zone-from-secret": (_zone("${secret_zone}", {}), "a secret substituted into the zone"),
    "seed-from-env": (_mutate(lambda d: (d.update(configuration=LEAK),
                                         d["method"][0]["provider"]["arguments"].update(seed="${leak}"))),
                      "a seed from configuration"),
    "probe-arg-from-env": (_probe_with({"window_s": "${leak}"}), "a probe argument from configuration"),
    "rollback-arg-from-env": (_mutate(lambda d: d["rollbacks"][0]["provider"].update(arguments={"x": "${leak}"})),
                              "a rollback argument from configuration"),
    # class 4: duplicate keys
    "dup-targets": (_replace("    targets: {availability_fault: 0.99}",
                             "    targets: {availability_fault: 0.99}\n    targets: {rto_s: 86400}"),
                    "a second targets block further down wins"),
    "dup-top-level-method": (BASE + "method: []\n", "a second method at the end"),
    "dup-in-flow-mapping": (_replace("arguments: {percent: 50}", "arguments: {percent: 50, percent: 100}"),
                            "the same argument twice in a flow mapping"),
    "dup-title": (BASE + "title: something else\n", "the title twice"),
    "dup-extension-field": (_replace("    experiment: pod-kill\n", "    experiment: pod-kill\n    experiment: other\n"),
                            "the experiment name twice"),
    "dup-json": ('{"title": "a", "title": "b"}\n', "a JSON file with a duplicate key"),
    # class 5: huge numbers, JSON that is not JSON, strings that break terminals and reports
    "huge-target": (_big(_set_ext(targets={"rto_s": 12345}), "12345"), "targets.rto_s of 401 digits"),
    "huge-users": (_big(_set_load(users=12345), "12345"), "users of 401 digits"),
    "huge-stage": (_set_load(stages=BIG_TEXT + ":10"), "a stage of 401 digits"),
    "huge-stage-users": (_set_load(stages="10s:" + BIG_TEXT), "a stage's users of 401 digits"),
    "huge-timeout": (_big(_set_load(timeout_s=12345), "12345"), "load.timeout_s of 401 digits"),
    "huge-spawn-rate": (_big(_set_load(spawn_rate=12345), "12345"), "spawn rate of 401 digits"),
    "huge-percent": (_big(_set_args(percent=12345), "12345"), "percent of 401 digits"),
    "huge-hold": (_big(_set_args(hold_s=12345), "12345"), "hold_s of 401 digits"),
    "huge-seed": (_big(_set_args(seed=12345), "12345"), "a seed of 401 digits"),
    "huge-duration": (_big(_mutate(lambda d: _ext(d)["durations"].update(fault_s=12345)), "12345"),
                      "durations.fault_s of 401 digits"),
    "huge-pause": (_big(_mutate(lambda d: d["method"][0].update(pauses={"before": 12345})), "12345"),
                   "a pause of 401 digits"),
    "huge-stop-for": (_big(_set_ext(stop_condition={"for_s": 12345}), "12345"), "stop_condition.for_s"),
    "huge-probe-argument": (_big(_probe_with({"window_s": 12345}), "12345"),
                            "a probe argument of 10**400 (once accepted)"),
    "huge-negative": (_big(_set_args(percent=-12345), "12345"), "a 401-digit negative number"),
    "int-above-2-63": (_set_args(seed=2 ** 64), "a seed above 2**63"),
    "huge-float-literal": (_replace("arguments: {percent: 50}", "arguments: {percent: 1.0e999}"),
                           "a float literal that is infinite"),
    "json-trailing-comma": (JSON_BASE.rstrip()[:-1] + ",\n}\n", "a JSON file with a trailing comma (was read as YAML)"),
    "json-nan": (JSON_BASE.rstrip()[:-1] + ', "n": NaN}\n', "NaN in a JSON file"),
    "json-comment": ("// reviewed\n" + JSON_BASE, "a comment in a JSON file"),
    "json-single-quotes": (JSON_BASE.replace('"title"', "'title'"), "single-quoted keys"),
    "json-deep": ("[" * 5000 + "]" * 5000 + "\n", "5000 nested JSON lists"),
    "json-huge-int": ('{"title": "x", "n": ' + "9" * 5000 + "}\n", "a 5000-digit number in JSON"),
    "json-yaml-body": ("title: x\ndescription: y\n", "a .json file holding YAML"),
    "lone-surrogate-title": (_replace("title: Killing", 'title: "\\ud800 Killing'
                                      ).replace("controller\n", "controller\"\n", 1),
                             "a lone surrogate in the title (broke the html report)"),
    "esc-title": (_mutate(lambda d: d.update(title="\x1b[2J\x1b[31mowned")), "ESC sequences in the title"),
    "nul-title": (_replace("title: Killing", 'title: "\\0 Killing').replace("controller\n", "controller\"\n", 1),
                  "a NUL in the title (made junit.xml ill-formed)"),
    "bell-description": (_mutate(lambda d: d.update(description="ring\x07")), "a BEL in the description"),
    "c1-control": (_mutate(lambda d: d.update(title="x\x9by")), "a C1 control (CSI) in the title"),
    "bidi-override": (_mutate(lambda d: d.update(title="safe \u202eeteled")), "a right-to-left override"),
    "esc-in-key": (_mutate(lambda d: d.update({"x\x1by": 1})), "ESC in a mapping key"),
    "esc-in-activity-name": (_mutate(lambda d: d["method"][0].update(name="kill\x1b[0m")), "ESC in an activity name"),
    "surrogate-hypothesis": (_set_ext(hypothesis="\udfff"), "a lone surrogate in the hypothesis"),
}

SUFFIX = {name: ".json" for name in CORPUS2 if name.startswith(("json-", "dup-json"))}

# settings files for `resilience config --config FILE`
SETTINGS_CORPUS: dict[str, str] = {
    "dup-targets": "targets:\n  rto_s: 30\n  availability: 0.999\ntargets:\n  rto_s: 86400\n  availability: 0.01\n",
    "dup-nested": "targets:\n  rto_s: 30\n  rto_s: 86400\n",
    "huge-rto": f"targets:\n  rto_s: {BIG_TEXT}\n",
    "huge-tolerance": f"stack:\n  autoscaling:\n    tolerance: {BIG_TEXT}\n",
    "huge-eviction": f"kubernetes:\n  eviction_timeout_s: {BIG_TEXT}\n",
    "huge-port": f"stack:\n  ports:\n    api: {BIG_TEXT}\n",
    "esc-in-host": 'experiments:\n  allowed_http_hosts: ["a\\e[31m"]\n',
    "surrogate-key": 'targets:\n  "\\ud800": 1\n',
}


def _check_refused(path: Path, command: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    start = time.monotonic()
    code = main(command)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(path) in err and "Traceback" not in err
    assert err.strip().count("\n") == 0, err  # one paragraph
    assert elapsed < 5
    return err


@pytest.mark.parametrize("case", sorted(CORPUS2))
def test_malformed_experiment_round2_is_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content, _what = CORPUS2[case]
    path = tmp_path / f"experiment{SUFFIX.get(case, '.yaml')}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    _check_refused(path, ["validate", str(path)], capsys)


@pytest.mark.parametrize("case", sorted(SETTINGS_CORPUS))
def test_malformed_settings_file_is_exit_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resilience.yaml"
    path.write_text(SETTINGS_CORPUS[case])
    _check_refused(path, ["config", "--config", str(path)], capsys)


def test_a_duplicate_key_names_both_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resilience.yaml"
    path.write_text(SETTINGS_CORPUS["dup-targets"])
    err = _check_refused(path, ["config", "--config", str(path)], capsys)
    assert "line 4" in err and "line 1" in err and "'targets'" in err
    json_path = tmp_path / "e.json"
    json_path.write_text('{\n "title": "a",\n "title": "b"\n}\n')
    err = _check_refused(json_path, ["validate", str(json_path)], capsys)
    assert "lines 2 and 3" in err


def test_a_strict_json_experiment_still_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "pod-kill.json"
    path.write_text(json.dumps(yaml.safe_load(BASE)))
    assert main(["validate", str(path)]) == 0, capsys.readouterr().err


def test_list_never_prints_raw_escapes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "evil.yaml").write_text(CORPUS2["esc-title"][0])  # type: ignore[arg-type]
    (tmp_path / "experiments" / "evil\x1b[2J.yaml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    main(["list"])
    out = capsys.readouterr()
    assert "\x1b" not in out.out + out.err and "evil" in out.out + out.err


def test_reports_escape_control_characters_and_surrogates_from_a_run(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET
    from resilience.reports import render_all
    from run_fixtures import load_generator
    run_dir: Path = load_generator().make_run(tmp_path / "reports", "fail")
    result = json.loads((run_dir / "result.json").read_text())
    result["title"] = "t\x1b[31m\x00\ud800"
    result["experiment"] = "e\x1b\x00"
    (run_dir / "result.json").write_text(json.dumps(result))
    render_all(run_dir)
    ET.parse(run_dir / "junit.xml")  # well-formed
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "\x1b" not in html and "\x00" not in html


def test_the_registry_refuses_substitution_in_any_text_argument() -> None:
    from resilience.errors import UserError
    from resilience.fault_registry import fault_type
    with pytest.raises(UserError, match=r"\$\{\.\.\.\} is not allowed"):
        fault_type("lose_zone").check({"zone": "${leak}"}, "x")
    assert fault_type("lose_zone").check({"zone": "eu-1"}, "x")["zone"] == "eu-1"


@pytest.mark.parametrize("url, host", [
    ("http://127.0.0.1:8080/health", "127.0.0.1"), ("https://localhost/x?y=1#z", "localhost"),
    ("http://[::1]:80/", "::1"), ("http://evil.com\\@127.0.0.1/", None), ("http://a@127.0.0.1/", None),
    ("http://127.0.0.1%2f/", None), ("HTTP://127.0.0.1/", None),
])
def test_url_host_is_the_host_requests_connects_to(url: str, host: str | None) -> None:
    from resilience.policy import url_host
    assert url_host(url) == host
    if host is not None:
        import urllib3
        assert urllib3.util.parse_url(url).host.strip("[]") == host


def test_the_http_provider_does_not_follow_a_redirect_to_a_host_that_is_not_allowed() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import chaoslib.activity
    from resilience.policy import Policy, guard_http_providers

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            target = "/ok" if self.path == "/local" else "http://evil.invalid/steal"
            if self.path == "/ok":
                self.send_response(200)
            else:
                self.send_response(302)
                self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        guard_http_providers(Policy())
        guard_http_providers(Policy())  # twice is harmless
        run = chaoslib.activity.run_http_activity
        refused = run({"name": "p", "type": "probe", "provider": {"type": "http", "url": base + "/away",
                                                                   "timeout": 3}}, {}, {})
        assert refused["status"] == 302  # not followed: evil.invalid was never looked up or called
        followed = run({"name": "p", "type": "probe", "provider": {"type": "http", "url": base + "/local",
                                                                    "timeout": 3}}, {}, {})
        assert followed["status"] == 200  # a redirect to an allowed host is still followed
    finally:
        server.shutdown()


# -- class 2: plain `chaos run` ----------------------------------------------------------------------

def _hostile_experiment(tmp_path: Path, marker: Path) -> Path:
    """pod-kill.yaml plus a dynamic configuration that runs a program, which the policy refuses."""
    text = _mutate(lambda d: d.update(configuration={"x": {"type": "probe", "name": "c", "provider": {
        "type": "process", "path": "/bin/touch", "arguments": str(marker)}}}))
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    return path


def _chaos_run(tmp_path: Path, *args: str) -> Any:
    import os
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if not k.startswith("RESILIENCE_")}
    env["RESILIENCE_TARGET"] = "no-such-target"  # never the local stack, whatever happens
    return subprocess.run([sys.executable, "-m", "chaostoolkit", "--no-version-check", "--no-log-file", "--settings", str(tmp_path / "none.yaml"),
                           "run", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_chaos_run_with_the_loader_control_refuses_before_anything_runs(tmp_path: Path) -> None:
    marker = tmp_path / "configuration-ran"
    path = _hostile_experiment(tmp_path, marker)
    done = _chaos_run(tmp_path, "--control-file", str(ROOT / "controls" / "resilience-loader.yaml"), str(path))
    assert done.returncode == 2, done.stderr
    assert "refused before Chaos Toolkit ran anything" in done.stderr and "allowed_executables" in done.stderr
    assert "Traceback" not in done.stderr
    assert not marker.exists()


def test_plain_chaos_run_says_only_resilience_run_is_safe(tmp_path: Path) -> None:
    marker = tmp_path / "configuration-ran"
    done = _chaos_run(tmp_path, str(_hostile_experiment(tmp_path, marker)))
    assert "Only `resilience run FILE`" in done.stderr, done.stderr
    assert "allowed_executables" in done.stdout + done.stderr  # still refused, but late:
    assert marker.exists()  # the documented limit: Chaos Toolkit ran the configuration first


# -- class 6: the state directory ------------------------------------------------------------------

@pytest.mark.parametrize("state_dir", ["/", "/etc", "/usr/lib", "/var"])
def test_a_system_directory_as_state_dir_is_refused(state_dir: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "resilience.yaml"
    path.write_text(f"stack:\n  state_dir: {state_dir}\n")
    err = _check_refused(path, ["config", "--config", str(path)], capsys)
    assert "stack.state_dir" in err and ".resilience-state-dir" in err


def test_state_dir_must_be_missing_empty_or_ours(tmp_path: Path) -> None:
    from resilience.config import STATE_MARKER, state_dir_problem
    assert state_dir_problem(tmp_path / "missing") is None
    (tmp_path / "empty").mkdir()
    assert state_dir_problem(tmp_path / "empty") is None
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("years of work")
    assert "thesis.tex" in (state_dir_problem(tmp_path / "foreign") or "")
    (tmp_path / "foreign" / STATE_MARKER).touch()
    assert state_dir_problem(tmp_path / "foreign") is None
    (tmp_path / "old").mkdir()  # what an older version's `up` left: logs/ and settings.json
    (tmp_path / "old" / "logs").mkdir()
    (tmp_path / "old" / "settings.json").write_text("{}")
    (tmp_path / "old" / "pg1").mkdir()
    assert state_dir_problem(tmp_path / "old") is None
    (tmp_path / "file").write_text("x")
    assert state_dir_problem(tmp_path / "file") == "it is not a directory"


def test_down_deletes_nothing_in_a_directory_the_stack_did_not_make(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from resilience.config import STATE_MARKER, Settings
    from resilience.errors import UserError
    from resilience.targets.local import LocalPlatform
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (victim / "supervisor.pid").write_text("1")  # down must not even read it
    settings = Settings()
    settings = dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, state_dir=str(victim)))
    killed: list[int] = []
    monkeypatch.setattr("os.kill", lambda pid, sig: killed.append(pid))
    with pytest.raises(UserError, match="not the local stack's"):
        LocalPlatform(settings).down()
    assert (victim / "precious.txt").read_text() == "keep me" and not killed
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / STATE_MARKER).touch()
    (ours / "logs").mkdir()
    (ours / "pg1").mkdir()
    settings = dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, state_dir=str(ours)))
    monkeypatch.setattr(LocalPlatform, "_clean_leftovers", lambda self: None)
    LocalPlatform(settings).down()
    assert sorted(p.name for p in ours.iterdir()) == sorted([STATE_MARKER, "logs"])
