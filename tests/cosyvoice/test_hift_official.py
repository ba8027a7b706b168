"""A hift.pt in the released layout loads strictly, every key accounted for.

The key list below is written out independently of our module tree, from CosyVoice's code (read with the fetch
tool, FunAudioLLM/CosyVoice at ace7c47): ``cosyvoice/hifigan/generator.py`` (``HiFTGenerator``: ``m_source.
l_linear``, ``conv_pre``, ``ups``, ``source_downs`` (plain ``Conv1d``, no weight norm), ``source_resblocks``,
``resblocks`` (``ResBlock``: ``convs1``/``convs2`` weight-normalised, ``activations1``/``activations2`` Snake with
``alpha``), ``conv_post``), ``cosyvoice/hifigan/f0_predictor.py`` (``ConvRNNF0Predictor``: ``condnet`` = 5 x
(weight-normalised Conv1d, ELU) so convs at 0, 2, 4, 6, 8, then ``classifier``), with the constructor values of
``examples/libritts/cosyvoice2/conf/cosyvoice2.yaml`` and the channel widths scaled down (base 16, F0 8). The
weight norm is spelled ``weight_g`` / ``weight_v`` (``torch.nn.utils.weight_norm``, dim 0), as CosyVoice's code
imported it when CosyVoice2 was released; the newer ``parametrizations.weight.original0/1`` spelling and a
``generator.`` prefix are checked too.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aromni.cosyvoice.hift.config import HiFTConfig
from aromni.cosyvoice.hift.official import load_official_hift
from aromni.errors import CheckpointError

BASE, F0_CH, N_FFT = 16, 8, 16
TINY = HiFTConfig.preset("cosyvoice2", base_channels=BASE, f0_channels=F0_CH)


def released_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of CosyVoice2's HiFTGenerator state dict with its shape (scaled-down channels)."""
    shapes: dict[str, tuple[int, ...]] = {}

    def wn(name: str, weight: tuple[int, ...], bias: int) -> None:
        shapes[f"{name}.weight_g"] = (weight[0],) + (1,) * (len(weight) - 1)
        shapes[f"{name}.weight_v"] = weight
        shapes[f"{name}.bias"] = (bias,)

    def resblock(name: str, ch: int, k: int) -> None:
        for j in range(3):  # dilations [1, 3, 5]
            wn(f"{name}.convs1.{j}", (ch, ch, k), ch)
            wn(f"{name}.convs2.{j}", (ch, ch, k), ch)
            shapes[f"{name}.activations1.{j}.alpha"] = (ch,)
            shapes[f"{name}.activations2.{j}.alpha"] = (ch,)

    for i in range(5):
        wn(f"f0_predictor.condnet.{2 * i}", (F0_CH, 80 if i == 0 else F0_CH, 3), F0_CH)
    shapes["f0_predictor.classifier.weight"], shapes["f0_predictor.classifier.bias"] = (1, F0_CH), (1,)
    shapes["m_source.l_linear.weight"], shapes["m_source.l_linear.bias"] = (1, 9), (1,)
    wn("conv_pre", (BASE, 80, 7), BASE)
    for i, k in enumerate([16, 11, 7]):  # ConvTranspose1d weight: [in, out, k]
        wn(f"ups.{i}", (BASE >> i, BASE >> (i + 1), k), BASE >> (i + 1))
    for i, (down, k) in enumerate(zip([15, 3, 1], [7, 7, 11])):  # cumulative rates of the later stages
        ch = BASE >> (i + 1)
        shapes[f"source_downs.{i}.weight"] = (ch, N_FFT + 2, 1 if down == 1 else 2 * down)
        shapes[f"source_downs.{i}.bias"] = (ch,)
        resblock(f"source_resblocks.{i}", ch, k)
    for i in range(3):
        for j, k in enumerate([3, 7, 11]):
            resblock(f"resblocks.{3 * i + j}", BASE >> (i + 1), k)
    wn("conv_post", (N_FFT + 2, BASE >> 3, 7), N_FFT + 2)
    return shapes


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen) for k, s in released_shapes().items()}


def _renamed(key: str) -> str:
    return key.replace(".weight_g", ".parametrizations.weight.original0").replace(
        ".weight_v", ".parametrizations.weight.original1")


def test_released_layout_loads_every_key(tmp_path: Path) -> None:
    state = _state()
    # 82 weight-normed convs (5 F0, conv_pre, 3 ups, conv_post, 12 resblocks x 6) x 3 + 72 Snake alphas
    # + 3 source_downs x 2 + classifier 2 + l_linear 2
    assert len(state) == 82 * 3 + 72 + 6 + 4 == 328
    torch.save(state, tmp_path / "hift.pt")
    model = load_official_hift(tmp_path / "hift.pt", TINY)
    own = model.state_dict()
    assert set(own) == {_renamed(k) for k in state}
    for k, v in state.items():
        assert torch.equal(own[_renamed(k)], v), k
    # weight_g is the norm, weight_v the direction (dim 0), as torch.nn.utils.weight_norm computes them
    g, v = state["conv_pre.weight_g"], state["conv_pre.weight_v"]
    torch.testing.assert_close(model.conv_pre.weight, g * v / v.norm(dim=(1, 2), keepdim=True))
    wav, src = model.inference(torch.randn(1, 80, 3))
    assert wav.shape == (1, 1440) and torch.isfinite(wav).all()


def test_new_spelling_and_generator_prefix_load(tmp_path: Path) -> None:
    state = {f"generator.{_renamed(k)}": v for k, v in _state(1).items()}
    torch.save(state, tmp_path / "hift.pt")
    model = load_official_hift(tmp_path / "hift.pt", TINY)
    assert torch.equal(model.ups[1].parametrizations.weight.original1,
                       state["generator.ups.1.parametrizations.weight.original1"])


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    state = _state()
    del state["resblocks.4.activations2.1.alpha"]
    state["f0_predictor.rnn.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "hift.pt")
    with pytest.raises(CheckpointError) as e:
        load_official_hift(tmp_path / "hift.pt", TINY)
    msg = str(e.value)
    assert "\n" not in msg and "resblocks.4.activations2.1.alpha" in msg and "f0_predictor.rnn.weight" in msg


def test_wrong_preset_is_a_shape_error(tmp_path: Path) -> None:
    torch.save(_state(), tmp_path / "hift.pt")
    with pytest.raises(CheckpointError, match="mis-shaped"):
        load_official_hift(tmp_path / "hift.pt")  # the full-size cosyvoice2 preset


def test_pickled_objects_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_official_hift(tmp_path / "absent.pt", TINY)
    torch.save({"conv_pre.bias": [1, 2]}, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError):
        load_official_hift(tmp_path / "odd.pt", TINY)
