"""espeak-ng and flite voices and synthesis: 16 kHz mono float32, silence-trimmed, peak-normalised.

A :class:`Voice` is an espeak-ng accent, a variant (formant/pitch preset) and base pitch/speed (plus, in
world version 2, a word gap), or one of flite's built-in voices. World version 1 uses :func:`voice_bank`: a
seeded shuffle of :data:`VARIANTS` into training and test variants. World version 2 draws a fresh training
speaker per clip with :func:`train_voice` from :data:`TRAIN_VARIANTS`, and tests on fixed, seed-independent
lists: :func:`test_voices` (unseen espeak-ng variants), :func:`family_voices` (the Klatt synthesis method) and
:func:`flite_voices` (another synthesizer). The assistant speaks with one fixed voice, which keeps speech
*generation* learnable for a tiny model.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

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


ESPEAK = "espeak-ng"
FLITE = "flite"
ENGINES = (ESPEAK, FLITE)

# Version-2 training-speaker ranges (inclusive): wider than version 1's 30-75 / 165-200 so the model hears
# low/high and slow/fast speakers; the word gap (espeak-ng -g, 10 ms units) adds pauses between words.
TRAIN_PITCH = (15, 85)
TRAIN_SPEED = (140, 230)
TRAIN_WORD_GAP = (0, 6)
# flite's voices speak at roughly this rate; a flite Voice's speed is mapped to flite's duration_stretch
# relative to it, so speed jitter means the same thing for both engines.
FLITE_NOMINAL_WPM = 175
# The accent each flite voice speaks (metadata only: flite has no accent switch). awb is a Scottish speaker.
_FLITE_ACCENTS = {"kal": "en-us", "kal16": "en-us", "awb": "en-gb-scotland", "rms": "en-us", "slt": "en-us"}


@dataclass(frozen=True)
class Voice:
    """One speaker. ``Voice(**voice.to_dict())`` round-trips (the builder ships voices to workers as dicts).

    For ``engine == "espeak-ng"``: ``-v accent+variant -p pitch -s speed [-g word_gap]``.
    For ``engine == "flite"``: ``variant`` is the flite voice name (``flite -lv``), ``speed`` sets flite's
    duration_stretch relative to :data:`FLITE_NOMINAL_WPM`, and ``pitch``/``word_gap`` are not used (flite's
    voices keep their own f0).
    """

    id: str
    accent: str
    variant: str
    pitch: int  # espeak-ng -p, 0..99
    speed: int  # espeak-ng -s, words per minute
    engine: str = ESPEAK
    word_gap: int = 0  # espeak-ng -g: extra pause between words, in 10 ms units at the default speed

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown speech engine {self.engine!r}; expected one of {ENGINES}")

    def to_dict(self) -> dict[str, str | int]:
        # Defaults are left out so a version-1 voice serialises exactly as before (manifests stay identical).
        d = asdict(self)
        if d["engine"] == ESPEAK:
            del d["engine"]
        if d["word_gap"] == 0:
            del d["word_gap"]
        return d


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


def train_voice(rng: random.Random) -> Voice:
    """A fresh random version-2 training speaker drawn from ``rng``.

    One of :data:`ACCENTS` x :data:`TRAIN_VARIANTS`, pitch 15-85, speed 140-230 wpm and word gap 0-6
    (x 10 ms); never a test, family or flite voice. The id encodes the whole draw, so equal ids mean equal
    voices.
    """
    accent = rng.choice(ACCENTS)
    variant = rng.choice(TRAIN_VARIANTS)
    pitch = rng.randint(*TRAIN_PITCH)
    speed = rng.randint(*TRAIN_SPEED)
    gap = rng.randint(*TRAIN_WORD_GAP)
    voice_id = f"tr-{accent}-{variant}-p{pitch}-s{speed}-g{gap}"
    return Voice(voice_id, accent, variant, pitch, speed, word_gap=gap)


def _fixed_voices(prefix: str, variants: tuple[str, ...]) -> list[Voice]:
    # A constant seed string (not the world seed): the held-out speakers are the same in every world, so a
    # judge or model trained on any seed's world never heard them. Moderate pitch/speed keep them
    # intelligible; the accents cycle so each accent is tested.
    rng = random.Random(f"aromni-v2-{prefix}-voices")
    return [
        Voice(f"{prefix}-{variant}", ACCENTS[i % len(ACCENTS)], variant,
              rng.randint(30, 70), rng.randint(160, 200))
        for i, variant in enumerate(variants)
    ]


def test_voices() -> list[Voice]:
    """The 12 unseen espeak-ng speakers of the version-2 test split: one per :data:`TEST_VARIANTS`, fixed."""
    return _fixed_voices("te", TEST_VARIANTS)


def family_voices() -> list[Voice]:
    """The held-out voice family: one voice per :data:`FAMILY_VARIANTS` (espeak-ng's Klatt method), fixed."""
    return _fixed_voices("fam", FAMILY_VARIANTS)


def flite_voices() -> list[Voice]:
    """The held-out synthesizer: one voice per :data:`FLITE_VOICES`; ``[]`` without the ``flite`` program."""
    if shutil.which(FLITE) is None:
        return []
    return [Voice(f"flite-{name}", _FLITE_ACCENTS[name], name, 50, FLITE_NOMINAL_WPM, engine=FLITE)
            for name in FLITE_VOICES]


# Pytest would otherwise collect ``test_voices`` as a test when a test module imports it by name.
test_voices.__test__ = False  # type: ignore[attr-defined]


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AromniError("espeak-ng is not installed", "install it (apt-get install espeak-ng) to build a world")
    return exe


def require_flite() -> str:
    exe = shutil.which(FLITE)
    if exe is None:
        raise AromniError("flite is not installed",
                          "install it (apt-get install flite) to speak with flite voices")
    return exe


def synthesize(text: str, voice: Voice, *, speed_jitter: int = 0, pitch_jitter: int = 0) -> np.ndarray:
    """Speak ``text`` -> float32 numpy array ``[T]`` at 16 kHz, trimmed and peak-normalised.

    ``speed_jitter`` (wpm) and ``pitch_jitter`` are added to the voice's speed and pitch; flite ignores pitch.
    """
    sf = optional("soundfile", extra="audio", feature="writing audio")
    soxr = optional("soxr", extra="audio", feature="resampling audio")

    if voice.engine == FLITE:
        data = _flite_wav(text, voice, speed_jitter)
    else:
        data = _espeak_wav(text, voice, speed_jitter, pitch_jitter)
    wav, sr = sf.read(io.BytesIO(data), dtype="float32")
    if wav.ndim > 1:
        wav = wav.mean(axis=1)
    wav = soxr.resample(wav, sr, SAMPLE_RATE).astype(np.float32)
    return _normalise(_trim(wav))


def _espeak_wav(text: str, voice: Voice, speed_jitter: int, pitch_jitter: int) -> bytes:
    cmd = [
        require_espeak(), "-v", f"{voice.accent}+{voice.variant}",
        "-s", str(voice.speed + speed_jitter), "-p", str(max(0, min(99, voice.pitch + pitch_jitter))),
    ]
    if voice.word_gap:
        # Only when set: version-1 voices keep exactly their old command line (and audio).
        cmd += ["-g", str(voice.word_gap)]
    cmd += ["--stdout", text]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0 or not proc.stdout:
        raise AromniError(f"espeak-ng failed for voice {voice.id}: {proc.stderr.decode(errors='replace')[:200]}")
    return proc.stdout


def _flite_wav(text: str, voice: Voice, speed_jitter: int) -> bytes:
    exe = require_flite()
    # duration_stretch > 1 slows down: nominal / wpm maps espeak-style words-per-minute onto it.
    stretch = FLITE_NOMINAL_WPM / max(1, voice.speed + speed_jitter)
    # A temporary file rather than stdout: flite only documents file (or "play") output.
    with tempfile.TemporaryDirectory(prefix="aromni-flite-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd = [exe, "-voice", voice.variant, "--setf", f"duration_stretch={stretch:.4f}",
               "-t", text, "-o", str(out)]
        proc = subprocess.run(cmd, capture_output=True, check=False)
        if proc.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
            err = proc.stderr.decode(errors="replace")[:200]
            raise AromniError(f"flite failed for voice {voice.id}: {err}",
                              f"check that `flite -lv` lists {voice.variant!r}")
        return out.read_bytes()


def _trim(wav: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(wav) > threshold * max(1e-6, float(np.abs(wav).max())))
    if loud.size == 0:
        return wav
    pad = int(EDGE_PAD_S * SAMPLE_RATE)
    return wav[max(0, loud[0] - pad) : loud[-1] + pad + 1]


def _normalise(wav: np.ndarray) -> np.ndarray:
    peak = float(abs(wav).max()) if wav.size else 0.0
    return wav if peak == 0.0 else wav * (PEAK / peak)
