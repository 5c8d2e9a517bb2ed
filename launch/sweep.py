"""Runs one config over several seeds and override values, locally, and tabulates results.

  python launch/sweep.py --config=configs/synthetic.py --workdir=runs/sweep \
      --seeds=0,1,2 --set=optimizer.learning_rate=1e-3,2e-3

Every combination (seeds × values of each --set, a Cartesian product) runs as
``python -m fer_jax.main`` in its own workdir ``WORKDIR/<name>``, one after the other; a run
whose workdir already has metrics.json is skipped, so an interrupted sweep resumes. ``--eval``
also evaluates each run's best checkpoint on the test split (``--mode=eval``); ``--report``
writes each run's explanation report (``--mode=report``) and adds a table ranking the
explanation methods by their measurements, mean ± sd over the runs of each setting (the
seed-000 comparison of Grad-CAM, Rollout, Rollout-Grad and TIBAV for a TimeSformer:

  python launch/sweep.py --config=configs/synthetic.py --workdir=runs/explanations \
      --seeds=0,1,2 --report

). At the end a table gives each run's best validation accuracy, test accuracy, epoch of the best validation
accuracy, for runs with a score-table sampler on the synthetic benchmark the Spearman
correlation between the learned tables and the ground-truth intensity, for runs that measure
the AU alignment (``au_guidance``, seed 003) the test ATT-COS and CAM-COS — and the mean ± sd
of each over seeds per setting. ``--plot=KEY`` draws those columns against the values of the
swept field KEY (mean ± sd over seeds) in ``WORKDIR/sweep_<KEY>.png``, e.g. seed 003's λ
sweep:

  python launch/sweep.py --config=configs/au_guided_synthetic.py --workdir=runs/au_lambda \
      --seeds=0,1,2 --set=au_guidance.weight=0,1,4,16 --eval --plot=au_guidance.weight
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
    parser.add_argument("--eval", action="store_true",
                        help="also evaluate every run on the test split")
    parser.add_argument("--report", action="store_true",
                        help="also write every run's explanation report and rank the methods")
    parser.add_argument("--plot", default="", metavar="KEY",
                        help="plot the results against the values of this --set field")
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
        eval_path = workdir / "eval_test.json"
        if args.eval and not eval_path.exists():
            command = [sys.executable, "-m", "fer_jax.main", f"--config={args.config}",
                       f"--workdir={workdir}", "--mode=eval", *args.extra,
                       *(f"--config.{k}={v}" for k, v in overrides.items())]
            if subprocess.run(command).returncode != 0:
                print(f"sweep: evaluation of {workdir} failed; continuing", file=sys.stderr)
        if args.report and not (workdir / "report.json").exists():
            command = [sys.executable, "-m", "fer_jax.main", f"--config={args.config}",
                       f"--workdir={workdir}", "--mode=report", *args.extra,
                       *(f"--config.{k}={v}" for k, v in overrides.items())]
            if subprocess.run(command).returncode != 0:
                print(f"sweep: report of {workdir} failed; continuing", file=sys.stderr)
        results.append((overrides, run_metrics(workdir)))
    print(summary_table(results))
    if args.plot:
        print(f"\nPlot: {plot_sweep(results, args.plot, root)}")
    if args.report:
        for setting, reports in explanation_reports(root, results).items():
            print(f"\nExplanation methods, {setting} (mean ± sd over {len(reports)} runs):\n")
            print(explanation_table(reports))
    return 0 if len(results) == len(runs) else 1


# Method measurements in report.json → table columns (higher is better unless marked ↓).
EXPLANATION_COLUMNS = {
    "occlusion difference": ("occlusion", "mean_difference"),
    "difference at 50 %": ("occlusion", "difference_50"),
    "deletion AUC ↓": ("deletion", "auc"),
    "insertion AUC": ("insertion", "auc"),
    "AU energy share": ("energy_inside", "mean"),
    "pointing game": ("pointing_game", "mean"),
    "CAM-COS": ("au_cosine", "macro"),
}


def explanation_reports(root: Path, results) -> dict[str, list[dict]]:
    """report.json of every run that has one, grouped by setting (runs without seeds)."""
    groups: dict[str, list[dict]] = {}
    for overrides, _ in results:
        path = root / run_name(overrides) / "report.json"
        if path.exists():
            setting = run_name({k: v for k, v in overrides.items() if k != "seed"}) or "(all)"
            groups.setdefault(setting, []).append(json.loads(path.read_text()))
    return groups


def _measurement(method: dict, group: str, key: str) -> float | None:
    if key == "difference_50":  # largest share of cells occluded, no frame occluded
        return method["occlusion"]["difference"][-1][0]
    return (method.get(group) or {}).get(key)


def explanation_table(reports: list[dict]) -> str:
    """Markdown table: one row per method, mean ± sd over ``reports`` of each measurement,
    and the method's rank (1 = best) by the mean occlusion difference."""
    methods = list(reports[0]["methods"])
    stats = {}
    for method in methods:
        for column, (group, key) in EXPLANATION_COLUMNS.items():
            values = [v for r in reports if method in r["methods"]
                      for v in [_measurement(r["methods"][method], group, key)]
                      if v is not None]
            stats[method, column] = ((statistics.mean(values),
                                      statistics.stdev(values) if len(values) > 1 else 0.0)
                                     if values else None)
    order = sorted(methods, key=lambda m: -stats[m, "occlusion difference"][0])
    lines = ["| rank | method | " + " | ".join(EXPLANATION_COLUMNS) + " |",
             "|---|---|" + "---|" * len(EXPLANATION_COLUMNS)]
    for rank, method in enumerate(order, 1):
        cells = [f"{s[0]:.3f} ± {s[1]:.3f}" if s else "–"
                 for s in (stats[method, c] for c in EXPLANATION_COLUMNS)]
        lines.append(f"| {rank} | {method} | " + " | ".join(cells) + " |")
    accuracy = [r["classification"]["accuracy"] for r in reports]
    seconds = [sum(r["seconds"].values()) for r in reports]
    lines.append(f"\nTest accuracy {statistics.mean(accuracy):.3f} ± "
                 f"{statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0:.3f} over "
                 f"{reports[0]['videos']} videos; report {statistics.mean(seconds):.0f} s per run.")
    return "\n".join(lines)


