"""Inputs and outputs of the tasks: files <-> codes through the bundle's image and speech tokenizers.

Every function raises :class:`~aromni.errors.InputError` naming the file for a missing, unreadable or wrong input,
and :class:`~aromni.errors.AromniError` when the bundle has no tokenizer for the modality.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aromni.errors import AromniError, InputError


def require(tokenizer: Any, modality: str) -> Any:
    if tokenizer is None:
        raise AromniError(f"this bundle has no {modality} tokenizer", f"use a bundle that includes one for {modality}")
    return tokenizer


# ------------------------------------------------------------------------------------------------ images
def image_to_codes(tokenizer: Any, image: Any) -> list[int]:
    """A path, a PIL image or a tensor ``[3, H, W]``/``[1, 3, H, W]`` in [-1, 1] -> codes ``[h*w]``."""
    tok = require(tokenizer, "image")
    if isinstance(image, (str, os.PathLike)):
        from aromni.tokenizers.image.image_io import load_image

        image = load_image(image)
    if isinstance(image, torch.Tensor) and image.dim() == 3:
        image = image[None]
    codes = tok.encode(image)
    if codes.shape[0] != 1:
        raise InputError(f"expected one image, got {codes.shape[0]}")
    return codes[0].tolist()


def codes_to_image(tokenizer: Any, codes: Any) -> Any:
    """Codes ``[h*w]`` -> an RGB PIL image."""
    tok = require(tokenizer, "image")
    out = tok.decode(torch.as_tensor(np.asarray(codes), dtype=torch.long)[None])
    from aromni.tokenizers.image.preprocess import to_pil

    return to_pil(out.float().cpu())[0]


def save_png(image: Any, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    from aromni.tokenizers.image.image_io import save_image

    return save_image(image, path, overwrite=overwrite)


# ------------------------------------------------------------------------------------------------ speech
def audio_to_codes(tokenizer: Any, audio: Any, sample_rate: int | None = None) -> list[int]:
    """A path, or a waveform ``[T]`` (numpy or torch) at ``sample_rate`` -> speech codes ``[F]``."""
    tok = require(tokenizer, "speech")
    if isinstance(audio, (str, os.PathLike)):
        from aromni.tokenizers.speech.audio_io import load_audio

        wav = load_audio(audio, tok.sample_rate)
    else:
        wav = torch.as_tensor(np.asarray(audio, dtype=np.float32)).reshape(-1)
        if wav.numel() == 0:
            raise InputError("empty waveform", "pass at least one sample")
        if sample_rate is None:
            raise InputError("a waveform needs its sample_rate", f"the speech tokenizer runs at {tok.sample_rate} Hz")
        if sample_rate != tok.sample_rate:
            from aromni.tokenizers.speech.audio_io import resample

            wav = torch.from_numpy(resample(wav.numpy(), int(sample_rate), tok.sample_rate).astype(np.float32))
    p = next(tok.parameters(), None) if hasattr(tok, "parameters") else None
    wav = wav.to(p.device) if p is not None else wav
    return tok.encode(wav[None])[0].tolist()


def codes_to_audio(tokenizer: Any, codes: Any) -> torch.Tensor:
    """Speech codes ``[F]`` -> waveform ``[F * hop]`` (float32, CPU)."""
    tok = require(tokenizer, "speech")
    codes_t = torch.as_tensor(np.asarray(codes), dtype=torch.long)
    if codes_t.numel() == 0:
        return torch.zeros(0)
    p = next(tok.parameters(), None) if hasattr(tok, "parameters") else None
    if p is not None:
        codes_t = codes_t.to(p.device)
    with torch.no_grad():
        return tok.decode(codes_t[None])[0].float().cpu()


def save_wav(wav: torch.Tensor, path: str | os.PathLike[str], sample_rate: int, *, normalize: bool = False,
             overwrite: bool = True) -> Path:
    """Write 16-bit PCM; ``normalize`` scales the peak to 1.0 as the official chat runner does."""
    from aromni.tokenizers.speech.audio_io import save_wav as _save

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass --overwrite")
    return _save(path, wav, sample_rate, normalize=normalize, peak=1.0)
