"""Runs configs over seeds and override values, locally, and tabulates results.

  python launch/sweep.py --config=configs/synthetic.py --workdir=runs/sweep \
      --seeds=0,1,2 --set=optimizer.learning_rate=1e-3,2e-3

Every combination (seeds × values of each --set, a Cartesian product) runs as
``python -m fer_jax.main`` in its own workdir ``WORKDIR/<name>``, e.g.
``runs/sweep/seed=1_learning_rate=2e-3``; a run whose workdir already has metrics.json is
skipped, so an interrupted sweep resumes. Options:

* ``--config`` repeated: the config files (each ``path[:arg]``) are one more axis of the
  product, and run names start with ``config=<stem>[_<arg>]``;
* ``--zip``: the ``--set`` axes are paired element by element (all with the same number of
  values: ``--set=a=1,2 --set=b=x,y --zip`` runs a=1,b=x and a=2,b=y) instead of crossed;
  seeds and configs still multiply them;
* ``--parallel=N``: up to N runs at a time, each run's output in ``WORKDIR/<name>/log.txt``
  and one console line per started, finished or failed run (with N = 1, the default, runs
  go one after the other and print to the console). A failed run is reported and the others
  go on. Ctrl-C (or SIGTERM to the sweep) stops the runs in progress with SIGTERM, on which
  they save a checkpoint to resume from;
* ``--eval`` also evaluates each run's best checkpoint on the test split (``--mode=eval``);
* ``--report`` writes each run's explanation report (``--mode=report``) and adds a table
  ranking the explanation methods by their measurements, mean ± sd over the runs of each
  setting (Du Toit's comparison of Grad-CAM, Rollout-min, Rollout-Grad-mean and TIBAV for a
  TimeSformer; rows are the methods' labels, which name the rollout family's head fusion;
  columns are the ranking columns of the measurements the reports hold, the sanity checks
  among them when ``--extra=--config.explain.measurements=default,randomisation`` names them:

    python launch/sweep.py --config=configs/synthetic.py --workdir=runs/explanations \
        --seeds=0,1,2 --report

  ); a run's evaluation and report follow its training, in the same slot of ``--parallel``;
* ``--extra=FLAG`` passes FLAG unchanged to every run;
* ``--reference=KEY=VALUE`` pairs every run with the run of the same config and seed whose
  --set field KEY has VALUE (among several, the one that agrees on the other --set fields):
  paired comparisons of arms that differ only in KEY and share seed and ``--extra`` (e.g.
  ``model.init_from``, the same pretrained weights). A second table gives, per arm (setting),
  the paired difference arm − reference of the test accuracy and of the epoch of the best
  validation accuracy, mean and 95 % t-interval over the pairs (a paired t-test's interval),
  and the number of seeds for which that interval of the test-accuracy difference would be no
  wider than ±``--half_width`` (default 0.02: ±2 points) at the spread seen; a third gives
  per arm the test accuracy, the epoch of the best validation accuracy and the Spearman
  correlation between the learned score tables and the ground-truth intensity (``table
  rho``), mean and 95 % t-interval over seeds. Ayral's thesis' sampler comparison, uniform as
  the reference arm:

    python launch/sweep.py --config=configs/sampler_synthetic.py \
        --workdir=runs/sampler --seeds=0,1,2,3 \
        --set=sampler.name=uniform,stochastic_softmax,reinforce --eval --parallel=2 \
        --reference=sampler.name=uniform

At the end a table gives, in the order of the runs, each run's best validation accuracy,
test accuracy, epoch of the best validation accuracy, for runs with a score-table sampler on
the synthetic benchmark the Spearman correlation between the learned tables and the
ground-truth intensity, for runs that measure the AU alignment (``au_guidance``, Belharbi et
al.) the test ATT-COS and CAM-COS (as ``--mode=eval`` measures them: the maps upsampled to
the AU heatmap and normalised, ``au_guidance.cosine``) — and the mean ± sd of each over seeds
per setting.
``--plot=KEY`` draws those columns against the values of the swept field KEY (mean ± sd over
seeds) in ``WORKDIR/sweep_<KEY>.png``, e.g. the λ sweep of Belharbi et al. (their Fig. 5):

  python launch/sweep.py --config=configs/au_guided_synthetic.py --workdir=runs/au_lambda \
      --seeds=0,1,2 --set=au_guidance.weight=0,1,4,16 --eval --plot=au_guidance.weight

Two configs × two learning rates paired with two batch sizes × two seeds, two runs at a time:

  python launch/sweep.py --config=configs/synthetic.py \
      --config=configs/au_guided_synthetic.py:timesformer --workdir=runs/compare \
      --seeds=0,1 --set=optimizer.learning_rate=1e-3,2e-3 --set=train.batch_size=16,32 \
      --zip --parallel=2 --eval
"""
from __future__ import annotations

