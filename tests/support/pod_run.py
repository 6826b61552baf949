"""A rendered pod spec → the ``docker run`` that runs its container the way the kubelet would.

One translation for every container test, so the pod that runs in the tests is the pod the chart
and the plain manifests render: user and groups, read-only root, capabilities, no-new-privileges,
seccomp, memory/CPU limits, env (literal and from ConfigMaps/Secrets of the same render), command
and args, working directory, ports, and volumes — emptyDir as a tmpfs (``medium: Memory``, sized by
``sizeLimit``) or an anonymous volume, ConfigMap/Secret volumes as read-only files. Kubernetes
ignores an image's HEALTHCHECK, so the container runs without it; the pod's probes are returned for
the test to run as the kubelet does (:func:`probe_like_kubelet`).

Anything in the pod this cannot express (a second container, init containers, host namespaces,
privileged mode, a seccomp profile file, a volume type without a Docker equivalent) raises
:class:`Untranslatable`, so a change to the pod fails here loudly instead of being silently skipped.
"""

from __future__ import annotations

import base64
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "Ki": 2**10, "M": 1e6, "Mi": 2**20, "G": 1e9, "Gi": 2**30, "T": 1e12,
           "Ti": 2**40}
# Pod fields that change how the container runs and have no `docker run` equivalent here.
UNSUPPORTED_POD = ("initContainers", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "hostUsers",
                   "runtimeClassName", "ephemeralContainers")
UNSUPPORTED_CONTAINER = ("envFrom",)  # not used by our pods; add it here when one does


class Untranslatable(ValueError):
    """The pod uses something this translation cannot run faithfully."""


