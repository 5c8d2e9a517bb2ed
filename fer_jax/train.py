"""The training loop: jit-compiled steps on a device Mesh, optax, orbax, Grain, early stopping.

``train_and_evaluate(config, workdir)`` trains the configured model, evaluating on the
validation split after every epoch, and resumes automatically when ``workdir`` already holds
a checkpoint of the same experiment. It writes to ``workdir``:

  config.json         the resolved config (a resume checks it is the same experiment)
  checkpoints/<step>/ resumable checkpoints (every ``train.checkpoint_every_steps`` + epoch ends)
  best/<step>/        parameters of the best validation epoch
  tensorboard/        scalars: train/{loss,accuracy,learning_rate,clips_per_second},
                      validation/{loss,accuracy,macro_f1,per-class accuracy}; with AU
                      guidance (au_guidance.py) also train/{cross_entropy,att_cos} and
                      validation/{att_cos,cam_cos}; in float16 (loss_scaling.py) also
                      train/{skipped_steps,loss_scale}
  metrics.json        best and final validation metrics, per-epoch history, throughput
                      (and the final loss scale in float16)

Data parallelism (``experiment.Run``): a 1-D ``Mesh`` over all devices with axis ``data``;
batches are sharded along it, parameters and optimiser state replicated. The same code runs on one CPU, on
``XLA_FLAGS=--xla_force_host_platform_device_count=N``, on a GPU/TPU host and over several
processes (``fer_jax/distributed.py``): each process loads its rows of every global batch,
metrics are computed from replicated sums and gathered predictions, so every process sees
the same numbers, and process 0 writes the files.

Preemption (``interrupts.py``): SIGTERM makes the run save a checkpoint at the end of the step in progress and
raise ``Preempted`` (``python -m fer_jax.main`` exits with status 143); the same command
resumes from it. A SIGKILL loses at most the steps since the last checkpoint; checkpoints are
written to temporary directories and renamed when complete.

This module holds the training state, the optimiser, the train step, progress reporting and
the loop. The model, mesh, restore and workdir checks live in ``experiment.py``; the
validation step in ``evaluation/classification.py``.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import time
from pathlib import Path
from typing import Any

import flax.struct
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np
import optax

from fer_jax import atomic_files, au_guidance, checkpointing, configs, loss_scaling, run_once
from fer_jax.attribution import LayerTaps
from fer_jax.clip_sampling import ClipSampling
from fer_jax.data import pipeline, sources
from fer_jax.data.pipeline import normalise
from fer_jax.errors import UserError
from fer_jax.experiment import Run, check_input_config, check_same_experiment, \
    experiment_identity
from fer_jax.interrupts import Preempted, StopRequest
from fer_jax.models import pretrained
from fer_jax.workdir_lock import WorkdirLock

__all__ = ["Preempted", "TrainingDiverged", "TrainState", "make_optimizer", "apply_model",
           "train_step", "jit_train_step", "init_train_state", "zero_train_sums",
           "check_train_config", "train_and_evaluate"]


class TrainingDiverged(UserError):
    """The loss became NaN or infinite."""


@flax.struct.dataclass
class TrainState:
    step: jnp.ndarray        # int32 [] — batches seen
    params: Any
    model_state: Any         # non-parameter collections, e.g. {'batch_stats': …}; {} if none
    opt_state: Any
    rng: jnp.ndarray         # uint32 [2] — base key; step keys are fold_in(rng, step)
    # float16's dynamic loss scale ({'scale': float32 [], 'counter': int32 []};
    # loss_scaling.py), carried unchanged in float32 and bfloat16
    loss_scale: Any = flax.struct.field(default_factory=loss_scaling.initial_state)


# TrainState fields that checkpoints of older versions lack: restored from a fresh state.
ADDED_STATE_FIELDS = ("loss_scale",)


# --------------------------------------------------------------------------- optimiser
def make_optimizer(config, steps_per_epoch: int) -> tuple[optax.GradientTransformation, Any]:
    """``(transformation, learning-rate schedule)`` from ``config.optimizer``/``schedule``."""
    opt, sched = config.optimizer, config.schedule
    updates_per_epoch = max(steps_per_epoch // opt.accumulation_steps, 1)
    total = max(config.train.epochs * updates_per_epoch, 1)
    warmup = int(sched.warmup_epochs * updates_per_epoch)
    if sched.name == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0, opt.learning_rate, min(warmup, total - 1), total, end_value=0.0)
    elif sched.name == "inverse_time":  # Keras' SGD(decay=d): lr / (1 + d · update)
        decay = sched.decay_rate
        schedule = lambda count: opt.learning_rate / (1.0 + decay * count)  # noqa: E731
    elif sched.name == "step":  # PyTorch's StepLR, counted in updates
        schedule = optax.exponential_decay(
            opt.learning_rate, max(int(sched.step_epochs * updates_per_epoch), 1),
            sched.step_factor, staircase=True)
    elif sched.name in ("constant", "plateau"):
        schedule = optax.join_schedules(
            [optax.linear_schedule(0.0, opt.learning_rate, max(warmup, 1)),
             optax.constant_schedule(opt.learning_rate)], [max(warmup, 1)])
    else:
        raise UserError(f"unknown schedule {sched.name!r}; choose cosine, constant, plateau, "
                        f"inverse_time or step")

    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)  # noqa: E731
    if opt.name == "adamw":
        core = optax.adamw(schedule, weight_decay=opt.weight_decay, mask=decay_mask)
    elif opt.name == "sgd":
        core = optax.chain(optax.add_decayed_weights(opt.weight_decay, decay_mask),
                           optax.sgd(schedule, momentum=opt.momentum or None,
                                     nesterov=opt.nesterov))
    else:
        raise UserError(f"unknown optimizer {opt.name!r}; choose adamw or sgd")

    # identity() keeps the optimiser-state structure the same with and without clipping, so a
    # run can be resumed with clipping switched on or off.
    clip = optax.clip_by_global_norm(opt.grad_clip_norm) if opt.grad_clip_norm else \
        optax.identity()
    chain = [clip, core]
    if sched.name == "plateau":  # scale on the epoch-mean training loss
        chain.append(optax.contrib.reduce_on_plateau(
            factor=sched.plateau_factor, patience=sched.plateau_patience,
            accumulation_size=updates_per_epoch))
    tx = optax.chain(*chain)
    if opt.get("trainable"):
        tx = _only_trainable(tx, opt.trainable)
    if opt.get("scaled"):  # only then: without it the state keeps its old structure
        tx = optax.chain(tx, _scaled(opt.scaled, opt.get("scale", 1.0), opt.get("trainable")))
    if opt.accumulation_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=opt.accumulation_steps)
    return tx, schedule


def _path_matches(field: str, pattern: str):
    """``params → tree of bools``: whether each parameter's ``/``-joined path
    (``conv1/kernel``) matches the regular expression ``pattern`` of config field ``field``
    (``re.search``). One-line UserErrors for a bad expression (at once) and for one that
    matches no parameter (when first applied, at the optimiser's init)."""
    regex = configs.pattern(field, pattern)

    def matches(params):
        flat = flax.traverse_util.flatten_dict(params, sep="/")
        matched = {k: bool(regex.search(k)) for k in flat}
        if not any(matched.values()):
            raise UserError(f"{field}={pattern!r} matches no parameter (paths look like "
                            f"{next(iter(flat))!r})")
        return flax.traverse_util.unflatten_dict(matched, sep="/")

    return matches


def _only_trainable(tx: optax.GradientTransformation,
                    pattern: str) -> optax.GradientTransformation:
    """``tx`` for the parameters whose ``/``-joined path matches the regular expression
    ``pattern`` (``re.search``); every other parameter is frozen (zero update, no weight
    decay): e.g. the thesis' two-step training of an attention head on a frozen network."""
    trainable = _path_matches("optimizer.trainable", pattern)
    labels = lambda params: jax.tree.map(  # noqa: E731
        lambda t: "train" if t else "frozen", trainable(params))
    return optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)


