"""Plot the Grafana dashboard's queries from a real Prometheus scraping a real backend (no Grafana here).

    .venv/bin/python scripts/render-dashboard.py [--seconds 60] [--out docs/screenshots/dashboard.png] [--release]

Starts `python -m backend` on models/ and Debian's `prometheus` (1 s scrapes, the chart's rules),
sends varying mixed traffic, then draws the first query set of each timeseries panel of
charts/vision-ai/files/vision-ai-dashboard.json with matplotlib. With ``--release`` the backend serves
a copy of models/ and a canary of a candidate exported from the shipped weights (devkit.candidates)
starts after a third of the run, so the model-release panels have data too.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.backend_server import BackendServer  # noqa: E402
from devkit.paths import DATASETS  # noqa: E402
from devkit.prometheus_server import PrometheusServer, mixed_traffic  # noqa: E402

DASHBOARD = ROOT / "charts" / "vision-ai" / "files" / "vision-ai-dashboard.json"
RULES = ROOT / "charts" / "vision-ai" / "files" / "vision-ai.rules.yml"
VARIABLES = {"$__rate_interval": "10s", "$namespace": ".*", "$job": ".*"}


def legend(fmt: str, metric: dict) -> str:
    out = fmt
    for key, value in metric.items():
        out = out.replace("{{" + key + "}}", value)
    out = re.sub(r"\{\{\w+\}\}", "", out).strip()  # labels the series lacks render empty, as in Grafana
    return out or ",".join(f"{k}={v}" for k, v in metric.items())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots" / "dashboard.png")
    parser.add_argument("--release", action="store_true", help="run a canary release during the traffic")
    parser.add_argument("--data-dir", type=Path, default=DATASETS,
                        help="datasets (the candidate's export evaluates the test split)")
    args = parser.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "timeseries"]
    work = Path(tempfile.mkdtemp(prefix="render-dashboard-"))
    models, candidate = ROOT / "models", None
    if args.release:
        from devkit import candidates

        models = work / "models"
        shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("*.pt", "versions", "releases"))
        candidate = candidates.make("good", work / "good", args.data_dir)
    with BackendServer(model_dir=models, env={"VISION_LOG_LEVEL": "WARNING"}) as backend, \
            PrometheusServer([f"127.0.0.1:{backend.metrics_port}"], rule_files=[RULES]) as prom:
        start = time.time()
        while time.time() - start < args.seconds:  # bursts of growing then shrinking size
            phase = (time.time() - start) / args.seconds
            if candidate and phase > 1 / 3:
                from backend.releases.record import Layout
                from visionctl.ops import releases

                releases.start(Layout.for_models_dir(models), "mnist", candidate, "canary", 50, {"auto": False})
                candidate = None
            mixed_traffic(backend.url, rounds=1 + int(3 * math.sin(math.pi * phase)))
            time.sleep(0.5)
        time.sleep(3)
        end = time.time()
        cols = 3
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3.2 * rows))
        for ax, panel in zip(axes.flat, panels, strict=False):
            for target in panel["targets"]:
                expr = target["expr"]
                for var, value in VARIABLES.items():
                    expr = expr.replace(var, value)
                for series in prom.query_range(expr, start, end, 1):
                    xs = [float(t) - start for t, _ in series["values"]]
                    ys = [float(v) for _, v in series["values"]]
                    ax.plot(xs, ys, label=legend(target["legendFormat"], series["metric"])[:40])
            ax.set_title(panel["title"], fontsize=9)
            ax.tick_params(labelsize=7)
            unit = panel["fieldConfig"]["defaults"].get("unit", "")
            ax.set_xlabel("s", fontsize=7)
            ax.set_ylabel(unit, fontsize=7)
            handles, labels = ax.get_legend_handles_labels()
            if labels:
                ax.legend(fontsize=5, ncol=2 if len(labels) > 6 else 1, loc="upper left")
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.suptitle(f"vision-ai dashboard queries from a real Prometheus ({args.seconds:.0f} s of traffic)")
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=90)
    shutil.rmtree(work, ignore_errors=True)
    print(args.out)


if __name__ == "__main__":
    main()
