"""Audio augmentation for the toy world's training speech: noise, reverb, gain, band limits, codec smearing.

Clean espeak-ng audio is unrealistically easy: every clip is noiseless, dry and peak-normalised. World
version 2 passes a share of its training user clips through :func:`augment`, which applies a random,
non-empty subset of:

* ``reverb``: a synthetic room (exponentially decaying noise impulse response, RT60 0.1-0.6 s,
  direct-to-reverberant ratio 0-10 dB);
* ``noise``: additive white or pink noise at 10-40 dB SNR;
* ``lowpass`` (cut-off 2.5-6 kHz) or ``telephone`` (300-3400 Hz band);
* ``mulaw8k``: an 8 kHz, 8-bit mu-law round trip (codec smearing);
* ``gain``: -12...+6 dB, clipped at full scale.

in that order (room, then microphone noise, then the channel, then the level). Everything is numpy (FFT
convolution and FFT-domain filters: there is no scipy in the project's dependencies) plus soxr for the 8 kHz
resampling. Input and output are float32 ``[T]`` at 16 kHz with the same length ``T``, finite and within
[-1, 1]. The result depends only on the wave and the state of the ``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random

import numpy as np

from aromni.errors import InputError
from aromni.toyworld.voices import SAMPLE_RATE
from aromni.utils.extras import optional

# Probability of each effect in :func:`augment` (at least one is always applied).
P_REVERB = 0.4
P_NOISE = 0.5
P_FILTER = 0.3
P_CODEC = 0.2
P_GAIN = 0.5

SNR_DB = (10.0, 40.0)
RT60_S = (0.1, 0.6)
# Direct-to-reverberant energy ratio: 0 dB is a speaker a few metres away in a live room, 10 dB is close talk.
DRR_DB = (0.0, 10.0)
GAIN_DB = (-12.0, 6.0)
LOWPASS_HZ = (2500.0, 6000.0)
TELEPHONE_BAND_HZ = (300.0, 3400.0)
CODEC_RATE = 8000
MU = 255.0
# Width of the cosine taper at each filter edge (inside the pass band): avoids a brick wall's ringing.
TAPER_HZ = 100.0


def augment(wave: np.ndarray, rng: random.Random) -> np.ndarray:
    """A randomly degraded copy of ``wave`` (float32 ``[T]``, 16 kHz) -> float32 ``[T]``, finite, |x| <= 1."""
    return augment_with_log(wave, rng)[0]


def augment_with_log(wave: np.ndarray, rng: random.Random) -> tuple[np.ndarray, list[str]]:
    """Like :func:`augment`, and also the effects applied, in order: ``(wave [T], log)``.

    The log is meant for clip metadata; each entry is ``name`` or ``name:parameters``, e.g.
    ``["reverb:0.32s", "noise:pink:18.5dB", "telephone", "mulaw8k", "gain:-3.1dB"]``.
    """
    x = _check(wave)
    if x.size == 0:
        return x, []
    # Decide the subset first so the parameter draws below do not change which effects apply.
    probs = (("reverb", P_REVERB), ("noise", P_NOISE), ("filter", P_FILTER), ("codec", P_CODEC),
             ("gain", P_GAIN))
    use = {name: rng.random() < p for name, p in probs}
    if not any(use.values()):
        use[rng.choice(sorted(use))] = True
    # One numpy generator per call, seeded from ``rng``: noise samples are reproducible from the rng state.
    gen = np.random.default_rng(rng.getrandbits(64))
    log: list[str] = []
    if use["reverb"]:
        rt60 = rng.uniform(*RT60_S)
        drr = rng.uniform(*DRR_DB)
        x = reverb(x, rt60, gen, drr_db=drr)
        log.append(f"reverb:{rt60:.2f}s:{drr:.1f}dB")
    if use["noise"]:
        colour = rng.choice(("white", "pink"))
        snr = rng.uniform(*SNR_DB)
        x = add_noise(x, snr, colour, gen)
        # Scale down rather than clip: clipping is the gain effect's job, noise alone should not distort.
        peak = float(np.abs(x).max())
        if peak > 1.0:
            x = x / np.float32(peak)
        log.append(f"noise:{colour}:{snr:.1f}dB")
    if use["filter"]:
        if rng.random() < 0.5:
            x = band_limit(x, *TELEPHONE_BAND_HZ)
            log.append("telephone")
        else:
            cutoff = rng.uniform(*LOWPASS_HZ)
            x = band_limit(x, 0.0, cutoff)
            log.append(f"lowpass:{cutoff:.0f}Hz")
    if use["codec"]:
        x = mulaw_8k(x)
        log.append("mulaw8k")
    if use["gain"]:
        db = rng.uniform(*GAIN_DB)
        x = x * np.float32(10.0 ** (db / 20.0))
        log.append(f"gain:{db:+.1f}dB")
    return np.clip(x, -1.0, 1.0).astype(np.float32), log


def add_noise(wave: np.ndarray, snr_db: float, colour: str, gen: np.random.Generator) -> np.ndarray:
    """``wave`` ``[T]`` plus white or pink noise whose power is ``snr_db`` below the clip's mean power."""
    x = _check(wave)
    if colour == "white":
        noise = gen.standard_normal(x.size)
    elif colour == "pink":
        noise = _pink(x.size, gen)
    else:
        raise InputError(f"unknown noise colour {colour!r}", "use 'white' or 'pink'")
    p_signal = float(np.mean(x.astype(np.float64) ** 2))
    p_noise = float(np.mean(noise ** 2))
    if p_signal == 0.0 or p_noise == 0.0:
        return x
    scale = math.sqrt(p_signal / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (x + scale * noise).astype(np.float32)


def reverb(wave: np.ndarray, rt60_s: float, gen: np.random.Generator, *, drr_db: float = 0.0) -> np.ndarray:
    """``wave`` ``[T]`` in a synthetic room with reverberation time ``rt60_s`` (decay by 60 dB), same length.

    The impulse response is a unit direct path plus Gaussian noise under an exponential envelope
    ``exp(-6.91 t / rt60)`` whose energy is ``drr_db`` below the direct path's; the result is rescaled to the
    input's peak so reverb alone does not change level.
    """
    x = _check(wave)
    n_ir = max(1, int(rt60_s * SAMPLE_RATE))
    t = np.arange(n_ir) / SAMPLE_RATE
    ir = gen.standard_normal(n_ir) * np.exp(-math.log(1000.0) * t / rt60_s)
    ir *= 10.0 ** (-drr_db / 20.0) / max(1e-9, float(np.sqrt(np.sum(ir ** 2))))
    ir[0] = 1.0
    y = _fft_convolve(x.astype(np.float64), ir)[: x.size]
    peak_in, peak_out = float(np.abs(x).max()), float(np.abs(y).max())
    if peak_out > 0.0:
        y *= peak_in / peak_out
    return y.astype(np.float32)


def band_limit(wave: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """``wave`` ``[T]`` without its energy below ``low_hz`` and above ``high_hz`` (FFT mask, cosine edges)."""
    x = _check(wave)
    if x.size == 0:
        return x
    n = x.size
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    mask = ((freqs >= low_hz) & (freqs <= high_hz)).astype(np.float64)
    # Cosine tapers inside the band: 0 at the edge, 1 after TAPER_HZ.
    taper = min(TAPER_HZ, (high_hz - low_hz) / 2)
    if low_hz > 0.0:
        rise = (freqs >= low_hz) & (freqs < low_hz + taper)
        mask[rise] = 0.5 - 0.5 * np.cos(np.pi * (freqs[rise] - low_hz) / taper)
    fall = (freqs > high_hz - taper) & (freqs <= high_hz)
    mask[fall] = 0.5 - 0.5 * np.cos(np.pi * (high_hz - freqs[fall]) / taper)
    return np.fft.irfft(np.fft.rfft(x.astype(np.float64)) * mask, n).astype(np.float32)


def mulaw_8k(wave: np.ndarray) -> np.ndarray:
    """``wave`` ``[T]`` through an 8 kHz, 8-bit mu-law codec and back to 16 kHz (length kept)."""
    soxr = optional("soxr", extra="audio", feature="resampling audio")
    x = _check(wave)
    if x.size == 0:
        return x
    low = soxr.resample(x, SAMPLE_RATE, CODEC_RATE).astype(np.float64)
    low = np.clip(low, -1.0, 1.0)
    code = np.sign(low) * np.log1p(MU * np.abs(low)) / math.log1p(MU)
    code = np.round((code + 1.0) / 2.0 * MU) / MU * 2.0 - 1.0  # 256 levels: the 8-bit quantisation
    low = np.sign(code) * ((1.0 + MU) ** np.abs(code) - 1.0) / MU
    y = soxr.resample(low.astype(np.float32), CODEC_RATE, SAMPLE_RATE).astype(np.float32)
    # Resampling can be off by a sample or two; the contract is the input length.
    if y.size < x.size:
        y = np.pad(y, (0, x.size - y.size))
    return y[: x.size]


def _pink(n: int, gen: np.random.Generator) -> np.ndarray:
    # 1/f power spectrum: shape white noise's spectrum by 1/sqrt(f); the DC bin is zeroed.
    spec = gen.standard_normal(n // 2 + 1) + 1j * gen.standard_normal(n // 2 + 1)
    f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0.0
    return np.fft.irfft(spec, n)


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = x.size + h.size - 1
    size = 1 << max(0, (n - 1).bit_length())
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def _check(wave: np.ndarray) -> np.ndarray:
    x = np.asarray(wave, dtype=np.float32)
    if x.ndim != 1:
        raise InputError(f"expected a mono wave [T], got shape {tuple(x.shape)}", "pass a 1-D float array")
    if not np.all(np.isfinite(x)):
        raise InputError("the wave has NaN or infinite samples", "augment only finite audio")
    return x
