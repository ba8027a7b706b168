"""The speech judge's data.

Training data need no world: :func:`synthesize_pool` speaks random word sequences over the whole shipped lexicon
(:func:`aromni.toyworld.lexicon.random_sequence`) and some grammar sentences with espeak-ng *training* speakers
only (:func:`~aromni.toyworld.voices.train_voice`: ``TRAIN_VARIANTS`` × ``ACCENTS``, random pitch, speed and word
gap, plus the fixed assistant voice), corrupts half of them in the waveform
(:func:`~aromni.toyworld.audio_augment.augment`), and caches their log-mels. The test variants, the Klatt family and flite
never occur here: they are what the judge is measured on (:mod:`aromni.toyworld.judges.measure`).

A world's clips (``speech.jsonl``) are still read by the measurement: :func:`speech_rows`, :func:`load_clips`,
:func:`reply_paths`.

The training recipe that reads the pool is :mod:`aromni.training.recipes.judge_speech`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aromni.errors import InputError
from aromni.toyworld import attributes, grammar
from aromni.toyworld.audio_augment import augment
from aromni.toyworld.lexicon import load_lexicon, random_sequence
from aromni.toyworld.records import iter_records, read_jsonl
from aromni.toyworld.voices import ASSISTANT_VOICE, Voice, synthesize, train_voice
from aromni.utils.extras import optional
from aromni.utils.io import atomic_path
from aromni.utils.safe_load import load_weights_only
from aromni.vocab.tasks import CHAT_IMAGE, S2S, VQA_SPEECH

# Tasks whose assistant turns are spoken replies scored by the evaluation (I+S→S, S→S, spoken chat replies).
REPLY_TASKS = tuple(t.name for t in (VQA_SPEECH, S2S, CHAT_IMAGE))



def reply_paths(world: Path, split: str) -> set[str]:
    """Paths of the spoken replies of ``split``: assistant speech segments of ``REPLY_TASKS`` records."""
    return {seg["path"] for rec in iter_records(world, split) if rec["task"] in REPLY_TASKS
            for turn in rec["turns"] if turn["role"] == "assistant"
            for seg in turn["segments"] if seg["type"] == "speech"}


def speech_rows(world: Path, split: str, limit: int | None = None, seed: int = 0) -> list[dict]:
    """Rows of ``world/speech.jsonl`` in ``split`` (a seeded sample of ``limit`` of them if given)."""
    rows = [r for r in read_jsonl(world / "speech.jsonl") if r["split"] == split]
    if limit is not None and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return rows


def load_clips(world: Path, rows: list[dict]) -> list[tuple[np.ndarray, str]]:
    """``[(int16 wav, transcript)]`` of speech.jsonl ``rows``."""
    sf = optional("soundfile", extra="audio", feature="writing audio")

    return [(sf.read(str(world / r["path"]), dtype="int16")[0], r["transcript"]) for r in rows]


# --- world-free training text and speakers -------------------------------------------------------------------


def random_attrs(rng: random.Random) -> attributes.ImageAttrs:
    """Any attribute combination (the judge only needs the words, not the world's splits)."""
    vocab = attributes.vocabulary()
    color = rng.choice(vocab["color"])
    background = rng.choice([b for b in vocab["background"] if b != color] or vocab["background"])
    return attributes.ImageAttrs(rng.choice(vocab["shape"]), color, rng.choice(vocab["size"]),
                                 rng.choice(vocab["position"]), background)


def grammar_sentence(rng: random.Random) -> str:
    """One sentence the world's grammar can say (a request, a description, a question, an answer, a fact)."""
    a = random_attrs(rng)
    kind = rng.randrange(6)
    if kind == 0:
        text = grammar.draw_request(a, rng, spoken=True)
    elif kind == 1:
        text = grammar.spoken_description(a, rng)
    elif kind == 2:
        text = rng.choice(grammar.image_question(a, rng)[1:])
    elif kind == 3:
        text = rng.choice(grammar.followup_question(a, rng)[1:])
    elif kind == 4:
        text = rng.choice(rng.choice(grammar.exchanges()))
    else:
        text = rng.choice(grammar.facts())
    return grammar.normalize(text)


def training_text(rng: random.Random, grammar_fraction: float) -> str:
    """A random word sequence over every lexicon word (1-9 words), or with ``grammar_fraction`` a grammar sentence."""
    if rng.random() < grammar_fraction:
        return grammar_sentence(rng)
    return random_sequence(load_lexicon().words, rng, 1, 9)


def training_voice(rng: random.Random, assistant_fraction: float) -> Voice:
    """The assistant voice with ``assistant_fraction``, else a fresh training speaker
    (:func:`~aromni.toyworld.voices.train_voice`: never a test, Klatt-family or flite voice)."""
    if rng.random() < assistant_fraction:
        return ASSISTANT_VOICE
    return train_voice(rng)


def corrupt_waveform(wav: np.ndarray, rng: random.Random) -> np.ndarray:
    """Waveform corruption ``[T] -> [T']`` (:func:`aromni.toyworld.audio_augment.augment`: noise, reverb, band
    limits, 8 kHz μ-law, gain), so the judge also hears rooms, telephones and codecs."""
    return np.asarray(augment(wav, rng), dtype=np.float32)


@dataclass
class PoolSettings:
    """What :func:`synthesize_pool` reads of a training config."""

    clips: int
    grammar_fraction: float
    assistant_fraction: float
    wave_augment_fraction: float
    seed: int


def pool_item(i: int, s: PoolSettings) -> tuple[np.ndarray, str, str]:
    """Clip ``i`` of the pool: ``(float32 wav [T], transcript, voice name)``; a function of ``(i, seed)`` only."""
    rng = random.Random(f"speech-judge-pool-{s.seed}-{i}")
    text = training_text(rng, s.grammar_fraction)
    voice = training_voice(rng, s.assistant_fraction)
    wav = synthesize(text, voice)
    if rng.random() < s.wave_augment_fraction:
        wav = corrupt_waveform(wav, rng)
    return wav, text, f"{voice.accent}+{voice.variant}"


def synthesize_pool(out: Path, s: PoolSettings, mel: Callable[[torch.Tensor], torch.Tensor], *,
                    progress: bool = True, shards: range | None = None) -> tuple[list[torch.Tensor], list[str]]:
    """Synthesise (or load from ``out/pool``) ``s.clips`` training clips -> ``(log-mels [M, F_i] fp16, texts)``.

    ``mel``: ``wav [1, T] -> log-mel [1, M, F]``. The pool is written in shards of 1,000 clips, so an interrupted
    synthesis continues where it stopped; ``pool/meta.json`` records the settings it was made with. ``shards``: only
    write those shard files (a synthesis worker's share) and return nothing."""
    pool = out / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    meta = {"clips": s.clips, "grammar_fraction": s.grammar_fraction, "assistant_fraction": s.assistant_fraction,
            "wave_augment_fraction": s.wave_augment_fraction, "seed": s.seed}
    meta_file = pool / "meta.json"
    if meta_file.exists() and json.loads(meta_file.read_text()) != meta:
        raise InputError(f"{pool} was synthesised with other settings: {meta_file.read_text()}",
                         "train into a new output directory, or delete the pool")
    meta_file.write_text(json.dumps(meta))
    mels: list[torch.Tensor] = []
    texts: list[str] = []
    shard_size = 1000
    for k in shards if shards is not None else range(-(-s.clips // shard_size)):
        start = k * shard_size
        f = pool / f"shard{start // shard_size:04d}.pt"
        if not f.exists():
            items = [pool_item(i, s) for i in range(start, min(s.clips, start + shard_size))]
            with torch.inference_mode():
                shard = {"mels": [mel(torch.from_numpy(w)[None])[0].half() for w, _, _ in items],
                         "texts": [t for _, t, _ in items], "voices": [v for _, _, v in items]}
            with atomic_path(f) as tmp:
                torch.save(shard, tmp)
            if progress:
                print(f"speech judge pool: shard {k} ({min(s.clips, start + shard_size)}/{s.clips} clips)", flush=True)
        if shards is not None:
            continue
        shard = load_weights_only(f)  # tensors and strings only
        mels += shard["mels"]
        texts += shard["texts"]
    return mels, texts