def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity (``512Mi``, ``500m``, ``1``) as a number."""
    match = QUANTITY.match(str(text))
    if not match:
        raise Untranslatable(f"quantity {text!r}")
    return float(match.group(1)) * FACTORS[match.group(2)]


@dataclass
class PodRun:
    """What `docker run` needs for one container of a pod, grouped so tests may override a part."""

    image: str
    security: list[str] = field(default_factory=list)   # --user, --group-add, --read-only, --cap-*, --security-opt
    resources: list[str] = field(default_factory=list)  # --memory, --memory-swap, --cpus, --cpu-shares
    env: dict[str, str] = field(default_factory=dict)
    volumes: list[str] = field(default_factory=list)    # --tmpfs, --mount, -v
    entrypoint: str | None = None
    args: list[str] = field(default_factory=list)       # after the image: Kubernetes' args (or command[1:])
    ports: dict[str, int] = field(default_factory=dict)  # containerPort name (or str(number)) → number
    probes: dict[str, dict] = field(default_factory=dict)  # startupProbe/readinessProbe/livenessProbe
    other: list[str] = field(default_factory=list)      # --workdir, --no-healthcheck, --pull, --stop-timeout
    user: tuple[int, int] = (0, 0)
    pre_stop_seconds: float = 0.0
    grace_seconds: float = 30.0

    def argv(self, *, publish: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
        """``docker run`` arguments after ``run``: flags, the image and its arguments."""
        flags = [*self.security, *self.resources, *self.volumes, *self.other]
        for key, value in self.env.items():
            flags += ["-e", f"{key}={value}"]
        if publish:
            for port in sorted(set(self.ports.values())):
                flags += ["-p", f"127.0.0.1::{port}"]
        if self.entrypoint is not None:
            flags += ["--entrypoint", self.entrypoint]
        return [*flags, *extra, self.image, *self.args]


def translate(pod: dict, container: str | None = None, *, docs: list[dict] = (), files_dir: Path | None = None
              ) -> PodRun:
    """``pod`` is a pod spec (``template.spec`` of a workload, or a Pod's ``spec``); ``docs`` the objects
    rendered with it (ConfigMaps and Secrets that env and volumes refer to); ``files_dir`` where
    ConfigMap/Secret volumes are written (needed only when the pod has one)."""
    for key in UNSUPPORTED_POD:
        if pod.get(key):
            raise Untranslatable(f"pod.{key}")
    containers = pod["containers"]
    if container is None and len(containers) != 1:
        raise Untranslatable(f"{len(containers)} containers: name the one to run")
    spec = next((c for c in containers if container in (None, c["name"])), None)
    if spec is None:
        raise Untranslatable(f"no container {container!r}")
    for key in UNSUPPORTED_CONTAINER:
        if spec.get(key):
            raise Untranslatable(f"container.{key}")
    run = PodRun(image=spec["image"])
    _security(run, pod.get("securityContext") or {}, spec.get("securityContext") or {})
    _resources(run, spec.get("resources") or {})
    run.env = {e["name"]: _env_value(e, docs) for e in spec.get("env") or []}
    _volumes(run, pod.get("volumes") or [], spec.get("volumeMounts") or [], docs, files_dir)
    command, args = spec.get("command"), spec.get("args")
    if command:  # command replaces the ENTRYPOINT, and the image's CMD with it
        run.entrypoint, run.args = command[0], [*command[1:], *(args or [])]
    elif args is not None:
        run.args = list(args)
    for port in spec.get("ports") or []:
        run.ports[port.get("name") or str(port["containerPort"])] = int(port["containerPort"])
    run.probes = {kind: spec[kind] for kind in ("startupProbe", "readinessProbe", "livenessProbe") if kind in spec}
    run.other = ["--no-healthcheck", "--pull=never"]  # the kubelet runs the pod's probes, not the image's
    if spec.get("workingDir"):
        run.other += ["--workdir", spec["workingDir"]]
    run.grace_seconds = float(pod.get("terminationGracePeriodSeconds", 30))
    pre_stop = ((spec.get("lifecycle") or {}).get("preStop") or {})
    if pre_stop and set(pre_stop) != {"sleep"}:
        raise Untranslatable(f"preStop {sorted(pre_stop)}")
    run.pre_stop_seconds = float(pre_stop.get("sleep", {}).get("seconds", 0))
    run.other += ["--stop-timeout", str(int(run.grace_seconds - run.pre_stop_seconds))]
    return run


def _security(run: PodRun, pod_ctx: dict, ctx: dict) -> None:
    merged = {**pod_ctx, **ctx}  # the container's fields win, as in Kubernetes
    if merged.get("privileged"):
        raise Untranslatable("privileged")
    if "runAsUser" not in merged:
        raise Untranslatable("no runAsUser: the user would be the image's, which the pod does not say")
    uid, gid = int(merged["runAsUser"]), int(merged.get("runAsGroup", 0))
    if merged.get("runAsNonRoot") and uid == 0:
        raise Untranslatable("runAsNonRoot with runAsUser 0: the kubelet would refuse to start it")
    run.user = (uid, gid)
    run.security += ["--user", f"{uid}:{gid}"]
    for group in sorted({*map(int, pod_ctx.get("supplementalGroups") or []),
                         *([int(pod_ctx["fsGroup"])] if "fsGroup" in pod_ctx else [])}):
        run.security += ["--group-add", str(group)]
    if merged.get("readOnlyRootFilesystem"):
        run.security.append("--read-only")
    caps = merged.get("capabilities") or {}
    for cap in caps.get("drop") or []:
        run.security += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        run.security += ["--cap-add", cap]
    if merged.get("allowPrivilegeEscalation") is False:
        run.security += ["--security-opt", "no-new-privileges"]
    seccomp = (merged.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        run.security += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # Docker's default profile is the runtime default
        raise Untranslatable(f"seccompProfile {seccomp}")


def _resources(run: PodRun, resources: dict) -> None:
    limits, requests_ = resources.get("limits") or {}, resources.get("requests") or {}
    if "memory" in limits:
        memory = str(int(quantity(limits["memory"])))
        run.resources += ["--memory", memory, "--memory-swap", memory]  # no swap, as on a kubelet node
    if "cpu" in limits:
        run.resources += ["--cpus", f"{quantity(limits['cpu']):g}"]
    if "cpu" in requests_:  # the kubelet's cpu.shares: 1024 per requested CPU, at least 2
        run.resources += ["--cpu-shares", str(max(2, int(quantity(requests_["cpu"]) * 1024)))]


def _lookup(docs, kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if not found:
        raise Untranslatable(f"{kind}/{name} is not among the rendered objects")
    return found[0]


def _data(obj: dict) -> dict[str, bytes]:
    """A ConfigMap's or Secret's entries as bytes."""
    out = {k: v.encode() for k, v in (obj.get("data") or {}).items()} if obj["kind"] == "ConfigMap" else {
        k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    out |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    out |= {k: v.encode() for k, v in (obj.get("stringData") or {}).items()}
    return out


def _env_value(entry: dict, docs) -> str:
    if "value" in entry:
        return str(entry["value"])
    source = entry.get("valueFrom") or {}
    for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
        if key in source:
            ref = source[key]
            return _data(_lookup(docs, kind, ref["name"]))[ref["key"]].decode()
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        return {"metadata.name": "pod-0", "metadata.namespace": "vision-ai", "status.podIP": "127.0.0.1"}[path]
    if not source:
        return ""  # `- name: X` alone is an empty value
    raise Untranslatable(f"env {entry['name']}: {sorted(source)}")


def _volumes(run: PodRun, volumes: list[dict], mounts: list[dict], docs, files_dir: Path | None) -> None:
    by_name = {v["name"]: v for v in volumes}
    for mount in mounts:
        volume, path = by_name[mount["name"]], mount["mountPath"]
        if mount.get("subPath"):
            raise Untranslatable(f"subPath on {path}")
        read_only = mount.get("readOnly", False)
        if "emptyDir" in volume:
            empty = volume["emptyDir"] or {}
            if empty.get("medium") == "Memory":
                options = ["rw" if not read_only else "ro", "exec", "mode=777"]  # emptyDir: 0777, not noexec
                if "sizeLimit" in empty:
                    options.append(f"size={int(quantity(empty['sizeLimit']))}")
                run.volumes += ["--tmpfs", f"{path}:{','.join(options)}"]
            elif read_only:  # filled by another container of the pod (none runs here): an empty host folder
                # Docker refuses read-only anonymous volumes.
                host = Path(tempfile.mkdtemp(prefix=f"emptydir-{volume['name']}-"))
                host.chmod(0o777)
                run.volumes += ["-v", f"{host}:{path}:ro"]
            else:  # node disk; sizeLimit is enforced by eviction, which Docker has no equivalent for
                run.volumes += ["--mount", f"type=volume,target={path}"]
        elif "configMap" in volume or "secret" in volume:
            kind = "ConfigMap" if "configMap" in volume else "Secret"
            ref = volume["configMap"] if kind == "ConfigMap" else volume["secret"]
            name = ref.get("name") or ref.get("secretName")
            if files_dir is None:
                raise Untranslatable(f"{kind} volume {volume['name']}: pass files_dir")
            target = files_dir / volume["name"]
            target.mkdir(parents=True, exist_ok=True)
            try:
                data = _data(_lookup(docs, kind, name))
            except Untranslatable:
                if not ref.get("optional"):
                    raise
                data = {}  # an optional volume whose object does not exist: the kubelet mounts it empty
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            mode = ref.get("defaultMode", 0o644)
            for item in items:
                (target / item["path"]).write_bytes(data[item["key"]])
                (target / item["path"]).chmod(item.get("mode", mode) | 0o444)  # readable by the pod's user
            target.chmod(0o755)
            run.volumes += ["-v", f"{target}:{path}:ro"]  # ConfigMap and Secret volumes are always read-only
        else:
            raise Untranslatable(f"volume {volume['name']}: {sorted(set(volume) - {'name'})}")


# ---- probes, as the kubelet runs them ---------------------------------------------------------------

def probe_once(probe: dict, base_url_for_port) -> bool:
    """One attempt: HTTP GET (2xx/3xx is success) within timeoutSeconds, or a TCP connect."""
    timeout = float(probe.get("timeoutSeconds", 1))
    if "httpGet" in probe:
        get = probe["httpGet"]
        if get.get("scheme", "HTTP") != "HTTP" or get.get("httpHeaders"):
            raise Untranslatable(f"httpGet {get}")
        try:
            resp = requests.get(base_url_for_port(get["port"]) + get["path"], timeout=timeout, allow_redirects=False)
        except requests.RequestException:
            return False
        return 200 <= resp.status_code < 400
    if "tcpSocket" in probe:
        import socket

        host, port = base_url_for_port(probe["tcpSocket"]["port"]).removeprefix("http://").rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
            return True
        except OSError:
            return False
    raise Untranslatable(f"probe {sorted(probe)}")


def probe_like_kubelet(probe: dict, base_url_for_port, *, alive=lambda: True) -> float:
    """Run ``probe`` on its schedule (initialDelaySeconds, then every periodSeconds) until it has
    succeeded successThreshold times in a row; returns the seconds that took. Raises AssertionError
    after failureThreshold consecutive failures — where the kubelet would restart the container (or,
    for readiness, keep it out of the Service)."""
    start = time.monotonic()
    time.sleep(float(probe.get("initialDelaySeconds", 0)))
    period = float(probe.get("periodSeconds", 10))
    needed, allowed = int(probe.get("successThreshold", 1)), int(probe.get("failureThreshold", 3))
    successes = failures = 0
    while True:
        attempt = time.monotonic()
        if not alive():
            raise AssertionError("the container exited while being probed")
        if probe_once(probe, base_url_for_port):
            successes, failures = successes + 1, 0
            if successes >= needed:
                return time.monotonic() - start
        else:
            successes, failures = 0, failures + 1
            if failures >= allowed:
                raise AssertionError(f"probe failed {failures}× in a row after {time.monotonic() - start:.1f} s: "
                                     f"{probe}")
        time.sleep(max(0.0, period - (time.monotonic() - attempt)))
