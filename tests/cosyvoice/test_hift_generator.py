"""HiFTGenerator: output length, determinism, the streaming cache of the NSF source, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from aromni.cosyvoice.hift.config import HiFTConfig
from aromni.cosyvoice.hift.generator import HiFTGenerator
from aromni.cosyvoice.hift.griffin_lim import griffin_lim_from_mel
from aromni.cosyvoice.hift.pitch import yin_f0
from aromni.cosyvoice.mel import matcha_mel
from aromni.errors import ConfigError, InputError

SMALL = HiFTConfig.preset("toy", base_channels=16, f0_channels=16)


@pytest.fixture(scope="module")
def model() -> HiFTGenerator:
    torch.manual_seed(0)
    m = HiFTGenerator(SMALL).eval()
    with torch.no_grad():  # a voiced F0 (~150 Hz) so the sine part of the source is not zero
        m.f0_predictor.classifier.bias.fill_(150.0)
    return m


def _mel(frames: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(seed)) - 4


@pytest.mark.parametrize("frames", [1, 3, 11])
def test_output_length_is_480_per_frame(model: HiFTGenerator, frames: int) -> None:
    wav, src = model.inference(_mel(frames, batch=2))
    assert model.hop_length == 480 and SMALL.hop_length == 480
    assert wav.shape == (2, 480 * frames) and src.shape == (2, 1, 480 * frames)
    assert wav.abs().max() <= SMALL.audio_limit


def test_cosyvoice2_preset_size_and_training_forward() -> None:
    big = HiFTGenerator(HiFTConfig.preset("cosyvoice2"))
    # CosyVoice2's hift.pt is ~83 MB of float32: ~20.8M parameters
    assert 20.7e6 < sum(p.numel() for p in big.parameters()) < 20.9e6
    small = HiFTGenerator(SMALL).train()
    wav, f0 = small(_mel(4))
    assert wav.shape == (1, 1920) and f0.shape == (1, 4)
    wav.square().mean().backward()
    assert small.conv_pre.parametrizations.weight.original1.grad is not None


def test_fixed_seed_is_deterministic(model: HiFTGenerator) -> None:
    mel = _mel(6)
    a = model.inference(mel, generator=torch.Generator().manual_seed(3))
    b = model.inference(mel, generator=torch.Generator().manual_seed(3))
    c = model.inference(mel, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])  # the seed drives the source noise


def test_cache_source_replaces_the_source_prefix(model: HiFTGenerator) -> None:
    mel = _mel(10)
    gen = torch.Generator().manual_seed(1)
    plain, src = model.inference(mel, generator=torch.Generator().manual_seed(1))
    cache = torch.full((1, 1, 960), 0.25)
    cached, src_c = model.inference(mel, cache, generator=gen)
    assert torch.equal(src_c[:, :, :960], cache)
    assert torch.equal(src_c[:, :, 960:], src[:, :, 960:])
    assert not torch.allclose(cached, plain)  # the decoder used it


def test_prefix_then_continuation_with_cache(model: HiFTGenerator) -> None:
    """CosyVoice2's token2wav: vocode a prefix, then the last 8 frames again + the continuation with the last
    3840 source samples as the cache. The prefix call's source equals the offline source wherever the F0
    predictor (5 convs k3: 5 frames of right context) and SineGen2's linear phase resampling (1 frame) saw the
    same frames; the continuation starts with the cached samples exactly."""
    mel = _mel(24)
    full_wav, full_src = model.inference(mel, generator=torch.Generator().manual_seed(5))
    n1, keep = 14, 8
    wav1, src1 = model.inference(mel[:, :, :n1], generator=torch.Generator().manual_seed(5))
    settled = (n1 - 6) * 480
    torch.testing.assert_close(src1[:, :, :settled], full_src[:, :, :settled], atol=1e-5, rtol=0)
    assert not torch.allclose(src1[:, :, -480:], full_src[:, :, (n1 - 1) * 480: n1 * 480], atol=1e-5)
    cache = src1[:, :, -keep * 480:]
    wav2, src2 = model.inference(mel[:, :, n1 - keep:], cache, generator=torch.Generator().manual_seed(6))
    assert wav2.shape == (1, (24 - n1 + keep) * 480)
    assert torch.equal(src2[:, :, : keep * 480], src1[:, :, -keep * 480:])


@pytest.mark.parametrize("bad", [torch.zeros(1, 79, 5), torch.zeros(80, 5), torch.zeros(1, 80, 0),
                                 torch.zeros(0, 80, 3), torch.zeros(1, 80, 3, dtype=torch.long)])
def test_bad_mel_is_one_line_input_error(model: HiFTGenerator, bad: torch.Tensor) -> None:
    with pytest.raises(InputError) as e:
        model.inference(bad)
    assert "\n" not in str(e.value)


def test_bad_cache_source(model: HiFTGenerator) -> None:
    with pytest.raises(InputError, match="cache_source"):
        model.inference(_mel(2), torch.zeros(1, 1, 2000))  # longer than 2 frames
    with pytest.raises(InputError, match="cache_source"):
        model.inference(_mel(2), torch.zeros(1, 2, 100))


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown hift preset"):
        HiFTConfig.preset("huge")
    with pytest.raises(ConfigError, match="base_channels"):
        HiFTConfig.preset("toy", base_channels=20)
    with pytest.raises(ConfigError, match="source resblock"):
        HiFTConfig.preset("toy", source_resblock_kernel_sizes=[7, 7])


def test_sine_generator_follows_the_code() -> None:
    assert HiFTConfig().sine_generator == "sinegen2"  # 24 kHz: SineGen2, whatever the code's comment says
    assert HiFTConfig(sampling_rate=22050, upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16),
                      source_resblock_kernel_sizes=(7, 11),
                      source_resblock_dilation_sizes=((1, 3, 5),) * 2).sine_generator == "sinegen"
    m = HiFTGenerator(HiFTConfig(sampling_rate=22050, upsample_rates=(8, 8), upsample_kernel_sizes=(16, 16),
                                 source_resblock_kernel_sizes=(7, 11), base_channels=16, f0_channels=8,
                                 source_resblock_dilation_sizes=((1, 3, 5),) * 2))
    assert m.hop_length == 256 and m.inference(_mel(3))[0].shape == (1, 768)


def test_yin_tracks_a_harmonic_tone() -> None:
    sr, t = 24000, torch.arange(24000) / 24000
    f0 = 120 + 60 * t  # a glide from 120 to 180 Hz with three harmonics
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sr
    wav = 0.3 * torch.sin(phase) + 0.2 * torch.sin(2 * phase) + 0.1 * torch.sin(3 * phase)
    wav = torch.cat([wav, torch.zeros(4800)])  # 0.2 s of silence: unvoiced
    est = yin_f0(wav[None], sr)[0]
    truth = 120 + 60 * (torch.arange(50) * 480 + 240) / sr
    assert est.shape == (60,)
    assert ((est[2:48] - truth[2:48]).abs() / truth[2:48]).max() < 0.02
    assert (est[52:] == 0).all()


def test_griffin_lim_baseline_reconstructs_a_tone() -> None:
    t = torch.arange(480 * 20) / 24000
    wav = (0.3 * torch.sin(2 * math.pi * 220 * t))[None]
    mel = matcha_mel(wav)
    rec = griffin_lim_from_mel(mel, iters=30)
    assert rec.shape == wav.shape
    noise = torch.randn(wav.shape, generator=torch.Generator().manual_seed(0)) * 0.1
    assert (matcha_mel(rec) - mel).abs().mean() < 0.5 * (matcha_mel(noise) - mel).abs().mean()


def test_cosyvoice2_streaming_loop_emits_every_sample(model: HiFTGenerator) -> None:
    """CosyVoice2Model.token2wav's HiFT part (8 cached mel frames, 3840 cached source samples, a Hamming
    cross-fade over 3840 + 3840 samples): the emitted pieces add up to the offline length, and each call's
    excitation starts with the previous call's last 3840 samples."""
    mel, keep = _mel(40), 8
    window = torch.hamming_window(2 * keep * 480, periodic=False)
    cache, pieces = None, []
    for start, stop in [(0, 12), (12, 25), (25, 40)]:
        chunk = mel[:, :, start:stop]
        if cache is not None:
            chunk = torch.cat([cache["mel"], chunk], dim=2)
        wav, src = model.inference(chunk, None if cache is None else cache["source"],
                                   generator=torch.Generator().manual_seed(start))
        if cache is not None:
            assert torch.equal(src[:, :, : keep * 480], cache["source"])
            n = keep * 480
            wav = wav.clone()
            wav[:, :n] = wav[:, :n] * window[:n] + cache["speech"] * window[n:]
        final = stop == 40
        cache = {"mel": chunk[:, :, -keep:], "source": src[:, :, -keep * 480:], "speech": wav[:, -keep * 480:]}
        pieces.append(wav if final else wav[:, : -keep * 480])
    assert sum(p.shape[1] for p in pieces) == 40 * 480
