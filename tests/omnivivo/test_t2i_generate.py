"""Text-to-image sampling: guided greedy decoding equals a cache-free reference loop, scale 1 through the CFG rows
equals conditional-only sampling, an image's codes do not depend on its batch mates, seeds are reproducible."""

from __future__ import annotations

import pytest
import torch

from aromni.errors import ConfigError, InputError
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_generate import T2ISampling, generate_images, sample_codes
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions

CFG = T2IConfig.preset("toy")


def _model() -> T2IBackbone:
    torch.manual_seed(0)
    model = T2IBackbone(CFG).eval()
    model.init_weights(zero_output=False)
    with torch.no_grad():
        model.output.weight.mul_(20)  # peaked distributions: sampled codes depend on the logits, not just noise
    return model


def _captions(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(len(lengths), CFG.cls_token_num, CFG.caption_dim, generator=g)
    mask = torch.arange(CFG.cls_token_num)[None, :] < torch.tensor(lengths)[:, None]
    return left_pad_captions(feats * mask[..., None], mask)


@torch.no_grad()
def _greedy_reference(model: T2IBackbone, feats: torch.Tensor, mask: torch.Tensor, scale: float) -> torch.Tensor:
    """Guided greedy decoding with the cache-free teacher-forced forward, recomputed from scratch every step."""
    B = feats.shape[0]
    null = model.null_captions(B)
    codes = torch.zeros(B, 0, dtype=torch.long)
    for _ in range(CFG.block_size):
        probe = torch.cat([codes, torch.zeros(B, 1, dtype=torch.long)], dim=1)  # last entry is never read
        cond = model(feats, probe, mask)[:, -1]
        uncond = model(null, probe, mask)[:, -1]
        codes = torch.cat([codes, (uncond + (cond - uncond) * scale).argmax(-1, keepdim=True)], dim=1)
    return codes


def test_guided_greedy_generation_equals_a_cache_free_reference():
    model = _model()
    feats, mask = _captions([5, 16])
    out = generate_images(model, feats, mask, cfg_scale=3.0, top_k=1, seed=[0, 1])
    assert out.shape == (2, CFG.block_size) and out.dtype == torch.int64
    assert torch.equal(out, _greedy_reference(model, feats, mask, 3.0))
    assert model.cache_shape == (0, 0)  # caches freed after the call


def test_scale_one_through_the_cfg_rows_equals_conditional_only_sampling():
    model = _model()
    feats, mask = _captions([7, 12])
    cond_only = generate_images(model, feats, mask, cfg_scale=1.0, seed=[5, 6])
    both_rows = generate_images(model, feats, mask, cfg_scale=1.0, cfg_rows=True, seed=[5, 6])
    assert torch.equal(cond_only, both_rows)
    guided = generate_images(model, feats, mask, cfg_scale=7.5, seed=[5, 6])
    assert not torch.equal(cond_only, guided)  # guidance changes the samples


def test_batched_generation_equals_each_image_alone():
    model = _model()
    feats, mask = _captions([3, 16, 10])
    batch = generate_images(model, feats, mask, cfg_scale=4.0, top_k=50, top_p=0.9, seed=[11, 12, 13])
    for b in range(3):
        alone = generate_images(model, feats[b:b + 1], mask[b:b + 1], cfg_scale=4.0, top_k=50, top_p=0.9,
                                seed=[11 + b])
        assert torch.equal(batch[b:b + 1], alone)


def test_seeds_reproduce_and_differ():
    model = _model()
    feats, mask = _captions([8])
    a = generate_images(model, feats, mask, seed=1)
    assert torch.equal(a, generate_images(model, feats, mask, generators=[torch.Generator().manual_seed(1)]))
    assert not torch.equal(a, generate_images(model, feats, mask, seed=2))
    assert int(a.min()) >= 0 and int(a.max()) < CFG.vocab_size
    model.train()
    generate_images(model, feats, mask, seed=1)
    assert model.training  # the caller's mode comes back


def test_sample_codes_combines_and_filters():
    cond = torch.tensor([[0.0, 2.0, 1.0, -1.0]])
    uncond = torch.tensor([[0.0, 0.0, 3.0, -1.0]])
    gens = [torch.Generator().manual_seed(0)]
    # uncond + (cond - uncond) * 2 = [0, 4, -1, -1]: top_k 1 picks code 1 whatever the noise.
    assert sample_codes(torch.cat([cond, uncond]), T2ISampling(cfg_scale=2.0, top_k=1), gens).tolist() == [1]
    # Scale 0 through the CFG rows is the unconditional argmax (code 2); unguided, the conditional one (1).
    assert sample_codes(torch.cat([cond, uncond]), T2ISampling(cfg_scale=0.0, top_k=1, cfg_rows=True),
                        gens).tolist() == [2]
    assert sample_codes(cond, T2ISampling(cfg_scale=1.0, top_k=1), gens).tolist() == [1]
    # top_p 0.6 keeps the two codes of softmax([0, 9, 8.9, -9]) ~ [0.0001, 0.525, 0.475, 0] and drops code 0.
    logits = torch.tensor([[0.0, 9.0, 8.9, -9.0]])
    picks = {sample_codes(logits, T2ISampling(cfg_scale=1.0, top_k=0, top_p=0.6), gens).item() for _ in range(50)}
    assert picks == {1, 2}


def test_bad_sampling_settings_and_seeds():
    with pytest.raises(ConfigError, match="top_p"):
        T2ISampling(top_p=0.0)
    with pytest.raises(ConfigError, match="top_k"):
        T2ISampling(top_k=-1)
    with pytest.raises(ConfigError, match="temperature"):
        T2ISampling(temperature=float("nan"))
    with pytest.raises(ConfigError, match="cfg_scale"):
        T2ISampling(cfg_scale=float("inf"))
    model = _model()
    feats, mask = _captions([4, 4])
    with pytest.raises(InputError, match="seeds for 2 captions"):
        generate_images(model, feats, mask, seed=[1])
