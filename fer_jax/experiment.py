"""One experiment in one workdir: the model a config builds, the device mesh and shardings,
fresh and restored variables, and the checks that a workdir belongs to the config.

``Run(config, workdir)`` is shared by training (``train.py``), evaluation (``--mode=eval``,
``evaluate`` below), explanations (``explain.py``) and prediction (``predict.py``):

* the model (``build_model``; the dense ``backbone`` for full-video tests, Ayral's thesis)
  and the AU guidance resolved for it (``au_guidance.from_config``);
* a 1-D ``Mesh`` over all devices with axis ``data``: batches are sharded along it
  (``shard``; with several processes each loads its rows, ``local_rows``), variables
  replicated;
* ``init_variables`` / ``variable_shapes`` of a fresh model and ``restore_best``, the best
  (else newest) checkpoint of a workdir after ``check_same_experiment`` with ``MODEL_KEYS``;
* ``evaluate``: classification metrics of variables on a split
  (``evaluation.classification``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from fer_jax import atomic_files, au_guidance, checkpointing, configs, models
from fer_jax.data import pipeline, sources
from fer_jax.errors import UserError
from fer_jax.evaluation import classification
from fer_jax.models import attention, pooling

# Config fields that fix array shapes (the optimiser state's structure included) or the data
# order: a workdir's checkpoints can only be resumed by a config that agrees on them.
RESUME_KEYS = ("seed", "dataset", "model", "input.clip_frames", "input.image_size",
               "input.modality", "input.pad", "sampler", "optimizer.trainable",
               "optimizer.scaled", "input.train_clip", "train.batch_size", "optimizer.name",
               "optimizer.accumulation_steps", "schedule.name", "au_guidance.weight",
               "au_guidance.layers", "train.shuffle_labels")

# What a trained model's checkpoint must agree with to be evaluated (any split size).
MODEL_KEYS = ("model", "dataset.num_classes", "input.clip_frames", "input.image_size",
              "input.modality")

# config.model fields that change how the model computes, not its variables, with their
# defaults: a run may be resumed or evaluated with other values (check_same_experiment).
COMPUTATION_FIELDS = {"precision": "float32", "attention_implementation": "explicit",
                      "remat": "", "remat_policy": "nothing_saveable"}

# model.precision → the computation dtype (flax's ``dtype``; ``param_dtype`` stays float32).
# float16 trains with dynamic loss scaling (loss_scaling.py).
PRECISIONS = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def compute_dtype(precision: str):
    """The computation dtype of ``model.precision``; one-line UserError for unknown names."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown model.precision {precision!r}; use one of "
                        f"{', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


def _computation_settings(config, explaining: bool) -> dict:
    """``COMPUTATION_FIELDS`` of ``config.model`` (the defaults where the config predates
    them); for ``explaining`` the reference computation: float32, explicit attention, no
    rematerialisation."""
    settings = {field: config.model.get(field, default)
                for field, default in COMPUTATION_FIELDS.items()}
    if explaining:
        settings.update(COMPUTATION_FIELDS)
    for key in (*models.COMPUTATION_KWARGS, "precision"):
        if key in config.model.kwargs:
            raise UserError(f"set config.model.{'precision' if key == 'dtype' else key}, "
                            f"not config.model.kwargs.{key}")
    try:
        models.check_attention_implementation(settings["attention_implementation"])
        models.check_remat(settings["remat"], settings["remat_policy"])
    except ValueError as e:
        raise UserError(f"config.model: {e}") from None
    return settings


def build_model(config, dense: bool = False, explaining: bool = False):
    """The configured model; dense models (per-frame scores) are wrapped with
    ``model.temporal_pooling`` (pooling.TemporalPooling) when it is set, unless ``dense``
    asks for the bare per-frame model (same variables: the wrapper shares its scope).

    ``model.precision`` sets the computation dtype of the model and its attention module
    (parameters stay float32, logits come out float32); ``model.attention_implementation``
    goes to models and attention modules that have it, ``model.remat`` / ``remat_policy`` to
    models that have them (a non-default value for a model without the field is a UserError).
    ``explaining``: the model explanations use (explain, report, predict): float32, explicit
    attention and no rematerialisation whatever the config says, so attribution methods see
    float32 activations and can tap any layer (``attribution.LayerTaps``)."""
    settings = _computation_settings(config, explaining)
    dtype = compute_dtype(settings["precision"])
    if settings["attention_implementation"] == "cudnn" and dtype == jnp.float32:
        raise UserError("model.attention_implementation='cudnn' needs "
                        "model.precision='bfloat16' or 'float16' (cuDNN's fused attention "
                        "takes 16-bit inputs only)")
    kwargs = dict(config.model.kwargs, dtype=dtype)
    fields = models.fields(config.model.name)
    spec = config.model.get("attention") or {}
    implementation = settings["attention_implementation"]
    if spec.get("name"):
        if "attention" not in fields:
            raise UserError(f"model.attention needs a 3D CNN that takes one "
                            f"({', '.join(n for n in models.names() if 'attention' in models.fields(n))}); "
                            f"{config.model.name} does not")
        module_kwargs = dict(spec.get("kwargs") or {})
        module_kwargs.setdefault("dtype", dtype)
        if spec["name"] == "self_attention":
            module_kwargs.setdefault("implementation", implementation)
            implementation = COMPUTATION_FIELDS["attention_implementation"]  # used up
        kwargs["attention"] = attention.build(spec["name"], **module_kwargs)
    for field in ("attention_implementation", "remat", "remat_policy"):
        value = implementation if field == "attention_implementation" else settings[field]
        if field in fields:
            kwargs[field] = value
        elif value != COMPUTATION_FIELDS[field]:
            takers = [n for n in models.names() if field in models.fields(n)]
            extra = " or a 3D CNN with model.attention.name='self_attention'" \
                if field == "attention_implementation" else ""
            raise UserError(f"model.{field}={value!r} applies to {', '.join(takers)}{extra}; "
                            f"{config.model.name} does not take it")
    model = models.build(config.model.name, num_classes=config.dataset.num_classes, **kwargs)
    method = config.model.get("temporal_pooling")
    if method and not dense:
        if method not in pooling.POOLING_METHODS:
            raise UserError(f"unknown model.temporal_pooling {method!r}; use one of "
                            f"{', '.join(pooling.POOLING_METHODS)}")
        model = pooling.TemporalPooling(model, method, config.model.get("pooling_gamma", 1.0))
    return model


