"""benchmarks/accelerator.py: its main function at reduced size on the CPU (compiled with the
test suite's XLA_FLAGS, conftest.py; the times are not checked, only that the figures of
every row agree with each other and that the rows cover every setting)."""
import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their helpers (timing) by name
try:
    import accelerator
finally:
    sys.path.remove(str(BENCHMARKS))


def test_reduced_run_writes_consistent_rows_for_every_setting(tmp_path):
    path = tmp_path / "accelerator.json"
    result = accelerator.main([
        "--models", "timesformer", "--precisions", "float32,float16",
        "--attention", "explicit,xla,cudnn", "--steps", "1", "--batch", "2",
        "--peak-tflops", "0.5", "--quiet", "--json", str(path)])
    assert json.loads(path.read_text()) == result
    environment = result["environment"]
    assert environment["backend"] == "cpu" and environment["reduced"] is True
    rows = result["rows"]
    assert [(r["model"], r["precision"], r["attention"]) for r in rows] == [
        ("timesformer", p, a) for p in ("float32", "float16")
        for a in ("explicit", "xla", "cudnn")]
    by_setting = {(r["model"], r["precision"], r["attention"]): r for r in rows}
    for precision in ("float32", "float16"):
        cudnn = by_setting["timesformer", precision, "cudnn"]
        assert cudnn["status"] == "skipped" and "NVIDIA GPU" in cudnn["reason"]
    # float16 inside jax.nn.dot_product_attention asks for a dot algorithm XLA's CPU backend
    # may lack: such a row reports the compiler's error instead of stopping the benchmark.
    fused16 = by_setting["timesformer", "float16", "xla"]
    assert fused16["status"] == "ok" or (fused16["status"] == "unsupported"
                                         and fused16["reason"])
    measured = [r for r in rows if r["status"] == "ok"]
    assert len(measured) >= 3
    for r in measured:
        assert r["batch"] == 2 and r["input"] == [8, 32, 32, 3]  # the :smoke config's clips
        assert r["step_seconds"] > 0 and r["flops"] > 0
        assert r["clips_per_second"] == pytest.approx(2 / r["step_seconds"])
        assert r["tflops_per_second"] == pytest.approx(r["model_flops"] / r["step_seconds"]
                                                       / 1e12)
        assert r["peak_tflops"] == 0.5 and r["peak_source"] == "--peak-tflops"
        assert r["mfu"] == pytest.approx(r["tflops_per_second"] / 0.5)
        assert r["peak_bytes"] > 0 and r["peak_bytes_source"] == "compiled.memory_analysis"
        explicit = by_setting[r["model"], r["precision"], "explicit"]
        assert r["model_flops"] == explicit["flops"]  # a fused row counts the explicit step
    table = accelerator.format_table(rows)
    assert len(table.splitlines()) == 1 + len(rows) and "skipped: cuDNN" in table


@pytest.mark.parametrize("kind, precision, name, peak", [
    ("NVIDIA H100 80GB HBM3", "bfloat16", "NVIDIA H100 SXM", 989.5),
    ("NVIDIA H200", "float32", "NVIDIA H200 SXM", 494.5),
    ("NVIDIA A100-SXM4-80GB", "float16", "NVIDIA A100", 312.0),
    ("NVIDIA L4", "bfloat16", "NVIDIA L4", 121.0),
    ("TPU v5 lite", "bfloat16", "TPU v5e", 197.0),
    ("TPU v5p", "bfloat16", "TPU v5p", 459.0),
    ("TPU v4", "float16", "TPU v4", None),
    ("NVIDIA H100 PCIe", "bfloat16", None, None),  # another clock and power: not in the table
    ("cpu", "float32", None, None),
])
def test_device_peaks(kind, precision, name, peak):
    assert accelerator.device_peak(kind, precision) == (name, peak)