COLUMNS = ("best val acc", "test acc", "best epoch", "table rho", "test ATT-COS",
           "test CAM-COS")


def run_metrics(workdir: Path) -> dict[str, float | None]:
    """The summary columns of one finished run (None where not measured)."""
    metrics = json.loads((workdir / "metrics.json").read_text())
    path = workdir / "eval_test.json"
    test = json.loads(path.read_text()) if path.exists() else {}
    table = ((metrics.get("sampler") or {}).get("table_vs_intensity") or {})
    alignment = test.get("au_alignment") or {}
    return {"best val acc": (metrics["best_validation"] or {}).get("accuracy"),
            "test acc": test.get("accuracy"),
            "best epoch": metrics["best_epoch"],
            "table rho": table.get("spearman_mean"),
            "test ATT-COS": (alignment.get("att_cos") or {}).get("macro"),
            "test CAM-COS": (alignment.get("cam_cos") or {}).get("macro")}


def _mean_sd(values: list) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def plot_sweep(results, key: str, root: Path) -> Path:
    """Test accuracy and (where measured) test ATT-COS / CAM-COS against the values of ``key``
    (numbers), mean ± sd over the runs of each value → ``root/sweep_<key>.png``."""
    from fer_jax.viz import plots

    if not results or any(key not in overrides for overrides, _ in results):
        raise SystemExit(f"sweep: --plot={key} names no --set field of this sweep")
    try:
        values = sorted({float(overrides[key]) for overrides, _ in results})
    except ValueError:
        raise SystemExit(f"sweep: --plot needs numeric values of {key}") from None
    rows = {v: [m for o, m in results if float(o[key]) == v] for v in values}

    def series(column):
        stats = [_mean_sd([r[column] for r in rows[v]]) for v in values]
        return [m for m, _ in stats], [s for _, s in stats]

    panels = {"accuracy": {"test accuracy": series("test acc")}}
    alignment = {name: series(f"test {name}") for name in ("ATT-COS", "CAM-COS")}
    alignment = {k: v for k, v in alignment.items() if any(m is not None for m in v[0])}
    if alignment:
        panels = {"AU alignment (macro cosine)": alignment, **panels}
    path = root / f"sweep_{key}.png"
    seeds = max(len(r) for r in rows.values())
    plots.sweep_curves(values, panels, key, f"{len(results)} runs, up to {seeds} per value "
                       "(mean ± sd; dashed: the first value)", path)
    return path


def _cell(value, width: int) -> str:
    return f"{'-':>{width}s}" if value is None else f"{value:>{width}.4g}"


def summary_table(results) -> str:
    """Per-run rows, then mean ± sd of every column per setting (over seeds)."""
    lines = [f"{'run':<48s}" + "".join(f"{c:>14s}" for c in COLUMNS)]
    groups: dict[str, list[dict]] = {}
    for overrides, values in results:
        lines.append(f"{run_name(overrides):<48s}" + "".join(_cell(values[c], 14)
                                                             for c in COLUMNS))
        setting = run_name({k: v for k, v in overrides.items() if k != "seed"}) or "(all)"
        groups.setdefault(setting, []).append(values)
    lines.append("")
    lines.append(f"{'setting (mean ± sd over seeds)':<48s}" + "".join(f"{c:>20s}"
                                                                       for c in COLUMNS))
    for setting, rows in groups.items():
        cells = []
        for column in COLUMNS:
            mean, sd = _mean_sd([r[column] for r in rows])
            cells.append(f"{mean:>11.4f} ± {sd:<6.4f}" if mean is not None
                         else f"{'-':>20s}")
        lines.append(f"{setting:<48s}" + "".join(cells) + f"  ({len(rows)} runs)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