class Run:
    """State shared by training and evaluation of one experiment in one workdir."""

    def __init__(self, config, workdir: str, explaining: bool = False):
        """``explaining``: build the model as explanations need it (``build_model``)."""
        check_input_config(config)
        self.config = config
        self.workdir = prepare_workdir(workdir)
        num_devices = jax.device_count()
        if config.train.batch_size % num_devices:
            raise UserError(f"train.batch_size={config.train.batch_size} is not divisible by "
                            f"the {num_devices} devices; use a multiple of {num_devices}")
        self.mesh = Mesh(np.array(jax.devices()), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.data_sharding = NamedSharding(self.mesh, P("data"))
        self.model = build_model(config, explaining=explaining)
        self.backbone = build_model(config, dense=True, explaining=explaining)
        self.guidance = au_guidance.from_config(config, self.model)
        if self.guidance and getattr(self.backbone, "remat", ""):
            raise UserError("model.remat cannot be combined with AU guidance (au_guidance."
                            "weight > 0 or au_guidance.measure): its layer taps cannot see "
                            "inside rematerialised blocks; set model.remat=''")
        self.class_names = None

    def source(self, split: str):
        source = sources.build(self.config, split)
        self.class_names = list(getattr(source, "class_names", [])) or None
        return source

    def init_variables(self, rng: jax.Array) -> tuple[Any, dict]:
        """``(params, model_state)`` of a fresh model (``model_state``: e.g. batch_stats)."""
        shape = (1,) + pipeline.input_shape(self.config)
        try:
            variables = dict(self.model.init(rng, jnp.zeros(shape, jnp.float32), train=False))
        except ValueError as e:  # the models' own checks of their settings and input size
            raise UserError(f"model {self.config.model.name} cannot be built for inputs "
                            f"{shape[1:]} (input.clip_frames, input.image_size) with "
                            f"config.model.kwargs: {e}") from None
        variables.pop("intermediates", None)
        return variables.pop("params"), variables

    def restore_best(self, workdir: Path | None = None, prefer_best: bool = True
                     ) -> tuple[dict, str, int]:
        """``(variables, 'best' | 'latest', step)`` of the best (else newest) checkpoint of
        ``workdir`` (default: the run's), read-only, after checking that it holds a model
        of this config (``MODEL_KEYS``); ``prefer_best=False``: the newest (else best)."""
        workdir = Path(workdir or self.workdir)
        check_same_experiment(self.config, workdir, MODEL_KEYS)
        checkpoints = checkpointing.Checkpoints(workdir, self.config.train.keep_checkpoints,
                                                read_only=True)
        try:
            return checkpoints.restore_variables(self.replicated, prefer_best=prefer_best,
                                                 template=self.variable_shapes())
        finally:
            checkpoints.close()

    def variable_shapes(self) -> dict:
        """ShapeDtypeStructs of ``{'params', **model_state}`` this config builds."""
        params, model_state = jax.eval_shape(self.init_variables, jax.random.PRNGKey(0))
        return {"params": params, **model_state}

    def shard(self, batch: dict) -> dict:
        """This process's rows of a batch (host NumPy) → global arrays sharded over the data
        axis (the global batch is the rows of every process, in process order)."""
        return {k: jax.make_array_from_process_local_data(self.data_sharding, np.asarray(v))
                for k, v in batch.items()}

    def local_rows(self, batch: dict) -> dict:
        """This process's rows of a global host batch (every row on a single process)."""
        count, index = jax.process_count(), jax.process_index()
        if count == 1:
            return batch
        rows = len(batch["mask"]) // count
        return {k: v[index * rows:(index + 1) * rows] for k, v in batch.items()}

    def evaluate(self, variables: dict, source) -> dict:
        """Loss and classification metrics of ``variables`` on every video of ``source``
        (``evaluation.classification.evaluate``)."""
        return classification.evaluate(self, variables, source)


def prepare_workdir(workdir: str) -> Path:
    """Creates ``workdir`` and checks it is writable, or raises a one-line UserError."""
    path = Path(workdir).expanduser().absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test{jax.process_index()}"  # one per process
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to workdir {path}: {e.strerror or e}; "
                        "choose another --workdir") from None
    return path


