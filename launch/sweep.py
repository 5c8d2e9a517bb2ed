"""Runs one config over several seeds and override values, locally, and tabulates results.

  python launch/sweep.py --config=configs/synthetic.py --workdir=runs/sweep \
      --seeds=0,1,2 --set=optimizer.learning_rate=1e-3,2e-3

Every combination (seeds × values of each --set, a Cartesian product) runs as
``python -m fer_jax.main`` in its own workdir ``WORKDIR/<name>``, one after the other; a run
whose workdir already has metrics.json is skipped, so an interrupted sweep resumes. At the end
a table gives each run's best validation accuracy and the mean ± sd over seeds per setting.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="config file[:arg]")
    parser.add_argument("--workdir", required=True, help="parent directory of the runs")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (config.seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="config field and comma-separated values (repeatable)")
    parser.add_argument("--extra", action="append", default=[], metavar="FLAG",
                        help="flag passed unchanged to every run, e.g. --extra=--config.train.epochs=3")
    return parser.parse_args(argv)


def combinations(seeds: list[str], sets: list[str]) -> list[dict[str, str]]:
    """All runs: dicts config key → value, ``seed`` included."""
    axes = [[("seed", s) for s in seeds]]
    for item in sets:
        key, _, values = item.partition("=")
        if not values:
            raise SystemExit(f"sweep: --set needs KEY=V1,V2, got {item!r}")
        axes.append([(key, v) for v in values.split(",")])
    return [dict(c) for c in itertools.product(*axes)]


def run_name(overrides: dict[str, str]) -> str:
    return "_".join(f"{k.split('.')[-1]}={v}" for k, v in overrides.items())


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.workdir)
    runs = combinations(args.seeds.split(","), args.set)
    results = []
    for i, overrides in enumerate(runs, 1):
        workdir = root / run_name(overrides)
        metrics_path = workdir / "metrics.json"
        if not metrics_path.exists():
            print(f"[{i}/{len(runs)}] {workdir}", flush=True)
            command = [sys.executable, "-m", "fer_jax.main", f"--config={args.config}",
                       f"--workdir={workdir}", *args.extra,
                       *(f"--config.{k}={v}" for k, v in overrides.items())]
            if subprocess.run(command).returncode != 0:
                print(f"sweep: run {workdir} failed; continuing", file=sys.stderr)
                continue
        metrics = json.loads(metrics_path.read_text())
        best = metrics["best_validation"] or {}
        results.append((overrides, best.get("accuracy"), metrics["best_epoch"]))
    print(summary_table(results))
    return 0 if len(results) == len(runs) else 1


def summary_table(results) -> str:
    """Per-run rows, then mean ± sd of best validation accuracy per setting (over seeds)."""
    lines = [f"{'run':<48s} {'best val acc':>12s} {'best epoch':>10s}"]
    groups: dict[str, list[float]] = {}
    for overrides, accuracy, epoch in results:
        lines.append(f"{run_name(overrides):<48s} {accuracy:>12.4f} {epoch:>10d}")
        setting = run_name({k: v for k, v in overrides.items() if k != "seed"}) or "(all)"
        groups.setdefault(setting, []).append(accuracy)
    lines.append("")
    lines.append(f"{'setting':<48s} {'mean':>8s} {'sd':>8s} {'runs':>5s}")
    for setting, values in groups.items():
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(f"{setting:<48s} {statistics.mean(values):>8.4f} {sd:>8.4f} "
                     f"{len(values):>5d}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
