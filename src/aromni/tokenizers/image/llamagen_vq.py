"""``LlamaGenVQ``: LlamaGen's VQ image tokenizer (``tokenizer/tokenizer_image/vq_model.py``, VQ-16/VQ-8)
behind the :class:`ImageTokenizer` protocol.

Images ``[B, 3, S, S]`` in [-1, 1] go through the encoder and ``quant_conv`` to ``z [B, D, h, w]``. ``z`` is
L2-normalised and matched to the nearest L2-normalised codebook row, giving codes ``[B, h*w]`` in row-major
order. Codes become normalised codebook rows, then ``post_quant_conv``, then the decoder, giving images
``[B, 3, S, S]`` (unbounded, roughly [-1, 1]). The state dict has exactly LlamaGen's key names, including
the ``quantize.codebook_used`` buffer, so the released ``vq_ds16_t2i.pt`` loads strictly
(:meth:`LlamaGenVQ.from_llamagen`).

How this differs from Chameleon's VQGAN (:mod:`.vqgan`), which has the same residual, attention and resampling
blocks (reused from :mod:`.blocks`):

* Attention only at the deepest level, after every residual block there.
* Levels stored as ``conv_blocks.{l}.res.{i}`` / ``.attn.{i}``. ``mid`` is a list ``mid.{0,1,2}``.
* The decoder stores its levels deepest first, in the order they run.
* GroupNorm always has 32 groups.
* Codebook lookup on the unit sphere.

LlamaGen's method names map to ours as follows. Its ``encode(x)`` (which returns the quantised latent, the
losses and the indices) is :meth:`LlamaGenVQ.quantize_images`. Its ``decode(quant)`` is
:meth:`LlamaGenVQ.decode_latents`. ``decode_code(codes, shape)`` keeps its name. ``encode``/``decode`` are the
protocol's codes API.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import CheckpointError, InputError
from aromni.tokenizers.base import ImageTokenizer
from aromni.tokenizers.image.blocks import (
    Downsample,
    Upsample,
    VQAttnBlock,
    VQResnetBlock,
    conv3,
    group_norm,
    swish,
)
from aromni.tokenizers.image.llamagen_vq_checkpoint import check_state, infer_config, read_llamagen_file
from aromni.tokenizers.image.llamagen_vq_config import NORM_GROUPS, LlamaGenVQConfig
from aromni.utils.extras import optional
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, read_json

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image

TYPE_NAME = "llamagen_vq"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
#: LlamaGen's ``codebook_used`` holds the last 65536 codes chosen in training. The length is hard-coded there
#: and the buffer is part of the state dict.
USAGE_WINDOW = 65536
USAGE_KEY = "quantize.codebook_used"


# ------------------------------------------------------------------------------------------------ quantizer
class LlamaGenQuantOut(NamedTuple):
    """Output of :class:`LlamaGenQuantizer`. LlamaGen returns the same values as
    ``(z_q, (vq_loss, commit_loss, entropy_loss, usage), (_, _, indices))``.

    ``z_q``: ``[B, D, h, w]`` normalised codebook rows, with a straight-through gradient to the normalised
    input. ``codes``: ``[B, h*w]`` long, row-major. ``codebook_loss``: ``mean((z_q - sg[z])^2)`` (LlamaGen's
    ``vq_loss``). ``commit_loss``: ``beta * mean((sg[z_q] - z)^2)``. ``entropy_loss``: ``ratio * entropy
    term`` (zero when the ratio is 0). ``usage``: fraction of the codebook seen in the usage window. It is
    updated and reported only in training mode with ``codebook_show_usage``, as in LlamaGen, and is 0.0
    otherwise.
    """

    z_q: torch.Tensor
    codes: torch.Tensor
    codebook_loss: torch.Tensor
    commit_loss: torch.Tensor
    entropy_loss: torch.Tensor
    usage: float


def codebook_entropy_loss(affinity: torch.Tensor, temperature: float = 0.01) -> torch.Tensor:
    """``affinity [N, K]`` (negative squared distances) -> scalar: mean per-sample entropy of the code
    distribution minus the entropy of the batch-mean distribution. LlamaGen's ``compute_entropy_loss``, with
    its ``1e-5`` offsets kept."""
    logits = affinity.reshape(-1, affinity.shape[-1]) / temperature
    probs = F.softmax(logits, dim=-1)
    log_probs = F.log_softmax(logits + 1e-5, dim=-1)
    mean_probs = probs.mean(dim=0)
    batch_entropy = -torch.sum(mean_probs * torch.log(mean_probs + 1e-5))
    sample_entropy = -torch.mean(torch.sum(probs * log_probs, dim=-1))
    return sample_entropy - batch_entropy


class LlamaGenQuantizer(nn.Module):
    """Nearest-code quantizer. State: ``embedding.weight [K, D]`` and, with ``codebook_show_usage``,
    ``codebook_used [65536]`` (float code indices, the most recent last)."""

    def __init__(self, cfg: LlamaGenVQConfig):
        super().__init__()
        self.n_e, self.e_dim = cfg.codebook_size, cfg.codebook_embed_dim
        self.beta, self.entropy_ratio = cfg.commit_loss_beta, cfg.entropy_loss_ratio
        self.l2_norm, self.show_usage = cfg.codebook_l2_norm, cfg.codebook_show_usage
        self.embedding = nn.Embedding(self.n_e, self.e_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / self.n_e, 1.0 / self.n_e)
        if self.l2_norm:  # start on the unit sphere, where the lookup compares
            with torch.no_grad():
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, p=2, dim=-1))
        if self.show_usage:
            # Not a learnable value: LlamaGen wraps it in nn.Parameter, but registers it as a buffer.
            self.register_buffer("codebook_used", torch.zeros(USAGE_WINDOW))

    def codebook(self) -> torch.Tensor:
        """The vectors codes stand for, ``[K, D]``: the rows, L2-normalised when ``codebook_l2_norm``."""
        w = self.embedding.weight
        return F.normalize(w, p=2, dim=-1) if self.l2_norm else w

    def forward(self, z: torch.Tensor) -> LlamaGenQuantOut:
        """``z [B, D, h, w]`` -> :class:`LlamaGenQuantOut`."""
        b, d, h, w = z.shape
        z = z.permute(0, 2, 3, 1).contiguous()  # [B, h, w, D]: flattening is row-major
        if self.l2_norm:
            z = F.normalize(z, p=2, dim=-1)
        e = self.codebook()
        flat = z.view(-1, d)
        # |z|^2 + |e|^2 - 2 z.e, in the reference's order of operations so ties and rounding match.
        dist = (torch.sum(flat**2, dim=1, keepdim=True) + torch.sum(e**2, dim=1)
                - 2 * torch.einsum("bd,dn->bn", flat, e.t()))
        idx = torch.argmin(dist, dim=1)
        z_q = e[idx].view(z.shape)
        usage = self._record_usage(idx) if self.show_usage and self.training else 0.0
        # Computed in eval mode too (LlamaGen returns None there), so a trainer can report eval losses.
        codebook_loss = torch.mean((z_q - z.detach()) ** 2)
        commit_loss = self.beta * torch.mean((z_q.detach() - z) ** 2)
        # Skipped when off: the [N, K] softmax is the quantizer's costliest step and would be multiplied by 0.
        entropy = (self.entropy_ratio * codebook_entropy_loss(-dist) if self.entropy_ratio > 0
                   else dist.new_zeros(()))
        z_q = z + (z_q - z).detach()  # straight-through: the decoder's gradient reaches the encoder
        return LlamaGenQuantOut(z_q.permute(0, 3, 1, 2), idx.view(b, h * w), codebook_loss, commit_loss,
                                entropy, usage)

    @torch.no_grad()
    def _record_usage(self, idx: torch.Tensor) -> float:
        """Shift ``idx`` into the end of the usage window. Returns the fraction of distinct codes in it.

        As in LlamaGen, the window starts as zeros, so code 0 counts as used until 65536 codes have been
        seen. LlamaGen fails on a batch of more than 65536 codes. Here only its last 65536 codes are kept.
        """
        used = self.codebook_used
        n = min(idx.numel(), used.numel())
        keep = used.numel() - n
        used[:keep] = used[n:].clone()
        used[keep:] = idx.reshape(-1)[-n:].to(used.dtype)
        return self.usage()

    def usage(self) -> float:
        """Fraction of the codebook in the usage window (LlamaGen's ``codebook_usage``; 0.0 without one)."""
        if not self.show_usage:
            return 0.0
        return torch.unique(self.codebook_used).numel() / self.n_e

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
        """Codes (any shape with ``B*h*w`` elements, row-major) -> vectors ``[B, D, h, w]``.

        ``shape`` is ``(B, D, h, w)``, LlamaGen's channel-first layout."""
        b, d, h, w = shape
        return self.codebook()[indices.reshape(-1)].reshape(b, h, w, d).permute(0, 3, 1, 2).contiguous()


# ------------------------------------------------------------------------------------------------ networks
class LlamaGenLevel(nn.Module):
    """One resolution level: ``res.{i}`` residual blocks, ``attn.{i}`` (one after each, or none), then an
    optional ``downsample`` / ``upsample`` (the attribute name is part of the key)."""

    def __init__(self, cin: int, cout: int, n_blocks: int, *, attn: bool, dropout: float):
        super().__init__()
        self.res = nn.ModuleList(VQResnetBlock(cin if i == 0 else cout, cout, NORM_GROUPS, dropout)
                                 for i in range(n_blocks))
        self.attn = nn.ModuleList(VQAttnBlock(cout, NORM_GROUPS) for _ in range(n_blocks) if attn)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        for name in ("downsample", "upsample"):
            if name in self._modules:
                h = self._modules[name](h)
        return h


def _middle(channels: int, dropout: float) -> nn.ModuleList:
    """``mid.0`` residual, ``mid.1`` attention, ``mid.2`` residual, at the deepest level's width."""
    return nn.ModuleList([VQResnetBlock(channels, channels, NORM_GROUPS, dropout),
                          VQAttnBlock(channels, NORM_GROUPS),
                          VQResnetBlock(channels, channels, NORM_GROUPS, dropout)])


class LlamaGenEncoder(nn.Module):
    """Image ``[B, 3, S, S]`` -> features ``[B, z_channels, S/f, S/f]``, ``f = 2 ** (levels - 1)``."""

    def __init__(self, cfg: LlamaGenVQConfig):
        super().__init__()
        self.conv_in = conv3(3, cfg.ch)
        self.conv_blocks = nn.ModuleList()
        last, cin = len(cfg.encoder_ch_mult) - 1, cfg.ch
        for i, mult in enumerate(cfg.encoder_ch_mult):
            level = LlamaGenLevel(cin, cfg.ch * mult, cfg.num_res_blocks, attn=i == last,
                                  dropout=cfg.dropout_p)
            cin = cfg.ch * mult
            if i != last:
                level.downsample = Downsample(cin)
            self.conv_blocks.append(level)
        self.mid = _middle(cin, cfg.dropout_p)
        self.norm_out = group_norm(cin, NORM_GROUPS)
        self.conv_out = conv3(cin, cfg.z_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(swish(self.norm_out(h)))


class LlamaGenDecoder(nn.Module):
    """Features ``[B, z_channels, h, w]`` -> image ``[B, 3, h*f, w*f]`` (no final tanh).

    ``conv_blocks.0`` is the deepest level (with attention). Levels are stored in the order they run, and each
    has ``num_res_blocks + 1`` residual blocks.
    """

    def __init__(self, cfg: LlamaGenVQConfig):
        super().__init__()
        mults = cfg.decoder_ch_mult
        cin = cfg.ch * mults[-1]
        self.conv_in = conv3(cfg.z_channels, cin)
        self.mid = _middle(cin, cfg.dropout_p)
        self.conv_blocks = nn.ModuleList()
        for i in reversed(range(len(mults))):
            level = LlamaGenLevel(cin, cfg.ch * mults[i], cfg.num_res_blocks + 1, attn=i == len(mults) - 1,
                                  dropout=cfg.dropout_p)
            cin = cfg.ch * mults[i]
            if i != 0:
                level.upsample = Upsample(cin)
            self.conv_blocks.append(level)
        self.norm_out = group_norm(cin, NORM_GROUPS)
        self.conv_out = conv3(cin, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(swish(self.norm_out(h)))


# ------------------------------------------------------------------------------------------------ tokenizer
class LlamaGenVQOutput(NamedTuple):
    """Training pass output: ``recon [B, 3, S, S]`` and the quantizer's :class:`LlamaGenQuantOut`."""

    recon: torch.Tensor
    quant: LlamaGenQuantOut

    @property
    def vq_loss(self) -> torch.Tensor:
        """What LlamaGen's ``VQLoss`` adds to the generator loss: codebook + commitment + entropy terms."""
        return self.quant.codebook_loss + self.quant.commit_loss + self.quant.entropy_loss


class LlamaGenVQ(ImageTokenizer):
    """LlamaGen's ``VQModel``: ``encoder``, ``decoder``, ``quantize``, ``quant_conv``, ``post_quant_conv``."""

    type_name = TYPE_NAME

    def __init__(self, cfg: LlamaGenVQConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LlamaGenVQConfig()
        self.encoder = LlamaGenEncoder(cfg)
        self.decoder = LlamaGenDecoder(cfg)
        self.quantize = LlamaGenQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_embed_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_embed_dim, cfg.z_channels, kernel_size=1)
        #: Filled by the loaders: where the weights came from and which checkpoint entry held them.
        self.load_report: dict[str, JSONValue] = {}

    # ------------------------------------------------------------------ protocol facts
    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def grid(self) -> tuple[int, int]:
        return self.cfg.grid

    def metadata(self) -> dict[str, JSONValue]:
        return {"type": TYPE_NAME, "codebook_size": self.codebook_size, "image_size": self.image_size,
                "grid": list(self.grid), "codes_per_image": self.codes_per_image,
                "downsample_factor": self.cfg.downsample_factor, "preset": self.cfg.preset_name(),
                "parameters": sum(p.numel() for p in self.parameters())}

    # ------------------------------------------------------------------ differentiable parts (training)
    def quantize_images(self, x: torch.Tensor) -> LlamaGenQuantOut:
        """``x [B, 3, S, S]`` in [-1, 1] -> :class:`LlamaGenQuantOut` (LlamaGen's ``encode``)."""
        return self.quantize(self.quant_conv(self.encoder(x)))

    def decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """Code vectors ``[B, D, h, w]`` -> images ``[B, 3, h*f, w*f]`` (LlamaGen's ``decode``)."""
        return self.decoder(self.post_quant_conv(z_q))

    def decode_code(self, codes: torch.Tensor,
                    shape: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """Codes (``[B, h*w]`` or flat ``[B*h*w]``) -> images ``[B, 3, h*f, w*f]``.

        ``shape = (B, D, h, w)`` as in LlamaGen. By default it comes from the config's grid. Only LlamaGen's
        ``channel_first=True`` layout exists here."""
        if shape is None:
            h, w = self.grid
            shape = (codes.numel() // (h * w), self.cfg.codebook_embed_dim, h, w)
        return self.decode_latents(self.quantize.get_codebook_entry(codes, shape))

    def forward(self, x: torch.Tensor) -> LlamaGenVQOutput:
        """Training pass: ``x [B, 3, S, S]`` -> reconstruction + VQ losses + codebook usage.

        A trainer adds ``out.vq_loss`` to its pixel, perceptual and adversarial losses, as LlamaGen's
        ``VQLoss`` does. In training mode ``out.quant.usage`` is LlamaGen's ``codebook_usage``.
        """
        q = self.quantize_images(x)
        return LlamaGenVQOutput(self.decode_latents(q.z_q), q)

    # ------------------------------------------------------------------ tokenizer API
    def _param(self) -> torch.Tensor:
        return self.quant_conv.weight

    def _as_pixels(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        if isinstance(images, torch.Tensor):
            x = images
        else:
            is_seq = isinstance(images, Sequence) and not isinstance(images, (str, bytes))
            seq = images if is_seq else [images]
            if not all(hasattr(im, "mode") and hasattr(im, "size") for im in seq):
                raise InputError("encode() takes PIL images or a tensor [B, 3, H, W] in [-1, 1]",
                                 "load files with aromni.tokenizers.image.image_io.load_image")
            x = preprocess_llamagen(list(seq), self.image_size)
        s = self.image_size
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, s, s) or not x.is_floating_point():
            raise InputError(f"expected a float tensor [B, 3, {s}, {s}] in [-1, 1], got {x.dtype} "
                             f"{list(x.shape)}", "pass PIL images to have them resized and cropped")
        p = self._param()
        return x.to(device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def encode(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """PIL images (any size/mode; LlamaGen's center crop) or ``[B, 3, S, S]`` in [-1, 1] -> codes
        ``[B, h*w]``."""
        return self.quantize_images(self._as_pixels(images)).codes

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes ``[B, h*w]`` (or one image's ``[h*w]``) in range, as long on the model's device."""
        codes = torch.as_tensor(codes)
        n = self.codes_per_image
        if codes.dim() == 1:
            codes = codes.unsqueeze(0)
        if codes.dim() != 2 or codes.shape[1] != n or codes.is_floating_point() or codes.dtype == torch.bool:
            raise InputError(f"expected integer codes [B, {n}], got {codes.dtype} {list(codes.shape)}",
                             f"an image is {self.grid[0]}x{self.grid[1]} = {n} codes")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise InputError(f"codes out of range [0, {self.codebook_size}): min {int(codes.min())}, "
                             f"max {int(codes.max())}",
                             "map token ids to codes with the vocabulary layout first")
        return codes.to(device=self._param().device, dtype=torch.long)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h*w]`` -> images ``[B, 3, S, S]`` (unclamped; see :meth:`to_pil`)."""
        codes = self.check_codes(codes)
        h, w = self.grid
        return self.decode_code(codes, (codes.shape[0], self.cfg.codebook_embed_dim, h, w))

    @staticmethod
    def to_pil(images: torch.Tensor) -> list[Image.Image]:
        """Model output ``[B, 3, H, W]`` -> RGB PIL images, as LlamaGen's samplers do:
        ``clamp(127.5 x + 128, 0, 255)`` truncated to uint8."""
        return to_pil_llamagen(images)

    # ------------------------------------------------------------------ our format
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` + ``model.safetensors`` (LlamaGen key names) into directory ``path``,
        atomically."""
        from safetensors.torch import save_file

        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_dir(path, overwrite=overwrite) as tmp:
            save_file(state, str(tmp / WEIGHTS), metadata={"type": TYPE_NAME})
            atomic_write_json(tmp / CONFIG, {"type": TYPE_NAME, TYPE_NAME: self.cfg.to_dict(),
                                             "metadata": self.metadata()})

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: torch.device | str = "cpu",
                        dtype: torch.dtype | None = None, **_: object) -> LlamaGenVQ:
        """Load a directory written by :meth:`save_pretrained`.

        Weights stored in half precision (a shipped bundle halves its files so) are computed in float32 unless
        ``dtype`` says otherwise: half-precision convolutions are slow or missing on CPUs."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"{path}: no such tokenizer directory", "check the path")
        raw = read_json(path / CONFIG)
        fields = raw.get(TYPE_NAME) if isinstance(raw, dict) else None
        if not isinstance(raw, dict) or raw.get("type") != TYPE_NAME or not isinstance(fields, dict):
            raise CheckpointError(f"{path / CONFIG}: not a {TYPE_NAME} tokenizer config")
        cfg = LlamaGenVQConfig.from_dict(fields)
        weights = path / WEIGHTS
        if not weights.is_file():
            raise CheckpointError(f"{weights}: missing",
                                  "a tokenizer directory holds config.json and model.safetensors")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({e})",
                                  "re-export the tokenizer") from None
        if dtype is None and any(v.dtype in (torch.float16, torch.bfloat16) for v in state.values()):
            dtype = torch.float32
        return build(cfg, state, source=str(weights), device=device, dtype=dtype)

    # ------------------------------------------------------------------ LlamaGen's files
    @classmethod
    def from_llamagen(cls, path: str | Path, *, config: LlamaGenVQConfig | None = None,
                      entry: str | None = None, image_size: int | None = None,
                      device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> LlamaGenVQ:
        """A LlamaGen VQ checkpoint (``vq_ds16_t2i.pt``, or a ``vq_train.py`` checkpoint), loaded strictly.

        Without ``config`` the architecture is read from the weights' shapes. The loss weights and
        ``image_size`` come from the file's ``args`` when it has them, else from the matching preset.
        ``config`` replaces all of that. ``image_size`` overrides every source. ``entry`` picks ``"ema"``,
        ``"model"``, ``"module"`` or ``"state_dict"``. By default the first one present is used, in the order
        of LlamaGen's VQ loaders (ema first).
        """
        found = read_llamagen_file(path, entry=entry)
        size = {"image_size": image_size} if image_size is not None else {}
        if config is not None:  # the caller's config wins over what the file's args say
            cfg = config.replace(**size)
        else:
            cfg = infer_config(found.state, str(path), **{**found.args, **size})
        model = build(cfg, found.state, source=str(path), device=device, dtype=dtype)
        model.load_report.update(entry=found.entry, preset=cfg.preset_name())
        return model


def build(cfg: LlamaGenVQConfig, state: dict[str, torch.Tensor], *, source: str,
          device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> LlamaGenVQ:
    """A :class:`LlamaGenVQ` built on the meta device with ``state`` (LlamaGen key names) assigned strictly.

    ``dtype`` casts the floating weights. The usage window stays float32, because it stores code indices,
    which half precision cannot hold exactly.
    """
    with torch.device("meta"):
        model = LlamaGenVQ(cfg)
    check_state(model.state_dict(), state, source)

    def place(k: str, v: torch.Tensor) -> torch.Tensor:
        if k == USAGE_KEY:
            return v.to(device=device, dtype=torch.float32)
        return v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else v.dtype)

    model.load_state_dict({k: place(k, v) for k, v in state.items()}, strict=True, assign=True)
    model.load_report = {"source": source, "loaded_keys": len(state)}
    return model.eval()


# ------------------------------------------------------------------------------------------------ pixels
def _pil() -> ModuleType:
    return optional("PIL.Image", extra="image", feature="image preprocessing")


def center_crop_arr(img: Image.Image, image_size: int) -> Image.Image:
    """ADM's center crop, which LlamaGen uses at inference and evaluation.

    While the short side is at least ``2 * image_size``, halve the image (integer sizes, BOX filter). Then
    scale the short side to ``image_size`` (BICUBIC, sizes ``round``ed). Then crop the central square, with
    the offset ``(side - image_size) // 2``.
    """
    Image = _pil()
    if min(img.size) <= 0:
        raise InputError(f"image has no pixels (size {img.size[0]}x{img.size[1]})", "pass a non-empty image")
    while min(img.size) >= 2 * image_size:
        img = img.resize(tuple(s // 2 for s in img.size), resample=Image.Resampling.BOX)
    scale = image_size / min(img.size)
    img = img.resize(tuple(round(s * scale) for s in img.size), resample=Image.Resampling.BICUBIC)
    x0, y0 = (img.width - image_size) // 2, (img.height - image_size) // 2
    return img.crop((x0, y0, x0 + image_size, y0 + image_size))


def preprocess_llamagen(images: Sequence[Image.Image], image_size: int) -> torch.Tensor:
    """PIL images -> ``[B, 3, S, S]`` float32 in [-1, 1], as LlamaGen does: ``convert("RGB")`` (alpha is
    dropped, not blended), :func:`center_crop_arr`, then torchvision's ``ToTensor`` + ``Normalize(0.5, 0.5)``.
    That is ``(x / 255 - 0.5) / 0.5`` in float32."""
    if len(images) == 0:
        raise InputError("no images to encode", "pass at least one image")
    out = []
    for im in images:
        try:
            rgb = im.convert("RGB")
        except (ValueError, OSError) as e:  # a mode Pillow cannot convert to RGB
            raise InputError(f"cannot convert a {im.mode!r} image to RGB ({e})",
                             "convert it to 8-bit RGB first") from None
        arr = np.array(center_crop_arr(rgb, image_size), dtype=np.uint8)
        x = torch.from_numpy(arr).permute(2, 0, 1).float().div(255)
        out.append((x - 0.5) / 0.5)
    return torch.stack(out)


def to_pil_llamagen(images: torch.Tensor) -> list[Image.Image]:
    """``[B, 3, H, W]`` (or ``[3, H, W]``) model output -> RGB PIL images: ``clamp(127.5 x + 128, 0, 255)``
    truncated to uint8."""
    Image = _pil()
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(0)
    arr = torch.clamp(127.5 * x + 128.0, 0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a, "RGB") for a in arr]
