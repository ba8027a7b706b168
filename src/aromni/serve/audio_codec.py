"""Audio on the wire: float waveforms -> int16 PCM / WAV bytes / base64, and uploaded audio files -> waveforms.

Output samples are clipped to [-1, 1] and scaled by 32767 with rounding, the rule of
:func:`aromni.tokenizers.speech.audio_io.save_wav`, so a WAV from the server equals one written by the CLI.
Uploads are read with soundfile (WAV, FLAC, OGG, and MP3 where libsndfile has it); their length is checked
against the server's limit from the header, before any sample is decoded.
"""

from __future__ import annotations

import base64
import binascii
import io
import wave

import numpy as np
import torch

from aromni.errors import InputError
from aromni.utils.extras import optional


def pcm16(audio: torch.Tensor | np.ndarray) -> bytes:
    """Mono float ``audio [T]`` -> ``2 T`` bytes of little-endian int16 PCM."""
    x = audio.detach().float().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, np.float32)
    x = np.nan_to_num(x.reshape(-1), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def wav_bytes(audio: torch.Tensor | np.ndarray, sample_rate: int) -> bytes:
    """Mono float ``audio [T]`` -> a 16-bit PCM WAV file's bytes."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm16(audio))
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Strict base64 -> bytes; :class:`InputError` naming ``what`` otherwise."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64", "send the file bytes base64-encoded (no data: prefix)") from None


#: Uploaded audio: most channels and highest sample rate read (the decoded size is bounded by these and the
#: duration limit).
MAX_CHANNELS = 8
MAX_SAMPLE_RATE = 192_000


def read_audio(data: bytes, max_seconds: float, what: str = "the audio") -> tuple[np.ndarray, int]:
    """An uploaded audio file's bytes -> ``(mono float32 samples [T], sample rate)``.

    Raises :class:`InputError` for an empty, unreadable or corrupt file and for audio longer than
    ``max_seconds`` (naming the limit; checked from the header first)."""
    sf = optional("soundfile", extra="audio", feature="reading uploaded audio")
    if not data:
        raise InputError(f"{what} is empty (0 bytes)", "send a WAV, FLAC or OGG file")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - soundfile raises RuntimeError/LibsndfileError/TypeError by version
        raise InputError(f"{what} is not a readable audio file ({_one_line(e)})", "send WAV, FLAC or OGG") from None
    if info.samplerate <= 0 or info.frames <= 0:
        raise InputError(f"{what} holds no samples", "send a non-empty recording")
    _check_seconds(info.frames / info.samplerate, max_seconds, what)
    # A tiny compressed file can declare many channels at a huge rate: check what decoding would allocate.
    if info.channels > MAX_CHANNELS or info.samplerate > MAX_SAMPLE_RATE:
        raise InputError(f"{what} has {info.channels} channels at {info.samplerate} Hz; this server reads at most "
                         f"{MAX_CHANNELS} channels at up to {MAX_SAMPLE_RATE} Hz", "send mono or stereo audio at "
                         "a common rate (16 or 48 kHz)")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - as above
        raise InputError(f"{what} is truncated or corrupt ({_one_line(e)})", "re-export the file") from None
    if samples.shape[0] == 0:
        raise InputError(f"{what} holds no samples", "send a non-empty recording")
    _check_seconds(samples.shape[0] / rate, max_seconds, what)
    return np.ascontiguousarray(samples.mean(axis=1, dtype=np.float32)), int(rate)


def _check_seconds(seconds: float, max_seconds: float, what: str) -> None:
    if seconds > max_seconds:
        raise InputError(f"{what} is {seconds:.1f} s long, over this server's limit of {max_seconds:g} s "
                         "(max_audio_seconds)", "trim or split the audio, or ask the operator to raise the limit")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
