"""launch/sweep.py: the runs of a sweep (product, zip, several configs), the summary table
(with the AU-alignment columns) and the plot of finished runs, failures under --parallel, and
one real sweep of two tiny runs."""
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sweep", REPO / "launch" / "sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def _finished_run(workdir: Path, accuracy: float, att_cos: float, cam_cos: float) -> None:
    """The files a finished, evaluated run leaves (only the fields the sweep reads)."""
    workdir.mkdir(parents=True)
    (workdir / "metrics.json").write_text(json.dumps(
        {"best_validation": {"accuracy": accuracy + 0.01}, "best_epoch": 3}))
    (workdir / "eval_test.json").write_text(json.dumps(
        {"accuracy": accuracy, "au_alignment": {"att_cos": {"macro": att_cos},
                                                "cam_cos": {"macro": cam_cos}}}))


def test_table_and_plot_of_a_finished_weight_sweep(tmp_path, capsys):
    measured = {}
    for seed in (0, 1):
        for weight in ("0", "4"):
            att = 0.5 + 0.1 * float(weight) + 0.01 * seed
            _finished_run(tmp_path / f"seed={seed}_weight={weight}", 0.8 + 0.01 * seed, att,
                          att - 0.2)
            measured.setdefault(weight, []).append(att)
    code = sweep.main(["--config=configs/au_guided_synthetic.py", f"--workdir={tmp_path}",
                       "--seeds=0,1", "--set=au_guidance.weight=0,4", "--eval",
                       "--plot=au_guidance.weight"])
    out = capsys.readouterr().out
    assert code == 0
    assert "test ATT-COS" in out and "test CAM-COS" in out
    setting = next(line for line in out.splitlines() if line.startswith("weight=4 "))
    assert "0.9050 ± 0.0071" in setting  # ATT-COS of weight 4: mean ± sd of 0.90 and 0.91
    plot = tmp_path / "sweep_au_guidance.weight.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert f"Plot: {plot}" in out


def test_plot_of_a_field_that_is_not_swept_is_refused(tmp_path):
    _finished_run(tmp_path / "seed=0", 0.8, 0.5, 0.3)
    with pytest.raises(SystemExit, match="names no --set field"):
        sweep.main(["--config=configs/au_guided_synthetic.py", f"--workdir={tmp_path}",
                    "--plot=au_guidance.weight"])


def test_set_axes_cross_or_zip_and_seeds_multiply_both():
    sets = ["optimizer.learning_rate=1e-3,2e-3", "train.batch_size=16,32"]
    product = sweep.combinations(["0", "1"], sets)
    assert len(product) == 8
    assert product[:4] == [
        {"seed": "0", "optimizer.learning_rate": "1e-3", "train.batch_size": "16"},
        {"seed": "0", "optimizer.learning_rate": "1e-3", "train.batch_size": "32"},
        {"seed": "0", "optimizer.learning_rate": "2e-3", "train.batch_size": "16"},
        {"seed": "0", "optimizer.learning_rate": "2e-3", "train.batch_size": "32"}]
    zipped = sweep.combinations(["0", "1"], sets, zipped=True)
    assert zipped == [
        {"seed": s, "optimizer.learning_rate": lr, "train.batch_size": bs}
        for s in ("0", "1") for lr, bs in (("1e-3", "16"), ("2e-3", "32"))]
    assert sweep.combinations(["0"], [], zipped=True) == [{"seed": "0"}]
    with pytest.raises(SystemExit, match="same number of values"):
        sweep.combinations(["0"], ["a=1,2", "b=1,2,3"], zipped=True)
    with pytest.raises(SystemExit, match="KEY=V1,V2"):
        sweep.combinations(["0"], ["a"])


