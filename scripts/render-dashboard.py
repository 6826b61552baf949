"""Plot the Grafana dashboard's queries from a real Prometheus scraping a real backend (no Grafana here).

    .venv/bin/python scripts/render-dashboard.py [--seconds 60] [--out docs/screenshots/dashboard.png]

Starts `python -m backend` on models/ and Debian's `prometheus` (1 s scrapes, the chart's rules),
sends varying mixed traffic, then draws the first query set of each timeseries panel of
charts/vision-ai/files/vision-ai-dashboard.json with matplotlib.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.backend_server import BackendServer  # noqa: E402
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
    args = parser.parse_args()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] == "timeseries"]
    with BackendServer(env={"VISION_LOG_LEVEL": "WARNING"}) as backend, \
            PrometheusServer([f"127.0.0.1:{backend.metrics_port}"], rule_files=[RULES]) as prom:
        start = time.time()
        while time.time() - start < args.seconds:  # bursts of growing then shrinking size
            phase = (time.time() - start) / args.seconds
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
    print(args.out)


if __name__ == "__main__":
    main()
