"""Draw the benchmarks' figures as PNGs for docs/benchmarks.md, from what the benches left in bench/results.

- api-traffic.png: API bytes per node-hour against the Service count (bench_api_traffic.py run at each size,
  `--out api_traffic-<n>.json`): kvip idle and at 10 changes/s, the informer-style baseline, and kvip before
  issue #21 (a relist every 30 s). Log scale: the designs differ by orders of magnitude.
- change-latency.png: the change -> kernel route latency distribution (empirical CDF) per Service count, for
  every bench_convergence.py result that kept its samples (`latency[].samples_ms`).
- agent-cost.png: agent CPU per change and peak RSS against the Service count, before and after, from the
  convergence results that report them.

Figures are only as good as the single runs behind them; the tables beside them in docs/benchmarks.md say so.
Needs the optional `bench` extra (matplotlib): pip install -e '.[bench]'.

Run: .venv/bin/python bench/plots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen here, and none needed
import matplotlib.pyplot as plt  # noqa: E402 (after choosing the backend)

RESULTS = Path(__file__).resolve().parent / "results"
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def _load(pattern: str) -> list[tuple[str, dict[str, Any]]]:
    return [(p.stem, json.loads(p.read_text())) for p in sorted(RESULTS.glob(pattern))]


def api_traffic(out: Path) -> Path | None:
    runs = sorted(((d["services"], d) for name, d in _load("api_traffic-*.json")
                   if re.fullmatch(r"api_traffic-\d+", name)), key=lambda x: x[0])
    if not runs:
        return None
    sizes = [n for n, _ in runs]

    def series(pick: Any) -> list[float]:
        return [pick(d) / 1e6 for _, d in runs]

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(sizes, series(lambda d: d["per_node_hour_idle"]["before"]["bytes"]), "o-",
            label="before #21: relist every 30 s (idle)")
    ax.plot(sizes, series(lambda d: d["per_node_hour_with_changes"]["10/s"]["kvip"]["bytes"]), "s-",
            label="kvip, 10 changes/s cluster-wide")
    ax.plot(sizes, series(lambda d: d["per_node_hour_with_changes"]["10/s"]["informer"]["bytes"]), "s--",
            label="informer-style baseline, 10 changes/s")
    ax.plot(sizes, series(lambda d: d["per_node_hour_idle"]["kvip"]["bytes"]), "^-",
            label="kvip idle (consistency check every 600 s)")
    ax.axhline(25, color="grey", linestyle=":", label="target: 25 MB idle at 10,000")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
    ax.set_xlabel("LoadBalancer Services (3 EndpointSlices each)")
    ax.set_ylabel("API bytes per node-hour (MB, wire)")
    ax.set_title("What one node costs the API server")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "api-traffic.png")


def change_latency(out: Path) -> Path | None:
    curves = []
    for name, result in _load("convergence-*.json"):
        for row in result.get("latency", []):
            samples = sorted(row.get("samples_ms") or [])
            if samples:
                curves.append((f"{result.get('label', name)}, {row['services']:,} Services", samples))
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, samples in curves:
        ax.step(samples, [(i + 1) / len(samples) for i in range(len(samples))], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("EndpointSlice change -> kernel route (ms)")
    ax.set_ylabel("fraction of changes")
    ax.set_title("Change-to-route latency (empirical CDF, single runs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "change-latency.png")


def agent_cost(out: Path) -> Path | None:
    by_label: dict[str, list[tuple[int, float, float | None]]] = {}
    for name, result in _load("convergence-*.json"):
        for row in result.get("latency", []):
            if "agent_cpu_ms_per_change" in row:
                by_label.setdefault(result.get("label", name), []).append(
                    (row["services"], row["agent_cpu_ms_per_change"], row.get("peak_rss_mib")))
    by_label = {k: sorted(v) for k, v in by_label.items() if len(v) >= 2}
    if not by_label:
        return None
    has_rss = any(r[2] is not None for rows in by_label.values() for r in rows)
    fig, axes = plt.subplots(1, 2 if has_rss else 1, figsize=(10 if has_rss else 6, 4), squeeze=False)
    cpu, rss = axes[0][0], axes[0][1] if has_rss else None
    for label, rows in by_label.items():
        cpu.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label=label)
        with_rss = [r for r in rows if r[2] is not None]
        if rss is not None and with_rss:
            rss.plot([r[0] for r in with_rss], [r[2] for r in with_rss], "o-", label=label)
    sizes = sorted({r[0] for rows in by_label.values() for r in rows})
    for ax, title in ((cpu, "agent CPU per EndpointSlice change (ms)"), (rss, "peak RSS (MiB)")):
        if ax is None:
            continue
        ax.set_xscale("log")
        ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
        ax.set_xlabel("LoadBalancer Services")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    cpu.set_yscale("log")
    return _save(fig, out / "agent-cost.png")


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=DOCS_IMG)
    args = parser.parse_args()
    for draw in (api_traffic, change_latency, agent_cost):
        made = draw(args.out)
        print(f"{draw.__name__}: {made if made else 'no results with what it needs; skipped'}")


if __name__ == "__main__":
    main()
