"""Typed configuration of the Chameleon / taming-transformers VQGAN, with named presets.

Field names follow Meta's ``vqgan.yaml`` (``model.params.{embed_dim, n_embed, ddconfig}``), flattened.
:meth:`VQGANConfig.from_meta` and :meth:`VQGANConfig.from_hf` read the official and the HF spellings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue


@dataclass
class VQGANConfig:
    """Architecture of the VQ model (encoder, codebook, decoder).

    Attributes:
        embed_dim: codebook vector width (``quant_conv`` output channels).
        n_embed: number of codebook entries (the code vocabulary).
        z_channels: encoder output / decoder input channels.
        resolution: side of the square images (pixels).
        in_channels: image channels the encoder reads (3).
        out_ch: image channels the decoder writes (3).
        ch: base width; level ``i`` has ``ch * ch_mult[i]`` channels.
        ch_mult: one multiplier per level; ``len(ch_mult) - 1`` stride-2 down/upsamplings.
        num_res_blocks: VQResnetBlocks per encoder level (the decoder has one more).
        attn_resolutions: feature-map sides at which a VQAttnBlock follows every VQResnetBlock.
        dropout: dropout inside the VQResnetBlocks.
        norm_groups: GroupNorm groups (Chameleon: 32); every width must be divisible by it.
        beta: weight of the codebook term in the legacy taming loss (see :mod:`.quantizer`).
    """

    embed_dim: int = 256
    n_embed: int = 8192
    z_channels: int = 256
    resolution: int = 512
    in_channels: int = 3
    out_ch: int = 3
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    dropout: float = 0.0
    norm_groups: int = 32
    beta: float = 0.25

    def __post_init__(self) -> None:
        self.ch_mult = tuple(int(m) for m in self.ch_mult)
        self.attn_resolutions = tuple(int(r) for r in (self.attn_resolutions or ()))
        for name in ("embed_dim", "n_embed", "z_channels", "resolution", "in_channels", "out_ch", "ch",
                     "num_res_blocks", "norm_groups"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"vqgan config: {name} must be positive, got {getattr(self, name)}")
        if not self.ch_mult or min(self.ch_mult) <= 0:
            raise ConfigError(f"vqgan config: ch_mult must be non-empty positive integers, got {self.ch_mult}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"vqgan config: dropout must be in [0, 1), got {self.dropout}")
        if self.resolution % self.downsample_factor:
            raise ConfigError(f"vqgan config: resolution {self.resolution} is not divisible by the downsampling "
                              f"factor {self.downsample_factor} (2 ** (len(ch_mult) - 1))")
        widths = {self.ch * m for m in self.ch_mult}
        bad = sorted(w for w in widths if w % self.norm_groups)
        if bad:
            raise ConfigError(f"vqgan config: widths {bad} are not divisible by norm_groups {self.norm_groups}",
                              "lower norm_groups or use a ch that is a multiple of it")

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        side = self.resolution // self.downsample_factor
        return side, side

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        d["attn_resolutions"] = list(self.attn_resolutions)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> VQGANConfig:
        return dataclass_from_dict(cls, d, "vqgan config")

    def replace(self, **changes: object) -> VQGANConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides: object) -> VQGANConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown vqgan preset {name!r}", f"one of {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    @classmethod
    def from_meta(cls, params: Mapping[str, object], *, source: str = "vqgan.yaml") -> VQGANConfig:
        """From Meta's ``model.params`` mapping (``embed_dim``, ``n_embed``, ``ddconfig``; the rest is ignored)."""
        try:
            dd = dict(params["ddconfig"])
            embed_dim, n_embed = params["embed_dim"], params["n_embed"]
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{source}: model.params lacks {e}", "expected embed_dim, n_embed and ddconfig")
        if dd.pop("double_z", False):
            raise ConfigError(f"{source}: ddconfig.double_z is true", "a VQ model needs double_z: false")
        attn_type = dd.pop("attn_type", "vanilla")
        if dd.pop("use_linear_attn", False) or attn_type != "vanilla":
            raise ConfigError(f"{source}: only vanilla attention is supported (got {attn_type!r})")
        if not dd.pop("resamp_with_conv", True):
            raise ConfigError(f"{source}: resamp_with_conv false is not supported")
        if dd.pop("tanh_out", False) or dd.pop("give_pre_end", False):
            raise ConfigError(f"{source}: tanh_out/give_pre_end decoders are not supported")
        return cls.from_dict({"embed_dim": embed_dim, "n_embed": n_embed, **dd})

    def to_meta(self) -> dict[str, JSONValue]:
        """The ``model.params`` mapping of a Meta-style ``vqgan.yaml`` (without ``lossconfig``)."""
        dd = {k: v for k, v in self.to_dict().items() if k not in ("embed_dim", "n_embed", "norm_groups", "beta")}
        dd["double_z"] = False
        return {"embed_dim": self.embed_dim, "n_embed": self.n_embed, "ddconfig": dd}

    @classmethod
    def from_hf(cls, vq: Mapping[str, object], *, source: str = "config.json") -> VQGANConfig:
        """From the ``vq_config`` of an HF Chameleon ``config.json`` (HF names: base_channels, latent_channels...)."""
        if vq.get("double_latent", False):
            raise ConfigError(f"{source}: vq_config.double_latent is true", "a VQ model needs it false")
        if vq.get("attn_type", "vanilla") != "vanilla":
            raise ConfigError(f"{source}: only vanilla attention is supported (got {vq.get('attn_type')!r})")
        names = {"embed_dim": "embed_dim", "num_embeddings": "n_embed", "latent_channels": "z_channels",
                 "resolution": "resolution", "in_channels": "in_channels", "base_channels": "ch",
                 "channel_multiplier": "ch_mult", "num_res_blocks": "num_res_blocks",
                 "attn_resolutions": "attn_resolutions", "dropout": "dropout"}
        return cls.from_dict({ours: vq[theirs] for theirs, ours in names.items() if vq.get(theirs) is not None})


#: ``chameleon``: Meta's 7B tokenizer (512 px -> 32x32 codes, 8192 codes). ``toy``: 64 px -> 8x8 codes on CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "chameleon": {},
    "toy": dict(embed_dim=32, n_embed=512, z_channels=64, resolution=64, ch=16, ch_mult=(1, 1, 2, 4),
                num_res_blocks=1, norm_groups=8),
    "tiny": dict(embed_dim=8, n_embed=32, z_channels=8, resolution=16, ch=8, ch_mult=(1, 2),
                 num_res_blocks=1, norm_groups=4),
}
