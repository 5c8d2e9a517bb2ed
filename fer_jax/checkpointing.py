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
the next older one is used instead; both events are logged. When no checkpoint is readable,
nothing is moved and the run stops with a ``UserError`` naming them (a fresh start would
replace ``best/``), and a checkpoint written by a config of other shapes is refused as such
(it is intact, so it is neither moved nor treated as corrupt).
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
        if keep < 1:  # Orbax's max_to_keep=0 deletes every checkpoint, the old ones included
            raise UserError(f"train.keep_checkpoints must be at least 1, got {keep}")
        for folder in ("checkpoints", "best"):
            path = self.workdir / folder
            if path.exists() and not path.is_dir():
                raise UserError(f"{path} is not a directory; move it out of the way or choose "
                                "another --workdir")
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
        for manager in (self.latest, self.best):
            _await_tmp_cleanup(manager)  # the run may stop right below (UserError)
        target = _abstract(template)
        unreadable = []  # (step, error), newest first; moved away once an older one loads
        for step in sorted(self.latest.all_steps(), reverse=True):
            items = dict(state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore(),
                         progress=ocp.args.JsonRestore())
            if sampler_template is not None:
                items["sampler"] = ocp.args.StandardRestore(sampler_template)
            # Checked before reading: Orbax would fail on the first mismatched array only
            # after logging the others' failures.
            difference = _shape_difference(self.latest, step, target)
            if difference is None:
                try:
                    restored = self.latest.restore(step, args=ocp.args.Composite(**items))
                except Exception as e:  # noqa: BLE001 — any read failure means "unusable"
                    if "structure" not in str(e):
                        unreadable.append((step, e))
                        continue
                    difference = "another tree of arrays"
            if difference is not None:  # readable, but written by another experiment
                raise UserError(
                    f"checkpoint step {step} in {self.latest.directory} holds a train state "
                    f"of another structure than this config builds ({difference}; model or "
                    "optimizer settings changed); use the original config or a new --workdir")
            for bad_step, error in unreadable:
                self._quarantine(bad_step, error)
            logging.info("Resuming from checkpoint step %d in %s", step, self.latest.directory)
            sampler = restored.sampler if sampler_template is not None else None
            return restored.state, restored.data, restored.progress, sampler
        if unreadable:
            steps = ", ".join(str(step) for step, _ in unreadable)
            raise UserError(
                f"no readable checkpoint in {self.latest.directory} (step {steps}: "
                f"{_first_line(unreadable[0][1])}); nothing was changed: move that folder "
                "away to train from scratch, or use a new --workdir")
        return None

    def restore_variables(self, sharding: jax.sharding.Sharding, prefer_best: bool = True,
                          template: Any = None) -> tuple[dict, str, int]:
        """Model variables (``{'params', **model_state}``) of the best (else newest) readable
        checkpoint, placed with ``sharding`` (whatever the device topology they were saved
        from) → ``(variables, which, step)``. ``template`` (arrays or ShapeDtypeStructs of
        the variables this config builds) makes a checkpoint of other shapes a one-line
        error instead of a failure when the model is applied."""
        sources = [("best", self.best), ("latest", self.latest)]
        for _, manager in sources:
            _await_tmp_cleanup(manager)
        if not prefer_best:
            sources.reverse()
        unreadable = []
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
                    unreadable.append((f"{Path(manager.directory).name}/{step}", e))
                    continue
                state = restored.state
                variables = {"params": state["params"], **(state.get("model_state") or {})}
                difference = template and _difference(_shapes(variables), _shapes(template))
                if difference:
                    raise UserError(
                        f"checkpoint {Path(manager.directory).name}/{step} in {self.workdir} "
                        f"holds another model than this config builds ({difference}); use "
                        "the config it was trained with")
                return variables, which, step
        if unreadable:
            names = ", ".join(name for name, _ in unreadable)
            raise UserError(f"no readable checkpoint in {self.workdir}: {names} cannot be read "
                            f"({_first_line(unreadable[0][1])}); they are left in place: "
                            "restore them from a copy, or train again with a new --workdir")
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


def has_checkpoints(workdir: str | Path) -> bool:
    """Whether ``workdir`` holds a finished checkpoint step in ``checkpoints/`` or ``best/``
    (a folder named by its step; Orbax's temporary folders do not count)."""
    return any(path.is_dir() and path.name.isdigit()
               for folder in ("checkpoints", "best") if (Path(workdir) / folder).is_dir()
               for path in (Path(workdir) / folder).iterdir())


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):  # GetAttrKey, DictKey, SequenceKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _shapes(tree: Any) -> dict[str, tuple]:
    """``'params/blocks_0/…' → shape`` of every array of ``tree`` (a train state or the
    saved metadata of one: attribute, dict and sequence keys name paths alike)."""
    return {"/".join(_key_name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            if hasattr(leaf, "shape")}


def _shape_difference(manager: ocp.CheckpointManager, step: int, target: Any) -> str | None:
    """How the train state saved at ``step`` differs in array paths or shapes from
    ``target`` ('params/x saved (8, 32), this config builds (8, 64)'), or None when they agree
    or the saved metadata cannot be read (a corrupt checkpoint)."""
    try:
        saved = _shapes(manager.item_metadata(step)["state"])
    except Exception:  # noqa: BLE001 — unreadable metadata: corrupt, not another experiment
        return None
    return _difference(saved, _shapes(target)) if saved else None


def _difference(saved: dict[str, tuple], wanted: dict[str, tuple]) -> str | None:
    """The first array path whose presence or shape differs between two ``_shapes`` maps,
    described for a message; None when they agree."""
    for path in sorted(set(saved) | set(wanted), key=lambda p: (not p.startswith("params"), p)):
        if path not in wanted:
            return f"{path} is saved but this config builds no such array"
        if path not in saved:
            return f"this config builds {path}, which is not saved"
        if saved[path] != wanted[path]:
            return f"{path} saved {saved[path]}, this config builds {wanted[path]}"
    return None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]
