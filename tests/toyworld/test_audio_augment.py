"""Audio augmentation: contract (length, range, determinism) and each effect measured on known signals."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from aromni.errors import InputError
from aromni.toyworld import audio_augment as A

SR = A.SAMPLE_RATE
pytest.importorskip("soxr")


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A voiced-like signal ``[T]``: harmonics of a gliding f0 under a syllable-rate envelope, peak 0.89."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 30))
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))
    x = x + 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.89 * x / np.abs(x).max()).astype(np.float32)


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(spec[(f >= lo) & (f < hi)].sum())


def test_contract_length_range_dtype_and_every_effect_used():
    x = speechlike()
    seen: set[str] = set()
    for seed in range(120):
        y, log = A.augment_with_log(x, random.Random(seed))
        assert y.dtype == np.float32 and y.shape == x.shape
        assert np.all(np.isfinite(y)) and float(np.abs(y).max()) <= 1.0
        assert log, "at least one effect is always applied"
        assert not np.array_equal(y, x)
        seen |= {entry.split(":")[0] for entry in log}
    assert seen == {"reverb", "noise", "telephone", "lowpass", "mulaw8k", "gain"}


def test_seeded_determinism():
    x = speechlike()
    a = A.augment_with_log(x, random.Random(42))
    b = A.augment_with_log(x, random.Random(42))
    assert a[1] == b[1] and np.array_equal(a[0], b[0])
    assert np.array_equal(A.augment(x, random.Random(42)), a[0])
    outs = {A.augment(x, random.Random(s)).tobytes() for s in range(10)}
    assert len(outs) == 10


def test_logged_parameters_stay_in_range():
    x = speechlike(0.5)
    for seed in range(200):
        for entry in A.augment_with_log(x, random.Random(seed))[1]:
            name, *params = entry.split(":")
            if name == "noise":
                assert params[0] in ("white", "pink") and 10.0 <= float(params[1][:-2]) <= 40.0
            elif name == "reverb":
                assert 0.1 <= float(params[0][:-1]) <= 0.6 and 0.0 <= float(params[1][:-2]) <= 10.0
            elif name == "gain":
                assert -12.0 <= float(params[0][:-2]) <= 6.0
            elif name == "lowpass":
                assert 2500 <= float(params[0][:-2]) <= 6000


@pytest.mark.parametrize("colour", ["white", "pink"])
@pytest.mark.parametrize("snr", [10.0, 25.0, 40.0])
def test_noise_snr_is_measured_within_half_a_db(colour, snr):
    x = speechlike()
    y = A.add_noise(x, snr, colour, np.random.default_rng(1))
    noise = y.astype(np.float64) - x
    measured = 10 * math.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2))
    assert abs(measured - snr) < 0.5
    if colour == "pink":
        # 1/f: much more noise energy per Hz at low frequencies than at high ones.
        assert band_energy(noise, 100, 600) > 10 * band_energy(noise, 5000, 5500)


def test_reverb_lengthens_the_energy_decay():
    # A 0.3 s burst, then silence: a dry signal has no energy after the burst, a room has a decaying tail.
    x = np.zeros(2 * SR, dtype=np.float32)
    end = int(0.3 * SR)
    x[:end] = speechlike(0.3)
    assert float(np.sum(x[end:] ** 2)) == 0.0

    def measured_rt60(y: np.ndarray, rt60: float) -> float:
        # Energy in 20 ms windows over the first half of the tail, fitted with a line in dB: -60 dB / slope.
        w = int(0.02 * SR)
        n = max(3, int(rt60 / 0.04))
        tail = y[end:].astype(np.float64)
        db = [10 * math.log10(np.sum(tail[i * w: (i + 1) * w] ** 2)) for i in range(n)]
        slope = np.polyfit(np.arange(n) * 0.02, db, 1)[0]
        return -60.0 / slope

    for rt60 in (0.15, 0.6):
        y = A.reverb(x, rt60, np.random.default_rng(0))
        assert y.shape == x.shape and y.dtype == np.float32
        assert measured_rt60(y, rt60) == pytest.approx(rt60, rel=0.3)
        # Rescaled to the dry peak: reverb alone does not change the level.
        assert float(np.abs(y).max()) == pytest.approx(float(np.abs(x).max()), rel=1e-5)
    # A higher direct-to-reverberant ratio leaves a quieter tail relative to the burst (10 dB: about 10x).
    wet, dry = (A.reverb(x, 0.4, np.random.default_rng(0), drr_db=d) for d in (0.0, 10.0))

    def tail_ratio(y: np.ndarray) -> float:
        return float(np.sum(y[end:].astype(np.float64) ** 2) / np.sum(y[:end].astype(np.float64) ** 2))

    assert 5.0 < tail_ratio(wet) / tail_ratio(dry) < 20.0


def test_telephone_band_removes_energy_outside_300_to_3400_hz():
    x = np.random.default_rng(0).standard_normal(2 * SR).astype(np.float32) * 0.2
    y = A.band_limit(x, 300.0, 3400.0)
    total = band_energy(x, 0, SR / 2)
    assert band_energy(y, 0, 300) < 1e-6 * total
    assert band_energy(y, 3400.5, SR / 2) < 1e-6 * total
    assert band_energy(y, 400, 3300) > 0.99 * band_energy(x, 400, 3300)
    low = A.band_limit(x, 0.0, 4000.0)
    assert band_energy(low, 4000.5, SR / 2) < 1e-6 * total
    assert band_energy(low, 0, 3900) > 0.99 * band_energy(x, 0, 3900)


def test_mulaw_8k_round_trip_smears_but_keeps_the_speech():
    x = speechlike()
    y = A.mulaw_8k(x)
    assert y.shape == x.shape and y.dtype == np.float32
    # 8 kHz sampling: nothing above 4 kHz survives.
    assert band_energy(y, 4100, SR / 2) < 1e-3 * band_energy(x, 4100, SR / 2)
    # The band below 3.5 kHz comes through with 8-bit mu-law quantisation noise: close, not equal.
    xl, yl = A.band_limit(x, 0.0, 3500.0), A.band_limit(y, 0.0, 3500.0)
    err = float(np.mean((yl.astype(np.float64) - xl) ** 2)) / float(np.mean(xl.astype(np.float64) ** 2))
    assert 1e-6 < err < 1e-2


def test_gain_alone_scales_and_clips_at_full_scale():
    x = speechlike()
    found = 0
    for seed in range(300):
        y, log = A.augment_with_log(x, random.Random(seed))
        if len(log) == 1 and log[0].startswith("gain:"):
            db = float(log[0][5:-2])
            expected = np.clip(x * 10 ** (db / 20), -1, 1)
            assert np.max(np.abs(y - expected)) < 0.02  # the log rounds dB to 0.1
            found += 1
    assert found >= 3


def test_rejects_bad_input_and_keeps_empty():
    with pytest.raises(InputError, match="mono"):
        A.augment(np.zeros((2, 100), dtype=np.float32), random.Random(0))
    bad = np.zeros(100, dtype=np.float32)
    bad[3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        A.augment(bad, random.Random(0))
    assert A.augment_with_log(np.zeros(0, dtype=np.float32), random.Random(0)) == (pytest.approx([]), [])
