"""Plan a world: every image spec, every utterance and every dialog record, decided serially from the seed.

Planning is cheap (strings and small dicts); the expensive part, drawing images and running espeak-ng, happens
afterwards in worker processes from the plan alone, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from aromni.toyworld import grammar
from aromni.toyworld import records as R
from aromni.toyworld.attributes import BACKGROUNDS, POSITIONS, SIZES, ImageAttrs
from aromni.toyworld.images import RenderSpec, random_spec
from aromni.toyworld.sizes import WORLD_TASKS, WorldSize
from aromni.toyworld.splits import SPLITS, TEST_HELDOUT_FRACTION, heldout_combos, seen_combos
from aromni.toyworld.voices import ASSISTANT_VOICE, Voice, voice_bank
from aromni.vocab import tasks as T

SPEED_JITTER = 10  # +- words per minute per utterance
PITCH_JITTER = 6


@dataclass
class ImageJob:
    path: str
    split: str
    spec: RenderSpec
    heldout_combo: bool


@dataclass
class SpeechJob:
    path: str
    split: str
    text: str
    voice: Voice
    speed_jitter: int
    pitch_jitter: int


@dataclass
class WorldPlan:
    seed: int
    size: WorldSize
    train_voices: list[Voice]
    test_voices: list[Voice]
    heldout: list[tuple[str, str]]
    images: list[ImageJob] = field(default_factory=list)
    speech: list[SpeechJob] = field(default_factory=list)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class _SplitPlanner:
    """Plans one split: its image pool, its utterances (deduplicated) and its records."""

    def __init__(self, plan: WorldPlan, split: str):
        self.plan, self.split = plan, split
        self.rng = random.Random(f"plan-{plan.seed}-{split}")
        self.voices = plan.test_voices if split == "test" else plan.train_voices
        self.clips: dict[tuple, str] = {}
        self.pool = self._image_pool(plan.size.images[split])
        self.cursor = 0

    def _image_pool(self, n: int) -> list[ImageJob]:
        held = self.plan.heldout
        seen = seen_combos(self.plan.seed)
        jobs = []
        for i in range(n):
            use_held = self.split == "test" and i < round(n * TEST_HELDOUT_FRACTION)
            shape, color = self.rng.choice(held if use_held else seen)
            attrs = ImageAttrs(
                shape, color, self.rng.choice(list(SIZES)), self.rng.choice(list(POSITIONS)),
                self.rng.choice(list(BACKGROUNDS)),
            )
            job = ImageJob(f"images/{self.split}/{i:05d}.png", self.split, random_spec(attrs, self.rng), use_held)
            jobs.append(job)
        self.rng.shuffle(jobs)
        self.plan.images.extend(jobs)
        return jobs

    def next_image(self) -> ImageJob:
        # Walk the pool in order so every image is used before any is reused.
        job = self.pool[self.cursor % len(self.pool)]
        self.cursor += 1
        return job

    def user_speech(self, text: str) -> dict[str, str]:
        voice = self.rng.choice(self.voices)
        sj = self.rng.randint(-SPEED_JITTER, SPEED_JITTER)
        pj = self.rng.randint(-PITCH_JITTER, PITCH_JITTER)
        return self._clip(text, voice, sj, pj)

    def assistant_speech(self, text: str) -> dict[str, str]:
        return self._clip(text, ASSISTANT_VOICE, 0, 0)

    def _clip(self, text: str, voice: Voice, sj: int, pj: int) -> dict[str, str]:
        key = (text, voice.id, sj, pj)
        path = self.clips.get(key)
        if path is None:
            path = f"speech/{self.split}/{len(self.clips):06d}.wav"
            self.clips[key] = path
            self.plan.speech.append(SpeechJob(path, self.split, text, voice, sj, pj))
        return R.speech(path, text, voice.id)

    def caption_text(self) -> str:
        """A caption for a random image of this split's allowed combinations (for text-only documents)."""
        img = self.next_image()
        return grammar.caption(img.spec.attrs, self.rng)


def _image_meta(job: ImageJob, **extra: Any) -> dict[str, Any]:
    return {"image": job.spec.attrs.to_dict(), "heldout_combo": job.heldout_combo, **extra}


