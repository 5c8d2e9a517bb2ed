"""benchmarks/pipeline.py: its main function with --reduced (records written by --mode=preprocess
into a temporary cache; the rates are not checked, only that every row's figures agree with
each other and with the floor, and that bad flags are one-line errors)."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("dlib", reason="the benchmark's records are made with the dlib backend")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import their helpers (timing) by name
try:  # under its own name: 'pipeline' is also fer_jax.data.pipeline
    _spec = importlib.util.spec_from_file_location("pipeline_benchmark",
                                                   BENCHMARKS / "pipeline.py")
    bench = sys.modules["pipeline_benchmark"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(bench)
finally:
    sys.path.remove(str(BENCHMARKS))


@pytest.mark.slow  # records by --mode=preprocess, a Grain worker process
def test_reduced_run_writes_consistent_rows(tmp_path):
    path = tmp_path / "pipeline.json"
    argv = ["--reduced", "--models", "timesformer", "--workers", "0,1", "--quiet",
            "--cache", str(tmp_path / "cache"), "--json", str(path)]
    result = bench.main(argv)
    assert json.loads(path.read_text()) == result
    environment = result["environment"]
    assert environment["reduced"] is True and environment["cpu"]
    assert environment["cpu_count"] >= 1 and environment["clips"] == 16
    rows = result["rows"]
    assert [(r["stage"], r["workers"]) for r in rows] == [
        ("floor", None), ("read", None), ("load", None), ("pipeline", 0), ("pipeline", 1)]
    floor = rows[0]["cpu_ms_per_clip"]
    for r in rows:
        assert r["model"] == "timesformer" and r["batch"] == 2
        assert r["clip"] == [8, 48, 48, 3] and r["stored_frame"] == [48, 48, 3]
        assert r["videos"] == 6 and r["frames_per_video"] == 12  # 1 actor × 6 emotions
        assert r["jpeg_bytes_per_frame"] > 0 and r["records_seconds"] > 0
        assert r["clips_per_second"] > 0 and r["cpu_ms_per_clip"] > 0
        assert r["per_worker"] == pytest.approx(r["clips_per_second"]
                                                / max(r["workers"] or 1, 1))
        if r["stage"] == "read":  # a part of the work: no overhead, no cores
            assert r["overhead"] is None and r["cores_per_100"] is None
            continue
        assert r["overhead"] == pytest.approx(r["cpu_ms_per_clip"] / floor - 1)
        assert r["cores_per_100"] == pytest.approx(r["cpu_ms_per_clip"] / 10)
    assert rows[0]["overhead"] == 0
    lines = [bench.HEADER, *map(bench.format_row, rows)]
    assert len(lines) == 6 and "workers=1" in lines[-1] and "floor" in lines[1]
    assert all(len(line.split()) == 8 for line in lines[1:]) and "CPU ms/clip" in lines[0]

    config, seconds = bench.records("timesformer", tmp_path / "cache", 12, reduced=True)
    assert seconds == 0 and config.input.image_size == 48  # reused from the cache


@pytest.mark.parametrize("argv, message", [
    (["--workers", "1,x"], "--workers takes comma-separated counts >= 0"),
    (["--workers", "-1"], "--workers takes comma-separated counts >= 0"),
    (["--models", "c3d"], "unknown model 'c3d'; choose from timesformer, resnet3d_18"),
    (["--clips", "0", "--reduced"], "--clips and --repeats must be >= 1"),
    (["--frames", "4"], "--frames must be >= 10"),
])
def test_bad_flags_are_one_line_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit):
        bench.main([*argv, "--cache", str(tmp_path)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0]
