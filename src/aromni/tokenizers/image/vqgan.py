"""``VQGAN``: Chameleon's image tokenizer (taming-transformers VQModel) behind the :class:`ImageTokenizer` protocol.

Images ``[B, 3, R, R]`` in [-1, 1] -> encoder -> ``quant_conv`` -> nearest codebook row -> codes ``[B, h*w]``
(row-major). Codes -> codebook rows -> ``post_quant_conv`` -> decoder -> ``[B, 3, R, R]`` (unbounded).
The state dict uses the key names of Meta's ``vqgan.ckpt``; see :mod:`.formats` for the official files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from aromni.errors import AromniError, CheckpointError, InputError
from aromni.tokenizers.base import ImageTokenizer
from aromni.tokenizers.image.blocks import VQGANDecoder, VQGANEncoder
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.formats import read_chameleon, read_hf_chameleon
from aromni.tokenizers.image.preprocess import preprocess, to_pil
from aromni.tokenizers.image.quantizer import Quantized, VectorQuantizer
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, read_json

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image

TYPE_NAME = "chameleon_vqgan"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class VQGAN(ImageTokenizer):
    """Encoder + codebook (+ decoder). ``with_decoder=False`` builds the encoder side only (HF checkpoints)."""

    type_name = TYPE_NAME

    def __init__(self, cfg: VQGANConfig | None = None, *, with_decoder: bool = True):
        super().__init__()
        self.cfg = cfg = cfg or VQGANConfig()
        self.encoder = VQGANEncoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, kernel_size=1)
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, kernel_size=1)
        self.decoder: VQGANDecoder | None = VQGANDecoder(cfg) if with_decoder else None
        #: Filled by the loaders: what was loaded and which checkpoint keys were ignored on purpose.
        self.load_report: dict[str, JSONValue] = {}

    # ------------------------------------------------------------------ protocol facts
    @property
    def codebook_size(self) -> int:
        return self.cfg.n_embed

    @property
    def image_size(self) -> int:
        return self.cfg.resolution

    @property
    def grid(self) -> tuple[int, int]:
        return self.cfg.grid

    @property
    def has_decoder(self) -> bool:
        return self.decoder is not None

    def metadata(self) -> dict[str, JSONValue]:
        return {"type": TYPE_NAME, "codebook_size": self.codebook_size, "image_size": self.image_size,
                "grid": list(self.grid), "codes_per_image": self.codes_per_image,
                "downsample_factor": self.cfg.downsample_factor, "has_decoder": self.has_decoder,
                "parameters": sum(p.numel() for p in self.parameters())}

    # ------------------------------------------------------------------ differentiable parts (training)
    def quantize_images(self, x: torch.Tensor) -> Quantized:
        """``x [B, 3, R, R]`` in [-1, 1] -> :class:`Quantized` (with gradients)."""
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """Codebook vectors ``[B, embed_dim, h, w]`` -> images ``[B, 3, R, R]`` (with gradients)."""
        if self.decoder is None:
            raise AromniError("this VQGAN has no decoder weights: HF Chameleon checkpoints hold only the encoder "
                              "and codebook", "load Meta's vqgan.yaml + vqgan.ckpt with VQGAN.from_chameleon(...) "
                              "(or `aromni vqgan convert`) to decode images")
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Training pass: ``x [B, 3, R, R]`` -> (reconstruction ``[B, 3, R, R]``, :class:`Quantized`)."""
        q = self.quantize_images(x)
        return self.decode_latents(q.z_q), q

    # ------------------------------------------------------------------ tokenizer API
    def _param(self) -> torch.Tensor:
        return self.quantize.embedding.weight

    def _as_pixels(self, images: Image.Image | Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            x = images
        else:
            seq = images if isinstance(images, Sequence) and not isinstance(images, (str, bytes)) else [images]
            if not all(hasattr(im, "mode") and hasattr(im, "size") for im in seq):
                raise InputError("encode() takes PIL images or a tensor [B, 3, H, W] in [-1, 1]",
                                 "load files with aromni.tokenizers.image.image_io.load_image")
            x = preprocess(list(seq), self.image_size)
        r, c = self.image_size, self.cfg.in_channels
        if x.dim() != 4 or tuple(x.shape[1:]) != (c, r, r) or not x.is_floating_point():
            raise InputError(f"expected a float tensor [B, {c}, {r}, {r}] in [-1, 1], got "
                             f"{x.dtype} {list(x.shape)}", "pass PIL images to have them resized and cropped")
        p = self._param()
        return x.to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def encode(self, images: Image.Image | Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """PIL image(s) (any size/mode, preprocessed per §B.2) or ``[B, 3, R, R]`` in [-1, 1] -> codes ``[B, h*w]``."""
        return self.quantize_images(self._as_pixels(images)).codes

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        codes = torch.as_tensor(codes)
        n = self.codes_per_image
        if codes.dim() == 1:
            codes = codes.unsqueeze(0)
        if codes.dim() != 2 or codes.shape[1] != n or codes.is_floating_point():
            raise InputError(f"expected integer codes [B, {n}], got {codes.dtype} {list(codes.shape)}",
                             f"an image is {self.grid[0]}x{self.grid[1]} = {n} codes")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"codes out of range [0, {self.codebook_size}): min {int(codes.min())}, "
                             f"max {int(codes.max())}", "map token ids to codes with the vocabulary layout first")
        return codes.to(device=self._param().device, dtype=torch.long)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h*w]`` -> images ``[B, 3, R, R]`` (unclamped; see :meth:`to_pil`)."""
        codes = self.check_codes(codes)
        return self.decode_latents(self.quantize.lookup(codes, self.grid))

    @staticmethod
    def to_pil(images: torch.Tensor) -> list[Image.Image]:
        """Model output ``[B, 3, H, W]`` -> RGB PIL images (clamp, ``(x+1)/2*255``, truncate to uint8)."""
        return to_pil(images)

    # ------------------------------------------------------------------ our format
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` + ``model.safetensors`` into directory ``path`` (built aside, then renamed)."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_file(state, str(tmp / WEIGHTS), metadata={"type": TYPE_NAME})
            atomic_write_json(tmp / CONFIG, {"type": TYPE_NAME, "vqgan": self.cfg.to_dict(),
                                             "has_decoder": self.has_decoder, "metadata": self.metadata()})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype | None = None, **_: object) -> VQGAN:
        """Load a directory written by :meth:`save_pretrained`."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such tokenizer directory", "check the path")
        raw = read_json(path / CONFIG)
        if not isinstance(raw, dict) or raw.get("type") != TYPE_NAME or "vqgan" not in raw:
            raise CheckpointError(f"{path / CONFIG}: not a {TYPE_NAME} tokenizer config")
        cfg = VQGANConfig.from_dict(raw["vqgan"])
        weights = path / WEIGHTS
        if not weights.is_file():
            raise CheckpointError(f"{weights}: missing", "a tokenizer directory holds config.json and model.safetensors")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({e})", "re-export the tokenizer") from None
        return build(cfg, state, with_decoder=bool(raw.get("has_decoder", True)), source=str(weights),
                     device=device, dtype=dtype)

    # ------------------------------------------------------------------ official files
    @classmethod
    def from_chameleon(cls, yaml_path: str | Path, ckpt_path: str | Path, *, device: torch.device | str = "cpu",
                       dtype: torch.dtype | None = None) -> VQGAN:
        """Meta's ``tokenizer/vqgan.yaml`` + ``tokenizer/vqgan.ckpt`` (loss/discriminator keys ignored, counted)."""
        cfg, state, ignored = read_chameleon(yaml_path, ckpt_path)
        model = build(cfg, state, with_decoder=True, source=str(ckpt_path), device=device, dtype=dtype)
        model.load_report.update(ignored_keys=len(ignored),
                                 ignored_prefixes=sorted({k.split(".")[1] for k in ignored if k.count(".") >= 1}))
        return model

    @classmethod
    def from_hf_chameleon(cls, path: str | Path, *, device: torch.device | str = "cpu",
                          dtype: torch.dtype | None = None) -> VQGAN:
        """Encoder + codebook from an HF Chameleon directory (``config.json`` ``vq_config``, ``model.vqmodel.*``);
        encoder-only unless ``decoder.*`` keys exist (decode then raises)."""
        cfg, state = read_hf_chameleon(path)
        # HF conversions drop the decoder; a checkpoint that kept it loads as a full model.
        with_decoder = any(k.startswith("decoder.") for k in state)
        return build(cfg, state, with_decoder=with_decoder, source=str(path), device=device, dtype=dtype)


def build(cfg: VQGANConfig, state: dict[str, torch.Tensor], *, with_decoder: bool, source: str,
          device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> VQGAN:
    """A :class:`VQGAN` built on the meta device with ``state`` (our = Meta's key names) assigned strictly."""
    with torch.device("meta"):
        model = VQGAN(cfg, with_decoder=with_decoder)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: keys do not match the config (missing {len(missing)}: {missing[:4]}, "
                              f"unexpected {len(unexpected)}: {unexpected[:4]})",
                              "the weights and the config come from different models")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(state[k].shape)}, the config expects "
                                  f"{tuple(v.shape)}", "the weights and the config come from different models")
    state = {k: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)
             for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.load_report = {"source": source, "loaded_keys": len(state)}
    return model.eval()
