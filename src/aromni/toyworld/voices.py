"""espeak-ng voices and synthesis: 16 kHz mono float32, silence-trimmed, peak-normalised.

A :class:`Voice` is an espeak-ng accent, a variant (formant/pitch preset) and base pitch/speed. The user-side
voice bank mixes the English accents with dozens of variants; the variants of the test voices never occur in a
training voice, so the test split measures unseen speakers. The assistant speaks with one fixed voice, which
keeps speech *generation* learnable for a tiny model.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import asdict, dataclass

from aromni.errors import AromniError
from aromni.utils.extras import optional

SAMPLE_RATE = 16000
PEAK = 0.89  # -1 dBFS
# Leading/trailing silence kept after trimming (s).
EDGE_PAD_S = 0.05

ACCENTS = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc",
)
# Formant-synthesis variants that stay intelligible (no whisper, echo-heavy robots, Klatt or mbrola voices).
VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
    "Alex", "Andrea", "Andy", "Annie", "Denis", "Diogo", "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike",
    "Nguyen", "antonio", "aunty", "belinda", "boris", "ed", "grandma", "grandpa", "gustave", "iven", "linda",
    "marcelo", "max", "michel", "miguel", "paul", "pedro", "quincy", "rob", "robert", "sandro", "shelby",
    "steph", "travis", "victor",
)
ASSISTANT_VOICE_ID = "assistant"

# World version 2: fixed lists, the same for every seed, so a judge or model trained on one seed's world never
# heard another seed's test voices. Chosen by the v1 speech judge's WER on 12 grammar sentences per variant
# (en-us, pitch 50, 180 wpm): every listed variant scored <= 15% except the Klatt family (8-13%).
#: Unseen speakers of the test split (never in any training voice).
TEST_VARIANTS = ("Gene2", "Henrique", "Hugo", "Storm", "Tweaky", "iven3", "john", "pablo", "steph2", "norbert",
                 "anika", "belinda")
#: A held-out voice family: espeak-ng's Klatt synthesis method, never in training.
FAMILY_VARIANTS = ("klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6")
#: Too hard to understand (v1 judge WER 18-65%: whispers, heavy robots, ...) or awkward to name on a command line.
EXCLUDED_VARIANTS = ("whisper", "whisperf", "Alicia", "RicishayMax2", "RicishayMax3", "zac", "robosoft",
                     "UniRobot", "Demonic", "announcer", "Mr serious")
#: Every other espeak-ng 1.51 variant: the training speakers of version 2.
TRAIN_VARIANTS = (
    "Alex", "Andrea", "Andy", "Annie", "AnxiousAndy", "Denis", "Diogo", "Gene", "Jacky", "Lee", "Marco", "Mario",
    "Michael", "Mike", "Nguyen", "RicishayMax", "adam", "anikaRobot", "antonio", "aunty", "benjamin", "boris",
    "caleb", "croak", "david", "ed", "edward", "edward2", "f1", "f2", "f3", "f4", "f5", "fast", "grandma",
    "grandpa", "gustave", "iven", "iven2", "iven4", "kaukovalta", "linda", "m1", "m2", "m3", "m4", "m5", "m6",
    "m7", "m8", "marcelo", "max", "michel", "miguel", "paul", "pedro", "quincy", "rob", "robert", "robosoft2",
    "robosoft3", "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby", "steph",
    "steph3", "travis", "victor",
)
#: flite's built-in voices: the held-out synthesizer (a different engine), never in training.
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


@dataclass(frozen=True)
class Voice:
    id: str
    accent: str
    variant: str
    pitch: int  # espeak-ng -p, 0..99
    speed: int  # espeak-ng -s, words per minute

    def to_dict(self) -> dict:
        return asdict(self)


ASSISTANT_VOICE = Voice(ASSISTANT_VOICE_ID, "en-us", "m3", 50, 190)


def voice_bank(seed: int, n_train: int = 40, n_test: int = 8) -> tuple[list[Voice], list[Voice]]:
    """``(train_voices, test_voices)``: test variants are disjoint from training variants."""
    if n_test + 1 > len(VARIANTS):
        raise ValueError("too many test voices for the variant list")
    rng = random.Random(f"voices-{seed}")
    variants = [v for v in VARIANTS if v != ASSISTANT_VOICE.variant]
    rng.shuffle(variants)
    test_variants, train_variants = variants[:n_test], variants[n_test:]

    def make(prefix: str, i: int, variant: str) -> Voice:
        accent = ACCENTS[(i + rng.randrange(len(ACCENTS))) % len(ACCENTS)]
        return Voice(f"{prefix}{i:02d}", accent, variant, rng.randint(30, 75), rng.randint(165, 200))

    train = [make("tr", i, train_variants[i % len(train_variants)]) for i in range(n_train)]
    test = [make("te", i, v) for i, v in enumerate(test_variants)]
    return train, test


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AromniError("espeak-ng is not installed", "install it (apt-get install espeak-ng) to build a world")
    return exe


def synthesize(text: str, voice: Voice, *, speed_jitter: int = 0, pitch_jitter: int = 0):
    """Speak ``text`` -> float32 numpy array ``[T]`` at 16 kHz, trimmed and peak-normalised."""
    import io

    import numpy as np
    sf = optional("soundfile", extra="audio", feature="writing audio")
    soxr = optional("soxr", extra="audio", feature="resampling audio")

    cmd = [
        require_espeak(), "-v", f"{voice.accent}+{voice.variant}",
        "-s", str(voice.speed + speed_jitter), "-p", str(max(0, min(99, voice.pitch + pitch_jitter))),
        "--stdout", text,
    ]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise AromniError(f"espeak-ng failed for voice {voice.id}: {proc.stderr.decode(errors='replace')[:200]}")
    wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    wav = soxr.resample(wav, sr, SAMPLE_RATE).astype(np.float32)
    return _normalise(_trim(wav))


def _trim(wav, threshold: float = 0.01):
    import numpy as np

    loud = np.flatnonzero(np.abs(wav) > threshold * max(1e-6, float(np.abs(wav).max())))
    if loud.size == 0:
        return wav
    pad = int(EDGE_PAD_S * SAMPLE_RATE)
    return wav[max(0, loud[0] - pad) : loud[-1] + pad + 1]


def _normalise(wav):
    peak = float(abs(wav).max()) if wav.size else 0.0
    return wav if peak == 0.0 else wav * (PEAK / peak)