def _scaled(pattern: str, scale: float, trainable: str = "") -> optax.GradientTransformation:
    """Multiplies the final updates of the parameters whose path matches ``pattern`` by
    ``scale``: a PyTorch parameter group with ``lr = scale · lr``. Exactly so for AdamW
    (decoupled decay: ``-lr · (m̂ / (√v̂ + ε) + wd · p)``, moments independent of lr) and for
    SGD with momentum and coupled decay (the momentum buffer of ``g + wd · p`` is independent
    of lr; the update is ``-lr · buffer``). Clipping by the global norm (of the trained
    parameters' gradients) comes before the optimiser and the plateau factor multiplies every
    group's update alike, so neither breaks it. tests/test_optimizer.py compares AdamW and
    SGD, with clipping, against torch.optim."""
    if not (isinstance(scale, (int, float)) and np.isfinite(scale) and scale > 0):
        raise UserError(f"optimizer.scale must be a finite number > 0, got {scale!r}")
    scaled = _path_matches("optimizer.scaled", pattern)
    trains = _path_matches("optimizer.trainable", trainable) if trainable else None

    def mask(params):
        matched = scaled(params)
        if trains is not None and not any(jax.tree.leaves(
                jax.tree.map(lambda a, b: a and b, matched, trains(params)))):
            raise UserError(f"optimizer.scaled={pattern!r} matches no parameter that "
                            f"optimizer.trainable={trainable!r} trains")
        return matched

    return optax.masked(optax.scale(scale), mask)


