"""The joint loop preserves LlamaGen's images bit for bit (speech rows beside them or not, speech ending before or
after the image), finished streams leave the batch (fewer rows computed, same images), and a prompt's speech does
not depend on its batch mates."""

from __future__ import annotations

import copy

import pytest
import torch

from aromni.omnivivo.lora import LoRAConfig, lora_parameters, lora_rows
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_generate import T2ISampling, generate_images
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_generate import collect, generate
from aromni.omnivivo.vivo_model import VivoModel

CFG = T2IConfig.preset("toy", n_layer=2, block_size=16)
L, K = CFG.cls_token_num, 16


def _backbone() -> T2IBackbone:
    torch.manual_seed(0)
    model = T2IBackbone(CFG).eval()
    model.init_weights(zero_output=False)
    with torch.no_grad():
        model.output.weight.mul_(20)  # peaked image distributions: codes follow the logits, not just the noise
    return model


def _vivo(backbone: T2IBackbone, **overrides: object) -> VivoModel:
    kw = {"speech_vocab": K, "branch_layers": 2, "lora": LoRAConfig(r=4, alpha=4.0), "max_speech_len": 40}
    cfg = VivoConfig(**{**kw, **overrides})
    model = VivoModel(backbone, cfg, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in lora_parameters(model.backbone)[1::2]:  # B is zero after init: a no-op adapter proves nothing
            p.normal_(0.0, 0.05, generator=g)
        model.branch.head.weight.mul_(30)  # peaked speech distributions
    return model


def _captions(lengths: list[int], seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lengths), L, CFG.caption_dim, generator=g)
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    return left_pad_captions(feats * mask[..., None], mask)


@pytest.fixture(scope="module")
def models() -> tuple[T2IBackbone, VivoModel]:
    backbone = _backbone()
    reference = copy.deepcopy(backbone)  # the frozen backbone alone, never injected
    return reference, _vivo(backbone)


@pytest.mark.parametrize("lengths", [[4, 6], [24, 30], [4, 30]], ids=["before", "after", "mixed"])
@pytest.mark.parametrize("sampling", [T2ISampling(), T2ISampling(cfg_scale=1.0, top_k=50, top_p=0.9)],
                         ids=["cfg7.5", "unguided"])
def test_image_codes_are_bit_identical_with_and_without_speech(models, lengths, sampling):
    reference, model = models
    feats, mask = _captions([5, 16])
    s = sampling
    want = generate_images(reference, feats, mask, cfg_scale=s.cfg_scale, top_k=s.top_k, top_p=s.top_p,
                           seed=[7, 8], progress=False)
    joint = collect(generate(model, feats, mask, image_sampling=s, seed=[7, 8], min_len=lengths,
                             max_len=lengths, progress=False), 2)
    alone = collect(generate(model, feats, mask, image_sampling=s, seed=[7, 8], speech=False, progress=False), 2)
    assert [len(c) for c in joint.speech_codes] == lengths  # the speech really ran beside the image, this long
    assert torch.equal(joint.image_codes, want)
    assert torch.equal(alone.image_codes, want)


def test_the_adapter_would_change_the_images(models):
    """Non-triviality of the test above: with LoRA on, the backbone draws other images."""
    reference, model = models
    feats, mask = _captions([5, 16])
    want = generate_images(reference, feats, mask, seed=[7, 8], progress=False)
    with lora_rows(model.backbone, 1.0):
        adapted = generate_images(model.backbone, feats, mask, seed=[7, 8], progress=False)
    assert not torch.equal(adapted, want)


def test_finished_streams_leave_the_batch(models):
    reference, model = models
    feats, mask = _captions([9, 16])
    rows, branch_rows = [], []
    h1 = model.backbone.layers[0].register_forward_pre_hook(lambda _m, args: rows.append(args[0].shape[0]))
    h2 = model.branch.layers[0].register_forward_pre_hook(lambda _m, args: branch_rows.append(args[0].shape[0]))
    try:
        out = collect(generate(model, feats, mask, seed=[3, 4], min_len=[4, 24], max_len=[4, 24],
                               progress=False), 2)
    finally:
        h1.remove()
        h2.remove()
    # prefill and 3 steps with every row (6 = 2 image halves x 2 + 2 speech), then prompt 0's speech has its 4
    # codes: 5 rows until the 16th image code, then prompt 1's speech row alone for its last 8 codes.
    assert rows == [6] * 4 + [5] * 12 + [1] * 8
    assert branch_rows == [2] * 4 + [1] * 20
    assert torch.equal(out.image_codes, generate_images(reference, feats, mask, seed=[3, 4], progress=False))
    assert model.backbone.cache_shape == (0, 0) and model.branch.cache_shape == (0, 0)  # freed


@pytest.mark.parametrize("sampling", [SpeechSampling(greedy=True), SpeechSampling()], ids=["greedy", "ras"])
def test_a_prompts_speech_does_not_depend_on_its_batch_mates(models, sampling):
    _, model = models
    feats, mask = _captions([3, 16, 10], seed=5)
    kw = {"speech_sampling": sampling, "min_len": 2, "max_len": 20, "progress": False}
    batch = collect(generate(model, feats, mask, seed=[11, 12, 13], **kw), 3)
    assert all(len(c) >= 2 for c in batch.speech_codes)
    for b in range(3):
        one = slice(b, b + 1)
        with_image = collect(generate(model, feats[one], mask[one], seed=[11 + b], **kw), 1)
        speech_only = collect(generate(model, feats[one], mask[one], seed=[11 + b], image=False, **kw), 1)
        assert torch.equal(with_image.speech_codes[0], batch.speech_codes[b])
        assert torch.equal(speech_only.speech_codes[0], batch.speech_codes[b])
        assert with_image.speech_reasons[0] == batch.speech_reasons[b]
    assert len({tuple(c.tolist()) for c in batch.speech_codes}) == 3  # the prompts did say different things


def test_full_toy_backbone_preserves_images_with_real_prefix_and_zero_prefix_speech():
    """The whole toy preset (4 blocks, 8 x 8 images), speech ending mid-image, both speech RoPE tables."""
    cfg = T2IConfig.preset("toy")
    torch.manual_seed(0)
    backbone = T2IBackbone(cfg).eval()
    backbone.init_weights(zero_output=False)
    with torch.no_grad():
        backbone.output.weight.mul_(20)
    reference = copy.deepcopy(backbone)
    feats, mask = _captions([2, 11])
    want = generate_images(reference, feats, mask, seed=[0, 1], progress=False)
    for speech_rope in ("real_prefix", "zero_prefix"):
        model = _vivo(copy.deepcopy(backbone), speech_rope=speech_rope, max_speech_len=80)
        out = collect(generate(model, feats, mask, seed=[0, 1], min_len=[20, 70], max_len=[20, 70],
                               progress=False), 2)
        assert [len(c) for c in out.speech_codes] == [20, 70]
        assert torch.equal(out.image_codes, want)
