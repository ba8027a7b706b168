"""Reading and writing audio files: any rate and channel count in, mono float at the model's rate out.

``load_audio`` decodes with soundfile, mixes channels to mono by averaging and resamples with soxr (a
band-limited resampler; no hand-written filter). :func:`waveform_from_array` does the same for a waveform held in
memory. ``save_wav`` writes 16-bit PCM atomically. Every problem a user can cause (missing, unreadable, empty,
truncated or over-long file; a waveform that is not a finite real array; a bad sample rate) raises
:class:`~aromni.errors.InputError` naming the file or value and the limit.

Waveforms in memory (:func:`waveform_from_array`):

* a 1-D array ``[T]`` (numpy, torch, or a list of numbers) is mono;
* a 2-D array is ``[C, T]``, channels first, with at most :data:`MAX_CHANNELS` channels; the channels are
  averaged to mono, as :func:`load_audio` does for files. An array shaped like ``[T, C]`` (soundfile's layout)
  is refused with a hint to transpose it, since guessing the axis of short clips is unreliable;
* float samples are taken as they are (nominally in [-1, 1]); int16 / int32 / int8 arrays are PCM and scaled
  by ``1 / 2**15``, ``1 / 2**31``, ``1 / 2**7``, uint8 is 8-bit PCM (offset 128); other integer, bool, complex,
  string and object arrays are refused;
* NaN or infinite samples, empty arrays, 0-d values and 3-D or higher arrays are refused.

Sample rates (of arrays and files) must be whole numbers of Hz in [:data:`MIN_SAMPLE_RATE`,
:data:`MAX_SAMPLE_RATE`].
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from aromni.errors import InputError
from aromni.utils.io import atomic_path, path_kind

#: Refuse longer inputs unless the caller asks for more: a 10-minute clip is 9.6 M samples at 16 kHz.
DEFAULT_MAX_SECONDS = 600.0
#: Sample rates accepted for input audio (Hz). Below 1 kHz nothing of speech is left; 768 kHz is the highest
#: rate audio interfaces record at.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768_000
#: Most channels a ``[C, T]`` waveform array may have (more is taken for a ``[T, C]`` mistake).
MAX_CHANNELS = 16
#: Integer PCM dtypes and the scale that maps them to [-1, 1] (and the offset of unsigned 8-bit PCM).
_PCM = {np.dtype(np.int16): (2.0**15, 0.0), np.dtype(np.int32): (2.0**31, 0.0), np.dtype(np.int8): (2.0**7, 0.0),
        np.dtype(np.uint8): (2.0**7, 128.0)}


def check_sample_rate(sample_rate: object, what: str = "sample_rate") -> int:
    """``sample_rate`` as an int, or :class:`InputError` unless it is a whole number of Hz in the accepted range
    (``16000`` and ``16000.0`` pass; ``'16k'``, ``True``, ``nan``, ``0``, ``-1`` and ``8000.5`` do not)."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, numbers.Real):
        raise InputError(f"{what} must be a whole number of Hz, got {sample_rate!r} ({type(sample_rate).__name__})",
                         "e.g. sample_rate=16000")
    f = float(sample_rate)
    if not math.isfinite(f) or not f.is_integer():
        raise InputError(f"{what} must be a whole number of Hz, got {sample_rate!r}", "e.g. sample_rate=16000")
    if not MIN_SAMPLE_RATE <= f <= MAX_SAMPLE_RATE:
        raise InputError(f"{what} {int(f)} Hz is outside the supported {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz",
                         "pass the rate the audio was recorded at (e.g. 16000, 44100, 48000)")
    return int(f)


def _as_array(audio: object) -> np.ndarray:
    """A waveform given as numpy, torch or a (nested) list -> numpy array (dtype unchecked)."""
    if audio is None:
        raise InputError("no audio given", "pass a file path or a waveform array [T] with its sample_rate")
    if isinstance(audio, (bytes, bytearray, memoryview)):
        raise InputError(f"audio given as {len(audio)} raw bytes",
                         "write them to a file and pass its path, or decode them to a float array first")
    if isinstance(audio, torch.Tensor):
        if audio.device.type == "meta":
            raise InputError("audio tensor is on the meta device (it holds no samples)", "pass a real tensor")
        t = audio.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):
            t = t.float()  # numpy has no bfloat16
        if t.is_complex():
            raise InputError(f"audio tensor is complex ({t.dtype})", "pass real samples (e.g. wav.real)")
        try:
            return t.numpy()
        except (TypeError, RuntimeError) as e:
            raise InputError(f"audio tensor of dtype {t.dtype} is not a waveform ({e})",
                             "pass float samples in [-1, 1]") from None
    if isinstance(audio, np.ndarray):
        return audio
    if isinstance(audio, (numbers.Number, np.generic)):
        raise InputError(f"audio is a single number ({audio!r}), not a waveform",
                         "pass a 1-D array of samples [T] with its sample_rate")
    if isinstance(audio, (list, tuple)):
        try:
            return np.asarray(audio)
        except (ValueError, TypeError) as e:
            raise InputError(f"audio list is not a rectangular array of numbers ({_one_line(e)})",
                             "pass a 1-D list of samples or a [channels, samples] array") from None
    raise InputError(f"audio must be a file path or a waveform array, got {type(audio).__name__}",
                     "pass a path, a numpy array or a torch tensor [T] with its sample_rate")


