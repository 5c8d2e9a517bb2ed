"""Orbax checkpoints of a training run: everything needed to resume exactly.

``WORKDIR/checkpoints/<step>/`` holds three items:
  * ``state``    — the train state pytree (params, model state such as BatchNorm statistics,
    optimiser state, step, RNG key);
  * ``data``     — the Grain iterator state (position in the epoch-spanning dataset);
  * ``progress`` — JSON: epoch bookkeeping, best metric, early-stopping counter, history,
                   running sums of the epoch in progress;
  * ``sampler``  — only with a score-table clip sampler: its NumPy state (table, baselines).
The newest ``keep`` are kept. ``WORKDIR/best/<step>/`` keeps the state of the best epoch.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoints intact. A checkpoint that exists but cannot
be read (corrupted files) is moved to ``WORKDIR/corrupt_checkpoints/`` — never deleted — and
the next older one is used instead; both events are logged.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from fer_jax.errors import UserError

_HANDLERS = {"state": ocp.StandardCheckpointHandler, "data": ocp.JsonCheckpointHandler,
             "progress": ocp.JsonCheckpointHandler, "sampler": ocp.StandardCheckpointHandler}


def _manager(directory: Path, keep: int, items) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           cleanup_tmp_directories=True)
    return ocp.CheckpointManager(directory, options=options,
                                 item_handlers={k: _HANDLERS[k]() for k in items})


def _await_tmp_cleanup(manager: ocp.CheckpointManager) -> None:
    """Waits for the temporary-directory cleanup a manager starts in the background when it
    is created. Orbax awaits it only before a save (``close`` does not): a manager used just
    to restore, in a process that then exits at once (e.g. "no readable checkpoint"), would
    otherwise leave the thread running into interpreter shutdown, which prints a
    "cannot schedule new futures after interpreter shutdown" traceback."""
    wait = getattr(manager, "_maybe_await_cleanup_tmp_directory", None)  # private; orbax 0.12.8
    if wait is not None:
        wait()


def _snapshot(item: dict) -> dict:
    """A deep, JSON-only copy of ``item``."""
    return json.loads(json.dumps(item))


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) describing ``tree``, the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpoints:
    """The run's latest-N and best checkpoints under ``workdir``."""

    def __init__(self, workdir: str | Path, keep: int):
        self.workdir = Path(workdir)
        self.latest = _manager(self.workdir / "checkpoints", keep, tuple(_HANDLERS))
        self.best = _manager(self.workdir / "best", 1, ("state", "progress"))

    def save(self, step: int, state: Any, data_state: dict, progress: dict,
             sampler: dict | None = None) -> None:
        """Saves a resumable checkpoint at ``step`` (asynchronously); ``sampler`` is the clip
        sampler's ``state_dict()`` (NumPy arrays) when there is one.

        The JSON items are serialised in a background thread, so they are snapshotted here:
        the caller may go on mutating ``progress`` at once."""
        items = dict(state=ocp.args.StandardSave(state),
                     data=ocp.args.JsonSave(_snapshot(data_state)),
                     progress=ocp.args.JsonSave(_snapshot(progress)))
        if sampler is not None:
            items["sampler"] = ocp.args.StandardSave(sampler)
        self.latest.save(step, args=ocp.args.Composite(**items))

    def save_best(self, step: int, state: Any, summary: dict) -> None:
        """Keeps ``state`` as the best checkpoint (replacing the previous best)."""
        self.best.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(summary)))

    def restore_latest(self, template: Any, sampler_template: dict | None = None
                       ) -> tuple[Any, dict, dict, dict | None] | None:
        """``(state, data_state, progress, sampler_state)`` of the newest readable checkpoint,
        or None if there is none. ``template`` is a freshly initialised state (gives
        shapes/shardings); ``sampler_template`` a fresh sampler ``state_dict()`` when the run
        has a clip sampler (``sampler_state`` is None otherwise)."""
        target = _abstract(template)
        for step in sorted(self.latest.all_steps(), reverse=True):
            items = dict(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(),
                         progress=ocp.args.JsonRestore())
            if sampler_template is not None:
                items["sampler"] = ocp.args.StandardRestore(sampler_template)
            try:
                restored = self.latest.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # noqa: BLE001 — any read failure means "unusable"
                if "structure" in str(e):  # readable, but written by another experiment
                    raise UserError(
                        f"checkpoint step {step} in {self.latest.directory} holds a train state "
                        "of another structure than this config builds (model or optimizer "
                        "settings changed); use the original config or a new --workdir"
                    ) from None
                self._quarantine(step, e)
                continue
            logging.info("Resuming from checkpoint step %d in %s", step, self.latest.directory)
            sampler = restored.sampler if sampler_template is not None else None
            return restored.state, restored.data, restored.progress, sampler
        return None

    def restore_variables(self, sharding: jax.sharding.Sharding,
                          prefer_best: bool = True) -> tuple[dict, str, int]:
        """Model variables (``{'params', **model_state}``) of the best (else newest) readable
        checkpoint, placed with ``sharding`` (whatever the device topology they were saved
        from) → ``(variables, which, step)``."""
        sources = [("best", self.best), ("latest", self.latest)]
        for _, manager in sources:
            _await_tmp_cleanup(manager)
        if not prefer_best:
            sources.reverse()
        for which, manager in sources:
            for step in sorted(manager.all_steps(), reverse=True):
                try:
                    metadata = manager.item_metadata(step)["state"]
                    target = jax.tree.map(
                        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                        dict(metadata))
                    restored = manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target)))
                except Exception as e:  # noqa: BLE001
                    logging.warning("Cannot read %s checkpoint %d (%s); trying an older one.",
                                    which, step, _first_line(e))
                    continue
                state = restored.state
                return {"params": state["params"], **(state.get("model_state") or {})}, which, step
        raise UserError(f"no readable checkpoint in {self.workdir}; train first with "
                        f"--mode=train --workdir={self.workdir}")

    def _quarantine(self, step: int, error: Exception) -> None:
        source = Path(self.latest.directory) / str(step)
        target = self.workdir / "corrupt_checkpoints" / str(step)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(source), str(target))
        self.latest.reload()
        logging.warning("Checkpoint step %d is unreadable (%s); moved it to %s and falling back "
                        "to the previous checkpoint.", step, _first_line(error), target)
        print(f"warning: checkpoint step {step} is unreadable; moved to {target}, "
              "falling back to the previous one", flush=True)

    def wait(self) -> None:
        """Blocks until asynchronous saves have finished."""
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
