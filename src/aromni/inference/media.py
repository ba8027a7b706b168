"""Inputs and outputs of the tasks: files <-> codes through the bundle's image and speech tokenizers.

Every function raises :class:`~aromni.errors.InputError` naming the file for a missing, unreadable or wrong input,
and :class:`~aromni.errors.AromniError` when the bundle has no tokenizer for the modality.
"""

from __future__ import annotations

import os
from pathlib import Path
from collections.abc import Sequence
from typing import TypeVar, Union

import numpy as np
import torch

from aromni.errors import AromniError, InputError
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer, Tokenizer
from aromni.tokenizers.image.image_io import load_image, save_image
from aromni.tokenizers.image.preprocess import to_pil
from aromni.tokenizers.speech.audio_io import check_sample_rate, load_audio, waveform_from_array
from aromni.tokenizers.speech.audio_io import save_wav as write_wav

#: An image input: a file path, a PIL image (``PIL.Image.Image``; Pillow is an optional extra, so it is not named
#: here) or a float tensor ``[3, H, W]`` / ``[1, 3, H, W]`` in [-1, 1].
ImageInput = Union[str, os.PathLike, torch.Tensor, object]
#: An audio input: a file path, or a waveform ``[T]`` / ``[C, T]`` (numpy, torch or a list of numbers).
AudioInput = Union[str, os.PathLike, torch.Tensor, np.ndarray, Sequence[float]]
#: Speech or image codes: a list, array or tensor of integers ``[F]``.
Codes = Union[Sequence[int], np.ndarray, torch.Tensor]
T = TypeVar("T", bound=Tokenizer)


def require(tokenizer: T | None, modality: str) -> T:
    if tokenizer is None:
        raise AromniError(f"this bundle has no {modality} tokenizer", f"use a bundle that includes one for {modality}")
    return tokenizer


# ------------------------------------------------------------------------------------------------ images
def image_to_codes(tokenizer: ImageTokenizer | None, image: ImageInput) -> list[int]:
    """A path, a PIL image or a float tensor ``[3, H, W]``/``[1, 3, H, W]`` in [-1, 1] -> codes ``[h*w]``.

    Raises :class:`InputError` for anything else (``None``, numbers, bytes, numpy arrays, tensors of the wrong
    shape or dtype or with NaN/inf values, empty images).
    """
    tok = require(tokenizer, "image")
    image = check_image(image)
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, torch.Tensor) and image.dim() == 3:
        image = image[None]
    codes = tok.encode(image)
    if codes.shape[0] != 1:
        raise InputError(f"expected one image, got {codes.shape[0]}", "pass the images of a batch as a list")
    return codes[0].tolist()


def check_image(image: ImageInput) -> ImageInput:
    """``image`` if it is a path, a PIL image or a finite float tensor ``[3, H, W]`` / ``[1, 3, H, W]``;
    :class:`InputError` naming the problem otherwise."""
    if isinstance(image, (str, os.PathLike)):
        if isinstance(image, str) and not image:
            raise InputError("image path is an empty string", "pass an image file path")
        return image
    if image is None:
        raise InputError("no image given", "pass an image file path, a PIL image or a tensor [3, H, W] in [-1, 1]")
    if isinstance(image, (bytes, bytearray, memoryview)):
        raise InputError(f"image given as {len(image)} raw bytes",
                         "write them to a file and pass its path, or open them with PIL.Image.open(io.BytesIO(data))")
    if isinstance(image, np.ndarray):
        raise InputError(f"image given as a numpy array {tuple(image.shape)} {image.dtype}",
                         "wrap it with PIL.Image.fromarray(array) (uint8 [H, W, 3]), or pass a float tensor "
                         "[3, H, W] in [-1, 1]")
    if isinstance(image, torch.Tensor):
        if image.device.type == "meta":
            raise InputError("image tensor is on the meta device (it holds no pixels)", "pass a real tensor")
        if image.dim() not in (3, 4) or not image.is_floating_point() or image.numel() == 0:
            raise InputError(f"an image tensor must be a non-empty float tensor [3, H, W] or [1, 3, H, W] in "
                             f"[-1, 1], got {image.dtype} {list(image.shape)}",
                             "or pass a PIL image or a file path to have it resized and cropped")
        if not bool(torch.isfinite(image).all()):
            raise InputError("image tensor contains NaN or infinite values", "pass pixels in [-1, 1]")
        return image
    if hasattr(image, "mode") and hasattr(image, "size") and hasattr(image, "convert"):
        w, h = image.size
        if w <= 0 or h <= 0:
            raise InputError(f"image has no pixels (size {w}x{h})", "pass a non-empty image")
        return image
    raise InputError(f"an image must be a file path, a PIL image or a tensor [3, H, W], got {type(image).__name__}")


def codes_to_image(tokenizer: ImageTokenizer | None, codes: Codes) -> object:
    """Codes ``[h*w]`` -> an RGB PIL image (``PIL.Image.Image``)."""
    tok = require(tokenizer, "image")
    out = tok.decode(_codes_tensor(codes))
    return to_pil(out.float().cpu())[0]


