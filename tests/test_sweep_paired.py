"""launch/sweep.py --reference: paired comparisons of arms (e.g. clip samplers) over seeds,
on finished run directories written here (no training), checked against scipy.stats."""
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sweep", REPO / "launch" / "sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)

CONFIG = "configs/sampler_synthetic.py"
NUMBER = r"[+-]?\d+\.\d+"


def _finished_run(workdir: Path, test_accuracy: float, best_epoch: int, rho=None) -> None:
    """The files a finished, evaluated run leaves (only the fields the sweep reads); ``rho``:
    the table-vs-intensity Spearman correlation (None: a uniform run, no learned table)."""
    workdir.mkdir(parents=True)
    table = {"videos": 0} if rho is None else {"spearman_mean": rho, "videos": 500}
    (workdir / "metrics.json").write_text(json.dumps(
        {"best_validation": {"accuracy": test_accuracy + 0.01}, "best_epoch": best_epoch,
         "sampler": {"name": "x", "maps": 0, "table_vs_intensity": table}}))
    (workdir / "eval_test.json").write_text(json.dumps({"accuracy": test_accuracy}))


def _line(out: str, section: str, arm: str) -> str:
    """The row of ``arm`` in the table that follows the line starting with ``section``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(section))
    return next(line for line in lines[start + 2:] if line.split()[0] == arm)


def _row(out: str, section: str, arm: str) -> list[float]:
    """The decimal numbers of that row, in order."""
    return [float(x) for x in re.findall(NUMBER, _line(out, section, arm)[len(arm):])]


def _sem_interval(values) -> tuple[float, float]:
    values = np.asarray(values, float)
    return stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))


def test_paired_differences_and_arm_intervals_match_scipy(tmp_path, capsys):
    rng = np.random.default_rng(0)
    seeds = range(5)
    arms = {"uniform": (0.60, 6, None), "stochastic_softmax": (0.63, 5, 0.7),
            "reinforce": (0.61, 6, 0.3)}
    measured = {arm: {"acc": [], "epoch": [], "rho": []} for arm in arms}
    for seed in seeds:
        shared = rng.normal(0, 0.03)  # the seed's effect, common to its arms (pairing)
        for arm, (accuracy, epoch, rho) in arms.items():
            acc = round(accuracy + shared + rng.normal(0, 0.01), 4)
            best = int(epoch + rng.integers(-1, 2))
            r = None if rho is None else round(rho + rng.normal(0, 0.05), 4)
            _finished_run(tmp_path / f"seed={seed}_name={arm}", acc, best, r)
            for name, v in (("acc", acc), ("epoch", best), ("rho", r)):
                measured[arm][name].append(v)
    code = sweep.main([f"--config={CONFIG}", f"--workdir={tmp_path}",
                       f"--seeds={','.join(map(str, seeds))}",
                       "--set=sampler.name=uniform,stochastic_softmax,reinforce", "--eval",
                       "--reference=sampler.name=uniform"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Paired with sampler.name=uniform" in out and "seeds for ±0.02" in out
    reference = measured["uniform"]
    for arm in ("stochastic_softmax", "reinforce"):
        row = _row(out, "Paired with", f"name={arm}")
        # test accuracy: mean, interval; best epoch: mean, interval; then the seeds needed
        result = stats.ttest_rel(measured[arm]["acc"], reference["acc"])
        low, high = result.confidence_interval(0.95)
        diffs = np.subtract(measured[arm]["acc"], reference["acc"])
        np.testing.assert_allclose(row[:3], [diffs.mean(), low, high], atol=6e-5)
        epochs = stats.ttest_rel(measured[arm]["epoch"], reference["epoch"])
        epoch_diffs = np.subtract(measured[arm]["epoch"], reference["epoch"])
        np.testing.assert_allclose(
            row[3:6], [epoch_diffs.mean(), *epochs.confidence_interval(0.95)], atol=6e-3)
        needed = int(_line(out, "Paired with", f"name={arm}").split()[-1])
        sd = diffs.std(ddof=1)
        half = [stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) for n in range(2, needed + 1)]
        assert half[-1] <= 0.02 and (needed == 2 or half[-2] > 0.02)
    for arm in arms:
        row = _row(out, "Per arm", f"name={arm}")
        np.testing.assert_allclose(row[:3], [np.mean(measured[arm]["acc"]),
                                             *_sem_interval(measured[arm]["acc"])], atol=6e-5)
        np.testing.assert_allclose(row[3:6], [np.mean(measured[arm]["epoch"]),
                                              *_sem_interval(measured[arm]["epoch"])],
                                   atol=6e-3)
        if arm == "uniform":  # no learned table: no correlation
            assert len(row) == 6
        else:
            np.testing.assert_allclose(row[6:], [np.mean(measured[arm]["rho"]),
                                                 *_sem_interval(measured[arm]["rho"])],
                                       atol=6e-4)


def test_zipped_temperatures_share_one_reference_run_per_seed(tmp_path, capsys):
    """γ_s ∈ {0.5, 1, 2} and REINFORCE in one sweep with one uniform run per seed (--zip)."""
    names = ["uniform", "stochastic_softmax", "stochastic_softmax", "stochastic_softmax",
             "reinforce"]
    gammas = ["1", "0.5", "1", "2", "1"]
    accuracy = {"uniform": 0.5, "stochastic_softmax": 0.55, "reinforce": 0.52}
    for seed in (0, 1):
        for name, gamma in zip(names, gammas):
            _finished_run(tmp_path / f"seed={seed}_name={name}_gamma={gamma}",
                          accuracy[name] + 0.01 * seed + 0.001 * float(gamma), 3,
                          None if name == "uniform" else 0.5)
    code = sweep.main([f"--config={CONFIG}", f"--workdir={tmp_path}", "--seeds=0,1",
                       f"--set=sampler.name={','.join(names)}",
                       f"--set=sampler.gamma={','.join(gammas)}", "--zip", "--eval",
                       "--reference=sampler.name=uniform"])
    out = capsys.readouterr().out
    assert code == 0
    for name, gamma in zip(names[1:], gammas[1:]):
        arm = f"name={name}_gamma={gamma}"
        line = _line(out, "Paired with", arm)
        assert line.split()[1] == "2"  # both seeds paired with that seed's uniform run
        expected = accuracy[name] + 0.001 * float(gamma) - (0.5 + 0.001)
        assert float(line.split()[2]) == pytest.approx(expected, abs=6e-5)
        assert line.split()[-1] == "2"  # the same difference for both seeds: sd 0


def test_an_ambiguous_or_missing_reference_is_a_one_line_error(tmp_path, capsys):
    # Crossed: uniform at two temperatures, stochastic softmax at a third — no single match.
    runs = sweep.plan([CONFIG], ["0"], ["sampler.name=uniform,stochastic_softmax",
                                        "sampler.gamma=0.5,1"])
    assert {k: v.name for k, v in sweep.reference_partners(runs, "sampler.name",
                                                           "uniform").items()} == {
        "seed=0_name=stochastic_softmax_gamma=0.5": "seed=0_name=uniform_gamma=0.5",
        "seed=0_name=stochastic_softmax_gamma=1": "seed=0_name=uniform_gamma=1"}
    odd = [r for r in runs if r.overrides["sampler.name"] == "uniform"] + sweep.plan(
        [CONFIG], ["0"], ["sampler.name=stochastic_softmax", "sampler.gamma=2"])
    with pytest.raises(SystemExit, match="no single reference run with sampler.name=uniform"):
        sweep.reference_partners(odd, "sampler.name", "uniform")
    # A reference that names no --set value is refused before anything runs.
    with pytest.raises(SystemExit):
        sweep.main([f"--config={CONFIG}", f"--workdir={tmp_path}",
                    "--set=sampler.name=stochastic_softmax,reinforce",
                    "--reference=sampler.name=uniform"])
    assert "--reference=sampler.name=uniform must name a --set field" in \
        capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_interval_helpers():
    mean, half, n = sweep.t_interval([0.1, None, 0.3, 0.2])
    assert n == 3 and mean == pytest.approx(0.2)
    assert mean + half == pytest.approx(_sem_interval([0.1, 0.3, 0.2])[1])
    assert sweep.t_interval([0.4]) == (0.4, None, 1) and sweep.t_interval([]) == (None, None, 0)
    for sd in (0.005, 0.02, 0.037, 0.1):
        n = sweep.seeds_for_half_width(sd, 0.02)
        assert stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) <= 0.02
        assert n == 2 or stats.t.ppf(0.975, n - 2) * sd / np.sqrt(n - 1) > 0.02
    assert sweep.seeds_for_half_width(10.0, 1e-6) is None