def _task_record(p: _SplitPlanner, task: T.Task) -> tuple[list[dict], dict[str, Any]]:
    """``(turns, meta)`` of one record of ``task``."""
    rng, I = p.rng, grammar.INSTRUCTIONS
    if task is T.TEXT:
        sents = [rng.choice(grammar.facts()) if rng.random() < 0.5 else p.caption_text() for _ in range(rng.randint(1, 3))]
        return [R.turn("assistant", R.text(". ".join(sents) + "."))], {}
    if task in (T.TEXT_QA, T.S2S, T.S2T):
        q, a = rng.choice(grammar.exchanges())
        if task is T.TEXT_QA:
            return [R.turn("user", R.text(q)), R.turn("assistant", R.text(a))], {}
        reply = R.text(a) if task is T.S2T else p.assistant_speech(a)
        instr = I["reply_text"] if task is T.S2T else I["reply_speech"]
        return [R.turn("user", p.user_speech(q), R.text(instr)), R.turn("assistant", reply)], {}
    if task in (T.ASR, T.TTS):
        # Half describe an image of this split, half are world exchanges, so speech covers the whole vocabulary.
        if rng.random() < 0.6:
            img = p.next_image()
            say = grammar.caption(img.spec.attrs, rng) if task is T.TTS else grammar.spoken_description(img.spec.attrs, rng)
            meta = _image_meta(img)
        else:
            say, meta = rng.choice([t for pair in grammar.exchanges() for t in pair]), {}
        if task is T.ASR:
            return [R.turn("user", R.text(I[T.ASR.name]), p.user_speech(say)), R.turn("assistant", R.text(say))], meta
        return [R.turn("user", R.text(f"{I[T.TTS.name]} {say}")), R.turn("assistant", p.assistant_speech(say))], meta
    img = p.next_image()
    a = img.spec.attrs
    if task is T.CAPTION:
        return [R.turn("user", R.text(I[T.CAPTION.name]), R.image(img.path)),
                R.turn("assistant", R.text(grammar.caption(a, rng)))], _image_meta(img)
    if task is T.T2I:
        return [R.turn("user", R.text(f"{I[T.T2I.name]} {grammar.caption(a, rng)}")),
                R.turn("assistant", R.image(img.path))], _image_meta(img)
    if task is T.S2I:
        said = grammar.spoken_description(a, rng)
        return [R.turn("user", p.user_speech(said), R.text(I[T.S2I.name])),
                R.turn("assistant", R.text(said), R.image(img.path))], _image_meta(img)
    if task in (T.VQA_TEXT, T.VQA_SPEECH):
        attr, q, ans = grammar.image_question(a, rng)
        if task is T.VQA_TEXT:
            user = R.turn("user", R.image(img.path), p.user_speech(q), R.text(I["reply_text"]))
            return [user, R.turn("assistant", R.text(ans))], _image_meta(img, question_attribute=attr)
        user = R.turn("user", R.image(img.path), p.user_speech(q), R.text(I["reply_speech"]))
        return [user, R.turn("assistant", p.assistant_speech(ans))], _image_meta(img, question_attribute=attr)
    if task is T.CHAT_IMAGE:
        return _chat_image(p, img)
    raise ValueError(f"no toy-world records for task {task.name!r}")


def _chat_image(p: _SplitPlanner, img: ImageJob) -> tuple[list[dict], dict[str, Any]]:
    """Turn 1 asks for a picture (text or speech); turn 2 asks about the picture just drawn."""
    rng, I, a = p.rng, grammar.INSTRUCTIONS, img.spec.attrs
    if rng.random() < 0.5:
        ask = R.turn("user", R.text(grammar.draw_request(a, rng, spoken=False)))
    else:
        ask = R.turn("user", p.user_speech(grammar.draw_request(a, rng, spoken=True)), R.text(I["reply_image"]))
    attr, q, ans = grammar.followup_question(a, rng)
    in_speech = rng.random() < 0.5
    follow = R.turn("user", p.user_speech(q), R.text(I["reply_speech" if in_speech else "reply_text"]))
    reply = R.turn("assistant", p.assistant_speech(ans) if in_speech else R.text(ans))
    turns = [ask, R.turn("assistant", R.image(img.path)), follow, reply]
    return turns, _image_meta(img, question_attribute=attr)


def plan_world(size: WorldSize, seed: int) -> WorldPlan:
    train_voices, test_voices = voice_bank(seed)
    plan = WorldPlan(seed, size, train_voices, test_voices, heldout_combos(seed))
    for split in SPLITS:
        p = _SplitPlanner(plan, split)
        rows = []
        for world_task in WORLD_TASKS:
            task = world_task.name
            for i in range(size.records[task][split]):
                turns, meta = _task_record(p, world_task)
                meta["heldout_voice"] = split == "test" and any(
                    s["type"] == "speech" and s["voice"] != ASSISTANT_VOICE.id for t in turns for s in t["segments"]
                )
                rows.append({"id": f"{split}-{task}-{i:06d}", "task": task, "split": split, "turns": turns, "meta": meta})
        plan.records[split] = rows
    return plan