def _codes_tensor(codes: Codes) -> torch.Tensor:
    """Codes ``[F]`` (a list or array of integers) -> int64 ``[1, F]``; :class:`InputError` for anything else."""
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    try:
        arr = np.asarray(codes)
    except (ValueError, TypeError):
        arr = np.asarray([None], dtype=object)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise InputError(f"codes must be a 1-D list of integers, got {arr.dtype} {tuple(arr.shape)}")
    return torch.as_tensor(arr.astype(np.int64))[None]


def save_png(image: ImageInput, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write an image atomically; refuses to replace an existing file unless ``overwrite=True``."""
    return save_image(image, path, overwrite=overwrite)


# ------------------------------------------------------------------------------------------------ speech
def waveform(tokenizer: SpeechTokenizer | None, audio: AudioInput, sample_rate: object = None) -> torch.Tensor:
    """A path, or a waveform (numpy, torch or a list; ``[T]`` or channels-first ``[C, T]``) at ``sample_rate`` ->
    mono float32 ``[T']`` at the speech tokenizer's rate. See :mod:`aromni.tokenizers.speech.audio_io` for the
    accepted arrays; anything else raises :class:`InputError` naming the problem."""
    tok = require(tokenizer, "speech")
    if isinstance(audio, (str, os.PathLike)):
        if isinstance(audio, str) and not audio:
            raise InputError("audio path is an empty string", "pass an audio file path or a waveform array")
        if sample_rate is not None:
            check_sample_rate(sample_rate)  # a file carries its own rate; a bad value is still a mistake
        return load_audio(audio, tok.sample_rate)
    return waveform_from_array(audio, sample_rate, tok.sample_rate)


def frames_of(tokenizer: SpeechTokenizer, wav: torch.Tensor) -> int:
    """Codes the speech tokenizer makes of ``wav [T]``: ``ceil(T / hop)``."""
    return -(-int(wav.shape[-1]) // int(tokenizer.hop_length))


def encode_waveform(tokenizer: SpeechTokenizer | None, wav: torch.Tensor) -> list[int]:
    """Mono ``wav [T]`` at the tokenizer's rate -> speech codes ``[ceil(T / hop)]``."""
    tok = require(tokenizer, "speech")
    p = next(tok.parameters(), None) if hasattr(tok, "parameters") else None
    wav = wav.to(p.device) if p is not None else wav
    with torch.no_grad():
        return tok.encode(wav[None])[0].tolist()


def audio_to_codes(tokenizer: SpeechTokenizer | None, audio: AudioInput, sample_rate: object = None) -> list[int]:
    """A path, or a waveform ``[T]`` / ``[C, T]`` (numpy, torch or a list) at ``sample_rate`` -> speech codes
    ``[F]`` (see :func:`waveform`)."""
    return encode_waveform(tokenizer, waveform(tokenizer, audio, sample_rate))


def audio_too_long(tokenizer: SpeechTokenizer, wav: torch.Tensor, max_frames: int, context: int, where: str) -> InputError:
    """The error for audio that does not fit: its length and how many seconds of audio the context holds."""
    tok = tokenizer
    seconds = wav.shape[-1] / tok.sample_rate
    fit = max(0, max_frames) / tok.frame_rate
    if max_frames <= 0:
        return InputError(f"the audio is {seconds:.1f} s long, but {where} leaves no room for audio in this "
                          f"model's {context}-token context", "shorten the text or images that go with it")
    return InputError(f"the audio is {seconds:.1f} s long ({frames_of(tok, wav)} speech tokens); this model's "
                      f"{context}-token context fits about {fit:.1f} s of audio ({max_frames} tokens) in {where}",
                      "trim or split the audio")


def codes_to_audio(tokenizer: SpeechTokenizer | None, codes: Codes) -> torch.Tensor:
    """Speech codes ``[F]`` -> waveform ``[F * hop]`` (float32, CPU)."""
    tok = require(tokenizer, "speech")
    codes_t = _codes_tensor(codes)
    if codes_t.numel() == 0:
        return torch.zeros(0)
    p = next(tok.parameters(), None) if hasattr(tok, "parameters") else None
    if p is not None:
        codes_t = codes_t.to(p.device)
    with torch.no_grad():
        return tok.decode(codes_t)[0].float().cpu()


def save_wav(wav: torch.Tensor, path: str | os.PathLike[str], sample_rate: int, *, normalize: bool = False,
             overwrite: bool = False) -> Path:
    """Write 16-bit PCM atomically; ``normalize`` scales the peak to 1.0 as the official chat runner does.
    Refuses to replace an existing file unless ``overwrite=True`` (as :func:`save_png`)."""
    path = Path(path)
    if path.exists() and not path.is_dir() and not overwrite:
        raise InputError(f"{path} already exists", "choose another path or pass overwrite=True (--overwrite)")
    return write_wav(path, wav, sample_rate, normalize=normalize, peak=1.0)
