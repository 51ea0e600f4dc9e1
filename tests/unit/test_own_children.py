"""The supervisor reaps the orphans re-parented to it (postmasters, pgBackRest's detached archive-push) and never
a pgBackRest it started itself: reaping that one would make its failure read as exit code 0.

Run in a child Python process, which becomes a subreaper as the supervisor does (this test process must not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys, time
    from resilience.targets.local import own_children
    from resilience.targets.local.processes import become_subreaper, reap_orphans, zombie_children

    become_subreaper()
    true_, false_ = sys.argv[1], sys.argv[2]  # both named pgbackrest (a process's name is its program's)

    def zombie(pid):
        deadline = time.monotonic() + 10
        while pid not in zombie_children(os.getpid(), "pgbackrest"):
            assert time.monotonic() < deadline, f"{pid} never became our zombie"
            time.sleep(0.01)

    # an orphan: started in the background by a shell that exits at once, so it is re-parented to us
    shell = subprocess.run(["sh", "-c", f"{true_} & echo $!"], capture_output=True, text=True, check=True)
    orphan = int(shell.stdout)
    zombie(orphan)
    own = own_children.popen([false_])  # ours, failing: exit code 1
    zombie(own.pid)
    foreign = subprocess.Popen([false_])  # ours too, but not registered: what a blanket reaper would steal
    zombie(foreign.pid)
    reaped = reap_orphans()
    print(json.dumps({"orphan": orphan, "own": own.pid, "foreign": foreign.pid, "reaped": reaped,
                      "own_code": own.wait(), "foreign_code": foreign.wait(),
                      "left": zombie_children(os.getpid(), "pgbackrest")}))
    own_children.forget(own.pid)
""")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_CHILD_SUBREAPER and /proc are Linux's")
def test_orphans_are_reaped_and_our_own_pgbackrest_keeps_its_exit_code(tmp_path: Path) -> None:
    links = []
    for name, program in (("true", "/bin/true"), ("false", "/bin/false")):
        (tmp_path / name).mkdir()
        link = tmp_path / name / "pgbackrest"
        link.symlink_to(program)
        links.append(str(link))
    out = subprocess.run([sys.executable, "-c", SCRIPT, *links], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["orphan"] in seen["reaped"], seen  # the detached one no longer lingers as a zombie
    assert seen["own"] not in seen["reaped"] and seen["own_code"] == 1, seen  # its failure stays a failure
    # the hazard the registry exists for: reaped by name, an unregistered child's exit 1 reads as 0
    assert seen["foreign"] in seen["reaped"] and seen["foreign_code"] == 0, seen
    assert seen["left"] == [], seen