# --------------------------------------------------------------------------- steps
def apply_model(model, params, model_state: dict, x: jnp.ndarray, train: bool, rng=None):
    """``model.apply`` on ``{'params', **model_state}`` → ``(logits, new model_state)``.

    In training, mutable collections (BatchNorm's ``batch_stats``) are updated; in evaluation
    they are read only and returned unchanged.
    """
    variables = {"params": params, **model_state}
    if not (train and model_state):
        rngs = {"dropout": rng} if train else None
        return model.apply(variables, x, train=train, rngs=rngs), model_state
    return model.apply(variables, x, train=True, rngs={"dropout": rng},
                       mutable=list(model_state))


def train_step(state: TrainState, batch: dict, sums: dict, *, model, tx, config,
               guidance: au_guidance.Guidance | None = None, scoring: str = "clean"):
    """One optimiser step on a sharded batch; adds the step's metrics to ``sums``.

    The loss is cross-entropy, plus ``guidance.weight · (1 − cos(T_l, A))`` with AU guidance
    (``au_guidance.py``; the batch then holds ``au_masks``; the raw cosine), whose ATT-COS
    (``au_guidance.att_cos``: normalised as ``guidance.cosine`` says) is summed. Returns
    ``(state, sums, scores)``: with ``scoring='clean'`` and ``clean_video`` in the batch (a
    score-table sampler), ``scores`` float32 ``[B]`` is the true-class logit of the
    un-augmented clip in eval mode with the parameters before this update (clean scoring); with
    ``scoring='augmented'`` the true-class logit of the training forward pass (augmented clip,
    train mode, parameters before this update; ``clip_sampling.SCORINGS``); else None.

    With ``model.precision='float16'`` the loss is scaled by ``state.loss_scale`` before the
    backward pass and the gradients unscaled after it; a step with a non-finite gradient
    leaves parameters, optimiser and model state unchanged (counted in ``sums['skipped']``)
    and the scale is adjusted (``loss_scaling.py``). Other precisions are not scaled.
    """
    num_classes = config.dataset.num_classes
    scores = None
    if scoring == "clean" and "clean_video" in batch:
        clean, _ = apply_model(model, state.params, state.model_state,
                               normalise(batch["clean_video"], config), train=False)
        scores = jnp.take_along_axis(clean, batch["label"][:, None], axis=1)[:, 0]
    targets = optax.smooth_labels(jax.nn.one_hot(batch["label"], num_classes),
                                  config.train.label_smoothing)

    x = normalise(batch["video"], config)
    aligned = guidance is not None

    def loss_fn(params):
        with LayerTaps(guidance.layers if aligned else ()) as taps:
            logits, model_state = apply_model(model, params, state.model_state, x, train=True,
                                              rng=jax.random.fold_in(state.rng, state.step))
        cross_entropy = optax.softmax_cross_entropy(logits, targets).mean()
        if not aligned:
            return cross_entropy, (logits, model_state, cross_entropy, None)
        attention = au_guidance.layer_attention(model, taps.outputs(model), x, guidance.layers)
        term, _ = au_guidance.alignment(attention, au_maps)
        return (cross_entropy + guidance.weight * term,
                (logits, model_state, cross_entropy, attention))

    au_maps = batch["au_masks"].astype(jnp.float32) / 255 if aligned else None
    scaling = loss_scaling.enabled(config)
    if scaling:
        (loss, (logits, model_state, cross_entropy, attention)), grads, finite = \
            loss_scaling.value_and_grad(loss_fn, state.params, state.loss_scale, config)
    else:
        (loss, (logits, model_state, cross_entropy, attention)), grads = jax.value_and_grad(
            loss_fn, has_aux=True)(state.params)
    extra = {"value": loss} if config.schedule.name == "plateau" else {}
    updates, opt_state = tx.update(grads, state.opt_state, state.params, **extra)
    params = optax.apply_updates(state.params, updates)
    loss_scale = state.loss_scale
    if scaling:  # a step with a non-finite gradient changes nothing but the scale
        params, opt_state, model_state = loss_scaling.keep_if_finite(
            finite, (params, opt_state, model_state),
            (state.params, state.opt_state, state.model_state))
        loss_scale = loss_scaling.next_state(state.loss_scale, finite, config)
    count = jnp.float32(batch["label"].shape[0])
    sums = {
        "loss": sums["loss"] + loss * count,
        "cross_entropy": sums["cross_entropy"] + cross_entropy * count,
        "correct": sums["correct"] + jnp.sum(jnp.argmax(logits, -1) == batch["label"]),
        "count": sums["count"] + count,
        "finite": jnp.logical_and(sums["finite"], jnp.isfinite(loss)),
        "att_cos": sums["att_cos"],
        "att_count": sums["att_count"],
        "skipped": sums["skipped"] + (jnp.logical_not(finite) if scaling else 0),
    }
    if attention is not None:  # the reported ATT-COS, not the loss's raw R
        cosine, valid = au_guidance.att_cos(attention, au_maps, guidance.att_normalise)
        sums["att_cos"] = sums["att_cos"] + jnp.where(valid, cosine, 0.0).sum()
        sums["att_count"] = sums["att_count"] + valid.sum()
    if scoring == "augmented":
        scores = jnp.take_along_axis(logits, batch["label"][:, None], axis=1)[:, 0]
        scores = scores.astype(jnp.float32)
    return (TrainState(state.step + 1, params, model_state, opt_state, state.rng, loss_scale),
            sums, scores)


