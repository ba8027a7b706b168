"""The perceptual loss (paper eq. 3): regress last-layer hidden states onto a frozen image-code embedding table.

For positions ``t`` with an image code ``c_t`` (see :mod:`aromni.training.data.targets` for which positions and
which code), the final normed hidden state ``h_t [dim]`` goes through a trainable projection
``W_h: dim -> d_e`` (no bias, as in eq. 3) and is compared with the frozen row ``E[c_t] [d_e]``:

* ``reduction="sum"``: ``||W_h h_t - E[c_t]||_2^2`` (eq. 3 as written);
* ``reduction="mean"``: the same divided by ``d_e`` (``F.mse_loss``, what the official code computes).

The loss is the mean of that over positions (the trainer divides the summed errors by the number of positions
of the whole optimizer step, across micro-batches and ranks). ``E`` is typically the image tokenizer's codebook
(``quantize.embedding.weight`` of the VQGAN, ``[8192, 256]`` for Chameleon's).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from aromni.errors import CheckpointError, ConfigError
from aromni.tokenizers.base import load_tokenizer
from aromni.utils.io import read_json
from aromni.utils.safe_load import load_weights_only


class PerceptualHead(nn.Module):
    """``W_h`` plus the frozen table ``E``.

    Args:
        dim: decoder width ``d_h``.
        table: ``[n_codes, d_e]`` frozen code embeddings (stored as a non-persistent float32 buffer).
        reduction: ``"mean"`` or ``"sum"`` over ``d_e`` (see the module docstring).
    """

    def __init__(self, dim: int, table: torch.Tensor, reduction: str = "mean"):
        super().__init__()
        if table.dim() != 2:
            raise ConfigError(f"perceptual table must be [n_codes, d_e], got shape {tuple(table.shape)}")
        if reduction not in ("mean", "sum"):
            raise ConfigError(f"perceptual reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self.proj = nn.Linear(dim, table.shape[1], bias=False)
        self.register_buffer("table", table.detach().float().clone(), persistent=False)

    def forward(self, hidden: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Per-position error ``[N]`` for ``hidden [N, dim]`` and image ``codes [N]``."""
        pred = self.proj(hidden).float()  # (N, d_e)
        diff = pred - self.table[codes]
        err = diff.pow(2)
        return err.mean(-1) if self.reduction == "mean" else err.sum(-1)


def load_table(source: str | Path) -> torch.Tensor:
    """Read ``E`` from a tokenizer directory or bundle (the VQGAN codebook) or a one-tensor file."""
    path = Path(source)
    if path.is_dir():
        return _table_from_dir(path)
    if not path.is_file():
        raise ConfigError(f"perceptual.table: {path} does not exist",
                          "pass an image tokenizer directory, a bundle, or a .safetensors/.pt file with one tensor")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: unreadable safetensors file ({e})",
                                  "the file is truncated or corrupt; save the [n_codes, d_e] table again") from None
    else:
        obj = load_weights_only(Path(path))
        tensors = obj if isinstance(obj, dict) else {"table": obj}
    tensors = {k: v for k, v in tensors.items() if isinstance(v, torch.Tensor) and v.dim() == 2}
    if len(tensors) != 1:
        hit = {k: v for k, v in tensors.items() if k.endswith("embedding.weight")}
        if len(hit) != 1:
            raise CheckpointError(f"{path}: expected exactly one 2-D tensor, found {sorted(tensors)}",
                                  "save the [n_codes, d_e] table alone")
        tensors = hit
    (key, table), = tensors.items()
    if not table.is_floating_point():
        raise CheckpointError(f"{path}: tensor {key!r} is stored as {table.dtype}, expected a floating-point tensor",
                              "save the [n_codes, d_e] code-embedding table as float32")
    return table.float()


def _table_from_dir(path: Path) -> torch.Tensor:
    cfg = read_json(path / "config.json")
    if isinstance(cfg, dict) and cfg.get("format") == "aromni":  # a bundle: use its image tokenizer
        sub = (cfg.get("bundle", {}).get("tokenizers") or {}).get("image")
        if not sub:
            raise ConfigError(f"perceptual.table: bundle {path} has no image tokenizer")
        path = path / sub
    tok = load_tokenizer(path)
    state = tok.state_dict() if hasattr(tok, "state_dict") else {}
    key = "quantize.embedding.weight"
    if key not in state:
        raise ConfigError(f"perceptual.table: {path} has no {key}", "pass an image (VQGAN) tokenizer directory")
    return state[key].detach().float()