def test_several_configs_are_one_more_axis_and_name_the_runs():
    runs = sweep.plan(["configs/synthetic.py:smoke", "configs/au_guided_synthetic.py"],
                      ["0", "1"], ["train.epochs=1,2"])
    assert [r.name for r in runs[:2]] == ["config=synthetic_smoke_seed=0_epochs=1",
                                          "config=synthetic_smoke_seed=0_epochs=2"]
    assert len(runs) == 8 and runs[-1].config == "configs/au_guided_synthetic.py"
    assert runs[-1].name == "config=au_guided_synthetic_seed=1_epochs=2"
    assert runs[-1].setting == "config=au_guided_synthetic_epochs=2"
    # One config: the names of earlier sweeps (their workdirs resume).
    assert [r.name for r in sweep.plan(["configs/synthetic.py"], ["3"], [])] == ["seed=3"]
    with pytest.raises(SystemExit, match="same run names"):
        sweep.plan(["configs/synthetic.py", "other/synthetic.py"], ["0"], [])


def _table_rows(out: str) -> list[str]:
    """The per-run rows of the summary table in a sweep's output."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    return lines[start + 1:lines.index("", start)]


def test_parallel_runs_report_failures_and_the_others_go_on(tmp_path, capsys):
    _finished_run(tmp_path / "seed=0_batch_size=8", 0.8, 0.5, 0.3)
    code = sweep.main(["--config=configs/synthetic.py:smoke", f"--workdir={tmp_path}",
                       "--set=train.batch_size=8,x,y", "--parallel=2"])
    captured = capsys.readouterr()
    assert code == 1
    # The finished run is in the table; the other two fail at once (batch sizes x, y).
    assert [row.split()[0] for row in _table_rows(captured.out)] == ["seed=0_batch_size=8"]
    for name in ("seed=0_batch_size=x", "seed=0_batch_size=y"):
        log = tmp_path / name / "log.txt"
        assert f"failed {tmp_path / name}: training exited with code 2; see {log}" \
            in captured.err
        assert "--config.train.batch_size" in log.read_text()  # fer_jax's one-line error
    assert not (tmp_path / "seed=0_batch_size=8" / "log.txt").exists()  # skipped: done


def test_one_command_runs_a_sweep_of_two_configs_in_parallel(tmp_path, python):
    """Two config files, two runs at a time, tiny runs of one epoch (how configs cross the
    seeds: test_several_configs_are_one_more_axis_and_name_the_runs)."""
    shrink = ["--config.dataset.train_videos=16", "--config.dataset.validation_videos=8",
              "--config.train.epochs=1", "--config.train.checkpoint_every_steps=0"]
    result = subprocess.run(
        [python, "launch/sweep.py", "--config=configs/synthetic.py:smoke",
         "--config=configs/au_guided_synthetic.py:smoke", f"--workdir={tmp_path}",
         "--seeds=0", "--parallel=2", *(f"--extra={flag}" for flag in shrink)],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    names = [f"config={c}_seed=0" for c in ("synthetic_smoke", "au_guided_synthetic_smoke")]
    rows = _table_rows(result.stdout)
    assert [row.split()[0] for row in rows] == names  # in the order of the runs
    assert all(row.split()[1] != "-" for row in rows)  # best validation accuracy of each
    for i, name in enumerate(names, 1):
        assert f"[{i}/2] finished {tmp_path / name} in " in result.stdout
        assert '"stopped": "completed"' in (tmp_path / name / "log.txt").read_text()


def test_explanation_table_takes_the_columns_of_the_measurements_that_ran():
    def report(occlusion, spearman, accuracy):
        return {"classification": {"accuracy": accuracy}, "videos": 10, "seconds": {"a": 2.0},
                "methods": {
                    "Flat": {"occlusion": {"mean_difference": 0.0, "difference": [[0.0]]},
                             "randomisation": {"final_spearman": 0.9}},
                    "Good": {"occlusion": {"mean_difference": occlusion,
                                           "difference": [[occlusion + 0.1]]},
                             "randomisation": {"final_spearman": spearman}}}}

    table = sweep.explanation_table([report(0.3, 0.1, 0.8), report(0.5, 0.3, 0.6)])
    lines = table.splitlines()
    assert "occlusion difference (mean)" in lines[0] and "randomisation ρ ↓" in lines[0]
    assert "deletion" not in lines[0]  # not in the reports: no column
    assert lines[2].startswith("| 1 | Good | 0.400 ± 0.141 | 0.500 ± 0.141 | 0.200 ± 0.141 |")
    assert lines[3].startswith("| 2 | Flat | 0.000 ± 0.000 |")
    assert "Test accuracy 0.700 ± 0.141 over 10 videos" in table