import argparse
import itertools
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import NamedTuple

from fer_jax.atomic_files import read_json


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", required=True, metavar="FILE[:ARG]",
                        help="config file[:arg] (repeatable: one more axis of the sweep)")
    parser.add_argument("--workdir", required=True, help="parent directory of the runs")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (config.seed)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=V1,V2",
                        help="config field and comma-separated values (repeatable)")
    parser.add_argument("--zip", action="store_true",
                        help="pair the values of the --set fields element-wise instead of "
                             "taking their Cartesian product")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="runs at a time (default 1); with N > 1 each run's output goes "
                             "to its log.txt")
    parser.add_argument("--eval", action="store_true",
                        help="also evaluate every run on the test split")
    parser.add_argument("--report", action="store_true",
                        help="also write every run's explanation report and rank the methods")
    parser.add_argument("--plot", default="", metavar="KEY",
                        help="plot the results against the values of this --set field")
    parser.add_argument("--extra", action="append", default=[], metavar="FLAG",
                        help="flag passed unchanged to every run, e.g. --extra=--config.train.epochs=3")
    parser.add_argument("--reference", default="", metavar="KEY=VALUE",
                        help="the reference arm of paired comparisons: each run is paired "
                             "with the run of the same config and seed whose --set field KEY "
                             "is VALUE (e.g. sampler.name=uniform)")
    parser.add_argument("--half_width", type=float, default=0.02, metavar="H",
                        help="with --reference: the half-width of the 95 %% interval of the "
                             "paired test-accuracy difference for which the table estimates "
                             "the seeds needed (default 0.02, ±2 points)")
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error("--parallel must be at least 1")
    if args.plot and len(args.config) > 1:
        parser.error("--plot needs a sweep of one --config")
    if not args.half_width > 0:
        parser.error(f"--half_width must be positive, got {args.half_width}")
    if args.reference:
        key, _, value = args.reference.partition("=")
        values = {k: v.split(",") for k, _, v in (item.partition("=") for item in args.set)}
        if key not in values or value not in values[key]:
            parser.error(f"--reference={args.reference} must name a --set field and one of "
                         f"its values (KEY=VALUE, e.g. sampler.name=uniform)")
    return args


def _set_axes(sets: list[str]) -> list[list[tuple[str, str]]]:
    axes = []
    for item in sets:
        key, _, values = item.partition("=")
        if not key or not values:
            raise SystemExit(f"sweep: --set needs KEY=V1,V2, got {item!r}")
        axes.append([(key, v) for v in values.split(",")])
    return axes


def combinations(seeds: list[str], sets: list[str], zipped: bool = False
                 ) -> list[dict[str, str]]:
    """The overrides of every run: dicts config key → value, ``seed`` first. The --set
    axes are crossed (Cartesian product) or, ``zipped``, paired element-wise; seeds multiply
    either."""
    axes = _set_axes(sets)
    if zipped and len({len(axis) for axis in axes}) > 1:
        counts = ", ".join(f"{axis[0][0]}: {len(axis)}" for axis in axes)
        raise SystemExit(f"sweep: --zip needs the same number of values for every --set "
                         f"field ({counts})")
    settings = list(zip(*axes)) if zipped and axes else list(itertools.product(*axes))
    return [dict([("seed", seed), *setting]) for seed in seeds for setting in settings]


