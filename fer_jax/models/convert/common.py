"""Shared pieces of the PyTorch → Flax converters: array layouts and key bookkeeping."""
from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from fer_jax.errors import UserError


# Flax BatchNorm leaves → PyTorch BatchNorm buffers/parameters.
BATCH_NORM = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def abstract_variables(module, in_channels: int, frames: int = 16, size: int = 32) -> dict:
    """The module's variables as ShapeDtypeStructs for input ``[1, frames, size, size,
    in_channels]`` (no computation)."""
    x = jax.ShapeDtypeStruct((1, frames, size, size, in_channels), jnp.float32)
    return jax.eval_shape(module.init, jax.random.PRNGKey(0), x)


def to_numpy(state_dict: Mapping) -> dict[str, np.ndarray]:
    """``name → array`` with every value as a float32/int NumPy array (torch tensors accepted).

    An official ``.pyth`` checkpoint wraps its weights as ``{'model_state': state_dict}``; that
    wrapper is removed here.
    """
    if not isinstance(state_dict, Mapping):
        raise UserError(f"a state dict (parameter name → tensor) is needed, the file holds a "
                        f"{type(state_dict).__name__}; save model.state_dict(), not the "
                        f"tensor or the model")
    if "model_state" in state_dict and isinstance(state_dict["model_state"], Mapping):
        state_dict = state_dict["model_state"]
    out = {}
    for name, value in state_dict.items():
        if hasattr(value, "detach"):  # torch.Tensor, without importing torch
            value = value.detach().cpu().numpy()
        value = np.asarray(value)
        out[name] = value.astype(np.float32) if value.dtype.kind == "f" else value
    return out


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch conv weight ``[O, I, *k]`` → Flax ``[*k, I, O]`` (any number of spatial dims)."""
    return np.moveaxis(weight, (0, 1), (-1, -2))


def dense_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch linear weight ``[out, in]`` → Flax ``[in, out]``."""
    return weight.T


def check_shapes(variables: dict, expected: dict, source: str) -> None:
    """Raises UserError unless ``variables`` has exactly the shapes of ``expected``."""
    got = jax.tree.map(lambda a: a.shape, variables)
    want = jax.tree.map(lambda a: a.shape, expected)
    if got != want:
        got_flat = dict(jax.tree_util.tree_flatten_with_path(got)[0])
        want_flat = dict(jax.tree_util.tree_flatten_with_path(want)[0])
        diff = [f"{jax.tree_util.keystr(k)}: {got_flat.get(k)} vs {want_flat.get(k)}"
                for k in sorted(set(got_flat) | set(want_flat), key=str)
                if got_flat.get(k) != want_flat.get(k)]
        raise UserError(f"converted {source} weights do not fit the model settings "
                        f"(checkpoint vs model: {'; '.join(diff[:3])})")


def nest(flat: Mapping[str, np.ndarray]) -> dict:
    """``{'a/b/c': x}`` → ``{'a': {'b': {'c': x}}}``."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree


def read_variables(abstract: Mapping, keys: "KeyTracker", torch_name, convert_kernel,
                   skip: str | None = None) -> dict:
    """The ``params`` and ``batch_stats`` of ``abstract`` (a model's variables as shapes) read
    from ``keys``: each Flax path (a tuple of names) is looked up as ``torch_name(path)``,
    kernels go through ``convert_kernel(path, value)``, and the top-level module ``skip``
    (a classifier being replaced) is left out. Returns the nested variables (NumPy)."""
    flat = {}
    for collection in ("params", "batch_stats"):
        for path, _ in jax.tree_util.tree_flatten_with_path(abstract.get(collection, {}))[0]:
            names = tuple(k.key for k in path)
            if names[0] == skip:
                continue
            value = keys[torch_name(names)]
            if names[-1] == "kernel":
                value = convert_kernel(names, value)
            flat[collection + "/" + "/".join(names)] = value
    return nest(flat)


class KeyTracker:
    """Reads a PyTorch state dict and reports the keys that were missing or never used.

    >>> keys = KeyTracker(state_dict, source='HF TimeSformer')
    >>> w = keys['timesformer.embeddings.cls_token']
    >>> keys.check_all_used(ignore=('num_batches_tracked',))
    """

    def __init__(self, state_dict: Mapping[str, np.ndarray], source: str):
        self.state_dict = state_dict
        self.source = source
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.state_dict:
            raise UserError(f"{self.source} state dict has no {name!r}; is this the right "
                            f"checkpoint type? ({len(self.state_dict)} keys, e.g. "
                            f"{', '.join(list(self.state_dict)[:3])})")
        self.used.add(name)
        return self.state_dict[name]

    def __contains__(self, name: str) -> bool:
        return name in self.state_dict

    def check_all_used(self, ignore: tuple[str, ...] = ()) -> None:
        """Raises UserError naming the unused keys (substrings in ``ignore`` are skipped)."""
        unused = [k for k in self.state_dict
                  if k not in self.used and not any(s in k for s in ignore)]
        if unused:
            raise UserError(f"{self.source} state dict has {len(unused)} weights this model "
                            f"does not use (e.g. {', '.join(unused[:4])}); the architecture "
                            f"settings do not match the checkpoint")
