"""Weight-only int4 linear layers for the CPU (``--quantize int4``).

Each weight row is cut into groups of ``group_size`` input channels; a group stores 4-bit values ``v`` in 0..15
with a bfloat16 scale ``s`` and zero point ``z`` (asymmetric: ``w ≈ (v - 8) * s + z``, ``s = (max - min) / 15``,
``z = min + 8 s``). The product runs in torch's CPU int4 kernel (``aten._weight_int4pack_mm_for_cpu``, the
format gpt-fast's int4 uses) with the activations rounded to bfloat16. It reads about a sixth of the float32
weight bytes (half a byte a weight, plus a scale and zero point per group of 32); on this project's CPU a 100m
model's linear layers took 7.7 ms per token against 35.5 ms in float32 and 17.7 ms with w8a8
(``benchmarks/linear_kernels.py``, one thread, batch 1, groups of 32).

The kernel takes groups of 32, 64, 128 or 256 channels and output sizes divisible by 16; a layer that fits
neither stays as weight-only int8 (:func:`int4_group_size` says which). CPU only: the packed layout is the CPU
kernel's.
"""

from __future__ import annotations

import torch
from torch import nn

from aromni.errors import ConfigError

#: Group sizes tried, largest first (fewer scales to read); the kernel's own set is 32, 64, 128 and 256.
GROUP_SIZES = (128, 64, 32)


def int4_group_size(in_features: int, out_features: int, preferred: int = 32) -> int | None:
    """The group size a layer gets (at most ``preferred``), or ``None`` when the kernel cannot hold it."""
    if out_features % 16:
        return None
    return next((g for g in GROUP_SIZES if g <= preferred and in_features % g == 0), None)


def int4_quantize(w: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``w [out, in]`` -> values ``v [out, in]`` (int32, 0..15), scales and zero points ``[out, in / group]``
    (float32), with ``w ≈ (v - 8) * s + z`` per group."""
    out, inp = w.shape
    g = w.float().reshape(out, inp // group_size, group_size)
    lo, hi = g.amin(dim=2), g.amax(dim=2)
    s = ((hi - lo) / 15).clamp(min=torch.finfo(torch.float32).tiny)
    z = lo + 8 * s
    v = torch.round((g - lo[..., None]) / s[..., None]).clamp(0, 15).to(torch.int32).reshape(out, inp)
    return v, s, z


class Int4Linear(nn.Module):
    """``y = x @ dequant(weight).T`` with 4-bit grouped weights (see the module docstring); CPU, inference only.

    Buffers: ``packed [out, in / 2]`` uint8 (the CPU kernel's layout) and ``scales_zeros [in / group, out, 2]``
    bfloat16."""

    def __init__(self, packed: torch.Tensor, scales_zeros: torch.Tensor, in_features: int, group_size: int):
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, packed.shape[0], group_size
        self.register_buffer("packed", packed)
        self.register_buffer("scales_zeros", scales_zeros)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int) -> Int4Linear:
        if linear.bias is not None:
            raise ConfigError("int4 quantization covers bias-free linear layers only (the decoder has no biases)")
        if linear.weight.device.type != "cpu":
            raise ConfigError(f"int4 layers run on the CPU only, this model is on {linear.weight.device}",
                              "use --quantize int8 on other devices")
        v, s, z = int4_quantize(linear.weight.detach(), group_size)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(v, 1)
        scales_zeros = torch.stack([s, z], dim=2).transpose(0, 1).contiguous().to(torch.bfloat16)
        return cls(packed, scales_zeros, linear.in_features, group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in]`` -> ``[..., out]`` in ``x``'s dtype."""
        if x.device.type != "cpu":
            raise ConfigError(f"int4 layers run on the CPU only, got input on {x.device}",
                              "load the model on the CPU, or use --quantize int8")
        xb = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb, self.packed, self.group_size, self.scales_zeros)
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int4 groups of {self.group_size}"
