"""The interface of an explanation measurement: ``Measurement``, and what it is given.

A measurement accumulates sums over the batches of a split inside the jitted step of
``evaluation.suite`` (``zero`` → ``add`` per batch, on the device), turns the host sums into
JSON-ready results (``summarise``), and says how they are shown: columns of the method
ranking (HTML report and console table, ``columns``), its own report section (``draw``),
and arrays kept out of ``report.json`` (``export``). One module per measurement in this
package; ``__init__.py`` registers them by ``name``.

``add`` receives a ``Batch``: the padded batch plus what every measurement would otherwise
recompute (predictions, maps of the predicted class on the occlusion grid, maps of the true
class; the maps are computed on first use, once per step), and the means to explain or run
the model with other parameters or inputs (the sanity checks). ``Context`` holds what is
fixed for the run (classes, frames, the ``suite.Settings``, other trained models, what
``prepare`` found).

A measurement that needs arrays of its own besides the batch (e.g. re-initialised
parameters) makes them once per run in ``prepare`` (host side, before any batch): they reach
every step as traced arguments, ``batch.prepared[name]``, not as constants compiled into it.
``prepare`` raises ``Skip`` where the measurement cannot run on this model: the run goes on
without it and says so (``results['skipped']``).
"""
from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from fer_jax.evaluation import localisation, occlusion

if TYPE_CHECKING:  # the report page (fer_jax/viz/report.py) and the options (suite.py)
    from fer_jax.evaluation.suite import Settings
    from fer_jax.viz.report import Page


class Skip(Exception):
    """Raised by ``Measurement.prepare`` when the measurement cannot run on this model (e.g.
    no parameters to randomise, no first layer that can absorb an input shift); the message
    is the one-line reason ``suite.measure`` logs and keeps in ``results['skipped']``."""


class Prepared(NamedTuple):
    """What ``Measurement.prepare`` returns: ``arrays``, a pytree of device arrays handed to
    every step as ``batch.prepared[name]`` (traced), and ``setup``, JSON-ready facts about
    the run (e.g. the stages randomised), in ``context.setup[name]`` for ``add`` and
    ``summarise`` and in ``results['setup'][name]``."""

    arrays: Any = None
    setup: dict | None = None


@dataclasses.dataclass(frozen=True)
class Context:
    """What is fixed for a run: class count and names, clip frames, the options; ``seed``
    (``config.seed``); ``references``: other trained models' variables by name (``'compare'``:
    those of ``explain.compare_workdir``); ``setup``: ``Prepared.setup`` of each prepared
    measurement by name."""

    num_classes: int
    num_frames: int
    class_names: tuple[str, ...]
    settings: Settings
    seed: int = 0
    references: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False,
                                                      repr=False)
    setup: Mapping[str, dict] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def expressive(self) -> list[str]:
        """The classes whose videos have action units (all but 'neutral')."""
        return [n for n in self.class_names if n != "neutral"]


