"""The optional prior term of the flow's training loss (Matcha-TTS's mu-to-mel MSE; CosyVoice2 has none)."""

from __future__ import annotations

import pytest
import torch

from aromni.cosyvoice.flow import FlowBatch, FlowConfig, Token2Mel
from aromni.errors import ConfigError
from aromni.training.recipes.cosyvoice_flow_config import FlowTrainConfig


def _model() -> Token2Mel:
    torch.manual_seed(0)
    return Token2Mel(FlowConfig.preset("toy", vocab_size=50, encoder={"d_model": 32, "heads": 2, "linear_units": 64},
                                       estimator={"channels": 32, "attention_head_dim": 16, "num_heads": 2,
                                                  "num_mid_blocks": 1})).eval()


def test_prior_term_is_the_masked_mse_of_mu() -> None:
    m = _model()
    tokens, lens = torch.randint(0, 50, (2, 6)), torch.tensor([6, 4])
    mel = torch.randn(2, 80, 12)
    mel[1, :, 8:] = 0
    batch = FlowBatch(tokens, lens, mel, torch.randn(2, 192))

    def loss(w: float) -> torch.Tensor:
        return m(batch, generator=torch.Generator().manual_seed(0), streaming=False, prior_weight=w)

    mu, _ = m.encode(tokens, lens)
    mse = sum(((mu[i, :, :2 * n] - mel[i, :, :2 * n]) ** 2).sum() for i, n in enumerate(lens.tolist()))
    mse = mse / (80 * 2 * int(lens.sum()))
    torch.testing.assert_close(loss(2.5) - loss(0.0), 2.5 * mse.detach(), rtol=1e-5, atol=1e-6)


def test_prior_weight_must_not_be_negative() -> None:
    with pytest.raises(ConfigError, match="prior_weight"):
        FlowTrainConfig(prior_weight=-1.0)
