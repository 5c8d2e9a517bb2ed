"""Orbax checkpoints of a training run: everything needed to resume exactly.

``WORKDIR/checkpoints/<step>/`` holds three items:
  * ``state``    — the train state pytree (params, model state such as BatchNorm statistics,
    optimiser state, step, RNG key);
  * ``data``     — the Grain iterator state (position in the epoch-spanning dataset);
  * ``progress`` — JSON: epoch bookkeeping, best metric, early-stopping counter, history,
                   running sums of the epoch in progress;
  * ``sampler``  — only with a score-table clip sampler: its NumPy state (table, baselines).
The newest ``keep`` are kept. ``WORKDIR/best/<step>/`` keeps the state of the best epoch.

Integrity: every saved train state carries a fingerprint of each of its arrays (a positional
checksum of the raw bits, computed on device; ``fingerprints``) in its JSON item, checked
after every restore; a checkpoint whose arrays read back different bits, or whose JSON items
parse but lack what a run needs, is unreadable like a damaged one. Only the training run
writes (``Checkpoints(read_only=False)``, under ``workdir_lock``); readers open the folders
read-only and never move, clean up or create anything, so they can run during training.

Orbax writes each checkpoint to a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous checkpoints intact. A checkpoint that exists but cannot
be read (corrupted files) is moved to ``WORKDIR/corrupt_checkpoints/`` — never deleted — and
the next older one is used instead; both events are logged. When no checkpoint is readable,
nothing is moved and the run stops with a ``UserError`` naming them (a fresh start would
replace ``best/``), and a checkpoint written by a config of other shapes is refused as such
(it is intact, so it is neither moved nor treated as corrupt).
"""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from fer_jax.atomic_files import disk_error, read_json
from fer_jax.errors import UserError

_HANDLERS = {"state": ocp.StandardCheckpointHandler, "data": ocp.JsonCheckpointHandler,
             "progress": ocp.JsonCheckpointHandler, "sampler": ocp.StandardCheckpointHandler}


PROGRESS_KEYS = ("epoch", "history", "best", "best_epoch", "epochs_without_improvement",
                 "stopped", "train_sums")  # what a resumed run reads from ``progress``


class CorruptCheckpoint(Exception):
    """A checkpoint whose files parse but whose content is not what was saved."""


def _manager(directory: Path, keep: int, items, read_only: bool = False
             ) -> ocp.CheckpointManager:
    # A reader's manager creates nothing and cleans up nothing (Orbax deletes the temporary
    # folders of saves in progress at start-up otherwise); it never saves, so it never prunes.
    # (Orbax's own read_only option does the same but warns three times per manager.)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                           cleanup_tmp_directories=not read_only)
    # A reader lists the steps while a running training may prune one of them: the listing
    # then fails on the vanished folder, and is simply taken again.
    attempts = 5 if read_only else 1
    for attempt in range(attempts):
        try:
            return ocp.CheckpointManager(directory, options=options,
                                         item_handlers={k: _HANDLERS[k]() for k in items})
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def _await_tmp_cleanup(manager: ocp.CheckpointManager) -> None:
    """Waits for the temporary-directory cleanup a manager starts in the background when it
    is created. Orbax awaits it only before a save (``close`` does not): a manager used just
    to restore, in a process that then exits at once (e.g. "no readable checkpoint"), would
    otherwise leave the thread running into interpreter shutdown, which prints a
    "cannot schedule new futures after interpreter shutdown" traceback."""
    wait = getattr(manager, "_maybe_await_cleanup_tmp_directory", None)  # private; orbax 0.12.8
    if wait is not None:
        wait()


def _bits(leaf: jnp.ndarray) -> jnp.ndarray:
    """The raw bits of an array as uint32 [N] (8/16-bit types widened, 64-bit split)."""
    flat = jnp.ravel(leaf)
    if flat.dtype == jnp.bool_:
        return flat.astype(jnp.uint32)
    width = flat.dtype.itemsize
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[width]
    if width == 8:
        return jax.lax.bitcast_convert_type(flat, unsigned).reshape(-1)  # [N, 2] → [2N]
    return jax.lax.bitcast_convert_type(flat, unsigned).astype(jnp.uint32)