class Batch:
    """One padded batch as the measurements see it, built once per jitted step.

    ``video`` uint8 [B, T, H, W, C] (pixels, not normalised), ``x`` float [B, T, H, W, C] (the
    clips as the model takes them, normalised), ``labels`` int [B], ``mask`` bool [B] (False:
    padding), ``predicted`` int [B], ``onehot`` float [B, C] (of ``labels``), ``key`` (a PRNG
    key of this batch), ``data`` (the batch dict, for ground truth fields not named here),
    ``au_masks`` [B, T, H, W] and ``intensity`` [B, T] (None where the split has none);
    ``logits(video)`` runs the model on pixel clips. ``cells``: maps of the predicted class on
    the occlusion grid [B, T, g, g]; ``true_cells``: maps of the true class matched to the
    frames [B, T, h, w]; each is computed on first use.

    With other parameters or inputs (sanity checks): ``variables`` (the trained model's),
    ``prepared`` (this run's ``Prepared.arrays`` by measurement name), ``explain(target,
    variables, x)`` (the method's raw maps), ``cells_of(variables, x, target)`` (them on the
    occlusion grid, [B, T, g, g]; target: the predicted class) and ``apply(variables, x)``
    (logits [B, C] of normalised clips); ``None`` stands for the trained model's or the
    batch's own.
    """

    def __init__(self, data: dict, *, predicted: jnp.ndarray, key: jax.Array,
                 logits: Callable, explain: Callable, context: Context,
                 variables: Any = None, x: jnp.ndarray | None = None,
                 apply: Callable | None = None, prepared: dict | None = None):
        self.data = data
        self.video, self.labels, self.mask = data["video"], data["label"], data["mask"]
        self.au_masks, self.intensity = data.get("au_masks"), data.get("intensity")
        self.predicted, self.key, self.logits = predicted, key, logits
        self.onehot = jax.nn.one_hot(self.labels, context.num_classes)
        self.variables, self.x, self.prepared = variables, x, prepared or {}
        self._explain, self._apply, self._context = explain, apply, context

    def explain(self, target: jnp.ndarray, variables: Any = None,
                x: jnp.ndarray | None = None) -> jnp.ndarray:
        """The method's maps of ``target`` [B] (its own shape, e.g. [B, T', h, w])."""
        return self._explain(self.variables if variables is None else variables,
                             self.x if x is None else x, target)

    def cells_of(self, variables: Any = None, x: jnp.ndarray | None = None,
                 target: jnp.ndarray | None = None) -> jnp.ndarray:
        """``explain`` on the occlusion grid [B, T, g, g] (target: the predicted class)."""
        maps = self.explain(self.predicted if target is None else target, variables, x)
        return occlusion.to_cells(maps, self.video.shape[1], self._context.settings.grid)

    def apply(self, variables: Any = None, x: jnp.ndarray | None = None) -> jnp.ndarray:
        """Logits [B, C] of normalised clips (default: the batch's) under ``variables``."""
        return self._apply(self.variables if variables is None else variables,
                           self.x if x is None else x)

    @functools.cached_property
    def cells(self) -> jnp.ndarray:
        return self.cells_of()

    @functools.cached_property
    def true_cells(self) -> jnp.ndarray:
        return occlusion.match_frames(self.explain(self.labels),
                                      self.video.shape[1]).astype(jnp.float32)


class Column(NamedTuple):
    """One column of the method ranking: ``best`` ('max', 'min' or None) is bolded in the
    HTML table; ``short`` (at most 10 characters) puts it in the console table too."""

    header: str
    value: float | None
    best: str | None = None
    short: str | None = None


@dataclasses.dataclass(frozen=True)
class SectionSpec:
    """A report section that several measurements may add to (the first one creates it):
    title, HTML id, intro; ``chart`` (caption, y label) draws, at the end of the section, a
    bar chart of the scores the measurements give ``Page.score``."""

    title: str
    id: str
    intro: str = ""
    chart: tuple[str, str] | None = None


OCCLUSION_SECTION = SectionSpec("Occlusion test", "occlusion", intro=(
    "Du Toit's test: the top or bottom 0–50 % of the cells of every frame and the top or "
    "bottom 0–4 frames (by map sum) are occluded; solid lines hide the least important, "
    "dashed lines the most important."))
GROUND_TRUTH_SECTION = SectionSpec("Ground truth", "ground-truth", intro=(
    "Maps of the true class against the action-unit heatmaps of the expression (Belharbi "
    "et al.), drawn from the landmarks (neutral videos have none and are left out). CAM-COS: "
    "cosine between map (upsampled to the heatmap and min-max normalised to [0, 1] over the "
    "video, unless explain.cosine='raw') and heatmap per video, averaged per class; the "
    "macro mean is over the expressive classes."), chart=("Localisation scores by method.",
                                       "score (mean over videos)"))


SANITY_SECTION = SectionSpec("Sanity checks", "sanity", intro=(
    "Do the maps depend on what the model learned, and only on that? Adebayo et al. (2018, "
    "'Sanity Checks for Saliency Maps'): maps of the model with its parameters re-initialised "
    "from the output down, and of a model trained on permuted labels, against the trained "
    "model's maps (a method passes when they differ); Kindermans et al. (2019, 'The "
    "(Un)reliability of Saliency Methods'): maps of the model after a constant input shift "
    "that its first layer absorbs (a method passes when they do not change). Maps of the "
    "predicted class on the occlusion grid, absolute values; Spearman rank correlation, SSIM "
    "of min-max normalised maps and the share of the top 10 % cells in common "
    "(fer_jax/evaluation/sanity.py)."))


