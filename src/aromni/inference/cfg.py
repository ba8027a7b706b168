"""Classifier-free guidance for image codes: the official three-row scheme (``official-formats.md`` §C.3).

For every request that opens an image, three rows are decoded together:

* ``full``: the whole context (prompt + generated so far, ending in ``<boi>``);
* ``image``: the context filtered to image codes and ``<bos>``/``<boi>``/``<eoi>`` (the image-conditioned row);
* ``uncond``: ``[<bos>, <boi>]``.

The rows are left-padded into one batch ``[full_0..k, image_0..k, uncond_0..k]``. Each step mixes
``uncond + g_img * (image - uncond) + g_txt * (full - image)`` (InstructPix2Pix-style, ``g_txt`` =
``guidance_scale_text``, ``g_img`` = ``guidance_scale_image``), masks everything but image codes, applies
temperature / top-k / top-p, samples one code per request and feeds that same code to its three rows. For a pure
text-to-image prompt the image row equals the unconditioned row, so ``g_img`` has no effect there (as in the
official code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from aromni.inference.options import ImageSampling
from aromni.inference.processors import AllowOnly, ProcessorChain, StepContext, Temperature, TopK, TopP
from aromni.inference.sampling import exponential_noise, select_tokens
from aromni.models.decoder import Decoder
from aromni.vocab.layout import VocabLayout


def cfg_contexts(contexts: Sequence[Sequence[int]], layout: VocabLayout) -> list[list[int]]:
    """``[full..., image-only..., uncond...]`` for ``k`` contexts (3k rows); a context lacking a final ``<boi>``
    gets one, as the official ImageDecoder does."""
    full = [list(c) if c and c[-1] == layout.boi else [*c, layout.boi] for c in contexts]
    keep = np.asarray([layout.bos, layout.boi, layout.eoi])
    image_only = []
    for c in full:
        arr = np.asarray(c, dtype=np.int64)
        image_only.append(arr[layout.image.contains(arr) | np.isin(arr, keep)].tolist())
    uncond = [[layout.bos, layout.boi] for _ in full]
    return full + image_only + uncond


def mix_cfg_logits(logits: torch.Tensor, guidance_scale_text: float, guidance_scale_image: float) -> torch.Tensor:
    """``[3k, V]`` rows (full, image, uncond) -> mixed ``[k, V]``."""
    full, image, uncond = logits.chunk(3, dim=0)
    return uncond + guidance_scale_image * (image - uncond) + guidance_scale_text * (full - image)


def left_pad_batch(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-align ``rows`` into ``tokens [B, T]`` with ``pad [B]`` padding slots at the start of each row."""
    T = max(len(r) for r in rows)
    tokens = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for b, r in enumerate(rows):
        if len(r):
            tokens[b, T - len(r):] = torch.as_tensor(list(r), dtype=torch.long)
    pad = torch.tensor([T - len(r) for r in rows], dtype=torch.long)
    return tokens.to(device), pad.to(device)


def image_processors(layout: VocabLayout, opts: ImageSampling, device: torch.device) -> ProcessorChain:
    return ProcessorChain([AllowOnly(layout.mask("image", device)), Temperature(opts.temperature),
                           TopK(opts.top_k), TopP(opts.top_p)])


@torch.no_grad()
def _forward(decoder: Decoder, tokens: torch.Tensor, start: int, left_pad: torch.Tensor | None = None
             ) -> torch.Tensor:
    pos = torch.arange(start, start + tokens.shape[1], device=tokens.device)
    return decoder(tokens, input_pos=pos, left_pad=left_pad, logits_to_keep=1)[:, -1]


def generate_image_cfg(decoder: Decoder, layout: VocabLayout, contexts: Sequence[Sequence[int]], n_codes: int,
                       opts: ImageSampling, generators: Sequence[torch.Generator], *,
                       decode: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
                       cache_len: Callable[[int], int] | None = None) -> Iterator[torch.Tensor]:
    """Yield ``n_codes`` image-code token ids ``[k]``, one per step, for ``k`` contexts under CFG.

    Sets up (and leaves behind) a KV cache of ``3k`` rows on ``decoder``; the caller restores its own. The
    contexts end with ``<boi>`` (added when missing). ``generators[i]`` draws the sampling noise of request ``i``.
    ``decode(tokens [3k], slot) -> logits [3k, V]`` and ``cache_len(needed) -> slots`` replace the eager step and
    the exact cache size (the compiled engine passes its static step and a fixed cache).
    """
    device = decoder.embed.weight.device
    rows = cfg_contexts(contexts, layout)
    tokens, pad = left_pad_batch(rows, layout.pad, device)
    k, T = len(contexts), tokens.shape[1]
    decoder.setup_caches(3 * k, cache_len(T + n_codes) if cache_len is not None else T + n_codes)
    chain = image_processors(layout, opts, device)
    greedy = torch.full((k,), opts.greedy, dtype=torch.bool, device=device)
    ctx = StepContext()
    logits = _forward(decoder, tokens, 0, pad)
    for i in range(n_codes):
        mixed = chain(mix_cfg_logits(logits, opts.guidance_scale_text, opts.guidance_scale_image), ctx)
        noise = None if opts.greedy else exponential_noise(generators, layout.vocab_size, device)
        tok = select_tokens(mixed, greedy, noise)
        yield tok
        if i + 1 < n_codes:
            if decode is not None:
                logits = decode(tok.repeat(3), T + i)
            else:
                logits = _forward(decoder, tok.repeat(3)[:, None], T + i)
