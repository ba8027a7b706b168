"""The flow model's sampler and masks: deterministic with the fixed noise, CFG rate 0 equals the conditional
estimator alone, a padded batch equals its rows alone, a streaming prefix's final frames never change, and the
CFM loss equals a hand computation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aromni.cosyvoice.flow import FlowBatch, FlowConfig, Token2Mel, cosine_t_span, final_frames
from aromni.cosyvoice.flow.encoder import pad_mask

CHUNK = 4  # tokens per streaming chunk (CosyVoice2: 25), small so short sequences span several chunks


def tiny_model(seed: int = 0, chunk: int = CHUNK) -> Token2Mel:
    torch.manual_seed(seed)
    cfg = FlowConfig.preset("toy", vocab_size=50, encoder={
        "d_model": 32, "heads": 2, "linear_units": 64, "num_blocks": 1, "num_up_blocks": 1,
        "static_chunk_size": chunk}, estimator={"channels": 32, "attention_head_dim": 16, "num_heads": 2,
                                                "n_blocks": 1, "num_mid_blocks": 1})
    return Token2Mel(cfg).eval()


def test_sampler_is_deterministic_and_takes_user_noise():
    m = tiny_model()
    tokens = torch.randint(0, 50, (2, 9))
    a = m.inference(tokens, n_timesteps=4)
    b = m.inference(tokens, n_timesteps=4)
    assert a.shape == (2, 80, 18) and torch.equal(a, b)
    noise = torch.randn(1, 80, 18, generator=torch.Generator().manual_seed(5))
    c = m.inference(tokens, n_timesteps=4, noise=noise)
    assert torch.equal(c, m.inference(tokens, n_timesteps=4, noise=noise))
    assert not torch.allclose(a, c)
    # the fixed noise is CosyVoice2's: torch.manual_seed(0); randn(1, 80, 15000)
    torch.manual_seed(0)
    assert torch.equal(m.decoder.rand_noise, torch.randn(1, 80, 15000))


def test_cfg_rate_zero_is_the_conditional_estimator_alone():
    m = tiny_model()
    tokens = torch.randint(0, 50, (2, 7))
    lens = torch.tensor([7, 5])
    spk = torch.randn(2, 192)
    got = m.inference(tokens, lens, spk=spk, n_timesteps=5, cfg_rate=0.0)
    # reference: plain Euler on the cosine schedule with the conditional estimator only
    mu, mu_len = m.encode(tokens, lens)
    mask = pad_mask(mu_len, mu.shape[-1])[:, None].float()
    x = m.decoder.rand_noise[:, :, : mu.shape[-1]].expand(2, -1, -1).clone()
    ts = cosine_t_span(5)
    s, cond = m.embed_speaker(spk), torch.zeros_like(mu)
    with torch.no_grad():
        for k in range(5):
            x = x + (ts[k + 1] - ts[k]) * m.decoder.estimator(x, mask, mu, ts[k].expand(2), s, cond)
    torch.testing.assert_close(got, x * mask, atol=2e-5, rtol=1e-5)
    guided = m.inference(tokens, lens, spk=spk, n_timesteps=5, cfg_rate=0.7)
    assert (guided - got).abs().max() > 1e-3  # guidance changes the result


@pytest.mark.parametrize("streaming", [False, True])
def test_padded_batch_equals_rows_alone(streaming):
    m = tiny_model()
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50, (3, 11), generator=g)
    lens = torch.tensor([11, 6, 9])
    p_tokens = torch.randint(0, 50, (3, 4), generator=g)
    p_lens = torch.tensor([4, 0, 2])
    p_mel = torch.randn(3, 80, 8, generator=g)
    spk = torch.randn(3, 192, generator=g)
    for finalize in (True, False):
        batch = m.inference(tokens, lens, p_tokens, p_lens, p_mel, spk, n_timesteps=3, finalize=finalize,
                            streaming=streaming)
        hold = 0 if finalize else 3
        assert batch.shape == (3, 80, 2 * (11 - hold))
        for i in range(3):
            n, p = int(lens[i]), int(p_lens[i])
            alone = m.inference(tokens[i:i + 1, :n], None, p_tokens[i:i + 1, :p], None, p_mel[i:i + 1, :, :2 * p],
                                spk[i:i + 1], n_timesteps=3, finalize=finalize, streaming=streaming)
            torch.testing.assert_close(batch[i:i + 1, :, : 2 * (n - hold)], alone, atol=3e-5, rtol=1e-4)
            assert batch[i, :, 2 * (n - hold):].abs().sum() == 0  # padding is zeroed


def test_streaming_prefix_frames_are_final():
    m = tiny_model()
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 50, (1, 24), generator=g)
    p_tokens, p_mel = torch.randint(0, 50, (1, 3), generator=g), torch.randn(1, 80, 6, generator=g)
    spk = torch.randn(1, 192, generator=g)
    full = m.inference(tokens, None, p_tokens, None, p_mel, spk, n_timesteps=3, streaming=True)
    checked = 0
    for n in (6, 9, 12, 14, 17):
        part = m.inference(tokens[:, :n], None, p_tokens, None, p_mel, spk, n_timesteps=3, streaming=True,
                           finalize=False)
        assert part.shape[-1] == 2 * (n - 3)
        # frames counted from the start of the prompt; the prompt's 6 frames are not returned
        fixed = final_frames(3 + n, chunk=CHUNK) - 6
        assert fixed > 0
        torch.testing.assert_close(part[..., :fixed], full[..., :fixed], atol=1e-5, rtol=1e-5)
        checked += fixed
        if fixed < part.shape[-1]:  # the frames of an incomplete chunk are provisional (they do change)
            assert (part[..., fixed:] - full[..., fixed:part.shape[-1]]).abs().max() > 1e-4
    assert checked > 0
    # without chunk masks the same prefix is not final: attention sees the future
    offline = m.inference(tokens, None, p_tokens, None, p_mel, spk, n_timesteps=3)
    part = m.inference(tokens[:, :12], None, p_tokens, None, p_mel, spk, n_timesteps=3, finalize=False)
    assert (part[..., :8] - offline[..., :8]).abs().max() > 1e-4


def test_chunk_masked_encoder_prefix_is_final():
    m = tiny_model()
    tokens = torch.randint(0, 50, (1, 30))
    long_mu, _ = m.encode(tokens, torch.tensor([30]), streaming=True, hold_back=3)
    for n in (7, 11, 19):
        mu, mu_len = m.encode(tokens[:, :n], torch.tensor([n]), streaming=True, hold_back=3)
        fixed = final_frames(n, chunk=CHUNK)
        assert int(mu_len) == 2 * (n - 3) and fixed > 0
        torch.testing.assert_close(mu[..., :fixed], long_mu[..., :fixed], atol=1e-5, rtol=1e-5)


class Echo(nn.Module):
    """A stand-in estimator returning its input ``y`` and recording what it was given."""

    def forward(self, x, mask, mu, t, spks, cond, streaming=False):
        self.seen = (mu, spks, cond)
        return x


def test_cfm_loss_matches_hand_computation():
    m = tiny_model()
    cfm = m.decoder
    cfm.estimator = Echo()
    cfm.cfg.training_cfg_rate = 0.0
    x1 = torch.randn(1, 80, 2)
    mask = torch.tensor([[[1.0, 0.0]]])
    mu, spks, cond = torch.randn(1, 80, 2), torch.randn(1, 80), torch.randn(1, 80, 2)
    loss = cfm.compute_loss(x1, mask, mu, spks, cond, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    t = float(torch.rand(1, 1, 1, generator=g))
    z = torch.randn(1, 80, 2, generator=g)
    s = 1e-6
    # pred = y, so pred - u = (2 - s - (1 - s) t) z + (t - 1) x1; only frame 0 counts; divided by 1 frame x 80
    diff = (2 - s - (1 - s) * t) * z[0, :, 0] + (t - 1) * x1[0, :, 0]
    expected = sum(float(d) ** 2 for d in diff) / 80
    assert abs(float(loss) - expected) < 1e-5 * max(1.0, expected)
    assert torch.equal(cfm.estimator.seen[0], mu)  # no CFG dropout at rate 0
    cfm.cfg.training_cfg_rate = 1.0  # every sample dropped: mu, spks and cond all zero
    cfm.compute_loss(x1, mask, mu, spks, cond, generator=torch.Generator().manual_seed(3))
    assert all(float(v.abs().sum()) == 0 for v in cfm.estimator.seen)


def test_training_forward_prompt_and_masking():
    m = tiny_model().train()
    tokens = torch.randint(0, 50, (2, 6))
    lens = torch.tensor([6, 4])
    mel = torch.randn(2, 80, 12)
    mel[1, :, 8:] = 0
    batch = FlowBatch(tokens, lens, mel, torch.randn(2, 192))
    a = m(batch, generator=torch.Generator().manual_seed(0), streaming=False)
    b = m(batch, generator=torch.Generator().manual_seed(0), streaming=False)
    assert torch.equal(a, b) and a.dim() == 0 and torch.isfinite(a)
    a.backward()
    assert m.input_embedding.weight.grad is not None and m.spk_embed_affine_layer.weight.grad is not None
    # padded target frames do not change the loss
    mel2 = mel.clone()
    mel2[1, :, 8:] = 100.0
    c = m(FlowBatch(tokens, lens, mel2, batch.spk), generator=torch.Generator().manual_seed(0), streaming=False)
    torch.testing.assert_close(a.detach(), c.detach())