def check_input_config(config) -> None:
    """One-line errors for ``config.input`` values that would fail (or silently mislead)
    inside the pipeline or the model."""
    c = config.input
    if int(c.clip_frames) < 1:
        raise UserError(f"input.clip_frames must be at least 1, got {c.clip_frames}")
    if int(c.image_size) < 1:
        raise UserError(f"input.image_size must be at least 1, got {c.image_size}")
    std, mean = np.asarray(c.std, np.float64), np.asarray(c.mean, np.float64)
    if not (np.isfinite(std).all() and (std > 0).all() and np.isfinite(mean).all()):
        raise UserError(f"input.std must be positive and input.mean finite (scalars or one "
                        f"per channel), got mean {c.mean}, std {c.std}")


_MISSING = object()


def _lookup(tree: dict, key: str):
    """The value at dotted ``key`` of a nested dict, or ``_MISSING``."""
    for part in key.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return _MISSING
        tree = tree[part]
    return tree


def _differs(saved, current, default) -> bool:
    """Whether a saved config value differs from the current one; fields the saved run
    predates (absent at any depth) count with their current default."""
    if saved is _MISSING:
        saved = default
    if isinstance(saved, dict) and isinstance(current, dict):
        default = default if isinstance(default, dict) else {}
        return any(_differs(saved.get(k, _MISSING), current.get(k, _MISSING),
                            default.get(k, _MISSING)) for k in set(saved) | set(current))
    return saved != current


def experiment_identity(config) -> dict:
    """The config values of ``RESUME_KEYS`` as a nested dict: saved with every checkpoint, so
    a workdir whose ``config.json`` is lost or damaged is still checked."""
    current, identity = json.loads(config.to_json()), {}
    for key in RESUME_KEYS:
        value = _lookup(current, key)
        if value is not _MISSING:
            *parents, leaf = key.split(".")
            node = identity
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return identity


def _without_computation(tree: dict) -> dict:
    """A config as a dict without the ``COMPUTATION_FIELDS`` of its ``model``."""
    if not isinstance(tree.get("model"), dict):
        return tree
    model = {k: v for k, v in tree["model"].items() if k not in COMPUTATION_FIELDS}
    return {**tree, "model": model}


def check_same_experiment(config, workdir: Path, keys: tuple[str, ...] = RESUME_KEYS) -> None:
    """Refuses to resume checkpoints written by a config that differs in ``keys`` (default:
    shapes and data order). The saved side is ``config.json``, or, when it is missing or
    unreadable, the experiment identity stored in the newest checkpoint. A field the saved run
    predates (at any depth, e.g. ``au_guidance`` or ``model.attention``) counts with its
    default value."""
    if not checkpointing.has_checkpoints(workdir):
        return  # nothing to resume: e.g. a first run that stopped at a config error
    saved = atomic_files.read_json(workdir / "config.json")
    if saved is None:
        saved = checkpointing.saved_experiment(workdir)
        if saved is None:
            if (workdir / "config.json").exists():
                raise UserError(f"{workdir / 'config.json'} is not a valid config and the "
                                f"checkpoints predate the experiment record that could replace "
                                f"it; restore it from a copy, or use a new --workdir")
            return  # checkpoints of an older version without a config: nothing to compare
    # Settings of the computation (precision, attention implementation, remat) may change.
    saved, current, defaults = (_without_computation(tree) for tree in (
        saved, json.loads(config.to_json()), json.loads(configs.defaults().to_json())))
    differing = []
    for key in keys:
        if _differs(_lookup(saved, key), _lookup(current, key), _lookup(defaults, key)):
            differing.append(key)
    if differing:
        raise UserError(f"workdir {workdir} holds a run of a different experiment (differs in "
                        f"{', '.join(differing)}); use a new --workdir or the original config")


def evaluate(config, workdir: str) -> dict:
    """Evaluates the best (else latest) checkpoint on ``config.eval.split``; writes
    ``eval_<split>.json`` in ``workdir`` and returns its metrics."""
    run = Run(config, workdir)
    split = config.eval.split
    source = run.source(split)
    variables, which, step = run.restore_best()
    result = run.evaluate(variables, source)
    result.update(split=split, checkpoint=which, checkpoint_step=step)
    if jax.process_index() == 0:
        atomic_files.write_json(run.workdir / f"eval_{split}.json", result)
    return result
