"""One writer per workdir: an exclusive OS lock held by the training run that writes it.

>>> with WorkdirLock(workdir):      # UserError at once if another run holds it
...     train ...

The lock is ``fcntl.flock`` on ``WORKDIR/.lock``: the kernel releases it when the holding
process exits in any way (SIGKILL and crashes included), so a killed run never leaves the
workdir locked. The file also records who holds it (pid, host, start time, command) for the
refusal message; its content is informational, the flock is what counts. Readers
(``--mode=eval`` / ``explain`` / ``report`` / ``predict``, ``model.init_from``) take no lock:
they open checkpoints read-only and may run while a training writes.

flock is per host: on a network file system shared by several machines, two machines are not
kept apart unless the file system forwards flock (NFSv4 and Lustre with ``flock`` mounts do).
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from fer_jax.errors import UserError

LOCK_FILE = ".lock"


class WorkdirLock:
    """The exclusive writer lock of ``workdir`` (created if missing)."""

    def __init__(self, workdir: str | Path):
        self.path = Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> dict:
        """Who wrote the lock file last: ``{'pid', 'host', 'started', 'command'}`` (empty
        when the file is missing or unreadable)."""
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "WorkdirLock":
        """Takes the lock or raises a one-line ``UserError`` naming the holder."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            who = self.holder()
            since = (time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(who["started"]))
                     if isinstance(who.get("started"), (int, float)) else "")
            raise UserError(f"workdir {self.path.parent} is being written by another run (pid "
                            f"{who.get('pid', '?')} on {who.get('host', '?')}{since}); wait "
                            f"for it to finish or stop it, or use another --workdir") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                  "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(record).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
