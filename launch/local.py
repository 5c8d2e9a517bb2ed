"""Starts N processes of one command on this machine, joined by JAX's distributed runtime.

  python launch/local.py --processes=2 [--port=P] [--devices_per_process=K] -- \
      python -m fer_jax.main --config=configs/synthetic.py --workdir=runs/two_processes

Process i (0 ≤ i < N) runs the command with ``--coordinator_address=localhost:P
--num_processes=N --process_id=i`` appended, the flags with which ``fer_jax.main`` joins a
multi-process run; process 0 is the coordinator. Each process sees K CPU devices
(``JAX_PLATFORMS=cpu``, ``--xla_force_host_platform_device_count=K`` added to the inherited
``XLA_FLAGS``; default 1), so the run's mesh spans N × K devices: a way to try multi-process
training, checkpointing and data loading without a cluster. Without ``--port`` a free port
is picked.

Every line a process prints is shown prefixed with ``[i]``. The launcher waits for all
processes; when one fails, it stops the others (SIGTERM, which makes fer_jax save a
checkpoint) and exits with that process's exit code (1 if it died of a signal) and the line
``local: process i of N failed with exit code C; stopped the others``. Ctrl-C stops all of
them.
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import threading
import time


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Launcher options before ``--``, the command after it."""
    parser = argparse.ArgumentParser(
        usage="python launch/local.py --processes=N [--port=P] [--devices_per_process=K] "
              "-- COMMAND [ARG ...]",
        description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, required=True, help="number of processes")
    parser.add_argument("--port", type=int, default=0,
                        help="coordinator port on localhost (default: a free one)")
    parser.add_argument("--devices_per_process", type=int, default=1, metavar="K",
                        help="CPU devices of each process (default 1)")
    if "--" not in argv:
        parser.print_usage(sys.stderr)
        parser.exit(2, "local.py: error: give the command to run after --\n")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1:]
    if not command:
        parser.error("the command after -- is empty")
    if args.processes < 1 or args.devices_per_process < 1:
        parser.error("--processes and --devices_per_process must be at least 1")
    return args, command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def child_env(devices: int) -> dict[str, str]:
    """This environment with JAX on K CPU devices (any device count in XLA_FLAGS replaced)."""
    inherited = re.sub(r"--xla_force_host_platform_device_count=\S*", "",
                       os.environ.get("XLA_FLAGS", ""))
    flags = " ".join(inherited.split() + [f"--xla_force_host_platform_device_count={devices}"])
    # Unbuffered Python output, so that the lines of the processes interleave as they happen.
    return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags, PYTHONUNBUFFERED="1")


def child_command(command: list[str], port: int, processes: int, index: int) -> list[str]:
    return [*command, f"--coordinator_address=localhost:{port}",
            f"--num_processes={processes}", f"--process_id={index}"]


def relay(index: int, stream, lock: threading.Lock) -> None:
    """Copies the lines of a process's output to stdout, each prefixed with ``[index]``."""
    for line in stream:
        text = line.rstrip("\n")
        with lock:
            sys.stdout.write(f"[{index}] {text}\n")
            sys.stdout.flush()
    stream.close()


def start(commands: list[list[str]], env: dict[str, str]
          ) -> tuple[list[subprocess.Popen], list[threading.Thread]]:
    lock = threading.Lock()
    processes, relays = [], []
    for i, argv in enumerate(commands):
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   text=True, errors="replace")
        relays.append(threading.Thread(target=relay, args=(i, process.stdout, lock),
                                       daemon=True))
        relays[-1].start()
        processes.append(process)
    return processes, relays


def first_failure(processes: list[subprocess.Popen]) -> int | None:
    """Waits until all processes succeed (None) or one fails (its index)."""
    while True:
        codes = [p.poll() for p in processes]
        failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
        if failed:
            return failed[0]
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.1)


def stop(processes: list[subprocess.Popen], grace: float = 30.0) -> None:
    """SIGTERM to the processes still running; SIGKILL to those left after ``grace`` s."""
    running = [p for p in processes if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: list[str] | None = None) -> int:
    args, command = parse_args(sys.argv[1:] if argv is None else argv)
    port = args.port or free_port()
    commands = [child_command(command, port, args.processes, i) for i in range(args.processes)]
    processes, relays = start(commands, child_env(args.devices_per_process))
    try:
        failed = first_failure(processes)
    except KeyboardInterrupt:
        stop(processes)
        print("local: interrupted; stopped all processes", file=sys.stderr)
        return 130
    if failed is not None:
        stop(processes)
    for thread in relays:
        thread.join(timeout=5)
    if failed is None:
        return 0
    code = processes[failed].returncode
    print(f"local: process {failed} of {args.processes} failed with exit code {code}; "
          "stopped the others", file=sys.stderr, flush=True)
    return code if code > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