def config_label(config: str) -> str:
    """``configs/x.py:a`` → ``x_a``: the config's part of run names."""
    path, _, arg = config.partition(":")
    return f"{Path(path).stem}_{arg}" if arg else Path(path).stem


def run_name(overrides: dict[str, str], config: str = "") -> str:
    parts = [f"config={config}"] if config else []
    return "_".join(parts + [f"{k.split('.')[-1]}={v}" for k, v in overrides.items()])


class Run(NamedTuple):
    """One run of the sweep: a config file, its overrides (``seed`` included) and, when the
    sweep has several configs, the config's label in the run name."""
    config: str
    overrides: dict[str, str]
    label: str = ""

    @property
    def name(self) -> str:
        return run_name(self.overrides, self.label)

    @property
    def setting(self) -> str:
        """The name without the seed: the runs that the summary averages."""
        return run_name({k: v for k, v in self.overrides.items() if k != "seed"},
                        self.label) or "(all)"


def plan(configs: list[str], seeds: list[str], sets: list[str], zipped: bool = False
         ) -> list[Run]:
    """All runs of the sweep: configs × seeds × settings, in this order."""
    labels = [config_label(c) if len(configs) > 1 else "" for c in configs]
    if len(set(labels)) < len(labels):
        raise SystemExit(f"sweep: two --config give the same run names: {labels}")
    overrides = combinations(seeds, sets, zipped)
    return [Run(config, dict(o), label) for config, label in zip(configs, labels)
            for o in overrides]


# What a run does, in order: (step, --mode flag, the file that marks it done).
TRAIN = ("training", [], "metrics.json")
EVAL = ("evaluation", ["--mode=eval"], "eval_test.json")
REPORT = ("report", ["--mode=report"], "report.json")


def command(run: Run, workdir: Path, mode: list[str], extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "fer_jax.main", f"--config={run.config}",
            f"--workdir={workdir}", *mode, *extra,
            *(f"--config.{k}={v}" for k, v in run.overrides.items())]


class Runner:
    """Runs the missing steps of runs (training, then evaluation / report), several runs at
    a time from threads; children started are tracked so that Ctrl-C can stop them."""

    def __init__(self, root: Path, steps: list[tuple], extra: list[str], total: int,
                 to_log: bool):
        self.root, self.steps, self.extra = root, steps, extra
        self.total, self.to_log = total, to_log
        self.lock = threading.Lock()
        self.children: set[subprocess.Popen] = set()
        self.stopping = threading.Event()

    def say(self, message: str, error: bool = False) -> None:
        with self.lock:
            print(message, file=sys.stderr if error else sys.stdout, flush=True)

    def _call(self, argv: list[str], log: Path | None) -> int:
        with self.lock:
            if self.stopping.is_set():
                return -1
            out = open(log, "a") if log else None
            try:
                child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT if out
                                         else None)
            finally:
                if out:
                    out.close()
            self.children.add(child)
        try:
            return child.wait()
        finally:
            with self.lock:
                self.children.discard(child)

    def execute(self, index: int, run: Run) -> bool:
        """The run's missing steps, one after the other; whether its training is done (a
        failed evaluation or report is reported but keeps the run in the table)."""
        workdir = self.root / run.name
        # done = its result file parses (a half-written or emptied file means "run again")
        todo = [s for s in self.steps if read_json(workdir / s[2]) is None]
        if not todo:
            return True
        log = workdir / "log.txt" if self.to_log else None
        if log:
            workdir.mkdir(parents=True, exist_ok=True)
        tag = f"[{index}/{self.total}]"
        self.say(f"{tag} started {workdir}" + (f" (log: {log})" if log else ""))
        start, failures, trained = time.monotonic(), [], True
        for step, mode, _ in todo:
            code = self._call(command(run, workdir, mode, self.extra), log)
            if self.stopping.is_set():
                return False
            if code != 0:
                failures.append(f"{step} exited with code {code}")
                if step == TRAIN[0]:
                    trained = False
                    break
        if failures:
            self.say(f"{tag} failed {workdir}: {', '.join(failures)}"
                     + (f"; see {log}" if log else "; continuing"), error=True)
        else:
            self.say(f"{tag} finished {workdir} in {time.monotonic() - start:.0f} s")
        return trained

    def stop(self) -> None:
        """No more children; SIGTERM to those running (fer_jax saves a checkpoint)."""
        with self.lock:
            self.stopping.set()
            children = list(self.children)
        for child in children:
            child.terminate()
        for child in children:
            child.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def execute_all(runs: list[Run], args) -> list[bool]:
    """Runs the sweep, ``args.parallel`` runs at a time; whether each run (in order) has a
    finished training. Ctrl-C or SIGTERM stops the runs in progress with SIGTERM."""
    steps = [TRAIN] + [EVAL] * args.eval + [REPORT] * args.report
    runner = Runner(Path(args.workdir), steps, args.extra, len(runs), args.parallel > 1)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        with futures.ThreadPoolExecutor(args.parallel) as pool:
            jobs = [pool.submit(runner.execute, i, run) for i, run in enumerate(runs, 1)]
            try:
                return [job.result() for job in jobs]
            except KeyboardInterrupt:
                runner.say("sweep: interrupted; stopping the runs in progress (they save a "
                           "checkpoint: run the same command again to resume)", error=True)
                for job in jobs:
                    job.cancel()
                runner.stop()
                raise SystemExit(130) from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    args = parse_args(argv)
    root = Path(args.workdir)
    runs = plan(args.config, args.seeds.split(","), args.set, args.zip)
    done = execute_all(runs, args)
    results = [(run, run_metrics(root / run.name)) for run, ok in zip(runs, done) if ok]
    print(summary_table(results))
    if args.reference:
        key, _, value = args.reference.partition("=")
        print("\n" + paired_table(results, key, value, args.half_width))
    if args.plot:
        print(f"\nPlot: {plot_sweep(results, args.plot, root)}")
    if args.report:
        for setting, reports in explanation_reports(root, results).items():
            print(f"\nExplanation methods, {setting} (mean ± sd over {len(reports)} runs):\n")
            print(explanation_table(reports))
    return 0 if all(done) else 1


def explanation_reports(root: Path, results) -> dict[str, list[dict]]:
    """report.json of every run that has one, grouped by setting (runs without seeds)."""
    groups: dict[str, list[dict]] = {}
    for run, _ in results:
        report = read_json(root / run.name / "report.json")
        if report is not None:
            groups.setdefault(run.setting, []).append(report)
    return groups


def method_columns(result: dict) -> list:
    """The ranking columns (``measurements.base.Column``) that the registered measurements
    read from one method's entry of report.json, in the report's order."""
    from fer_jax.evaluation import measurements
    return [column for name in measurements.names()
            for column in measurements.get(name).columns(result)]


