"""TimeSformer converters against HF transformers' PyTorch TimeSformer (CPU)."""
import re

import jax.numpy as jnp
import numpy as np
import pytest

from fer_jax.errors import UserError
from fer_jax.models import convert

torch = pytest.importorskip("torch", reason="parity tests need torch (pip install '.[interop]')")
transformers = pytest.importorskip("transformers",
                                   reason="parity tests need transformers ('.[interop]')")

SMALL = dict(image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2,
             num_attention_heads=4, intermediate_size=64, num_labels=5)


def _hf_model(**overrides):
    torch.manual_seed(0)
    config = transformers.TimesformerConfig(**{**SMALL, **overrides})
    model = transformers.TimesformerForVideoClassification(config).eval()
    with torch.no_grad():  # HF zero-initialises some tensors; randomise all for a real test
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def _state(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _video(seed=0, frames=4, size=32):
    return np.random.default_rng(seed).standard_normal((2, frames, size, size, 3)).astype(
        np.float32)


def _hf_logits(model, video):
    with torch.no_grad():
        return model(torch.from_numpy(video).permute(0, 1, 4, 2, 3)).logits.numpy()


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_hf_parity(attention_type):
    hf = _hf_model(attention_type=attention_type)
    module, variables = convert.timesformer_from_hf(_state(hf), hf.config.to_dict())
    video = _video()
    ours = np.asarray(module.apply(variables, jnp.asarray(video)))
    reference = _hf_logits(hf, video)
    assert np.abs(ours - reference).max() <= 1e-4, np.abs(ours - reference).max()


def test_hf_space_only_parity_with_frame_averaging():
    """HF's space-only classifier reads one cls token per frame; the official model (and
    ours) averages the tokens over frames before the final LayerNorm — compare with that."""
    hf = _hf_model(attention_type="space_only")
    module, variables = convert.timesformer_from_hf(_state(hf), hf.config.to_dict())
    video = _video()
    with torch.no_grad():
        out = hf.timesformer(torch.from_numpy(video).permute(0, 1, 4, 2, 3),
                             output_hidden_states=True)
        last = out.hidden_states[-1]  # [B*T, 1+N, D] before the final LayerNorm
        cls = last.reshape(2, 4, *last.shape[1:]).mean(1)[:, 0]
        reference = hf.classifier(hf.timesformer.layernorm(cls)).numpy()
    ours = np.asarray(module.apply(variables, jnp.asarray(video)))
    assert np.abs(ours - reference).max() <= 1e-4


# HF → official facebookresearch names, written out independently of the converter.
_OFFICIAL = [
    (r"^timesformer\.embeddings\.cls_token$", "model.cls_token"),
    (r"^timesformer\.embeddings\.position_embeddings$", "model.pos_embed"),
    (r"^timesformer\.embeddings\.time_embeddings$", "model.time_embed"),
    (r"^timesformer\.embeddings\.patch_embeddings\.projection\.", "model.patch_embed.proj."),
    (r"^timesformer\.encoder\.layer\.", "model.blocks."),
    (r"\.temporal_attention\.attention\.qkv\.", ".temporal_attn.qkv."),
    (r"\.temporal_attention\.output\.dense\.", ".temporal_attn.proj."),
    (r"\.temporal_layernorm\.", ".temporal_norm1."),
    (r"\.temporal_dense\.", ".temporal_fc."),
    (r"\.attention\.attention\.qkv\.", ".attn.qkv."),
    (r"\.attention\.output\.dense\.", ".attn.proj."),
    (r"\.layernorm_before\.", ".norm1."),
    (r"\.layernorm_after\.", ".norm2."),
    (r"\.intermediate\.dense\.", ".mlp.fc1."),
    (r"\.output\.dense\.", ".mlp.fc2."),
    (r"^timesformer\.layernorm\.", "model.norm."),
    (r"^classifier\.", "model.head."),
]


def _official_state(hf):
    out = {}
    for name, value in _state(hf).items():
        for pattern, repl in _OFFICIAL:
            name = re.sub(pattern, repl, name)
        out[name] = value
    return {"model_state": out}  # the .pyth layout


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_official_checkpoint_parity(attention_type):
    hf = _hf_model(attention_type=attention_type)
    module, variables = convert.timesformer_from_official(_official_state(hf), num_heads=4)
    assert module.attention_type == attention_type and module.num_layers == 2
    video = _video(1)
    ours = np.asarray(module.apply(variables, jnp.asarray(video)))
    assert np.abs(ours - _hf_logits(hf, video)).max() <= 1e-4


def test_new_head_for_fine_tuning_and_bf16():
    hf = _hf_model()
    module, variables = convert.timesformer_from_hf(_state(hf), hf.config.to_dict(),
                                                    num_classes=6, dtype=jnp.bfloat16)
    assert variables["params"]["classifier"]["kernel"].shape == (32, 6)
    logits = module.apply(variables, jnp.asarray(_video()))
    assert logits.shape == (2, 6) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()


def test_mismatched_checkpoints_are_reported():
    hf = _hf_model()
    state = _state(hf)
    with pytest.raises(UserError, match="no 'timesformer.encoder.layer.1"):
        convert.timesformer_from_hf({k: v for k, v in state.items() if ".layer.1." not in k},
                                    hf.config.to_dict())
    config = {**hf.config.to_dict(), "num_hidden_layers": 1}
    with pytest.raises(UserError, match="does not use"):
        convert.timesformer_from_hf(state, config)
    with pytest.raises(UserError, match="not an official TimeSformer"):
        convert.timesformer_from_official(state)


@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_vit_base_parameter_count_equals_hf(attention_type):
    """ViT-B/16, 8×224, 400 classes (the Kinetics-400 release): same count as HF's model."""
    import jax

    from fer_jax import models

    config = transformers.TimesformerConfig(num_labels=400, attention_type=attention_type)
    with torch.device("meta"):  # shapes only, no memory
        hf = transformers.TimesformerForVideoClassification(config)
    expected = sum(p.numel() for p in hf.parameters())
    model = models.build("timesformer", num_classes=400, attention_type=attention_type)
    x = jax.ShapeDtypeStruct((1, 8, 224, 224, 3), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)["params"]
    assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == expected
    if attention_type == "divided_space_time":
        assert expected == 121_566_352
