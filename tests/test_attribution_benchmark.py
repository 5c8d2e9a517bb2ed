"""benchmarks/attribution.py against the reference libraries at a tiny size: one clip of
16×32×32, two pairs of pytorch-grad-cam (one that cannot take video), two of Captum, one of
Zennit and RISE (no reference). Checks the printed rows, the JSON rows, and that each pair
computes the same map as its reference to 1e-4 of its maximum. (The random methods' check on
shared draws costs more compilation than this test's budget; their parity is tested in
test_gradient_variants.py and test_perturbation.py.)"""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the references run on PyTorch (pip install '.[interop]')")
pytest.importorskip("captum", reason="pip install --no-deps captum==0.9.0")
for _module, _install in (("pytorch_grad_cam", "grad-cam==1.5.7 ttach"),
                          ("zennit", "zennit==0.5.1")):
    if importlib.util.find_spec(_module) is None:  # both import torchvision: not imported here
        pytest.skip(f"pip install --no-deps {_install}", allow_module_level=True)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their helpers (timing) by name
try:  # under its own name: 'attribution' is also fer_jax.attribution
    _spec = importlib.util.spec_from_file_location("attribution_benchmark",
                                                   BENCHMARKS / "attribution.py")
    bench = sys.modules["attribution_benchmark"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(bench)
finally:
    sys.path.remove(str(BENCHMARKS))

PAIRS = {"grad_cam": "pytorch-grad-cam", "ablation_cam": "pytorch-grad-cam",
         "saliency": "captum", "input_x_gradient": "captum", "lrp_epsilon_plus_flat": "zennit",
         "rise": "captum"}


def test_reference_rows_at_a_tiny_size(tmp_path, capsys):
    path = tmp_path / "references.json"
    result = bench.main(["--batch", "1", "--repeats", "1", "--steps", "1", "--clip", "16", "32",
                         "32", "--no-cost", "--methods", *PAIRS, "--json", str(path)])
    out = capsys.readouterr().out
    assert json.loads(path.read_text()) == result
    assert result["environment"]["clip"] == [16, 32, 32, 3]
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == set(PAIRS) and all(r["table"] == "reference" for r in rows.values())
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()
             and line.split()[0] in PAIRS}
    assert set(lines) == set(PAIRS)
    for name in ("grad_cam", "saliency", "input_x_gradient", "lrp_epsilon_plus_flat"):
        row = rows[name]
        assert row["library"] == PAIRS[name] and row["ours_s"] > 0 and row["reference_s"] > 0
        assert row["ratio"] == pytest.approx(row["reference_s"] / row["ours_s"])
        # the same computation on both sides: a wrong weight, target, layout or setting of
        # either shows as a difference of order 1
        assert row["difference"] <= 1e-4, (name, row)
        assert lines[name].split()[1] == PAIRS[name] and f"{row['difference']:.1e}" in lines[name]
    assert rows["grad_cam"]["compared"] == "maps at the layer's resolution 2×2×2"
    assert rows["saliency"]["compared"] == "outputs"
    # pytorch-grad-cam's Ablation-CAM takes 4-D activations only; Captum has no RISE
    assert "cannot run on video: its AblationLayer repeats 4-D" in lines["ablation_cam"]
    assert "RuntimeError" in rows["ablation_cam"]["unavailable"]
    assert "Captum has no RISE" in lines["rise"] and "ours_s" not in rows["rise"]
    assert "max |logit difference|" in out
