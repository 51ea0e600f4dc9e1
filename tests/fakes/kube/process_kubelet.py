"""A test kubelet that runs the containers of chosen pods as real local processes.

Enabled with `FakeKubeApi.enable_process_kubelet(selector, workdir)`. For every
pod whose labels match `selector`, once the scheduler has bound it to a node,
it runs the pod's (single) container on this machine and reports it the way a
kubelet does; other pods keep the fake's instant stand-in (workloads.py).

What it does, as a kubelet would:
- the command line is the container's `command` + `args`, with `$(VAR)`
  expanded from the container's env (`$$` is a literal `$`); env values come
  from `value` or the downward API (`fieldRef`: metadata.name,
  metadata.namespace, spec.nodeName, status.podIP);
- configMap volumes are written out as files (one per key), emptyDirs are empty
  directories; a pod whose ConfigMap does not exist yet waits for it;
- phase Running, podIP, containerStatuses (running / terminated with the exit
  code / waiting); Ready when there is no readinessProbe, else when its httpGet
  answers 2xx or 3xx; with restartPolicy Never the pod ends Succeeded or Failed
  with the process, otherwise the process is started again (restartCount);
- deleting the pod: SIGTERM to the process group when deletionTimestamp is set,
  SIGKILL to the group when the pod is gone (end of the grace period);
- `log(namespace, pod)` is the container's stdout and stderr (`pods/{name}/log`).

What it fakes, and what it cannot show:
- **no image**: the image is never pulled; `python` is this interpreter, with
  `PYTHONPATH` as given (the repository), so the code run is the checkout, not
  the image's. A pod whose image is listed in `missing_images` is reported
  waiting with reason ImagePullBackOff and never runs;
- **no network isolation**: processes share this host's network; pod IPs are
  127.0.0.1, NetworkPolicies are not enforced;
- **ports remapped**: every containerPort a pod declares gets its own free
  port on 127.0.0.1 (19500-19599); in the command line, an argument equal to a
  declared port becomes that port, a Service DNS name (`svc`, `svc.ns`,
  `svc.ns.svc`, `svc.ns.svc.cluster.local`) becomes 127.0.0.1 and the Service's
  port numbers become its first running endpoint's ports, `*` / `0.0.0.0`
  become 127.0.0.1, and mount paths become the local directories. A pod whose
  command line names a Service starts only once that Service has a running
  endpoint (a cluster's Service IP would let it connect later; here the port
  must be known when it starts);
- no resource limits, probes other than httpGet readiness, init containers,
  sidecars, or more than one container.

Docs followed:
- https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/
  ($(VAR) in command and args) and .../environment-variable-expose-pod-information/ (fieldRef)
- https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/ (phases, container states,
  restartPolicy, termination: SIGTERM, then SIGKILL after the grace period)
- https://kubernetes.io/docs/concepts/configuration/configmap/#using-configmaps-as-files-from-a-pod
- https://kubernetes.io/docs/concepts/containers/images/#imagepullbackoff
"""

from __future__ import annotations

import copy
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .disruption import terminating
from .scheduler import set_condition
from .selectors import labels_of, matches_labels
from .store import Key, Obj

if TYPE_CHECKING:
    from .server import FakeKubeApi

