"""Files that are either whole or absent: write to a temporary file beside the target, flush
it to disk, then rename it over the target (``os.replace`` is atomic on POSIX file systems).

A reader — another process, a sweep deciding whether a run is done, a rerun after a crash or a
full disk — sees the previous file or the new one, never a truncated one.

>>> write_atomic(workdir / "metrics.json", json.dumps(result))
>>> read_json(workdir / "metrics.json")          # None when missing or unreadable
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from fer_jax.errors import UserError


def disk_error(error: OSError, path: Path | str, what: str) -> UserError:
    """The one-line error for an ``OSError`` met while writing ``what`` to ``path``."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return UserError(f"disk full: cannot write {what} to {path} "
                         f"({error.strerror}); free some space and run the same command again")
    return UserError(f"cannot write {what} to {path}: {error.strerror or error}")


def write_atomic(path: str | Path, data: str | bytes, what: str = "") -> Path:
    """Writes ``data`` (text as UTF-8, or bytes) to ``path`` atomically; parent folders are
    created. On failure (a full disk included) the previous ``path`` is left as it was, the
    temporary file is removed and a one-line ``UserError`` is raised."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                         dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as e:
        raise disk_error(e, path, what or path.name) from None
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass
    return path


def write_json(path: str | Path, value, what: str = "") -> Path:
    """``write_atomic`` of ``value`` as indented JSON."""
    return write_atomic(path, json.dumps(value, indent=2), what)


def read_json(path: str | Path, kind: type = dict):
    """The JSON value of ``path`` when it exists, parses and is a ``kind``; else None."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, kind) else None