def _to_float(arr: np.ndarray) -> np.ndarray:
    """Samples as float64, refusing dtypes that are not audio (integer PCM is scaled to [-1, 1])."""
    kind = arr.dtype.kind
    if kind == "f":
        return arr.astype(np.float64, copy=False)
    if arr.dtype in _PCM:
        scale, offset = _PCM[arr.dtype]
        return (arr.astype(np.float64) - offset) / scale
    if kind == "c":
        raise InputError(f"audio array is complex ({arr.dtype})", "pass real samples (e.g. np.real(x))")
    if kind == "b":
        raise InputError("audio array holds booleans, not samples", "pass float samples in [-1, 1]")
    if kind in "iu":
        raise InputError(f"audio array of dtype {arr.dtype} has no PCM scale",
                         "pass float samples in [-1, 1], or int16 / int32 PCM")
    raise InputError(f"audio array of dtype {arr.dtype} does not hold numbers",
                     "pass float samples in [-1, 1] (a numpy array or a torch tensor)")


def waveform_from_array(audio: npt.ArrayLike | torch.Tensor, sample_rate: object, target_rate: int, *,
                        max_seconds: float | None = DEFAULT_MAX_SECONDS) -> torch.Tensor:
    """A waveform in memory -> mono float32 ``[T']`` at ``target_rate`` (see the module docstring for the
    accepted shapes and dtypes). Raises :class:`InputError` naming the problem for anything else."""
    arr = _as_array(audio)
    if arr.ndim == 0:
        raise InputError(f"audio is a single number ({arr.item()!r}), not a waveform",
                         "pass a 1-D array of samples [T] with its sample_rate")
    if arr.ndim > 2:
        raise InputError(f"audio array has {arr.ndim} dimensions {tuple(arr.shape)}",
                         "pass mono [T] or channels-first [C, T] audio")
    if arr.ndim == 2:
        c, t = arr.shape
        if c > MAX_CHANNELS:
            hint = ("it looks like [samples, channels]: pass audio.T (channels first, [C, T])" if t <= MAX_CHANNELS
                    else f"2-D audio is [channels, samples] with at most {MAX_CHANNELS} channels")
            raise InputError(f"audio array of shape {tuple(arr.shape)} would have {c} channels", hint)
    x = _to_float(arr)
    if x.shape[-1] == 0 or x.size == 0:
        raise InputError(f"empty waveform (shape {tuple(arr.shape)})", "pass at least one sample")
    if sample_rate is None:
        raise InputError("a waveform needs its sample_rate",
                         f"pass sample_rate=... (the model runs at {target_rate} Hz)")
    sr = check_sample_rate(sample_rate)
    seconds = x.shape[-1] / sr
    if max_seconds is not None and seconds > max_seconds:
        raise InputError(f"audio is {seconds:.1f} s long, over the {max_seconds:g} s limit", "trim or split it")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow to inf is reported just below
        mono = (x.mean(axis=0) if x.ndim == 2 else x).astype(np.float32)
    bad = ~np.isfinite(mono)
    if bad.any():
        raise InputError(f"audio contains NaN or infinite samples (first at sample {int(np.flatnonzero(bad)[0])})",
                         "clean the waveform (e.g. np.nan_to_num) or re-record it")
    out = resample(np.ascontiguousarray(mono), sr, int(target_rate)).astype(np.float32, copy=False)
    return torch.from_numpy(np.ascontiguousarray(out))


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
    if path_kind(path) != "file":
        raise InputError(f"{path}: no such audio file", "check the path")
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - soundfile raises RuntimeError/LibsndfileError/TypeError by version
        raise InputError(f"{path}: not a readable audio file ({_one_line(e)})", "use wav, flac or ogg") from None
    check_sample_rate(info.samplerate, f"{path}: sample rate")
    if info.frames < min_samples:
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
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral) or sample_rate <= 0:
        raise InputError(f"cannot write {path}: sample rate must be a positive integer, got {sample_rate!r}")
    rate = int(sample_rate)
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a directory", "pass a file path ending in .wav")
    try:
        with atomic_path(path, suffix=".wav") as tmp:
            sf.write(str(tmp), pcm, rate, subtype="PCM_16", format="WAV")
    except OSError as e:
        raise InputError(f"cannot write {path}: {e.strerror or _one_line(e)}",
                         "check that the directory exists and is writable") from None
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
