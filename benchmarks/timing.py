"""Wall-clock timing, the host's name and the JSON result, shared by the benchmark scripts."""
import json
import platform
import time
from pathlib import Path


def seconds_per_call(fn, steps: int) -> float:
    """Seconds per call of ``fn`` (which blocks until done), after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def cpu_name() -> str:
    """The host CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def result(environment: dict, rows: list, path: str | None) -> dict:
    """A benchmark's result, ``{"environment": …, "rows": […]}``, also written to ``path`` as
    indented JSON when one is given."""
    out = {"environment": environment, "rows": rows}
    if path:
        Path(path).write_text(json.dumps(out, indent=2) + "\n")
    return out
