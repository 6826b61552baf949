"""``visionctl doctor``: is this machine ready for ``visionctl up`` (and ``serve``/``ui``/``train``)?

Each check runs the tool the way ``up`` will (found on ``PATH``, same environment), parses its
version and compares it with the oldest version known to work. Missing or too-old required tools
come with the install command for the current OS, so the report is a to-do list.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass

from visionctl.ops.runner import Runner, StepFailed

VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class Tool:
    name: str
    version_argv: tuple[str, ...]
    minimum: tuple[int, int]
    why: str
    hints: Mapping[str, str]  # platform.system() → install hint


TOOLS = (
    Tool("docker", ("docker", "version", "--format", "{{.Client.Version}}"), (20, 10),
         "builds the images",
         {"Linux": "install Docker Engine: https://docs.docker.com/engine/install/ "
                   "(Debian/Ubuntu: sudo apt-get install docker.io)",
          "Darwin": "brew install --cask docker (Docker Desktop), or brew install colima docker && colima start",
          "Windows": "winget install Docker.DockerDesktop (WSL 2 backend)"}),
    Tool("k3d", ("k3d", "version"), (5, 0),
         "runs the local Kubernetes cluster (k3s in Docker)",
         {"Linux": "curl -s https://raw.githubusercontent.com/k3d-io/k3d/main/install.sh | bash",
          "Darwin": "brew install k3d",
          "Windows": "choco install k3d"}),
    Tool("helm", ("helm", "version", "--short"), (3, 8),
         "installs the chart",
         {"Linux": "curl -fsSL https://raw.githubusercontent.com/helm/helm/main/scripts/get-helm-3 | bash",
          "Darwin": "brew install helm",
          "Windows": "winget install Helm.Helm"}),
    Tool("kubectl", ("kubectl", "version", "--client", "-o", "json"), (1, 27),
         "waits for rollouts, reads status, logs and the tunnel URL",
         {"Linux": "https://kubernetes.io/docs/tasks/tools/install-kubectl-linux/",
          "Darwin": "brew install kubectl",
          "Windows": "winget install Kubernetes.kubectl"}),
)

DAEMON_HINTS = {
    "Linux": "start it: sudo systemctl start docker "
             "(and add yourself to the docker group: sudo usermod -aG docker $USER)",
    "Darwin": "start Docker Desktop (or `colima start`)",
    "Windows": "start Docker Desktop",
}

# Python extras: optional, each needed by one local command only.
EXTRAS = (
    ("serve", ("onnxruntime", "flask", "waitress", "prometheus_client"), "visionctl serve"),
    ("ui", ("streamlit",), "visionctl ui"),
    ("train", ("torch", "torchvision", "onnx"), "visionctl train / export / evaluate"),
)


@dataclass
class Check:
    name: str
    ok: bool
    required: bool
    version: str = ""
    detail: str = ""
    hint: str = ""


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = VERSION_RE.search(text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _run(argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """A version probe through the Runner like every external command; exit code and output."""
    try:
        result = Runner(env=env).query(argv, timeout=timeout)
    except StepFailed as exc:  # cannot start, or hangs past the timeout
        return -1, exc.reason
    return result.returncode, (result.stdout + result.stderr).strip()


def _version_text(tool: Tool, output: str) -> str:
    if tool.name == "kubectl":  # JSON keeps us independent of the human-readable layout
        try:
            return json.loads(output)["clientVersion"]["gitVersion"]
        except (ValueError, KeyError, TypeError):
            return output
    return output.splitlines()[0] if output else ""


def check_tool(tool: Tool, env: Mapping[str, str], system: str, timeout: float = 15) -> Check:
    hint = tool.hints.get(system) or tool.hints["Linux"]
    path = shutil.which(tool.name, path=env.get("PATH", ""))
    if path is None:
        return Check(tool.name, False, True, detail=f"not found on PATH ({tool.why})", hint=hint)
    code, output = _run([path, *tool.version_argv[1:]], env, timeout)
    if code != 0:
        last = output.splitlines()[-1] if output else f"exit code {code}"
        return Check(tool.name, False, True, detail=f"`{' '.join(tool.version_argv)}` failed: {last}", hint=hint)
    text = _version_text(tool, output)
    version = parse_version(text)
    if version is None:
        return Check(tool.name, False, True, version=text[:40], detail="cannot parse the version", hint=hint)
    shown = ".".join(map(str, version))
    if version[:2] < tool.minimum:
        need = ".".join(map(str, tool.minimum))
        return Check(tool.name, False, True, version=shown, detail=f"too old (need ≥ {need})", hint=f"upgrade: {hint}")
    return Check(tool.name, True, True, version=shown, detail=path)


def check_docker_daemon(env: Mapping[str, str], system: str, timeout: float = 15) -> Check:
    """The CLI alone is not enough: ``build`` and k3d need a reachable daemon."""
    path = shutil.which("docker", path=env.get("PATH", ""))
    if path is None:
        return Check("docker daemon", False, True, detail="docker CLI missing", hint="install docker first")
    code, output = _run([path, "info", "--format", "{{.ServerVersion}}"], env, timeout)
    version = parse_version(output) if code == 0 else None
    if version is None:
        last = output.splitlines()[-1] if output else f"exit code {code}"
        return Check("docker daemon", False, True, detail=f"not reachable: {last}",
                     hint=DAEMON_HINTS.get(system, DAEMON_HINTS["Linux"]))
    return Check("docker daemon", True, True, version=".".join(map(str, version)), detail="reachable")


def check_extras() -> list[Check]:
    checks = []
    for extra, modules, used_by in EXTRAS:
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        checks.append(Check(f"python [{extra}]", not missing, False,
                            detail=f"for {used_by}" + (f"; missing {', '.join(missing)}" if missing else ""),
                            hint=f"pip install -e '.[{extra}]'" if missing else ""))
    return checks


def run_checks(env: Mapping[str, str] | None = None, system: str | None = None, *,
               include_extras: bool = True) -> list[Check]:
    """All checks in display order. ``env`` (default ``os.environ``) decides which PATH is searched."""
    env = dict(os.environ if env is None else env)
    system = system or platform.system()
    checks: list[Check] = []
    for tool in TOOLS:
        checks.append(check_tool(tool, env, system))
        if tool.name == "docker":
            checks.append(check_docker_daemon(env, system))
    if include_extras:
        checks.extend(check_extras())
    return checks


def missing_required(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]
