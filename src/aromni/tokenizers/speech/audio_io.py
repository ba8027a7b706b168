"""Reading and writing audio files: any rate and channel count in, mono float at the model's rate out.

``load_audio`` decodes with soundfile, mixes channels to mono by averaging and resamples with soxr (a
band-limited resampler; no hand-written filter). ``save_wav`` writes 16-bit PCM atomically. Every problem a user
can cause (missing, unreadable, empty, truncated or over-long file) raises :class:`~aromni.errors.InputError`
naming the file and the limit.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from aromni.errors import InputError
from aromni.utils.io import atomic_path

#: Refuse longer inputs unless the caller asks for more: a 10-minute clip is 9.6 M samples at 16 kHz.
DEFAULT_MAX_SECONDS = 600.0


def _soundfile():
    try:
        import soundfile
    except ImportError:  # pragma: no cover - depends on the install
        raise InputError("reading audio needs the 'soundfile' package", "pip install 'aromni[audio]'") from None
    return soundfile


def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``[T]`` or ``[T, C]`` float audio with soxr (high quality); a no-op when the rates agree."""
    if orig_sr == target_sr:
        return wav
    try:
        import soxr
    except ImportError:  # pragma: no cover
        raise InputError("resampling audio needs the 'soxr' package", "pip install 'aromni[audio]'") from None
    return soxr.resample(wav, orig_sr, target_sr, quality="HQ")


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int,
    *,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    min_samples: int = 1,
) -> torch.Tensor:
    """Read an audio file as a mono float32 tensor ``[T]`` at ``sample_rate``.

    Args:
        path: any format libsndfile reads (wav, flac, ogg, ...), any sample rate or channel count.
        sample_rate: rate of the returned waveform (Hz).
        max_seconds: refuse files longer than this (``None``: no limit); checked from the header before decoding.
        min_samples: refuse files with fewer frames than this (empty files).
    """
    path = Path(path)
    sf = _soundfile()
    if not path.is_file():
        raise InputError(f"{path}: no such audio file", "check the path")
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises RuntimeError/LibsndfileError/TypeError by version
        raise InputError(f"{path}: not a readable audio file ({_one_line(e)})", "use wav, flac or ogg") from None
    if info.frames < min_samples or info.samplerate <= 0:
        raise InputError(f"{path}: audio file is empty ({info.frames} samples)", "record or choose another file")
    duration = info.frames / info.samplerate
    if max_seconds is not None and duration > max_seconds:
        raise InputError(
            f"{path}: audio is {duration:.1f} s long, over the {max_seconds:g} s limit",
            "trim the file or raise max_seconds",
        )
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - as above
        raise InputError(f"{path}: audio data is truncated or corrupt ({_one_line(e)})", "re-export the file") from None
    # libsndfile silently reads a cut-off WAV short (it trusts the file size), so compare with the header.
    declared = _declared_wav_bytes(path)
    present = path.stat().st_size
    if data.shape[0] < info.frames or (declared is not None and declared[0] + declared[1] > present):
        raise InputError(f"{path}: audio is truncated (the header promises more data than the file holds)",
                         "re-export or re-download the file")
    if data.shape[0] < min_samples:
        raise InputError(f"{path}: audio file is empty ({data.shape[0]} samples)", "record or choose another file")
    mono = data.mean(axis=1, dtype=np.float32)  # [T]
    mono = resample(mono, int(sr), int(sample_rate)).astype(np.float32, copy=False)
    if not np.isfinite(mono).all():
        raise InputError(f"{path}: audio contains NaN or infinite samples", "re-export the file")
    return torch.from_numpy(np.ascontiguousarray(mono))


def save_wav(
    path: str | os.PathLike[str],
    wav: torch.Tensor | np.ndarray,
    sample_rate: int,
    *,
    normalize: bool = False,
    peak: float = 0.95,
) -> Path:
    """Write mono ``[T]`` (or ``[1, T]``) float audio as 16-bit PCM wav, atomically.

    Samples are clipped to [-1, 1]; with ``normalize=True`` the waveform is first scaled so its peak is ``peak``
    (silence is left as is).
    """
    sf = _soundfile()
    x = wav.detach().float().cpu().numpy() if isinstance(wav, torch.Tensor) else np.asarray(wav, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise InputError(f"save_wav expects mono audio [T], got shape {tuple(x.shape)}", "pass one waveform")
    if not np.isfinite(x).all():
        raise InputError(f"refusing to write {path}: audio contains NaN or infinite samples")
    if normalize:
        m = float(np.abs(x).max(initial=0.0))
        if m > 0:
            x = x * (peak / m)
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
    path = Path(path)
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), pcm, int(sample_rate), subtype="PCM_16", format="WAV")
    return path


def _declared_wav_bytes(path: Path) -> tuple[int, int] | None:
    """For a RIFF/WAVE file: ``(offset of the data chunk's payload, its declared size)``; else ``None``.

    Sizes 0 and 0xFFFFFFFF mean "unknown" (streamed writers) and give ``None``.
    """
    import struct

    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            offset += 8
            if cid == b"data":
                return None if size in (0, 0xFFFFFFFF) else (offset, size)
            offset += size + (size & 1)  # chunks are word-aligned
            f.seek(offset)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
