"""Attribution methods as pure JAX functions of ``(model, variables, x, target, …)``.

Every method explains a whole batch with one forward and one backward pass (integrated
gradients, the SmoothGrad family and GradientSHAP: one per path point / noise sample, batched
together; DeepLIFT: a forward pass of the input and of the baseline; Score-CAM and
Ablation-CAM: one forward pass per channel of the layer, in compiled chunks; occlusion,
feature ablation, RISE and KernelSHAP: one forward pass per window, group, mask or coalition,
in compiled chunks), works under ``jax.jit`` and ``jax.vmap``, and depends only on JAX, Flax
and the model interface (``model.apply(variables, x, train=False) → logits [B, C]``), so it
can be used with any ``flax.linen`` model. ``target=None`` explains the predicted class.

>>> maps = attribution.grad_cam(model, variables, x)            # [B, T', H', W']
>>> maps = attribution.upsample(maps, x.shape[1:4])             # [B, T, H, W]

``METHODS`` maps method names to functions with the signature
``fn(model, variables, x, target=None, **options) → maps``.
"""
from fer_jax.attribution.attention import chefer_relevance, rollout, rollout_grad
from fer_jax.attribution.attn_lrp import attn_lrp, attn_lrp_relevance, token_relevance
from fer_jax.attribution.cam import (activations_and_gradients, cam, channel_mean, eigen_cam,
                                     eigen_grad_cam, grad_cam, grad_cam_pp, hires_cam,
                                     landmark_cam, layer_attention, layer_cam, xgrad_cam)
from fer_jax.attribution.cam_perturbation import ablation_cam, score_cam
from fer_jax.attribution.compiled import EAGER_FALLBACKS, compile_when_eager
from fer_jax.attribution.core import (LayerTaps, default_layer, input_gradients,
                                      layer_activations, layer_gradients, module_paths,
                                      target_index)
from fer_jax.attribution.deeplift import deeplift, deeplift_multipliers
from fer_jax.attribution.fullgrad import full_grad
from fer_jax.attribution.groups import (box_groups, default_groups, frame_groups, group_maps,
                                        tube_groups)
from fer_jax.attribution.gradients import (gradient_shap, input_x_gradient,
                                           integrated_gradients, saliency, smoothgrad,
                                           smoothgrad_sq, vargrad)
from fer_jax.attribution.lrp import lrp, lrp_layer_rules, lrp_relevance
from fer_jax.attribution.lrp_composites import PRESETS as LRP_PRESETS
from fer_jax.attribution.lrp_composites import Composite
from fer_jax.attribution.perturbation import (feature_ablation, kernel_shap, kernel_shap_values,
                                              occlusion, rise, rise_masks, shap_coalitions)
from fer_jax.attribution.postprocess import (hotspot_counts, hotspots, landmark_changes,
                                             normalise, per_frame_sums, upsample)

# Eager calls of the methods compile each method as a whole (attribution/compiled.py); each
# name is rebound to its wrapped function once, so the list cannot pair a name with another
# method.
for _name in ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad",
              "smoothgrad_sq", "vargrad", "gradient_shap", "deeplift", "cam", "grad_cam",
              "grad_cam_pp", "layer_cam", "eigen_cam", "hires_cam", "xgrad_cam", "eigen_grad_cam",
              "score_cam", "ablation_cam", "full_grad", "occlusion", "feature_ablation", "rise",
              "kernel_shap", "layer_attention", "lrp", "lrp_relevance", "rollout", "rollout_grad",
              "chefer_relevance", "attn_lrp", "attn_lrp_relevance"):
    globals()[_name] = compile_when_eager(globals()[_name])
del _name

METHODS = {
    "saliency": saliency,
    "input_x_gradient": input_x_gradient,
    "integrated_gradients": integrated_gradients,
    "smoothgrad": smoothgrad,
    "smoothgrad_sq": smoothgrad_sq,
    "vargrad": vargrad,
    "gradient_shap": gradient_shap,
    "deeplift": deeplift,
    "cam": cam,
    "grad_cam": grad_cam,
    "grad_cam_pp": grad_cam_pp,
    "layer_cam": layer_cam,
    "eigen_cam": eigen_cam,
    "hires_cam": hires_cam,
    "xgrad_cam": xgrad_cam,
    "eigen_grad_cam": eigen_grad_cam,
    "score_cam": score_cam,
    "ablation_cam": ablation_cam,
    "full_grad": full_grad,
    "occlusion": occlusion,
    "feature_ablation": feature_ablation,
    "rise": rise,
    "kernel_shap": kernel_shap,
    "layer_attention": layer_attention,
    "lrp": lrp,
    # rollout is class-agnostic: its public signature (model, variables, x, **options) has no
    # target, the registry's does.
    "rollout": lambda model, variables, x, target=None, **options: rollout(
        model, variables, x, **options),
    "rollout_grad": rollout_grad,
    "chefer_relevance": chefer_relevance,
    "attn_lrp": attn_lrp,
}
