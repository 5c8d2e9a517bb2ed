"""launch/sweep.py on finished runs: the summary table (with the AU-alignment columns) and
the plot against a swept setting."""
import importlib.util
import json
from pathlib import Path

import pytest

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
