"""Class activation maps on an intermediate layer: CAM, Grad-CAM, Grad-CAM++, LayerCAM,
HiResCAM, XGrad-CAM, Eigen-CAM, EigenGrad-CAM, and the landmark CAM of Gund et al. (The
forward-only Score-CAM and Ablation-CAM are in ``cam_perturbation``, FullGrad in
``fullgrad``.)

Each method reads the activation ``A [B, *positions, D]`` of ``layer`` (3D CNN feature maps
``[B, T', H', W', D]``; transformer tokens reshaped to ``[B, T, h, w, D]`` by the model's
``attribution_grid``; landmark CNN maps ``[B, L', T', D]``) and, for the gradient methods,
``G = ∂y_t/∂A`` from one backward pass, and returns one value per position ``[B, *positions]``
(bring it to the input resolution with ``attribution.upsample``):

* CAM (Zhou et al. 2016), for models whose head is global average pooling → linear layer:
  ``Σ_k W[k, t] A_k`` with ``W`` the classifier kernel (no ReLU, no scaling).
* Grad-CAM (Selvaraju et al. 2017): ``ReLU(Σ_k w_k A_k)``, ``w_k`` = mean of ``G_k`` over all
  positions (space and time). On a GAP → linear head ``w_k = W[k, t] / #positions``, so
  Grad-CAM = ReLU(CAM) / #positions.
* Grad-CAM++ (Chattopadhay et al. 2018), with the exponential-score closed form of
  pytorch-grad-cam: ``α = G² / (2G² + Σ_pos A · G³ + 10⁻⁶)`` (0 where ``G = 0``),
  ``w_k = Σ_pos α ReLU(G)``, map ``ReLU(Σ_k w_k A_k)``.
* LayerCAM (Jiang et al. 2021): ``ReLU(Σ_k ReLU(G_k) A_k)``, element-wise weights.
* Eigen-CAM (Muhammad & Yeasin 2020): projection of the centred activations on their first
  right singular vector, per example; class-agnostic (``target`` is ignored). The sign of a
  singular vector is arbitrary; it is chosen so that the map correlates positively with the
  channel sum of the activations. Negative values are clipped to 0, as pytorch-grad-cam clips
  every CAM (``clip=False``: the signed projection).
* HiResCAM (Draelos & Carin 2020): ``ReLU(Σ_k G_k ⊙ A_k)``, the element-wise product with no
  ReLU on the gradients (LayerCAM's differs there).
* XGrad-CAM (Fu et al. 2020): ``w_k = Σ_pos G_k A_k / (Σ_pos A_k + 10⁻⁷)`` (pytorch-grad-cam's
  ε), map ``ReLU(Σ_k w_k A_k)``.
* EigenGrad-CAM (pytorch-grad-cam's ``EigenGradCAM``): Eigen-CAM's projection computed on
  ``G ⊙ A`` instead of ``A``, so it depends on the class; its sign makes it correlate
  positively with the channel sum of ``G ⊙ A`` (pytorch-grad-cam leaves the sign of its SVD),
  clipped at 0 as there.
* Layer attention (Belharbi et al.): the channel mean ``(1/D) Σ_k A_k`` of the layer, with no
  weights and no ReLU; class-agnostic. It is what AU-guided training aligns with the
  action-unit heatmaps (ATT-COS measures it).

``layer`` defaults to the model's ``attribution_layer`` (every model of the zoo names its last
convolutional stage or transformer block), ``reshape`` to its ``attribution_grid``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from fer_jax.attribution import postprocess
from fer_jax.attribution.core import (Reshape, Target, Variables, activation_grid,
                                      default_layer, layer_activations, layer_gradients,
                                      target_index)
from fer_jax.errors import UserError


def _grid(model, act, x, reshape: Reshape | None) -> jnp.ndarray:
    return reshape(act, x) if reshape is not None else activation_grid(model, act, x)


def activations_and_gradients(model, variables: Variables, x: jnp.ndarray, target: Target,
                              layer: str | None = None, reshape: Reshape | None = None):
    """``(A, G, logits)``: the layer's activation grid ``A [B, *positions, D]``, the gradient
    of the target logit with respect to it (same shape) and the logits ``[B, C]``."""
    layer = default_layer(model) if layer is None else layer
    act, grads, logits = layer_gradients(model, variables, x, target, layer)
    return _grid(model, act, x, reshape), _grid(model, grads, x, reshape), logits


def _positions(a: jnp.ndarray) -> tuple[int, ...]:
    """The position axes of ``a [B, *positions, D]``."""
    return tuple(range(1, a.ndim - 1))


def _weighted(weights: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    """``Σ_k w_k A_k``: weights ``[B, D]`` (or the shape of ``a``) → ``[B, *positions]``."""
    if weights.ndim == 2:
        weights = weights.reshape(weights.shape[:1] + (1,) * (a.ndim - 2) + weights.shape[1:])
    return (weights * a).sum(axis=-1)


def grad_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
             layer: str | None = None, reshape: Reshape | None = None) -> jnp.ndarray:
    """Grad-CAM ``[B, *positions]``."""
    a, g, _ = activations_and_gradients(model, variables, x, target, layer, reshape)
    return jax.nn.relu(_weighted(g.mean(axis=_positions(g)), a))


def grad_cam_pp(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                layer: str | None = None, reshape: Reshape | None = None) -> jnp.ndarray:
    """Grad-CAM++ ``[B, *positions]``."""
    a, g, _ = activations_and_gradients(model, variables, x, target, layer, reshape)
    axes = _positions(a)
    g2, g3 = g**2, g**3
    alpha = g2 / (2 * g2 + a.sum(axis=axes, keepdims=True) * g3 + 1e-6)
    alpha = jnp.where(g != 0, alpha, 0.0)
    weights = (alpha * jax.nn.relu(g)).sum(axis=axes)
    return jax.nn.relu(_weighted(weights, a))


def layer_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              layer: str | None = None, reshape: Reshape | None = None) -> jnp.ndarray:
    """LayerCAM ``[B, *positions]``."""
    a, g, _ = activations_and_gradients(model, variables, x, target, layer, reshape)
    return jax.nn.relu(_weighted(jax.nn.relu(g), a))


def _principal_projection(a: jnp.ndarray, clip: bool) -> jnp.ndarray:
    """Projection of the centred ``a [B, *positions, D]`` (each example a positions × channels
    matrix) on its first right singular vector ``[B, *positions]``, the sign chosen so that
    the projection correlates positively with the channel sum of ``a``; ``clip``: negative
    values set to 0."""
    flat = a.reshape(a.shape[0], -1, a.shape[-1])  # [B, P, D]
    centred = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(centred, full_matrices=False)
    projection = jnp.einsum("bpd,bd->bp", centred, vt[:, 0])
    agreement = jnp.einsum("bp,bp->b", projection, flat.sum(axis=-1))
    projection = projection * jnp.where(agreement < 0, -1.0, 1.0)[:, None]
    if clip:
        projection = jax.nn.relu(projection)
    return projection.reshape(a.shape[:-1])


def eigen_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              layer: str | None = None, reshape: Reshape | None = None,
              clip: bool = True) -> jnp.ndarray:
    """Eigen-CAM ``[B, *positions]`` (forward pass only; ``target`` is ignored); ``clip``:
    negative values set to 0 (pytorch-grad-cam's CAMs), else the signed projection."""
    layer = default_layer(model) if layer is None else layer
    act, _ = layer_activations(model, variables, x, layer)
    return _principal_projection(_grid(model, act, x, reshape).astype(jnp.float32), clip)


def hires_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              layer: str | None = None, reshape: Reshape | None = None) -> jnp.ndarray:
    """HiResCAM ``[B, *positions]``: ``ReLU(Σ_k G_k ⊙ A_k)``."""
    a, g, _ = activations_and_gradients(model, variables, x, target, layer, reshape)
    return jax.nn.relu(_weighted(g, a))


