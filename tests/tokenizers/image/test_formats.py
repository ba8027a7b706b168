"""Meta's vqgan.yaml + vqgan.ckpt, our directory format, and the architecture facts of official-formats.md §B.1."""

from __future__ import annotations

import collections

import pytest
import torch
import yaml

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.formats import save_chameleon
from aromni.tokenizers.image.vqgan import VQGAN

# A tiny model in Meta's yaml spelling (GroupNorm 32 is implied by the format, so widths are multiples of 32).
DDCONFIG = dict(double_z=False, z_channels=32, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
                num_res_blocks=1, attn_resolutions=[8], dropout=0.0)
LOSS_KEYS = {"loss.discriminator.main.0.weight": (64, 3, 4, 4), "loss.discriminator.main.0.bias": (64,),
             "loss.perceptual_loss.net.slice1.0.weight": (64, 3, 3, 3), "loss.logvar": ()}


def _res(prefix: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.norm1.weight": (cin,), f"{prefix}.norm1.bias": (cin,),
            f"{prefix}.conv1.weight": (cout, cin, 3, 3), f"{prefix}.conv1.bias": (cout,),
            f"{prefix}.norm2.weight": (cout,), f"{prefix}.norm2.bias": (cout,),
            f"{prefix}.conv2.weight": (cout, cout, 3, 3), f"{prefix}.conv2.bias": (cout,)}
    if cin != cout:
        keys |= {f"{prefix}.nin_shortcut.weight": (cout, cin, 1, 1), f"{prefix}.nin_shortcut.bias": (cout,)}
    return keys


def _attn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.norm.weight": (c,), f"{prefix}.norm.bias": (c,)}
    for n in ("q", "k", "v", "proj_out"):
        keys |= {f"{prefix}.{n}.weight": (c, c, 1, 1), f"{prefix}.{n}.bias": (c,)}
    return keys


def _conv(prefix: str, cin: int, cout: int, k: int = 3) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (cout, cin, k, k), f"{prefix}.bias": (cout,)}


def meta_layout() -> dict[str, tuple[int, ...]]:
    """The taming VQModel key layout for DDCONFIG, written out level by level (independently of our modules)."""
    k: dict[str, tuple[int, ...]] = {}
    k |= _conv("encoder.conv_in", 3, 32)
    k |= _res("encoder.down.0.block.0", 32, 32) | _conv("encoder.down.0.downsample.conv", 32, 32)
    k |= _res("encoder.down.1.block.0", 32, 64) | _attn("encoder.down.1.attn.0", 64)  # 8 px: attention
    k |= _res("encoder.mid.block_1", 64, 64) | _attn("encoder.mid.attn_1", 64) | _res("encoder.mid.block_2", 64, 64)
    k |= {"encoder.norm_out.weight": (64,), "encoder.norm_out.bias": (64,)} | _conv("encoder.conv_out", 64, 32)
    k |= _conv("quant_conv", 32, 16, 1) | {"quantize.embedding.weight": (40, 16)} | _conv("post_quant_conv", 16, 32, 1)
    k |= _conv("decoder.conv_in", 32, 64)
    k |= _res("decoder.mid.block_1", 64, 64) | _attn("decoder.mid.attn_1", 64) | _res("decoder.mid.block_2", 64, 64)
    for j in range(2):
        k |= _res(f"decoder.up.1.block.{j}", 64, 64) | _attn(f"decoder.up.1.attn.{j}", 64)
    k |= _conv("decoder.up.1.upsample.conv", 64, 64)
    k |= _res("decoder.up.0.block.0", 64, 32) | _res("decoder.up.0.block.1", 32, 32)
    k |= {"decoder.norm_out.weight": (32,), "decoder.norm_out.bias": (32,)} | _conv("decoder.conv_out", 32, 3)
    return k