@jax.jit
def _fingerprint_arrays(leaves: list) -> jnp.ndarray:
    """uint32 [L]: Σ_i bits_i · (2i + 1) mod 2³² per leaf. Integer sums wrap exactly and do
    not depend on the reduction order, so the same bits give the same value on any device."""
    out = []
    for leaf in leaves:
        bits = _bits(leaf)
        weights = jnp.arange(bits.size, dtype=jnp.uint32) * jnp.uint32(2) + jnp.uint32(1)
        out.append(jnp.sum(bits * weights, dtype=jnp.uint32))
    return jnp.stack(out) if out else jnp.zeros((0,), jnp.uint32)


def _in_host_memory(leaf: Any) -> bool:
    """Whether NumPy can read ``leaf`` where it lies: a NumPy array or scalar, or a JAX array
    whose every shard is in this process's CPU memory."""
    if isinstance(leaf, jax.Array):
        return leaf.is_fully_addressable and all(d.platform == "cpu" for d in leaf.devices())
    return isinstance(leaf, (np.ndarray, np.generic, bool, int, float))


def _host_array(leaf: Any) -> np.ndarray:
    """``leaf`` as NumPy, with the dtype JAX would give it (64-bit types narrowed unless
    ``jax_enable_x64``), so both fingerprint paths see the same bits."""
    array = np.asarray(leaf)
    return array.astype(jax.dtypes.canonicalize_dtype(array.dtype), copy=False)


def _host_fingerprint(array: np.ndarray) -> int:
    """``_fingerprint_arrays`` of one array, computed by NumPy (uint32 products and sums wrap
    modulo 2³² as XLA's do)."""
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.dtype == np.bool_:
        bits = flat.astype(np.uint32)
    elif flat.dtype.itemsize == 8:
        bits = flat.view(np.uint32)  # little-endian: low word, then high word, as XLA
    else:
        bits = flat.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[flat.dtype.itemsize])
        bits = bits.astype(np.uint32)
    weights = np.arange(bits.size, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    return int(np.sum(bits * weights, dtype=np.uint32))


def fingerprints(tree: Any, compiled: bool | None = None) -> dict[str, int]:
    """``'params/…' → checksum`` of every array of ``tree`` (see ``_fingerprint_arrays``).

    Arrays in host memory (the CPU backend, NumPy) are summed by NumPy where they lie: the
    same values without compiling a program per state layout, which on CPU costs more than
    the sums. Arrays on accelerators, or spread over processes, go through the jitted sums
    (``compiled=True`` forces them, ``False`` NumPy; None chooses as said)."""
    pairs = jax.tree_util.tree_leaves_with_path(tree)
    if not pairs:
        return {}
    paths, leaves = zip(*pairs)
    if compiled is None:
        compiled = not all(_in_host_memory(leaf) for leaf in leaves)
    if not compiled:
        values = [_host_fingerprint(_host_array(leaf)) for leaf in leaves]
    else:
        values = np.asarray(jax.device_get(_fingerprint_arrays(list(leaves))))
    return {"/".join(_key_name(k) for k in path): int(v) for path, v in zip(paths, values)}


def _verify(state: Any, saved: dict | None) -> None:
    """Raises ``CorruptCheckpoint`` when an array of ``state`` does not have its ``saved``
    fingerprint (arrays are matched by path; checkpoints written before fingerprints existed
    have none and pass)."""
    if not saved:
        return
    now = fingerprints(state)
    bad = [path for path, value in saved.items() if path in now and now[path] != value]
    if bad:
        raise CorruptCheckpoint(f"{len(bad)} array(s) read back other bits than were saved "
                                f"(e.g. {bad[0]})")


@jax.jit
def _finite(leaves: list) -> jnp.ndarray:
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves] or [jnp.bool_(True)]))


def all_finite(tree: Any) -> bool:
    """Whether every floating-point array of ``tree`` is free of NaN and infinity (read by
    NumPy where the arrays are in host memory, as ``fingerprints`` does)."""
    leaves = [x for x in jax.tree.leaves(tree)
              if jnp.issubdtype(x.dtype if hasattr(x, "dtype") else np.result_type(x),
                                jnp.floating)]
    if all(_in_host_memory(x) for x in leaves):
        return all(bool(np.isfinite(_host_array(x)).all()) for x in leaves)
    return bool(_finite(leaves))


