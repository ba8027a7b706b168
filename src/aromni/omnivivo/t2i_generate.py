"""Text-to-image sampling with classifier-free guidance, split gpt-fast style (omnivivo.md §1.6).

:func:`prefill` runs the caption prefix and samples the first code; :func:`decode_one_token` feeds one code and
samples the next; :func:`generate_images` allocates the cache and loops for exactly ``block_size`` codes.

CFG batch (LlamaGen's): rows ``[0:B]`` carry the captions, rows ``[B:2B]`` the null text ``uncond_embedding``
with the SAME caption mask; logits are combined as ``uncond + (cond - uncond) * cfg_scale`` and the sampled code
is fed to both halves. Filtering follows LlamaGen: ``logits / max(temperature, 1e-5)``, top-k (``0``: off;
larger than the vocabulary keeps all), top-p (nucleus, Hugging Face's rule; ``1.0``: off). Sampling draws
``argmax(p / E)``, ``E ~ Exp(1)`` from one generator per image (the house exponential race: no host sync, and an
image's codes depend only on its own seed, not on its batch mates). LlamaGen calls ``torch.multinomial``: the same
distribution, a different random stream.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from aromni.errors import ConfigError, InputError
from aromni.inference.processors import top_p as top_p_filter
from aromni.inference.sampling import exponential_noise, make_generators, sample_from_probs
from aromni.omnivivo.t2i_config import find_multiple
from aromni.omnivivo.t2i_model import T2IBackbone


@dataclass(frozen=True)
class T2ISampling:
    """Sampling settings (LlamaGen's ``sample_t2i.py`` defaults).

    Attributes:
        cfg_scale: guidance scale; 1.0 disables guidance.
        top_k: keep the ``k`` most likely codes (0: all).
        top_p: nucleus mass in (0, 1] (1.0: off).
        temperature: divides the logits (floored at 1e-5, as LlamaGen).
        cfg_rows: run the null-text rows; ``None`` means ``cfg_scale != 1.0``. ``True`` with scale 1.0 computes the
            same distribution the long way (a check, or a benchmark of the guidance cost).
    """

    cfg_scale: float = 7.5
    top_k: int = 1000
    top_p: float = 1.0
    temperature: float = 1.0
    cfg_rows: bool | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.cfg_scale):
            raise ConfigError(f"cfg_scale must be a finite number, got {self.cfg_scale}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ConfigError(f"top_k must be a non-negative integer, got {self.top_k!r}", "0 keeps every code")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}", "1.0 turns nucleus filtering off")
        if not (math.isfinite(self.temperature) and self.temperature >= 0.0):
            raise ConfigError(f"temperature must be a non-negative number, got {self.temperature}")

    @property
    def guided(self) -> bool:
        """Whether the batch carries the null-text rows."""
        return self.cfg_scale != 1.0 if self.cfg_rows is None else self.cfg_rows


def sample_codes(logits: torch.Tensor, sampling: T2ISampling, generators: Sequence[torch.Generator]
                 ) -> torch.Tensor:
    """Codes ``[B]`` from last-position logits ``[2B, V]`` (guided: cond rows first) or ``[B, V]``."""
    if sampling.guided:
        cond, uncond = logits.chunk(2, dim=0)
        logits = uncond + (cond - uncond) * sampling.cfg_scale
    logits = logits / max(sampling.temperature, 1e-5)
    if sampling.top_k > 0:
        # torch.topk with a Python k (as LlamaGen): no k tensor copied to the device, so no sync in the step.
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        logits = top_p_filter(logits, sampling.top_p)
    noise = exponential_noise(generators, logits.shape[-1], logits.device)
    return sample_from_probs(torch.softmax(logits, dim=-1), noise)


def prefill(model: T2IBackbone, feats: torch.Tensor, mask: torch.Tensor, sampling: T2ISampling,
            generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Run the caption prefix through the (already set up) cache and sample the first code.

    Args:
        feats: ``[B, L, caption_dim]`` left-padded captions, ``L = cls_token_num``.
        mask: ``[B, L]`` bool caption mask.

    Returns:
        ``[B]`` int64 first codes.
    """
    if sampling.guided:
        feats = torch.cat([feats, model.null_captions(feats.shape[0]).to(feats.dtype)])
        mask = torch.cat([mask, mask])  # the null rows keep the caption's padding (LlamaGen)
    x = model.caption_embeddings(feats)
    input_pos = torch.arange(x.shape[1], device=x.device)
    logits = model.forward_embeddings(x, input_pos, caption_mask=mask, logits_to_keep=1)
    return sample_codes(logits[:, -1], sampling, generators)


def decode_one_token(model: T2IBackbone, codes: torch.Tensor, input_pos: torch.Tensor, sampling: T2ISampling,
                     generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Feed ``codes [B]`` at slot ``input_pos [1]`` (to both halves when guided) and sample the next ``[B]``."""
    if sampling.guided:
        codes = torch.cat([codes, codes])
    logits = model.forward_embeddings(model.tok_embeddings(codes[:, None]), input_pos)
    return sample_codes(logits[:, -1], sampling, generators)


@torch.inference_mode()
def generate_images(model: T2IBackbone, feats: torch.Tensor, mask: torch.Tensor | None = None, *,
                    cfg_scale: float = 7.5, top_k: int = 1000, top_p: float = 1.0, temperature: float = 1.0,
                    seed: int | Sequence[int] = 0, generators: Sequence[torch.Generator] | None = None,
                    cfg_rows: bool | None = None, progress: bool = True) -> torch.Tensor:
    """Sample ``block_size`` image codes per caption.

    Args:
        model: the backbone (run in eval mode for the call; its mode is restored after).
        feats: ``[B, cls_token_num, caption_dim]`` LEFT-padded caption features (see ``left_pad_captions``).
        mask: ``[B, cls_token_num]`` caption mask (``None``: all valid).
        cfg_scale, top_k, top_p, temperature, cfg_rows: see :class:`T2ISampling`.
        seed: one seed per image, or an int ``s`` meaning seeds ``s, s+1, ...``.
        generators: one generator per image on the model's device (overrides ``seed``).
        progress: show a progress bar (only on a terminal).

    Returns:
        ``[B, block_size]`` int64 codes in raster order (``codes[b, r * grid + c]``).
    """
    sampling = T2ISampling(cfg_scale, top_k, top_p, temperature, cfg_rows)
    B, device = feats.shape[0], model.output.weight.device
    generators = _generators(B, seed, generators, device)
    feats = feats.to(device)
    mask = torch.ones(feats.shape[:2], dtype=torch.bool, device=device) if mask is None else mask.to(device).bool()
    L, n = model.cfg.cls_token_num, model.cfg.block_size
    out = torch.empty(B, n, dtype=torch.long, device=device)
    with eval_mode(model):
        model.setup_caches(2 * B if sampling.guided else B, find_multiple(L + n, 8))
        try:
            out[:, 0] = prefill(model, feats, mask, sampling, generators)
            input_pos = torch.tensor([L], device=device)
            show = progress and sys.stderr.isatty()
            for t in tqdm(range(1, n), desc="image codes", disable=not show, leave=False):
                out[:, t] = decode_one_token(model, out[:, t - 1], input_pos, sampling, generators)
                input_pos += 1
        finally:
            model.clear_caches()
    return out


def _generators(B: int, seed: int | Sequence[int], generators: Sequence[torch.Generator] | None,
                device: torch.device) -> list[torch.Generator]:
    if generators is not None:
        if len(generators) != B:
            raise InputError(f"{len(generators)} generators for {B} captions", "pass one generator per image")
        return list(generators)
    seeds = [seed + b for b in range(B)] if isinstance(seed, int) else list(seed)
    if len(seeds) != B:
        raise InputError(f"{len(seeds)} seeds for {B} captions", "pass one seed per image, or one int")
    return make_generators(seeds, device)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the duration of a sampling call: dropout must be off while sampling; the caller's train/eval
    state comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
