"""WavTokenizer shapes and input checks: F = ceil(T / hop) at the edge cases, output F * hop, clear errors."""

from __future__ import annotations

import math

import pytest
import torch

from aromni.errors import ConfigError, InputError
from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig


@pytest.fixture(scope="module")
def odd():
    torch.manual_seed(0)
    return WavTokenizer(WavTokenizerConfig.preset("tiny-odd"))  # hop 30 = 2 * 3 * 5


@pytest.mark.parametrize("num_samples", [1, 2, 3, 4, 29, 30, 31, 59, 60, 61, 301])
def test_frame_count_and_output_length(odd, num_samples):
    """T <= 3 is not longer than the first conv's reflect padding (3 per side): the zero-extension path."""
    codes = odd.encode(torch.randn(3, num_samples))
    assert codes.shape == (3, math.ceil(num_samples / 30)) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < odd.codebook_size
    wav = odd.decode(codes)
    assert wav.shape == (3, codes.shape[1] * 30) and torch.isfinite(wav).all()


def test_frame_count_full_size_40hz():
    """Values checked against the official code in the format reference (§A.3)."""
    model = WavTokenizer(WavTokenizerConfig.preset("40hz"))
    for num_samples, frames in ((1, 1), (599, 1), (600, 1), (601, 2), (24000, 40), (24001, 41)):
        assert model.encode(torch.randn(1, num_samples)).shape == (1, frames)
    assert model.decode(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 1800)


def test_metadata_of_presets():
    with torch.device("meta"):
        m40, m75 = WavTokenizer(WavTokenizerConfig.preset("40hz")), WavTokenizer(WavTokenizerConfig.preset("75hz"))
    assert (m40.hop_length, m40.frame_rate, m40.codebook_size, m40.sample_rate) == (600, 40.0, 4096, 24000)
    assert (m75.hop_length, m75.frame_rate, m75.cfg.n_fft) == (320, 75.0, 1280)
    assert m40.metadata()["type"] == "wavtokenizer" and m40.metadata()["streaming_exact"] is False


def test_batch_rows_are_independent(odd):
    wav = torch.randn(2, 200)
    codes = odd.encode(wav)
    assert torch.equal(odd.encode(wav[1:]), codes[1:])
    torch.testing.assert_close(odd.decode(codes[1:]), odd.decode(codes)[1:])


def test_bad_inputs_raise_input_errors(odd):
    with pytest.raises(InputError, match=r"\[B, T\]"):
        odd.encode(torch.randn(100))
    with pytest.raises(InputError):
        odd.encode(torch.randn(1, 0))
    with pytest.raises(InputError, match="0..15"):
        odd.decode(torch.tensor([[0, 16]]))
    with pytest.raises(InputError, match="integer"):
        odd.decode(torch.zeros(1, 3))
    with pytest.raises(InputError, match="bandwidth_id"):
        odd.decode(torch.zeros(1, 3, dtype=torch.long), bandwidth_id=4)
    assert odd.decode(torch.zeros(2, 0, dtype=torch.long)).shape == (2, 0)


def test_config_validation_and_round_trip():
    cfg = WavTokenizerConfig.preset("75hz")
    assert WavTokenizerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="n_fft"):
        WavTokenizerConfig(strides=(4, 5), n_fft=21)
    with pytest.raises(ConfigError, match="multiple of 32"):
        WavTokenizerConfig(backbone_dim=100)
    with pytest.raises(ConfigError, match="unknown fields"):
        WavTokenizerConfig.from_dict({"hop": 3})
    with pytest.raises(ConfigError, match="preset"):
        WavTokenizerConfig.preset("12hz")