def write_meta_files(tmp_path, extra: dict | None = None):
    g = torch.Generator().manual_seed(1)
    state = {name: torch.randn(shape, generator=g) * 0.2 for name, shape in {**meta_layout(), **LOSS_KEYS}.items()}
    state.update(extra or {})
    params = {"embed_dim": 16, "n_embed": 40, "ddconfig": DDCONFIG, "ckpt_path": "/nonexistent/vqgan.ckpt",
              "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                             "params": {"disc_start": 100001, "codebook_weight": 1.0}}}
    (tmp_path / "vqgan.yaml").write_text(yaml.safe_dump({"model": {"target": "taming.models.vqgan.VQModel",
                                                                    "params": params}}))
    torch.save({"state_dict": state, "global_step": 7}, tmp_path / "vqgan.ckpt")
    return tmp_path / "vqgan.yaml", tmp_path / "vqgan.ckpt", state


def test_meta_checkpoint_loads_strictly_and_counts_the_loss_keys(tmp_path):
    y, c, state = write_meta_files(tmp_path)
    model = VQGAN.from_chameleon(y, c)
    assert set(model.state_dict()) == set(meta_layout())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert model.load_report["ignored_keys"] == len(LOSS_KEYS)
    assert model.grid == (8, 8) and model.codebook_size == 40 and model.image_size == 16


def test_meta_checkpoint_with_a_missing_or_extra_model_key_is_refused(tmp_path):
    y, c, state = write_meta_files(tmp_path)
    del state["decoder.conv_out.bias"]
    torch.save({"state_dict": state}, c)
    with pytest.raises(CheckpointError, match="missing 1"):
        VQGAN.from_chameleon(y, c)
    y, c, _ = write_meta_files(tmp_path, extra={"encoder.extra.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="unexpected 1"):
        VQGAN.from_chameleon(y, c)


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path):
    y, c, _ = write_meta_files(tmp_path)
    torch.save({"state_dict": {}, "callback": Evil()}, c)
    with pytest.raises(CheckpointError, match="arbitrary (pickled )?Python objects"):
        VQGAN.from_chameleon(y, c)


def test_meta_yaml_problems_are_clear(tmp_path):
    y, c, _ = write_meta_files(tmp_path)
    y.write_text("model: {params: {embed_dim: 4}}\n")
    with pytest.raises(ConfigError, match="lacks"):
        VQGAN.from_chameleon(y, c)
    y.write_text(yaml.safe_dump({"model": {"params": {"embed_dim": 16, "n_embed": 40,
                                                      "ddconfig": {**DDCONFIG, "double_z": True}}}}))
    with pytest.raises(ConfigError, match="double_z"):
        VQGAN.from_chameleon(y, c)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    y, c, _ = write_meta_files(tmp_path)
    model = VQGAN.from_chameleon(y, c)
    model.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok")
    assert isinstance(again, VQGAN) and again.cfg == model.cfg
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    codes = model.encode(x)
    assert torch.equal(again.encode(x), codes)
    assert torch.equal(again.decode(codes), model.decode(codes))
    with pytest.raises(Exception, match="not empty"):
        model.save_pretrained(tmp_path / "tok")  # never overwritten silently
    model.save_pretrained(tmp_path / "tok", overwrite=True)


def test_export_to_meta_layout_round_trips(tmp_path):
    torch.manual_seed(3)
    model = VQGAN(VQGANConfig.preset("tiny", norm_groups=4))
    y, c = save_chameleon(model, tmp_path / "meta")
    with pytest.raises(ConfigError, match="not divisible by norm_groups 32"):
        VQGAN.from_chameleon(y, c)  # Meta's format has no norm_groups: GroupNorm(32) is implied
    big = VQGAN(VQGANConfig(embed_dim=8, n_embed=16, z_channels=32, resolution=16, ch=32, ch_mult=(1, 2)))
    y, c = save_chameleon(big, tmp_path / "meta32")
    again = VQGAN.from_chameleon(y, c)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in big.state_dict().items())


def test_official_size_matches_the_reference_counts():
    with torch.device("meta"):
        model = VQGAN(VQGANConfig.preset("chameleon"))
    sd = model.state_dict()
    n = collections.Counter()
    for k, v in sd.items():
        n[k.split(".")[0]] += v.numel()
    assert len(sd) == 293  # official-formats.md §B.1
    assert (n["encoder"], n["decoder"], n["quantize"]) == (27_194_880, 39_294_851, 2_097_152)
    assert n["quant_conv"] == n["post_quant_conv"] == 65_792
    shortcuts = sorted(k.rsplit(".", 2)[0] for k in sd if k.endswith("nin_shortcut.weight"))
    assert shortcuts == ["decoder.up.1.block.0", "decoder.up.3.block.0", "encoder.down.2.block.0",
                         "encoder.down.4.block.0"]
    assert model.grid == (32, 32) and model.codes_per_image == 1024
