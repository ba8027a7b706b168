"""Teacher-forced speech logits equal incremental decoding fed the same tokens (cached == uncached) for both speech
RoPE tables, with image rows in the batch; the speech rows' prefix q/k are exactly 0 with LlamaGen's table and not
with the real-prefix one; the zero-prefix speech table is the backbone's own table, continued."""

from __future__ import annotations

import pytest
import torch

from aromni.inference.sampling import make_generators
from aromni.omnivivo.lora import LoRAConfig, lora_parameters
from aromni.omnivivo.ras import SpeechSampling
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions
from aromni.omnivivo.t2i_rope import rope_2d
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_generate import JointRun, decode_one_step, prefill
from aromni.omnivivo.vivo_model import VivoModel, raster_rope_2d

CFG = T2IConfig.preset("toy", n_layer=2, block_size=16)
L, K = CFG.cls_token_num, 16


def _vivo(**overrides: object) -> VivoModel:
    torch.manual_seed(0)
    backbone = T2IBackbone(CFG).eval()
    backbone.init_weights(zero_output=False)
    cfg = VivoConfig(speech_vocab=K, branch_layers=2, lora=LoRAConfig(r=4, alpha=4.0), max_speech_len=24,
                     **overrides)
    model = VivoModel(backbone, cfg, generator=torch.Generator().manual_seed(1)).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in lora_parameters(model.backbone)[1::2]:
            p.normal_(0.0, 0.05, generator=g)
    return model


def _captions(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(len(lengths), L, CFG.caption_dim, generator=g)
    mask = torch.arange(L)[None, :] < torch.tensor(lengths)[:, None]
    return left_pad_captions(feats * mask[..., None], mask)


def _run(model: VivoModel, feats: torch.Tensor, mask: torch.Tensor, *, image: bool, n: int) -> JointRun:
    B = feats.shape[0]
    return JointRun(model, feats, mask, image=image, speech_prompts=list(range(B)), image_sampling=T2ISampling(),
                    speech_sampling=SpeechSampling(), image_generators=make_generators(range(B), "cpu"),
                    speech_generators=make_generators(range(B), "cpu"),
                    min_len=[0] * B, max_len=[n] * B)


@pytest.mark.parametrize("overrides", [
    {"speech_rope": "zero_prefix"},
    {"speech_rope": "real_prefix"},
    {"speech_rope": "real_prefix", "tap_layer": 0, "branch_dim": 64, "branch_heads": 2},
], ids=["zero_prefix", "real_prefix", "tap0-narrow-branch"])
@pytest.mark.parametrize("image", [True, False], ids=["with-image-rows", "speech-rows-only"])
@torch.no_grad()
def test_teacher_forced_logits_equal_incremental_decoding(overrides, image):
    model = _vivo(**overrides)
    feats, mask = _captions([5, 16])
    N = 12
    codes = torch.randint(0, K, (2, N), generator=torch.Generator().manual_seed(4))
    image_codes = torch.randint(0, CFG.vocab_size, (N,), generator=torch.Generator().manual_seed(5))
    teacher = model.speech_logits(feats, mask, codes)  # [2, N + 1, K + 1]
    assert teacher.shape == (2, N + 1, K + 1)
    run = _run(model, feats, mask, image=image, n=N + 1)
    try:
        steps = [prefill(model, run)[1]]
        for j in range(N):
            fed = image_codes[j].repeat(2) if image else None
            steps.append(decode_one_step(model, run, fed, codes[:, j])[1])
    finally:
        run.close()
    cached = torch.stack(steps, dim=1)
    torch.testing.assert_close(cached, teacher, atol=2e-5, rtol=1e-4)
    # the comparison is not vacuous: another fed code changes the later logits
    other = codes.clone()
    other[:, 3] = (other[:, 3] + 1) % K
    assert (model.speech_logits(feats, mask, other)[:, 4:] - teacher[:, 4:]).abs().max() > 1e-3


def _record_qk(model: VivoModel, monkeypatch: pytest.MonkeyPatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Record the rotated q, k ``[R, H, T, D]`` of every backbone attention call (not the branch's)."""
    records: list[tuple[torch.Tensor, torch.Tensor]] = []
    for layer in model.backbone.layers:
        attention = layer.attention
        original = attention.project

        def project(x: torch.Tensor, rope: torch.Tensor, original=original):
            q, k, v = original(x, rope)
            records.append((q, k))
            return q, k, v
        monkeypatch.setattr(attention, "project", project)
    return records


@pytest.mark.parametrize("speech_rope", ["zero_prefix", "real_prefix"])
@torch.no_grad()
def test_prefix_queries_and_keys_of_the_speech_rows(speech_rope, monkeypatch):
    model = _vivo(speech_rope=speech_rope)
    feats, mask = _captions([5, 16])
    records = _record_qk(model, monkeypatch)
    run = _run(model, feats, mask, image=True, n=4)
    try:
        prefill(model, run)
        decode_one_step(model, run, torch.tensor([1, 2]), torch.tensor([3, 4]))
    finally:
        run.close()
    prefix_calls, step_calls = records[: CFG.n_layer], records[CFG.n_layer:]
    valid = mask.repeat(3, 1)  # [6, L]: rows 0-1 image cond, 2-3 image uncond, 4-5 speech
    for q, k in prefix_calls:
        assert q.shape[0] == 6 and q.shape[2] == L
        assert q[:4].abs().max() == 0 and k[:4].abs().max() == 0  # image rows: LlamaGen's zero prefix, always
        speech_q, speech_k = q[4:].transpose(1, 2)[valid[4:]], k[4:].transpose(1, 2)[valid[4:]]  # [n, H, D]
        if speech_rope == "zero_prefix":
            assert speech_q.abs().max() == 0 and speech_k.abs().max() == 0
        else:  # every valid caption slot of every head has a non-zero query and key
            assert (speech_q.abs().amax(dim=-1) > 0).all() and (speech_k.abs().amax(dim=-1) > 0).all()
    for q, k in step_calls:  # the fed tokens sit past the prefix: real rotations in every row
        assert (q.abs().amax(dim=(1, 2, 3)) > 0).all() and (k.abs().amax(dim=(1, 2, 3)) > 0).all()


def test_zero_prefix_speech_table_is_the_backbones_table_continued():
    model = _vivo(speech_rope="zero_prefix")
    table = model.speech_rope_table()
    backbone_table = model.backbone.rope_table()
    assert table.shape == (L + 24, CFG.head_dim // 2, 2)
    assert torch.equal(table[: backbone_table.shape[0]], backbone_table)
    # past the 4 x 4 grid the raster continues: position 16 + 5 is (row 5, col 1)
    grid = CFG.grid_size
    big = rope_2d(6, CFG.head_dim, CFG.rope_base)
    assert torch.equal(table[L + 21], big[5 * 6 + 1])
    assert torch.equal(raster_rope_2d(grid, CFG.head_dim, CFG.rope_base, L, grid * grid), backbone_table)
