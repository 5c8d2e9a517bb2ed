"""Every Python block of README.md runs as shown, each in a fresh Python process started in the
repository root (so relative paths such as ``configs/...`` resolve as for a user, and what one
block loads does not stay in the test process)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(), re.S | re.M)


def test_the_readme_has_python_blocks():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[
    re.sub(r"\W+", "_", block.splitlines()[-1])[:40] for block in BLOCKS])
def test_readme_python_block_runs(index, tmp_path):
    # Files a block writes (runs/...) go to a temporary folder instead of the checkout.
    source = BLOCKS[index].replace('"runs/', f'"{tmp_path}/runs/')
    script = tmp_path / f"readme_block_{index + 1}.py"
    script.write_text(source)
    result = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, f"README.md block {index + 1}:\n{result.stderr[-3000:]}"
