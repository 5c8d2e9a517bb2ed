"""Score-table sampling inside training: artifacts and test-time pooling (its exact resume
after SIGKILL in the exploitation: test_preemption.py)."""
import json

import numpy as np
import pytest

import shared_runs

pytestmark = pytest.mark.slow  # end-to-end: deselect with -m 'not slow'


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return shared_runs.sampler_reference(tmp_path_factory)


def test_run_writes_sampler_results_and_maps(reference):
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["sampler"]["name"] == "stochastic_softmax"
    assert metrics["sampler"]["maps"] == 2
    correlation = metrics["sampler"]["table_vs_intensity"]
    assert correlation["videos"] > 0 and -1 <= correlation["spearman_mean"] <= 1
    maps = sorted((reference / "sampling_maps").glob("video_*.png"))
    assert len(maps) == 2 and all(p.stat().st_size > 5000 for p in maps)
    # Test-time pooling over every clip of the full videos evaluated every video.
    assert metrics["final_validation"]["count"] == 20
    step, _, sampler, _ = shared_runs.final_state(reference)
    assert step == 9
    assert any(np.ptp(v) > 0 for k, v in sampler.items() if v.dtype == np.float32)
