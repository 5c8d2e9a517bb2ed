"""Stopping a training run cleanly: SIGTERM (preemption) and Ctrl-C save a checkpoint at the
end of the step in progress and end the run with ``Preempted``; the same command resumes."""
from __future__ import annotations

import signal
import sys
import threading

import jax
import numpy as np
from jax.experimental import multihost_utils


class Preempted(Exception):
    """SIGTERM or Ctrl-C stopped the run after saving a checkpoint (run the command again to
    resume); ``signal_name`` says which."""

    def __init__(self, message: str, signal_name: str = "SIGTERM"):
        super().__init__(message)
        self.signal_name = signal_name


class StopRequest:
    """SIGTERM and SIGINT (Ctrl-C) handler for the duration of a training run: the signal only
    sets a flag, and the training loop saves a checkpoint and stops at the end of the step in
    progress. A second Ctrl-C stops at once (KeyboardInterrupt; the last checkpoint stays).

    With several processes each receives its own signal, at its own step; they must stop
    together (checkpoints are collective), so the flag is only read at steps every process
    reaches (``agreed``: log and checkpoint steps), where one small all-gather tells whether
    any process was asked to stop."""

    def __init__(self):
        self.requested = False
        self.signal_name = "SIGTERM"
        self._previous = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(signum) is not signal.SIG_IGN:  # e.g. nohup, `cmd &`
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if signum == signal.SIGINT:
            print("\nfer_jax: Ctrl-C: saving a checkpoint at the end of this step (press it "
                  "again to stop at once)", file=sys.stderr, flush=True)
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def agreed(self, sync_point: bool) -> bool:
        """Whether to stop after this step: the flag itself in a single process; with several,
        at ``sync_point`` steps whether any process has it, else False."""
        if jax.process_count() == 1:
            return self.requested
        if not sync_point:
            return False
        return bool(multihost_utils.process_allgather(np.int32(self.requested)).any())

    def stopped(self, step: int) -> "Preempted":
        """The exception that ends the run after the checkpoint of ``step`` is saved."""
        return Preempted(preempted_message(step, self.signal_name), self.signal_name)

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}


def preempted_message(step: int, signal_name: str = "SIGTERM") -> str:
    how = "Ctrl-C" if signal_name == "SIGINT" else signal_name
    return (f"stopped by {how} after step {step}; checkpoint saved, run the same command "
            "to resume")