def jit_train_step(model, tx, config, guidance: au_guidance.Guidance | None = None,
                   scoring: str = "clean"):
    """``train_step`` for ``model``/``tx``/``config``, jit-compiled with the state and the
    sums donated: ``fn(state, batch, sums) → (state, sums, scores)``."""
    return jax.jit(functools.partial(train_step, model=model, tx=tx, config=config,
                                     guidance=guidance, scoring=scoring),
                   donate_argnums=(0, 2))


def init_train_state(run: Run, tx, config, rng: jax.Array) -> TrainState:
    """A fresh ``TrainState`` of ``run``'s model (parameters from the first half of ``rng``,
    the step keys' base the second), computed by one jit-compiled program (compiled for a
    single run: ``run_once``) and replicated over the run's mesh; the loss scale from
    ``config`` (``loss_scaling.initial_state``)."""
    init_rng, state_rng = jax.random.split(rng)

    @functools.partial(run_once.jit_once, out_shardings=run.replicated)
    def init():
        params, model_state = run.init_variables(init_rng)
        return TrainState(jnp.int32(0), params, model_state, tx.init(params), state_rng,
                          loss_scaling.initial_state(config))

    return init()


def zero_train_sums() -> dict:
    """The per-epoch sums of ``train_step`` at zero; ``skipped``: float16 steps skipped for a
    non-finite gradient."""
    return {"loss": jnp.float32(0), "cross_entropy": jnp.float32(0), "correct": jnp.int32(0),
            "count": jnp.float32(0), "finite": jnp.bool_(True), "att_cos": jnp.float32(0),
            "att_count": jnp.int32(0), "skipped": jnp.int32(0)}


def _summary_writer(logdir: Path):
    """A tensorboardX ``SummaryWriter`` for ``logdir``. tensorboardX imports torch whenever
    it is installed (3 s at every start, for writing torch tensors, which fer_jax never
    passes); the import is blocked while tensorboardX loads and allowed again after."""
    blocked = "torch" not in sys.modules
    if blocked:
        sys.modules["torch"] = None  # `import torch` raises ImportError, which it handles
    try:
        from tensorboardX import SummaryWriter
    finally:
        if blocked:
            del sys.modules["torch"]
    return SummaryWriter(str(logdir))


class _Progress:
    """Console progress (a tqdm bar on a terminal, periodic log lines otherwise).

    Throughput and ETA are steady-state figures: measured from the first log point of this
    session onwards, so the compilation and warm-up of the first steps (often longer than
    hundreds of later steps) do not count; until the second log point the ETA reads
    ``eta estimating…``. Validation time falls inside the measured span, so the ETA
    includes it."""

    def __init__(self, total_steps: int, done_steps: int, batch_size: int):
        from tqdm import tqdm

        self.interactive = sys.stderr.isatty()
        self.total, self.batch_size = total_steps, batch_size
        self.mark: tuple[float, int] | None = None  # (time, step) of the first log point
        self.bar = tqdm(total=total_steps * batch_size, initial=done_steps * batch_size,
                        unit="clip", unit_scale=True, dynamic_ncols=True,
                        disable=not self.interactive, file=sys.stderr)

    def clips_per_second(self, step: int) -> float | None:
        """Steady-state clips per second up to ``step``; None before two log points."""
        if self.mark is None or step <= self.mark[1]:
            return None
        return ((step - self.mark[1]) * self.batch_size
                / max(time.perf_counter() - self.mark[0], 1e-9))

    def update(self, step: int, epoch: int, loss: float | None = None,
               accuracy: float | None = None, skipped: int | None = None) -> None:
        """Moves the bar to ``step``; at a log point (``loss`` given) shows the loss, the
        accuracy and, for float16 training, the steps skipped this epoch (``skipped``)."""
        self.bar.n = step * self.batch_size
        self.bar.set_description(f"epoch {epoch + 1}")
        if loss is None:
            self.bar.refresh()
            return
        rate = self.clips_per_second(step)
        if self.mark is None:
            self.mark = (time.perf_counter(), step)
        extra = {} if skipped is None else {"skipped": skipped}
        self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}", **extra)
        if not self.interactive:
            speed = "eta estimating…" if rate is None else \
                f"{rate:.1f} clips/s eta {(self.total - step) * self.batch_size / rate:.0f}s"
            skips = "" if skipped is None else f" skipped {skipped}"
            print(f"epoch {epoch + 1} step {step}/{self.total} loss {loss:.4f} "
                  f"acc {accuracy:.3f}{skips} {speed}", flush=True)

    def close(self) -> None:
        self.bar.close()