def xgrad_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
              layer: str | None = None, reshape: Reshape | None = None) -> jnp.ndarray:
    """XGrad-CAM ``[B, *positions]``: ``w_k = Σ_pos G_k A_k / (Σ_pos A_k + 10⁻⁷)``,
    ``ReLU(Σ_k w_k A_k)``."""
    a, g, _ = activations_and_gradients(model, variables, x, target, layer, reshape)
    axes = _positions(a)
    weights = (g * a).sum(axis=axes) / (a.sum(axis=axes) + 1e-7)
    return jax.nn.relu(_weighted(weights, a))


def eigen_grad_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                   layer: str | None = None, reshape: Reshape | None = None,
                   clip: bool = True) -> jnp.ndarray:
    """EigenGrad-CAM ``[B, *positions]``: Eigen-CAM's projection of ``G ⊙ A`` instead of
    ``A`` (its sign towards the channel sum of ``G ⊙ A``, HiResCAM's unrectified map)."""
    a, g, _ = activations_and_gradients(model, variables, x, target, layer, reshape)
    return _principal_projection((g * a).astype(jnp.float32), clip)


def layer_attention(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                    layer: str | None = None, reshape: Reshape | None = None) -> jnp.ndarray:
    """Layer attention ``T_l`` ``[B, *positions]``: channel mean of the layer's activation grid
    (forward pass only; ``target`` is ignored)."""
    layer = default_layer(model) if layer is None else layer
    act, _ = layer_activations(model, variables, x, layer)
    return channel_mean(model, act, x, reshape)