def _check_progress(progress: Any, data: Any) -> None:
    """Raises ``CorruptCheckpoint`` unless the JSON items hold what a resumed run reads: the
    bookkeeping of ``PROGRESS_KEYS`` and a data-iterator state with the keys it was saved
    with (``data_keys``, recorded since fingerprints were)."""
    if not isinstance(progress, dict) or any(k not in progress for k in PROGRESS_KEYS):
        raise CorruptCheckpoint("its progress item lacks the run's bookkeeping")
    keys = progress.get("data_keys")
    if not isinstance(data, dict) or not data or (keys is not None and sorted(data) != keys):
        raise CorruptCheckpoint("its data item is not the data-iterator state that was saved")


def _snapshot(item: dict) -> dict:
    """A deep, JSON-only copy of ``item``."""
    return json.loads(json.dumps(item))


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) describing ``tree``, the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpoints:
    """The run's latest-N and best checkpoints under ``workdir``; ``read_only`` for readers
    (evaluation, explanations, predictions, ``model.init_from``): nothing is created, moved
    or cleaned up."""

    def __init__(self, workdir: str | Path, keep: int, read_only: bool = False):
        self.workdir = Path(workdir).expanduser().absolute()  # Orbax needs absolute paths
        self.read_only = read_only
        if keep < 1:  # Orbax's max_to_keep=0 deletes every checkpoint, the old ones included
            raise UserError(f"train.keep_checkpoints must be at least 1, got {keep}")
        for folder in ("checkpoints", "best"):
            path = self.workdir / folder
            if path.exists() and not path.is_dir():
                raise UserError(f"{path} is not a directory; move it out of the way or choose "
                                "another --workdir")
        if read_only and not has_checkpoints(self.workdir):
            raise UserError(f"no readable checkpoint in {self.workdir} (neither "
                            f"checkpoints/<step> nor best/<step>); train first with "
                            f"--mode=train --workdir={self.workdir}")
        self.latest = _manager(self.workdir / "checkpoints", keep, tuple(_HANDLERS), read_only)
        self.best = _manager(self.workdir / "best", 1, ("state", "progress"), read_only)

    def save(self, step: int, state: Any, data_state: dict, progress: dict,
             sampler: dict | None = None) -> None:
        """Saves a resumable checkpoint at ``step`` (asynchronously); ``sampler`` is the clip
        sampler's ``state_dict()`` (NumPy arrays) when there is one.

        The JSON items are serialised in a background thread, so they are snapshotted here:
        the caller may go on mutating ``progress`` at once."""
        progress = {**_snapshot(progress), "fingerprints": fingerprints(state),
                    "data_keys": sorted(data_state)}
        items = dict(state=ocp.args.StandardSave(state),
                     data=ocp.args.JsonSave(_snapshot(data_state)),
                     progress=ocp.args.JsonSave(progress))
        if sampler is not None:
            items["sampler"] = ocp.args.StandardSave(sampler)
        self._guarded(self.latest, step, items)

    def save_best(self, step: int, state: Any, summary: dict) -> None:
        """Keeps ``state`` as the best checkpoint (replacing the previous best)."""
        summary = {**_snapshot(summary), "fingerprints": fingerprints(state)}
        self._guarded(self.best, step, dict(state=ocp.args.StandardSave(state),
                                            progress=ocp.args.JsonSave(summary)))

    def _guarded(self, manager: ocp.CheckpointManager, step: int, items: dict) -> None:
        """``manager.save`` (and the wait for the previous asynchronous save, which Orbax does
        first) with a full disk or another OS error turned into one line."""
        try:
            manager.save(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001 — Orbax wraps OS errors in its own types
            raise _save_error(e, Path(manager.directory)) from None

    def restore_latest(self, template: Any, sampler_template: dict | None = None,
                       added_fields: tuple[str, ...] = ()
                       ) -> tuple[Any, dict, dict, dict | None] | None:
        """``(state, data_state, progress, sampler_state)`` of the newest readable checkpoint,
        or None if there is none. ``template`` is a freshly initialised state (gives
        shapes/shardings); ``sampler_template`` a fresh sampler ``state_dict()`` when the run
        has a clip sampler (``sampler_state`` is None otherwise). ``added_fields``: fields of
        the ``template`` dataclass that checkpoints written before they existed lack; such a
        checkpoint is restored with the template's values for them."""
        for manager in (self.latest, self.best):
            _await_tmp_cleanup(manager)  # the run may stop right below (UserError)
        unreadable = []  # (step, error), newest first; moved away once an older one loads
        for step in sorted(self.latest.all_steps(), reverse=True):
            missing = _missing_fields(self.latest, step, template, added_fields)
            target = _abstract(_without(template, missing))
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
                    _check_progress(restored.progress, restored.data)
                    _verify(restored.state, restored.progress.get("fingerprints"))
                except Exception as e:  # noqa: BLE001 — any read failure means "unusable"
                    if "structure" not in str(e) or isinstance(e, CorruptCheckpoint):
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
            progress = {k: v for k, v in restored.progress.items()
                        if k not in ("fingerprints", "data_keys")}
            state = template.replace(**restored.state) if missing else restored.state
            return state, restored.data, progress, sampler
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
                        state=ocp.args.StandardRestore(target),
                        progress=ocp.args.JsonRestore()))
                    progress = restored.progress if isinstance(restored.progress, dict) \
                        else {}
                    _verify(restored.state, progress.get("fingerprints"))
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
        for manager in (self.latest, self.best):
            try:
                manager.wait_until_finished()
            except Exception as e:  # noqa: BLE001 — an asynchronous save that failed
                raise _save_error(e, Path(manager.directory)) from None

    def close(self) -> None:
        self.latest.close()
        self.best.close()