def _summarise_train(sums: dict, loss_scaled: bool = False) -> dict:
    """Host sums → mean loss and accuracy; with AU guidance also the cross-entropy part of
    the loss and the mean ATT-COS of the training clips (valid ones); with ``loss_scaled``
    (float16) the number of steps skipped for a non-finite gradient."""
    count = max(float(sums["count"]), 1.0)
    summary = {"loss": float(sums["loss"]) / count, "accuracy": float(sums["correct"]) / count}
    if loss_scaled:
        summary["skipped_steps"] = int(sums.get("skipped", 0))
    if int(sums["att_count"]):
        summary["cross_entropy"] = float(sums["cross_entropy"]) / count
        summary["att_cos"] = float(sums["att_cos"]) / int(sums["att_count"])
    return summary


def _validation_record(val: dict) -> dict:
    """The per-epoch validation values kept in the history (and TensorBoard)."""
    record = {k: val[k] for k in ("loss", "accuracy", "macro_accuracy", "macro_f1")}
    for name, measured in (val.get("au_alignment") or {}).items():
        if isinstance(measured, dict) and measured["macro"] is not None:
            record[name] = measured["macro"]
    return record


def _diverged(what: str, step: int, epoch: int, checkpoints) -> TrainingDiverged:
    """The divergence error; every checkpoint on disk passed ``_check_state_finite`` before
    it was written, so the newest is the last good one."""
    steps = checkpoints.latest.all_steps()
    kept = f"the last good checkpoint (step {max(steps)}) is kept" if steps else \
        "no checkpoint had been written yet"
    return TrainingDiverged(
        f"{what} by step {step} (epoch {epoch + 1}); stopped, {kept}. Lower "
        f"--config.optimizer.learning_rate or set --config.optimizer.grad_clip_norm")


def _check_finite(sums: dict, step: int, epoch: int, checkpoints) -> None:
    if not bool(sums["finite"]):
        raise _diverged("non-finite loss", step, epoch, checkpoints)


def _check_state_finite(state: TrainState, step: int, epoch: int, checkpoints) -> None:
    """Refuses to checkpoint a state with NaN or infinity in its parameters, model state or
    optimiser moments (e.g. Adam's second moment overflowing before the loss does). Scalars
    of the optimiser state are left out: some start infinite by design (the plateau
    schedule's best loss)."""
    moments = [x for x in jax.tree.leaves(state.opt_state) if jnp.ndim(x) > 0]
    if not checkpointing.all_finite((state.params, state.model_state, moments)):
        raise _diverged("non-finite parameters or optimiser state", step, epoch, checkpoints)


def init_from_pretrained(state: TrainState, path: str, tx, sharding, exclude: str = "",
                         zeros: bool = False) -> TrainState:
    """``state`` with the weights at ``path`` copied in where path and shape match
    (models/pretrained.py) and a fresh optimiser state. ``path`` is a converted-weights file
    or the workdir of a trained run (its best, else newest, checkpoint). Variables whose path
    matches ``exclude`` (``model.init_exclude``) keep their initialisation, or are zero with
    ``zeros`` (``model.init_exclude_zeros``)."""
    if pretrained.resolve(path).is_dir():
        checkpoints = checkpointing.Checkpoints(pretrained.resolve(path), 1, read_only=True)
        try:
            weights, _, _ = checkpoints.restore_variables(sharding)
        finally:
            checkpoints.close()
        weights = jax.device_get(weights)
    else:
        weights, _, _ = pretrained.load(path)
    fresh = jax.device_get({"params": state.params, **state.model_state})
    merged, report = pretrained.merge(fresh, weights, exclude, zeros)
    print(pretrained.describe(report), flush=True)
    merged = jax.device_put(merged, sharding)
    params = merged.pop("params")
    opt_state = jax.jit(tx.init, out_shardings=sharding)(params)
    return state.replace(params=params, model_state=merged, opt_state=opt_state)