def channel_mean(model, act, x: jnp.ndarray, reshape: Reshape | None = None) -> jnp.ndarray:
    """A layer output → its activation grid's channel mean ``[B, *positions]`` (float32)."""
    return _grid(model, act, x, reshape).astype(jnp.float32).mean(axis=-1)


def _classifier_kernel(variables: Variables, classifier: str, num_classes: int) -> jnp.ndarray:
    """The classifier's kernel as ``[D, num_classes]`` (Dense ``[D, C]``, 1×…×1 conv)."""
    params = variables["params"]
    for key in classifier.split("/"):
        if key not in params:
            raise UserError(f"classifier {classifier!r} not found in the parameters (missing "
                            f"{key!r}; available: {', '.join(params)})")
        params = params[key]
    kernel = params["kernel"]
    if kernel.shape[-1] != num_classes or any(s != 1 for s in kernel.shape[:-2]):
        raise UserError(f"classifier {classifier!r} kernel {kernel.shape} is not a linear map "
                        f"to {num_classes} classes")
    return kernel.reshape(-1, num_classes)


def cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
        layer: str | None = None, classifier: str | None = None,
        reshape: Reshape | None = None) -> jnp.ndarray:
    """CAM ``Σ_k W[k, t] A_k`` ``[B, *positions]`` for a GAP → linear head.

    ``classifier`` is the parameter path of that linear layer (default: the model's
    ``attribution_classifier``); its input width must equal the layer's channel count.
    """
    layer = default_layer(model) if layer is None else layer
    classifier = classifier or getattr(model, "attribution_classifier", None)
    if classifier is None:
        raise UserError(f"{type(model).__name__} has no global-average-pooling linear head "
                        "for CAM; pass classifier='path/of/dense' or use grad_cam")
    act, logits = layer_activations(model, variables, x, layer)
    a = _grid(model, act, x, reshape)
    kernel = _classifier_kernel(variables, classifier, logits.shape[-1])
    if kernel.shape[0] != a.shape[-1]:
        raise UserError(f"classifier {classifier!r} takes {kernel.shape[0]} features but layer "
                        f"{layer!r} has {a.shape[-1]} channels; CAM needs the layer that is "
                        "globally pooled into the classifier")
    weights = kernel.T[target_index(logits, target)]  # [B, D]
    return _weighted(weights.astype(a.dtype), a)


CAM_METHODS = {"grad_cam": grad_cam, "grad_cam_pp": grad_cam_pp, "layer_cam": layer_cam,
               "eigen_cam": eigen_cam, "hires_cam": hires_cam, "xgrad_cam": xgrad_cam,
               "eigen_grad_cam": eigen_grad_cam}


def landmark_cam(model, variables: Variables, x: jnp.ndarray, target: Target = None,
                 layer: str | None = None, method: str = "grad_cam",
                 band: float = 75.0) -> jnp.ndarray:
    """The landmark × frame activation map of Gund et al. for ``tcn``: ``x [B, T, L, 2] →
    [B, T − 1, L]``.

    The map of ``method`` on ``layer`` (default ``bn3``, ``[B, L', T']``) is upsampled to the
    ``L × T`` grid, normalised to [0, 255] per example, differenced between successive frames,
    and differences inside ``[−band, band]`` are set to 0 (``postprocess.landmark_changes``).
    The paper's TCN has a flatten → dense head, so its "class activation map" is computed here
    with Grad-CAM (CAM proper needs a global-average-pooling head).
    """
    if method not in CAM_METHODS:
        raise UserError(f"unknown CAM method {method!r}; use one of {', '.join(CAM_METHODS)}")
    if x.ndim != 4:
        raise UserError(f"landmark_cam needs landmarks [B, T, L, 2], got shape {x.shape}")
    maps = CAM_METHODS[method](model, variables, x, target, layer)  # [B, L', T']
    _, frames, landmarks, _ = x.shape
    grid = postprocess.upsample(maps, (landmarks, frames))  # [B, L, T]
    return postprocess.landmark_changes(jnp.swapaxes(grid, 1, 2), band)
