"""Wall-clock timing shared by the benchmark scripts."""
import time


def seconds_per_call(fn, steps: int) -> float:
    """Seconds per call of ``fn`` (which blocks until done), after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps
