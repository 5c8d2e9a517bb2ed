"""Wall-clock timing and the host's name, shared by the benchmark scripts."""
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