def _save_error(error: Exception, directory: Path) -> Exception:
    """A failed save: a full disk (or file-size limit) becomes one ``UserError`` line saying
    the previous checkpoints are intact; anything else is returned unchanged."""
    cause, seen = error, []
    while cause is not None and not isinstance(cause, OSError):
        seen.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, OSError):  # TensorStore reports the errno in its message text
        for code in _FULL:
            if any(f"os_error_code='{code}'" in text for text in seen):
                cause = OSError(code, os.strerror(code))
                break
    if isinstance(cause, OSError) and cause.errno in _FULL:
        message = disk_error(cause, directory, "a checkpoint")
        return UserError(f"{message}; the previous checkpoints in {directory} are intact "
                         f"(the half-written one is a temporary folder, ignored on resume)")
    return error


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # no room left (EFBIG: a file-size limit)
DISK_FULL_MARKERS = tuple(f"os_error_code='{code}'" for code in _FULL) + tuple(
    os.strerror(code) for code in _FULL)
"""Text by which a failed write of a full disk is recognised in library messages."""


def saved_experiment(workdir: str | Path) -> dict | None:
    """The experiment identity (``progress['experiment']``) recorded in the newest checkpoint
    of ``workdir`` that has one, read from its JSON file without Orbax; None when none has."""
    folder = Path(workdir) / "checkpoints"
    steps = sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()),
                   reverse=True) if folder.is_dir() else []
    for step in steps:
        progress = read_json(folder / str(step) / "progress" / "metadata")
        if progress and isinstance(progress.get("experiment"), dict):
            return progress["experiment"]
    return None


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


def _missing_fields(manager: ocp.CheckpointManager, step: int, template: Any,
                    added_fields: tuple[str, ...]) -> tuple[str, ...]:
    """The ``added_fields`` of which the train state saved at ``step`` has no array (it was
    written before they existed); () when its metadata cannot be read."""
    if not added_fields:
        return ()
    try:
        saved = _shapes(manager.item_metadata(step)["state"])
    except Exception:  # noqa: BLE001 — unreadable metadata: the restore reports it
        return ()
    present = {path.split("/")[0] for path in saved}
    return tuple(f for f in added_fields if f not in present and hasattr(template, f))


def _without(template: Any, fields: tuple[str, ...]) -> Any:
    """``template`` (a dataclass) as a dict of its fields but ``fields``; itself if none."""
    if not fields:
        return template
    return {f.name: getattr(template, f.name) for f in dataclasses.fields(template)
            if f.name not in fields}


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