def explanation_table(reports: list[dict]) -> str:
    """Markdown table: one row per method, mean ± sd over ``reports`` of every ranking column
    the reports hold (those of the measurements that ran, the sanity checks included), and
    the method's rank (1 = best) by the first of them that has a better direction (the mean
    occlusion difference when the occlusion test ran)."""
    methods = list(reports[0]["methods"])
    values: dict[tuple[str, str], list[float]] = {}
    headers: dict[str, str | None] = {}  # header → better direction, in column order
    for report in reports:
        for method in methods:
            for column in method_columns(report["methods"].get(method) or {}):
                if column.value is None:
                    continue
                headers.setdefault(column.header, column.best)
                values.setdefault((method, column.header), []).append(float(column.value))

    def stat(method, header):
        v = values.get((method, header))
        return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) if v else None

    key = next((h for h, best in headers.items() if best), None)
    sign = -1 if key and headers[key] == "max" else 1
    order = sorted(methods, key=lambda m: (stat(m, key) is None,
                                           sign * (stat(m, key) or (0.0,))[0])) \
        if key else methods
    lines = ["| rank | method | " + " | ".join(headers) + " |",
             "|---|---|" + "---|" * len(headers)]
    for rank, method in enumerate(order, 1):
        cells = [f"{s[0]:.3f} ± {s[1]:.3f}" if s else "–"
                 for s in (stat(method, h) for h in headers)]
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
    metrics = read_json(workdir / "metrics.json") or {}
    test = read_json(workdir / "eval_test.json") or {}
    table = ((metrics.get("sampler") or {}).get("table_vs_intensity") or {})
    alignment = test.get("au_alignment") or {}
    return {"best val acc": (metrics.get("best_validation") or {}).get("accuracy"),
            "test acc": test.get("accuracy"),
            "best epoch": metrics.get("best_epoch"),
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

    if not results or any(key not in run.overrides for run, _ in results):
        raise SystemExit(f"sweep: --plot={key} names no --set field of this sweep")
    try:
        values = sorted({float(run.overrides[key]) for run, _ in results})
    except ValueError:
        raise SystemExit(f"sweep: --plot needs numeric values of {key}") from None
    rows = {v: [m for r, m in results if float(r.overrides[key]) == v] for v in values}

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
    width = max([48] + [len(run.name) + 2 for run, _ in results])
    lines = [f"{'run':<{width}s}" + "".join(f"{c:>14s}" for c in COLUMNS)]
    groups: dict[str, list[dict]] = {}
    for run, values in results:
        lines.append(f"{run.name:<{width}s}" + "".join(_cell(values[c], 14) for c in COLUMNS))
        groups.setdefault(run.setting, []).append(values)
    lines.append("")
    lines.append(f"{'setting (mean ± sd over seeds)':<{width}s}" + "".join(f"{c:>20s}"
                                                                           for c in COLUMNS))
    for setting, rows in groups.items():
        cells = []
        for column in COLUMNS:
            mean, sd = _mean_sd([r[column] for r in rows])
            cells.append(f"{mean:>11.4f} ± {sd:<6.4f}" if mean is not None
                         else f"{'-':>20s}")
        lines.append(f"{setting:<{width}s}" + "".join(cells) + f"  ({len(rows)} runs)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- paired arms
def t_interval(values: list, confidence: float = 0.95
               ) -> tuple[float | None, float | None, int]:
    """``(mean, half-width, n)`` of the Student-t ``confidence`` interval of the mean of
    ``values`` (None entries left out): ``t_{(1+confidence)/2, n−1} · sd / √n``. The mean is
    None without values, the half-width None with fewer than two."""
    values = [float(v) for v in values if v is not None]
    if not values:
        return None, None, 0
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, None, len(values)
    from scipy import stats  # a second to import: only when a table needs it

    quantile = stats.t.ppf((1 + confidence) / 2, len(values) - 1)
    return mean, float(quantile * statistics.stdev(values) / len(values) ** 0.5), len(values)


def seeds_for_half_width(sd: float, half_width: float, confidence: float = 0.95,
                         limit: int = 100_000) -> int | None:
    """The fewest pairs n (≥ 2) whose t-interval ``t_{(1+confidence)/2, n−1} · sd / √n`` is
    no wider than ±``half_width`` for paired differences of standard deviation ``sd``; None
    beyond ``limit``."""
    from scipy import stats

    def half(n):
        return stats.t.ppf((1 + confidence) / 2, n - 1) * sd / n ** 0.5

    if half(limit) > half_width:
        return None
    lo, hi = 2, limit  # half(n) decreases with n: bisect for the first n that fits
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if half(mid) <= half_width else (mid + 1, hi)
    return lo


def reference_partners(runs: list[Run], key: str, value: str) -> dict[str, Run]:
    """Run name → its reference run, for every run whose --set field ``key`` is not ``value``:
    the run of the same config and seed with ``key`` = ``value``; among several, the one that
    agrees on every other --set field (e.g. ``sampler.gamma`` swept with ``--zip``). A run
    without one is left out; an ambiguous choice stops the sweep with a one-line error."""
    references = [r for r in runs if r.overrides.get(key) == value]
    partners = {}
    for run in runs:
        if key not in run.overrides or run.overrides[key] == value:
            continue
        same = [r for r in references if r.config == run.config
                and r.overrides["seed"] == run.overrides["seed"]]
        if len(same) > 1:
            others = {k: v for k, v in run.overrides.items() if k != key}
            same = [r for r in same
                    if {k: v for k, v in r.overrides.items() if k != key} == others]
            if len(same) != 1:
                raise SystemExit(f"sweep: run {run.name} has no single reference run with "
                                 f"{key}={value}; give the reference arm one value of the "
                                 f"other --set fields (e.g. with --zip)")
        if same:
            partners[run.name] = same[0]
    return partners


PAIRED_COLUMNS = ("test acc", "best epoch")  # differences arm − reference
ARM_COLUMNS = ("test acc", "best epoch", "table rho")


def _interval_cell(values: list, digits: int, signed: bool = False) -> str:
    mean, half, _ = t_interval(values)
    if mean is None:
        return "-"
    sign = "+" if signed else ""
    if half is None:
        return f"{mean:{sign}.{digits}f} [n < 2]"
    return f"{mean:{sign}.{digits}f} [{mean - half:{sign}.{digits}f}, " \
           f"{mean + half:{sign}.{digits}f}]"


def paired_table(results, key: str, value: str, half_width: float = 0.02) -> str:
    """The paired comparison of the finished runs ``results`` [(Run, run_metrics)] with the
    reference arm ``key`` = ``value`` (see the module docstring): per arm, the differences
    arm − reference (mean [95 % t-interval] over pairs) and the seeds that a ±``half_width``
    interval of the test-accuracy difference needs; then per arm (the reference included) the
    ``ARM_COLUMNS``, mean [95 % t-interval] over seeds."""
    metrics = {run.name: values for run, values in results}
    runs = [run for run, _ in results]
    partners = reference_partners(runs, key, value)
    arms: dict[str, list[tuple[dict, dict]]] = {}
    for run in runs:
        if run.name in partners and partners[run.name].name in metrics:
            arms.setdefault(run.setting, []).append(
                (metrics[run.name], metrics[partners[run.name].name]))
    width = max([32] + [len(run.setting) + 2 for run in runs])
    digits = {"test acc": 4, "best epoch": 2, "table rho": 3}
    lines = [f"Paired with {key}={value} (same config and seed; arm − reference; mean [95 % "
             f"t-interval] over pairs):",
             f"{'arm':<{width}s}{'pairs':>6s}" + "".join(f"{c + ' diff':>30s}"
                                                        for c in PAIRED_COLUMNS)
             + f"{'seeds for ±' + format(half_width, 'g'):>18s}"]
    for setting, pairs in arms.items():
        cells, needed = [], "-"
        for column in PAIRED_COLUMNS:
            diffs = [a[column] - b[column] for a, b in pairs
                     if a[column] is not None and b[column] is not None]
            cells.append(f"{_interval_cell(diffs, digits[column], signed=True):>30s}")
            if column == "test acc" and len(diffs) > 1:
                n = seeds_for_half_width(statistics.stdev(diffs), half_width)
                needed = str(n) if n is not None else "> 100000"
        lines.append(f"{setting:<{width}s}{len(pairs):>6d}" + "".join(cells) + f"{needed:>18s}")
    if not arms:
        lines.append(f"(no finished run has a finished reference run with {key}={value})")
    groups: dict[str, list[dict]] = {}
    for run, values in results:
        groups.setdefault(run.setting, []).append(values)
    lines += ["", "Per arm (mean [95 % t-interval] over seeds):",
              f"{'arm':<{width}s}{'runs':>6s}" + "".join(f"{c:>30s}" for c in ARM_COLUMNS)]
    for setting, rows in groups.items():
        lines.append(f"{setting:<{width}s}{len(rows):>6d}" + "".join(
            f"{_interval_cell([r[c] for r in rows], digits[c]):>30s}" for c in ARM_COLUMNS))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