BEST_METRICS = ("accuracy", "macro_accuracy", "macro_f1", "roc_auc", "eer_accuracy")


def check_train_config(config) -> None:
    """One-line errors for ``config.train`` values that would only fail mid-training."""
    t = config.train
    if t.log_every_steps < 1:
        raise UserError(f"train.log_every_steps must be at least 1, got {t.log_every_steps}")
    if t.checkpoint_every_steps < 0:
        raise UserError(f"train.checkpoint_every_steps must be 0 (epoch ends only) or "
                        f"positive, got {t.checkpoint_every_steps}")
    if t.best_metric not in BEST_METRICS:
        raise UserError(f"train.best_metric must be one of {', '.join(BEST_METRICS)}, got "
                        f"{t.best_metric!r}")
    if t.epochs < 1:
        raise UserError(f"train.epochs must be at least 1, got {t.epochs} (to evaluate a "
                        f"trained workdir use --mode=eval)")
    if t.early_stopping_patience < 0:
        raise UserError(f"train.early_stopping_patience must be 0 (off) or positive, got "
                        f"{t.early_stopping_patience}")
    if config.input.num_workers < 0:
        raise UserError(f"input.num_workers must be 0 (in-process) or positive, got "
                        f"{config.input.num_workers}")
    check_input_config(config)
    loss_scaling.settings(config)
    m = config.model
    if m.get("init_exclude") and not m.get("init_from"):
        raise UserError(f"model.init_exclude={m.init_exclude!r} needs model.init_from (the "
                        f"weights it excludes arrays from)")
    if m.get("init_exclude_zeros") and not m.get("init_exclude"):
        raise UserError("model.init_exclude_zeros needs model.init_exclude (the arrays to zero)")
    if m.get("init_exclude"):
        configs.pattern("model.init_exclude", m.init_exclude)  # before any training starts
    o = config.optimizer
    for name in ("learning_rate", "weight_decay", "grad_clip_norm"):
        value = o.get(name, 0.0)
        if not np.isfinite(value) or value < 0 or (name == "learning_rate" and value == 0):
            raise UserError(f"optimizer.{name} must be a finite number "
                            f"{'> 0' if name == 'learning_rate' else '>= 0'}, got {value}")


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) the experiment; returns the metrics written to metrics.json.

    The run holds the workdir's writer lock (``workdir_lock``: a second training of the same
    workdir is refused at once) and writes ``config.json`` only once the workdir's checkpoints
    are accepted as its own."""
    check_train_config(config)
    run = Run(config, workdir)
    chief = jax.process_index() == 0
    with WorkdirLock(run.workdir) if chief else contextlib.nullcontext():
        return _train_and_evaluate(config, run)


def _train_and_evaluate(config, run: Run) -> dict:
    check_same_experiment(config, run.workdir)
    is_chief = jax.process_index() == 0

    train_source, val_source = run.source("train"), run.source("validation")
    if config.train.get("shuffle_labels"):  # Adebayo et al.'s data randomisation
        train_source = sources.ShuffledLabels(train_source, config.seed)
        print(f"Training on permuted labels (train.shuffle_labels, seed {config.seed}); "
              f"validation keeps the true labels", flush=True)
    batch_size, epochs = config.train.batch_size, config.train.epochs
    steps_per_epoch = pipeline.steps_per_epoch(len(train_source), batch_size)
    tx, schedule = make_optimizer(config, steps_per_epoch)
    learning_rate = jax.jit(schedule)  # logged on the host: one compiled program, not one per op

    state = init_train_state(run, tx, config, jax.random.PRNGKey(config.seed))
    num_params = sum(p.size for p in jax.tree.leaves(state.params))
    print(f"{config.model.name}: {num_params:,} parameters on {jax.device_count()} "
          f"{jax.devices()[0].platform} device(s); {len(train_source)} training / "
          f"{len(val_source)} validation videos, {steps_per_epoch} steps per epoch", flush=True)
    checkpoints = checkpointing.Checkpoints(run.workdir, config.train.keep_checkpoints)
    progress = {"epoch": 0, "history": [], "best": None, "best_epoch": None,
                "epochs_without_improvement": 0, "stopped": None, "train_sums": None,
                "experiment": experiment_identity(config),
                "num_workers": config.input.num_workers}
    data_state = None
    sampling = (ClipSampling(config, train_source, run.workdir)
                if config.sampler.get("name") else None)
    restored = checkpoints.restore_latest(state, sampling and sampling.state_dict(),
                                          ADDED_STATE_FIELDS)
    if restored is not None:
        state, data_state, progress, sampler_state = restored
        progress.setdefault("experiment", experiment_identity(config))
        if int(state.step) > epochs * steps_per_epoch:
            raise UserError(f"the run in {run.workdir} is already at step {int(state.step)} "
                            f"(epoch {progress['epoch'] + 1}), past train.epochs={epochs}; "
                            f"raise --config.train.epochs to continue it, or use a new "
                            f"--workdir")
        if sampling:
            sampling.restore(sampler_state, progress.get("sampling_maps"), progress["epoch"])
        print(f"Resumed from step {int(state.step)} (epoch {progress['epoch'] + 1})", flush=True)
    else:
        if sampling:
            sampling.start(0)
        if config.model.get("init_from"):
            state = init_from_pretrained(state, config.model.init_from, tx, run.replicated,
                                         config.model.get("init_exclude", ""),
                                         config.model.get("init_exclude_zeros", False))
    if sampling:  # the same dict: saved with every checkpoint's progress
        progress["sampling_maps"] = sampling.history
    if is_chief:  # the workdir is this experiment's: its config may now be written
        atomic_files.write_atomic(run.workdir / "config.json", config.to_json(indent=2))

    guidance = run.guidance if run.guidance and run.guidance.trains else None
    dataset = pipeline.train_dataset(train_source, config, epochs, config.seed,
                                     selector=sampling and sampling.selector,
                                     clean=bool(sampling and sampling.needs_clean_video),
                                     au_maps=guidance is not None,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count())
    iterator = iter(dataset)
    if data_state is not None:
        saved_workers = progress.setdefault("num_workers", config.input.num_workers)
        if saved_workers != config.input.num_workers:  # Grain's state depends on it
            raise UserError(f"the checkpoints in {run.workdir} were written with "
                            f"input.num_workers={saved_workers}; resume with "
                            f"--config.input.num_workers={saved_workers}")
        try:
            iterator.set_state(data_state)
        except Exception as e:  # noqa: BLE001 — Grain raises KeyError/ValueError on bad state
            raise UserError(f"the newest checkpoint in {run.workdir / 'checkpoints'} holds a "
                            f"data-iterator state this run cannot use ({type(e).__name__}: "
                            f"{e}); move that step's folder away to resume from the one "
                            f"before") from None

    step_fn = jit_train_step(
        run.model, tx, config, guidance,
        scoring=sampling.scoring if sampling and sampling.needs_scores else "clean")
    loss_scaled = loss_scaling.enabled(config)
    zero = zero_train_sums()
    sums = jax.device_put({k: jnp.asarray((progress["train_sums"] or {}).get(k, v), v.dtype)
                           for k, v in zero.items()}, run.replicated)

    writer = _summary_writer(run.workdir / "tensorboard") if is_chief else None
    bar = _Progress(epochs * steps_per_epoch, int(state.step), batch_size)
    start_time = time.perf_counter()
    start_step = int(state.step)
    stop = StopRequest().__enter__()
    batch = None
    try:
        step = int(state.step)
        while progress["epoch"] < epochs and progress["stopped"] is None:
            epoch = progress["epoch"]
            if stop.agreed(sync_point=True):  # the previous epoch-end checkpoint is saved
                raise stop.stopped(step)
            while step < (epoch + 1) * steps_per_epoch:
                batch = run.shard(next(iterator))
                state, sums, scores = step_fn(state, batch, sums)
                step += 1
                if sampling:
                    sampling.add(batch, scores, epoch)
                log_point = step % config.train.log_every_steps == 0
                if log_point:
                    if sampling:
                        sampling.flush()
                    host = jax.device_get(sums)
                    _check_finite(host, step, epoch, checkpoints)
                    summary = _summarise_train(host, loss_scaled)
                    bar.update(step, epoch, summary["loss"], summary["accuracy"],
                               summary.get("skipped_steps"))
                    if writer:
                        for key, value in summary.items():
                            writer.add_scalar(f"train/{key}", value, step)
                        if loss_scaled:
                            writer.add_scalar("train/loss_scale",
                                              float(state.loss_scale["scale"]), step)
                        writer.add_scalar("train/learning_rate", float(learning_rate(
                            step // config.optimizer.accumulation_steps)), step)
                        rate = bar.clips_per_second(step)
                        if rate is not None:
                            writer.add_scalar("train/clips_per_second", rate, step)
                else:
                    bar.update(step, epoch)
                every = config.train.checkpoint_every_steps
                checkpoint_point = bool(every and step % every == 0)
                stopping = stop.agreed(sync_point=log_point or checkpoint_point)
                if (stopping or checkpoint_point) and step % steps_per_epoch:  # epoch ends
                    # save after validation
                    host = jax.device_get(sums)
                    _check_finite(host, step, epoch, checkpoints)
                    progress["train_sums"] = {k: np.asarray(v).item() for k, v in host.items()}
                    if sampling:
                        sampling.flush()
                    _check_state_finite(state, step, epoch, checkpoints)
                    checkpoints.save(step, state, iterator.get_state(), progress,
                                     sampling and sampling.state_dict())
                    if stopping:
                        raise stop.stopped(step)

            host = jax.device_get(sums)
            _check_finite(host, step, epoch, checkpoints)
            if sampling:  # the epoch's last updates; workers may now draw the next epoch
                sampling.end_epoch(epoch)
            val = run.evaluate({"params": state.params, **state.model_state}, val_source)
            if not np.isfinite(val["loss"]):
                raise TrainingDiverged(f"non-finite validation loss after epoch {epoch + 1}; "
                                       "lower --config.optimizer.learning_rate")
            record = {"epoch": epoch + 1, "step": step,
                      "train": _summarise_train(host, loss_scaled),
                      "validation": _validation_record(val)}
            progress["history"].append(record)
            metric = val[config.train.best_metric]
            if metric is None:  # ROC-AUC / EER: no class has both positives and negatives
                raise UserError(f"train.best_metric={config.train.best_metric} is undefined on "
                                "this validation split; use accuracy or macro_f1")
            _check_state_finite(state, step, epoch, checkpoints)
            if progress["best"] is None or metric > progress["best"]:
                progress.update(best=metric, best_epoch=epoch + 1, epochs_without_improvement=0,
                                best_validation=val)
                checkpoints.save_best(step, state, {"epoch": epoch + 1, "validation": val})
            else:
                progress["epochs_without_improvement"] += 1
            patience = config.train.early_stopping_patience
            if patience and progress["epochs_without_improvement"] >= patience:
                progress["stopped"] = "early_stopping"
            progress["epoch"] = epoch + 1
            progress["final_validation"] = val
            progress["train_sums"] = None
            sums = jax.device_put(zero_train_sums(), run.replicated)
            checkpoints.save(step, state, iterator.get_state(), progress,
                             sampling and sampling.state_dict())
            _log_epoch(writer, record, val, run.class_names)
            alignment = ", ".join(f"{part} {name.replace('_', '-').upper()} "
                                  f"{record[part][name]:.3f}"
                                  for part in ("train", "validation")
                                  for name in ("att_cos", "cam_cos") if name in record[part])
            print(f"epoch {epoch + 1}/{epochs}: train loss {record['train']['loss']:.4f} "
                  f"acc {record['train']['accuracy']:.3f} | validation loss {val['loss']:.4f} "
                  f"acc {val['accuracy']:.3f} (best {progress['best']:.3f} at epoch "
                  f"{progress['best_epoch']}){' | ' + alignment if alignment else ''}",
                  flush=True)
        progress["stopped"] = progress["stopped"] or "completed"
    finally:
        stop.__exit__()
        bar.close()
        batch = None  # the last batch may view a worker's shared memory: release it first
        pipeline.close(iterator)
        checkpoints.wait()
        checkpoints.close()
        if writer:
            writer.close()

    elapsed = time.perf_counter() - start_time
    result = {
        "stopped": progress["stopped"],
        "epochs_completed": progress["epoch"],
        "steps": int(state.step),
        "best_epoch": progress["best_epoch"],
        "best_validation": progress.get("best_validation"),
        "final_validation": progress.get("final_validation"),
        "history": progress["history"],
        "devices": jax.device_count(),
        "loss_scale": float(state.loss_scale["scale"]) if loss_scaled else None,
        "train_seconds_this_session": elapsed,
        "clips_per_second_this_session": (int(state.step) - start_step) * batch_size
                                         / max(elapsed, 1e-9),
    }
    if sampling and is_chief:
        maps = sampling.write_maps(run.workdir / "sampling_maps", train_source)
        result["sampler"] = {"name": config.sampler.name, "maps": len(maps),
                             "table_vs_intensity": sampling.intensity_correlation(train_source)}
    if sampling:
        sampling.close()
    if is_chief:
        atomic_files.write_json(run.workdir / "metrics.json", result)
    return result


def _log_epoch(writer, record: dict, val: dict, class_names) -> None:
    if writer is None:
        return
    step = record["step"]
    for key, value in record["validation"].items():
        writer.add_scalar(f"validation/{key}", value, step)
    for name, value in val["per_class_accuracy"].items():
        if value is not None:
            writer.add_scalar(f"validation_per_class/{name}", value, step)
    writer.flush()
