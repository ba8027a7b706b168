"""Quantization of the decoder's linear layers: ``--quantize int8``, ``w8a8`` or ``int4``.

``int8`` is weight-only. Each weight matrix ``W [out, in]`` is stored as int8 with one float scale per output
channel (symmetric: ``scale[o] = max_i |W[o, i]| / 127``, ``W ≈ int8 * scale``). On CPU the product runs in
torch's int8-weight kernel (``aten._weight_int8pack_mm``, the one gpt-fast uses) with the activations rounded to
bfloat16 (the kernel's fast path); it reads a quarter of the float32 weight bytes per token, and decoding one
token is bound by reading the weights. The output comes back in the model's dtype. Elsewhere the weight is
dequantized per call (correct, not faster).

``w8a8`` keeps the same int8 weights and scales and also rounds the activations to int8 at run time, one
symmetric scale per token (row): ``x ≈ xq * a[t]``. The product is then an exact int8 x int8 -> int32 matrix
multiply (``torch._int_mm``, AVX-512 VNNI on CPU), rescaled by ``a[t] * scale[o]``. On CPU a compiled decode
step ran 1.4-1.8x faster than with the weight-only kernel (which spends its time converting weights to bfloat16,
not reading them; ``benchmarks/decode.py``) at the cost of the activations' rounding error: a per-token scale
keeps a token's outliers from flattening the others', but a row's small entries lose precision next to its
largest one.

``int4`` is weight-only 4-bit in groups of input channels, on the CPU only (:mod:`aromni.models.int4`).

Embeddings stay in float (a lookup reads one row per token); the output head is quantized unless it is tied to
the embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import ConfigError
from aromni.models.int4 import Int4Linear, int4_group_size

#: The quantization schemes ``--quantize`` accepts: weight-only int8, int8 weights with int8 activations, and
#: weight-only int4 (CPU).
SCHEMES = ("int8", "w8a8", "int4")


@torch.library.custom_op("aromni::int8_linear_cpu", mutates_args=())
def int8_linear_cpu(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x [..., in] @ (weight * scale[:, None]).T`` on CPU, in ``x``'s dtype.

    torch's int8-weight kernel is vectorised for bfloat16 activations only: with float32 ones it ran 3-10x
    slower than a float32 matmul on this project's CPU, with bfloat16 ones 2-3x faster. So the activations are
    rounded to bfloat16 for the product (the int8 weights already carry a larger error). A custom op, so that
    ``torch.compile`` calls the kernel as it is (inductor's own lowering of it failed on a fused bfloat16 cast
    in torch 2.13, and its pattern for the float32 form was slower than eager)."""
    xb = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
    y = torch.ops.aten._weight_int8pack_mm(xb, weight, scale.to(torch.bfloat16))
    return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])


@int8_linear_cpu.register_fake
def _int8_linear_cpu_shape(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.shape[0])


def w8a8_linear_cpu(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x [..., in]`` rounded to int8 per row, times the int8 ``weight [out, in]``, rescaled; in ``x``'s dtype.

    Plain torch ops, not a custom op: ``torch.compile`` lowers ``_int_mm`` itself and fuses the rounding and the
    rescaling around it (a 100m decode step took 13 ms so, against 17 ms with the whole layer opaque)."""
    x2 = x.reshape(-1, x.shape[-1]).float()
    a = x2.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / 127.0  # [N, 1]
    xq = torch.round(x2 / a).to(torch.int8)  # |x / a| <= 127 by construction
    y = torch._int_mm(xq, weight.t()).float() * a * scale.float()
    return y.to(x.dtype).reshape(*x.shape[:-1], weight.shape[0])


class Int8Linear(nn.Module):
    """``y = x @ (weight * scale[:, None]).T`` with ``weight [out, in]`` int8 and ``scale [out]`` float.

    Built by :meth:`from_linear`; inference only (no gradients flow to the int8 weight). ``activations="int8"``
    (the ``w8a8`` scheme) also rounds each input row to int8 on CPU (see the module docstring)."""

    def __init__(self, weight: torch.Tensor, scale: torch.Tensor, activations: str = "float"):
        super().__init__()
        if activations not in ("float", "int8"):
            raise ConfigError(f"Int8Linear activations must be 'float' or 'int8', got {activations!r}")
        self.activations = activations
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)

    @classmethod
    def from_linear(cls, linear: nn.Linear, activations: str = "float") -> Int8Linear:
        if linear.bias is not None:
            raise ConfigError("int8 quantization covers bias-free linear layers only (the decoder has no biases)")
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127.0).clamp(min=torch.finfo(torch.float32).tiny)
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(q, scale.to(linear.weight.dtype), activations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., in]`` -> ``[..., out]`` in ``x``'s dtype."""
        if x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16, torch.float16):
            if self.activations == "int8":
                return w8a8_linear_cpu(x, self.weight, self.scale)
            return int8_linear_cpu(x, self.weight, self.scale)
        # Elsewhere the dequantized product in float (the same rounding, not faster).
        if self.activations == "int8":
            a = x.float().abs().amax(dim=-1, keepdim=True).clamp(min=torch.finfo(torch.float32).tiny) / 127.0
            x = (torch.round(x.float() / a) * a).to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype)) * self.scale.to(x.dtype)

    def extra_repr(self) -> str:
        acts = ", int8 activations per token" if self.activations == "int8" else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel{acts}"


def quantize_decoder_(decoder: nn.Module, scheme: str = "int8", group_size: int = 32) -> int:
    """Replace the decoder's linear layers (attention, MLP, and the output head unless tied) in place; returns how
    many were replaced. ``int8`` / ``w8a8``: :class:`Int8Linear`; ``int4``: :class:`~aromni.models.int4.Int4Linear`
    in groups of at most ``group_size`` channels, with weight-only int8 for a layer the int4 kernel cannot hold."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization {scheme!r}", f"one of: {', '.join(SCHEMES)}")
    embed = getattr(decoder, "embed", None)
    tied = embed is not None and getattr(decoder.lm_head, "weight", None) is embed.weight
    n = 0
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear) or (tied and child is decoder.lm_head):
                continue
            group = int4_group_size(child.in_features, child.out_features, group_size) if scheme == "int4" else None
            if group is not None:
                setattr(parent, name, Int4Linear.from_linear(child, group))
            else:
                setattr(parent, name, Int8Linear.from_linear(child, "int8" if scheme == "w8a8" else "float"))
            n += 1
    return n
