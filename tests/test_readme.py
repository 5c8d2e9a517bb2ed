"""Every Python block of README.md runs as shown, each in a fresh namespace, from the
repository root (so relative paths such as ``configs/...`` resolve as for a user)."""
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[
    re.sub(r"\W+", "_", block.splitlines()[-1])[:40] for block in BLOCKS])
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    source = BLOCKS[index]
    monkeypatch.chdir(REPO)
    # Files a block writes (runs/...) go to a temporary folder instead of the checkout.
    source = source.replace('"runs/', f'"{tmp_path}/runs/')
    exec(compile(source, f"README.md block {index + 1}", "exec"), {"__name__": "readme"})