PORTS = range(19500, 19600)
PORT_LOCKS = Path(tempfile.gettempdir()) / "resilience-process-kubelet-ports"
LOOP_S = 0.05
RESTART_DELAY_S = 1.0
_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class Container:
    """One running container: its process, where its output goes, what the kubelet reported."""

    key: Key
    uid: str
    workdir: Path
    pod: Obj  # as it was when the container started
    mounts: dict[str, Path]  # mountPath -> local directory
    ports: dict[int, int] = field(default_factory=dict)  # containerPort -> host port
    argv: list[str] = field(default_factory=list)  # "$PORT:<containerPort>" where the host port goes
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    restarts: int = 0
    ready: bool | None = None
    terminated: bool = False  # SIGTERM sent
    finished_at: float | None = None


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion: defined variables are replaced, $$ is a literal $, the rest stays."""
    return _VAR.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


class ProcessKubelet:
    """Runs the containers of the pods `selector` matches as process groups on this host (see the module)."""

    def __init__(self, api: "FakeKubeApi", selector: str, workdir: Path, python: str = sys.executable,
                 env: dict[str, str] | None = None, missing_images: tuple[str, ...] = ()) -> None:
        self.api = api
        self.selector = selector
        self.workdir = Path(workdir)
        self.python = python
        self.env = dict(env or {})
        self.missing_images = set(missing_images)
        self.containers: dict[str, Container] = {}  # by pod uid
        self._own_ports: dict[int, int] = {}  # port handed out -> its lock file's descriptor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="process-kubelet", daemon=True)

    # -- for the API server
    def owns(self, pod: Obj) -> bool:
        return matches_labels(self.selector, labels_of(pod))

    def service_address(self, namespace: str, service: str, port: int, pod: Obj) -> tuple[str, int] | None:
        """Where `pod`, an endpoint of `service`, listens for the Service's `port` (None: not a pod run here)."""
        container = self.containers.get(pod["metadata"]["uid"])
        found = self.api.get("services", service, namespace)
        if container is None or found is None:
            return None
        for entry in (found.get("spec") or {}).get("ports") or []:
            if int(entry["port"]) == port:
                container_port = self._container_port(pod, entry.get("targetPort", entry["port"]))
                if container_port in container.ports:
                    return "127.0.0.1", container.ports[container_port]
        return None

    @staticmethod
    def _container_port(pod: Obj, target: Any) -> int | None:
        """A targetPort (a port name or number) as the container's port number."""
        declared = {p.get("name"): int(p["containerPort"]) for p in pod["spec"]["containers"][0].get("ports") or []}
        return declared.get(target) if isinstance(target, str) else int(target)

    def log(self, namespace: str, name: str, tail: int | None = None) -> str | None:
        for container in list(self.containers.values()):
            if container.key[2] == namespace and container.key[3] == name:
                text = (container.workdir / "container.log").read_text(encoding="utf-8", errors="replace")
                return "\n".join(text.splitlines()[-tail:]) + "\n" if tail else text
        return None

    def start(self) -> "ProcessKubelet":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for container in list(self.containers.values()):
            self._kill(container, signal.SIGKILL)
        self._release_ports(list(self._own_ports))

    # -- the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception:  # noqa: BLE001 - a broken step must not stop the kubelet; tests see the state
                import traceback
                traceback.print_exc()
            self._stop.wait(LOOP_S)

    def _sync(self) -> None:
        with self.api._lock:
            pods = {p["metadata"]["uid"]: (k, copy.deepcopy(p))
                    for k, p in self.api.store.items("pods") if self.owns(p)}
        for uid, container in list(self.containers.items()):
            if uid not in pods:  # gone: the grace period is over (or it was force-deleted)
                self._kill(container, signal.SIGKILL)
                del self.containers[uid]
        for uid, (key, pod) in pods.items():
            container = self.containers.get(uid)
            if container is None:
                if pod["spec"].get("nodeName") and not terminating(pod) and pod["status"].get("phase") == "Pending":
                    self._start(key, pod)
                continue
            if terminating(pod):
                if not container.terminated:
                    container.terminated = True
                    self._kill(container, signal.SIGTERM)
                continue
            self._watch(key, pod, container)

    def _start(self, key: Key, pod: Obj) -> None:
        spec = pod["spec"]
        image = spec["containers"][0].get("image", "")
        if image in self.missing_images:
            self._report_waiting(key, pod["metadata"]["uid"], "ImagePullBackOff",
                                 f'Back-off pulling image "{image}"')
            return
        workdir = self.workdir / f"{key[2]}-{key[3]}"
        mounts = self._volumes(key[2] or "default", spec, workdir)
        if mounts is None:
            return  # a ConfigMap it mounts does not exist yet: try again on the next turn
        container = Container(key, pod["metadata"]["uid"], workdir, pod, mounts)
        command = self._command(container)
        if command is None:
            return  # a Service it names has no running endpoint yet: try again on the next turn
        container.ports = self._ports_for(pod)
        container.argv, container.env = command
        self.containers[container.uid] = container
        self._launch(container)

    def _volumes(self, namespace: str, spec: Obj, workdir: Path) -> dict[str, Path] | None:
        """mountPath -> local directory, with configMap files written; None while a ConfigMap is missing."""
        by_name: dict[str, Path] = {}
        for volume in spec.get("volumes") or []:
            local = workdir / "volumes" / volume["name"]
            if "configMap" in volume:
                config = self.api.get("configmaps", volume["configMap"]["name"], namespace)
                if config is None:
                    return None
                local.mkdir(parents=True, exist_ok=True)
                for name, text in (config.get("data") or {}).items():
                    (local / name).write_text(text, encoding="utf-8")
            else:
                local.mkdir(parents=True, exist_ok=True)
            by_name[volume["name"]] = local
        return {m["mountPath"]: by_name[m["name"]] for m in spec["containers"][0].get("volumeMounts") or []
                if m["name"] in by_name}

    def _ports_for(self, pod: Obj) -> dict[int, int]:
        """containerPort -> a free host port, one per declared port."""
        return {int(p["containerPort"]): self._free_port() for p in pod["spec"]["containers"][0].get("ports") or []}

    def _free_port(self) -> int:
        """A port free now and reserved for us: between our check and the process binding it, another test
        run (another process) could pick it too, so each port handed out holds a lock file until released."""
        PORT_LOCKS.mkdir(parents=True, exist_ok=True)
        for port in PORTS:
            if port in self._own_ports:
                continue
            fd = os.open(PORT_LOCKS / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
            except OSError:  # locked by another kubelet, or in use
                os.close(fd)
                continue
            self._own_ports[port] = fd
            return port
        raise RuntimeError("no free port in 19500-19599 for the process kubelet")

    def _release_ports(self, ports: list[int]) -> None:
        for port in ports:
            fd = self._own_ports.pop(port, None)
            if fd is not None:
                os.close(fd)  # closing the descriptor drops the lock

    def _command(self, container: Container) -> tuple[list[str], dict[str, str]] | None:
        """The argv and env the container runs with, rewritten for this host; None while a named Service has no
        running endpoint (the fake cannot re-point a connection later, a cluster's Service IP can)."""
        pod = container.pod
        spec = pod["spec"]["containers"][0]
        namespace = container.key[2] or "default"
        fields = {"metadata.name": container.key[3], "metadata.namespace": namespace,
                  "spec.nodeName": pod["spec"].get("nodeName", ""), "status.podIP": "127.0.0.1"}
        env: dict[str, str] = {}
        for var in spec.get("env") or []:
            if "value" in var:
                env[var["name"]] = expand(str(var["value"]), env)
            elif "fieldRef" in (var.get("valueFrom") or {}):
                env[var["name"]] = fields.get(var["valueFrom"]["fieldRef"]["fieldPath"], "")
        argv = [expand(a, env) for a in [*(spec.get("command") or []), *(spec.get("args") or [])]]
        hosts = self._service_hosts(namespace)
        ports: dict[str, str] = {}
        for arg in argv:
            if arg in hosts:
                mapped = self._endpoint_ports(namespace, hosts[arg])
                if mapped is None:
                    return None
                ports.update(mapped)
        return [self._rewrite(arg, hosts, ports, container) for arg in argv], env

    def _rewrite(self, arg: str, hosts: dict[str, str], ports: dict[str, str], container: Container) -> str:
        if arg in hosts or arg in ("*", "0.0.0.0"):
            return "127.0.0.1"
        if arg in ports:
            return ports[arg]
        if arg in {str(p["containerPort"]) for p in container.pod["spec"]["containers"][0].get("ports") or []}:
            return f"$PORT:{arg}"  # the pod's own port: replaced once its host port is chosen (_launch)
        for mount, local in sorted(container.mounts.items(), key=lambda kv: -len(kv[0])):
            if arg == mount or arg.startswith(mount.rstrip("/") + "/"):
                return str(local) + arg[len(mount.rstrip("/")):]
        return arg

    def _endpoint_ports(self, namespace: str, service: str) -> dict[str, str] | None:
        """Service port -> host port of its first endpoint run here; None if it has none yet."""
        from .proxy import endpoints
        found = self.api.get("services", service, namespace)
        if found is None:
            return None
        with self.api._lock:
            pods = endpoints(self.api, namespace, found)
        for pod in pods:
            mapped = {}
            for entry in found["spec"].get("ports") or []:
                address = self.service_address(namespace, service, int(entry["port"]), pod)
                if address is not None:
                    mapped[str(entry["port"])] = str(address[1])
            if mapped:
                return mapped
        return None

    def _service_hosts(self, namespace: str) -> dict[str, str]:
        names = {}
        for service in self.api.objects("services", namespace):
            name = service["metadata"]["name"]
            for form in (name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
                         f"{name}.{namespace}.svc.cluster.local"):
                names[form] = name
        return names

    def _ports_of(self, namespace: str, service: str) -> list[int]:
        found = self.api.get("services", service, namespace) or {}
        return [int(p["port"]) for p in (found.get("spec") or {}).get("ports") or []]

    def _launch(self, container: Container) -> None:
        argv = [str(container.ports[int(a[len("$PORT:"):])]) if a.startswith("$PORT:") else a
                for a in container.argv]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = self.python
        env = container.env
        container.workdir.mkdir(parents=True, exist_ok=True)
        container.log = (container.workdir / "container.log").open("ab")
        container.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=container.log,
                                             stderr=subprocess.STDOUT, cwd=container.workdir,
                                             env={**os.environ, **self.env, **env}, start_new_session=True)
        container.finished_at = None
        self._report(container, running=True)

    def _watch(self, key: Key, pod: Obj, container: Container) -> None:
        process = container.process
        if process is None:
            return
        code = process.poll()
        if code is None:
            probe = pod["spec"]["containers"][0].get("readinessProbe")
            ready = self._probe(container, probe) if probe else True
            if ready != container.ready:
                container.ready = ready
                self._report(container, running=True)
            return
        if container.finished_at is None:
            container.finished_at = time.monotonic()
            container.ready = False
            self._report(container, running=False, exit_code=code)
            return
        policy = pod["spec"].get("restartPolicy", "Always")
        again = policy == "Always" or (policy == "OnFailure" and code != 0)
        if again and time.monotonic() - container.finished_at >= RESTART_DELAY_S:
            container.restarts += 1
            self._close(container)
            self._launch(container)

    def _probe(self, container: Container, probe: Obj) -> bool:
        get = probe.get("httpGet") or {}
        container_port = self._container_port(container.pod, get.get("port"))
        if container_port is None or container_port not in container.ports:
            return False
        url = f"http://127.0.0.1:{container.ports[container_port]}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=float(probe.get("timeoutSeconds", 1))) as answer:
                return 200 <= answer.status < 400
        except OSError:
            return False

    def _report(self, container: Container, running: bool, exit_code: int | None = None) -> None:
        def write() -> None:
            pod = self.api.store.get(container.key)
            if pod is None or pod["metadata"]["uid"] != container.uid:
                return
            updated = copy.deepcopy(pod)
            status = updated.setdefault("status", {})
            name = pod["spec"]["containers"][0]["name"]
            state: Obj = {"running": {"startedAt": self.api.now_iso()}} if running else \
                {"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error"}}
            status["containerStatuses"] = [{"name": name, "ready": bool(running and container.ready),
                                            "restartCount": container.restarts, "state": state,
                                            "image": pod["spec"]["containers"][0].get("image", ""),
                                            "imageID": "", "containerID": f"process://{container.process.pid}"
                                            if container.process else ""}]
            if running:
                status.update(phase="Running", podIP="127.0.0.1", hostIP="127.0.0.1")
                status.setdefault("startTime", self.api.now_iso())
            elif pod["spec"].get("restartPolicy", "Always") == "Never":
                status["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            ready = "True" if running and container.ready else "False"
            set_condition(updated, "Ready", ready, None, None, self.api.now_iso())
            set_condition(updated, "ContainersReady", ready, None, None, self.api.now_iso())
            self.api.store.update(container.key, updated)

        self.api.in_controller(write)

    def _report_waiting(self, key: Key, uid: str, reason: str, message: str) -> None:
        def write() -> None:
            pod = self.api.store.get(key)
            if pod is None or pod["metadata"]["uid"] != uid:
                return
            updated = copy.deepcopy(pod)
            container = pod["spec"]["containers"][0]
            updated["status"]["containerStatuses"] = [{
                "name": container["name"], "ready": False, "restartCount": 0, "image": container.get("image", ""),
                "imageID": "",
                "state": {"waiting": {"reason": reason, "message": message}}}]
            self.api.store.update(key, updated)

        self.api.in_controller(write)

    def _kill(self, container: Container, signum: int) -> None:
        process = container.process
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, signum)  # start_new_session: the group id is the process's pid
            except ProcessLookupError:
                pass
            if signum == signal.SIGKILL:
                process.wait(timeout=10)
        if signum == signal.SIGKILL:
            self._close(container)
            self._release_ports(list(container.ports.values()))

    def _close(self, container: Container) -> None:
        if container.process is not None and container.process.poll() is not None:
            try:
                os.killpg(container.process.pid, signal.SIGKILL)  # anything it left in its group
            except ProcessLookupError:
                pass
        if container.log is not None:
            container.log.close()
            container.log = None