class Measurement(abc.ABC):
    """One explanation measurement (a module of this package defines one, ``MEASUREMENT``).

    ``name``: the registry key (``config.explain.measurements``); ``keys``: the keys of its
    results in each method's entry of ``report.json`` (default: ``(name,)``); ``needs``:
    ground-truth batch fields it requires (it is skipped where the split lacks one);
    ``description``: a sentence for the intro of the method ranking (with ``columns``);
    ``optional``: run only when named in ``config.explain.measurements``, not by default
    (sensitivity-max and the sanity checks, which compute every method's maps again several
    times).
    """

    name: ClassVar[str]
    keys: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    optional: ClassVar[bool] = False

    @property
    def result_keys(self) -> tuple[str, ...]:
        return self.keys or (self.name,)

    def check(self, context: Context) -> None:
        """Raises ``UserError`` for options it cannot use, before any batch is measured."""

    def prepare(self, model, variables: dict, x: jnp.ndarray,
                context: Context) -> Prepared | None:
        """Once per run, on the host, before any batch: the arrays every step needs besides
        the batch (``Prepared``), or None (the default: nothing). ``x``: zeros of one
        normalised clip ``[1, T, H, W, C]`` (for ``model.init``). Raises ``Skip`` where the
        measurement cannot run on this model."""
        return None

    @abc.abstractmethod
    def zero(self, context: Context) -> dict:
        """Empty sums: a dict of device arrays (fixed shapes)."""

    @abc.abstractmethod
    def add(self, sums: dict, batch: Batch, context: Context) -> dict:
        """``sums`` plus this batch's contribution (pure ``jax.numpy``, traced under jit;
        padded examples, ``batch.mask`` False, must not count)."""

    @abc.abstractmethod
    def summarise(self, sums: dict, context: Context) -> dict[str, Any]:
        """Host sums (NumPy) of one method → its results, keyed by ``result_keys``."""

    def columns(self, result: dict) -> list[Column]:
        """Ranking columns of one method's results (``result``: all measurements' keys)."""
        return []

    def draw(self, page: Page, results: dict, context: Context) -> None:
        """Adds to the HTML report (``page.section(spec)``, ``page.score``); ``results``:
        ``suite.measure``'s, ``results['methods'][label]`` holding this measurement's keys."""

    def export(self, results: dict, method_keys: dict[str, str]) -> dict | None:
        """Moves what ``report.json`` cannot hold out of ``results`` (in place; top-level
        entries may be added) and returns it as named arrays for ``report_<name>.npz``
        (``method_keys``: method label → file-safe key). Default: nothing (None)."""
        return None


def part(result: dict, key: str, field: str = "mean"):
    """``result[key][field]``, None where the measurement did not run."""
    return (result.get(key) or {}).get(field)


def masked_sum(values: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Sum of ``values [B]`` over the real (unpadded) examples."""
    return jnp.sum(jnp.where(mask, values, 0.0))


class PerVideoMean(Measurement):
    """A measurement of one value per video, averaged per class (``localisation.py``'s
    ``class_means``: per class, macro over the expressive classes, over all videos, count).

    Subclasses define ``values(batch, context) -> {result key: (values [B], valid [B])}``
    (traced); padded and invalid videos do not count."""

    @abc.abstractmethod
    def values(self, batch: Batch, context: Context) -> dict:
        """Per-video values and validity of each result key."""

    def zero(self, context):
        return {key: jnp.zeros((2, context.num_classes)) for key in self.result_keys}

    def add(self, sums, batch, context):
        return {key: sums[key] + localisation.per_class_sums(values, valid & batch.mask,
                                                             batch.onehot)
                for key, (values, valid) in self.values(batch, context).items()}

    def summarise(self, sums, context):
        return {key: localisation.class_means(sums[key], list(context.class_names),
                                              context.expressive)
                for key in self.result_keys}

    def score(self, page: Page, results: dict, name: str, key: str | None = None) -> None:
        """Adds ``name``'s bars (each method's mean of ``key``) to the ground-truth chart."""
        key = key or self.result_keys[0]
        page.score(GROUND_TRUTH_SECTION, name, {m: v[key]["mean"]
                                                for m, v in results["methods"].items()})
