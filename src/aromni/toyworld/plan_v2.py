"""Plan a version-2 world: images, utterances and dialog records, decided serially from the seed.

Like version 1 (:mod:`aromni.toyworld.plan`), planning is cheap and the media are made afterwards from the
plan alone. What version 2 adds, and where it is decided:

* **Open vocabulary**: half of the ASR/TTS utterances are random word sequences (3-8 words) over the shipped
  lexicon's training words; about 5% of the lexicon is held out (:meth:`Lexicon.split`) and occurs only in
  test sequences, about half of which contain one or two held-out words.
* **Phrasings** (:class:`~aromni.toyworld.grammar_v2.PhraseBook`): training text uses only the training
  frames, questions and synonyms; about half of the test records with a phrasing use a held-out one.
* **Attribute pairs** (:func:`~aromni.toyworld.splits.heldout_pairs`): no training or validation image shows
  a held-out pair; half of the test images show exactly one (its kind is ``meta.heldout_combo``).
* **Voices**: each training or validation dialog has a fresh random speaker (:func:`voices.train_voice`) and
  about half of its user clips are augmented at build time; test dialogs are spoken by the fixed unseen
  speakers, the Klatt family or flite. Spoken answers are said by users too, not only by the assistant.

Every record's ``meta`` holds :data:`META_KEYS` (see :func:`_meta`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from aromni.toyworld import grammar
from aromni.toyworld import records as R
from aromni.toyworld import voices as V
from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, ImageAttrs
from aromni.toyworld.grammar_v2 import PhraseBook, Phrased, attribute_words, exchange_lines, grammar_words
from aromni.toyworld.images import RenderSpec, random_spec
from aromni.toyworld.lexicon import load_lexicon, random_sequence
from aromni.toyworld.records import RecordSegment, RecordTurn, WorldRecord
from aromni.toyworld.sizes import WORLD_TASKS, WorldSize
from aromni.toyworld.splits import HELDOUT_KINDS, KIND_ATTRIBUTES, SPLITS, heldout_kinds, heldout_pairs
from aromni.utils.io import JSONValue
from aromni.vocab import tasks as T

#: Fraction of the lexicon held out for the test split.
HELDOUT_WORD_FRACTION = 0.05
#: Fraction of test images that show a held-out attribute pair.
TEST_HELDOUT_FRACTION = 0.5
#: Fraction of test phrasings (captions, requests, questions) that use a held-out frame, question or synonym.
TEST_HELDOUT_PHRASING = 0.5
#: Fraction of test random sequences with at least one held-out word.
TEST_HELDOUT_WORDS = 0.5
#: ASR/TTS sentence mix: random sequences, then grammar sentences; the rest are exchange lines.
P_RANDOM, P_GRAMMAR = 0.5, 0.3
RANDOM_WORDS = (3, 8)
#: Longest spoken phrasing: about 5 s for the slowest training speaker (140 wpm), well inside a 512-token row.
MAX_SPOKEN_WORDS = 13
#: Fraction of training/validation user clips passed through :func:`aromni.toyworld.audio_augment.augment`.
P_AUGMENT = 0.5
#: Test dialog speakers: unseen espeak-ng speakers, else the Klatt family, else flite (when installed).
P_TEST_HELDOUT, P_TEST_FAMILY = 0.7, 0.15
#: The keys of every version-2 record's ``meta`` (besides ``image`` and ``question_attribute``).
META_KEYS = ("heldout_combo", "sentence", "heldout_words", "heldout_phrasing", "voice_kind", "heldout_voice",
             "augmented")


@dataclass
class ImageJobV2:
    path: str
    split: str
    spec: RenderSpec
    heldout_kind: str | None  # one of splits.HELDOUT_KINDS, or None for a combination training may use

    @property
    def heldout_combo(self) -> bool:
        return self.heldout_kind is not None


@dataclass
class SpeechJobV2:
    path: str
    split: str
    text: str
    voice: V.Voice
    voice_kind: str | None  # "train" | "heldout" | "family" | "synth"; None for the assistant
    augment: bool


@dataclass
class WorldPlanV2:
    seed: int
    size: WorldSize
    pairs: dict[str, list[tuple[str, str]]]
    train_words: list[str]  # the random-sequence words of training and validation
    heldout_words: list[str]  # test-only lexicon words
    phrasebook: PhraseBook
    flite: bool
    images: list[ImageJobV2] = field(default_factory=list)
    speech: list[SpeechJobV2] = field(default_factory=list)
    records: dict[str, list[WorldRecord]] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return 2


class _RecordState:
    """What one record used so far (for its meta)."""

    def __init__(self) -> None:
        self.voice: V.Voice | None = None
        self.voice_kind: str | None = None
        self.sentence: str | None = None
        self.phrasing = False
        self.augmented = False
        self.image: ImageJobV2 | None = None


class _SplitPlannerV2:
    """Plans one split of a version-2 world: its image pool, its utterances (deduplicated) and its records."""

    def __init__(self, plan: WorldPlanV2, split: str, test_speakers: dict[str, list[V.Voice]]):
        self.plan, self.split, self.test = plan, split, split == "test"
        self.rng = random.Random(f"plan-v2-{plan.seed}-{split}")
        self.test_speakers = test_speakers
        self.clips: dict[tuple[str, V.Voice, bool], str] = {}
        self.pool = self._image_pool(plan.size.images[split])
        self.cursor = 0
        self.state = _RecordState()
        self.heldout_phrasing = False  # decided per record by start_record

    # ------------------------------------------------------------------ images
    def _image_pool(self, n: int) -> list[ImageJobV2]:
        n_held = round(n * TEST_HELDOUT_FRACTION) if self.test else 0
        jobs = []
        for i in range(n):
            kind = HELDOUT_KINDS[i % len(HELDOUT_KINDS)] if i < n_held else None
            attrs = self._attrs(kind)
            path = f"images/{self.split}/{i:05d}.png"
            jobs.append(ImageJobV2(path, self.split, random_spec(attrs, self.rng), kind))
        self.rng.shuffle(jobs)
        self.plan.images.extend(jobs)
        return jobs

    def _attrs(self, kind: str | None) -> ImageAttrs:
        """Random attributes showing exactly the held-out pair kind ``kind`` (none for ``None``)."""
        rng = self.rng
        while True:  # rejection: a few tries at most (about 40% of random combinations hold no held-out pair)
            values = {"shape": rng.choice(SHAPES), "color": rng.choice(list(COLORS)),
                      "size": rng.choice(list(SIZES)), "position": rng.choice(list(POSITIONS)),
                      "background": rng.choice(list(BACKGROUNDS))}
            if kind is not None:
                values.update(zip(KIND_ATTRIBUTES[kind], rng.choice(self.plan.pairs[kind])))
            attrs = ImageAttrs(**values)
            if heldout_kinds(attrs, self.plan.pairs) == ([kind] if kind else []):
                return attrs

    def next_image(self) -> ImageJobV2:
        # Walk the pool in order so every image is used before any is reused.
        job = self.pool[self.cursor % len(self.pool)]
        self.cursor += 1
        self.state.image = job
        return job

    # ------------------------------------------------------------------ records
    def start_record(self) -> None:
        """A new dialog: a new speaker, a new decision whether its phrasings are held out."""
        self.state = _RecordState()
        self.heldout_phrasing = self.test and self.rng.random() < TEST_HELDOUT_PHRASING

    def phrase(self, make: Callable[..., Phrased], *, spoken: bool = False) -> str:
        """Text from a PhraseBook generator, training or held-out phrasing as decided for this record; a
        spoken one is redrawn until it has at most :data:`MAX_SPOKEN_WORDS` words."""
        got = make(heldout=self.heldout_phrasing)
        while spoken and len(got.text.split()) > MAX_SPOKEN_WORDS:
            got = make(heldout=self.heldout_phrasing)
        self.state.phrasing |= got.heldout
        return got.text

    def user_speech(self, text: str) -> RecordSegment:
        st = self.state
        if st.voice is None:
            st.voice, st.voice_kind = self._speaker()
        augment = not self.test and self.rng.random() < P_AUGMENT
        st.augmented |= augment
        return self._clip(text, st.voice, st.voice_kind, augment)

    def assistant_speech(self, text: str) -> RecordSegment:
        return self._clip(text, V.ASSISTANT_VOICE, None, False)

    def _speaker(self) -> tuple[V.Voice, str]:
        if not self.test:
            return V.train_voice(self.rng), "train"
        r = self.rng.random()
        if r < P_TEST_HELDOUT or (r >= P_TEST_HELDOUT + P_TEST_FAMILY and not self.test_speakers["synth"]):
            kind = "heldout"
        else:
            kind = "family" if r < P_TEST_HELDOUT + P_TEST_FAMILY else "synth"
        return self.rng.choice(self.test_speakers[kind]), kind

    def _clip(self, text: str, voice: V.Voice, kind: str | None, augment: bool) -> RecordSegment:
        key = (text, voice, augment)
        path = self.clips.get(key)
        if path is None:
            path = f"speech/{self.split}/{len(self.clips):06d}.wav"
            self.clips[key] = path
            self.plan.speech.append(SpeechJobV2(path, self.split, text, voice, kind, augment))
        return R.speech(path, text, voice.id)

    # ------------------------------------------------------------------ sentences
    def random_words(self) -> str:
        """A random word sequence; in test, about half hold one or two held-out words."""
        self.state.sentence = "random"
        words = random_sequence(self.plan.train_words, self.rng, *RANDOM_WORDS).split()
        if self.test and self.rng.random() < TEST_HELDOUT_WORDS:
            for i in self.rng.sample(range(len(words)), self.rng.randint(1, 2)):
                words[i] = self.rng.choice(self.plan.heldout_words)
        return " ".join(words)

    def grammar_sentence(self) -> str:
        """A caption, draw request or question about the next image of this split."""
        self.state.sentence = "grammar"
        a, book = self.next_image().spec.attrs, self.plan.phrasebook
        pick = self.rng.randrange(3)
        if pick == 0:
            return self.phrase(lambda heldout: book.caption(a, self.rng, heldout=heldout), spoken=True)
        if pick == 1:
            return self.phrase(lambda heldout: book.draw_request(a, self.rng, heldout=heldout), spoken=True)
        self.state.image = None  # a question names no attribute of the image
        return self.phrase(lambda heldout: book.image_question(a, self.rng, heldout=heldout)[1])

    def exchange_sentence(self) -> str:
        """A line of a fixed exchange, or an answer about the next image (so users say answers too)."""
        self.state.sentence = "exchange"
        if self.rng.random() < 0.5:
            return self.rng.choice(exchange_lines())
        a, book = self.next_image().spec.attrs, self.plan.phrasebook
        self.state.image = None  # an answer names one attribute, not the image's combination
        if self.rng.random() < 0.5:
            return book.image_question(a, self.rng, heldout=False)[2]
        return book.followup_question(a, self.rng, heldout=False)[2]

    def speech_sentence(self) -> str:
        r = self.rng.random()
        if r < P_RANDOM:
            return self.random_words()
        return self.grammar_sentence() if r < P_RANDOM + P_GRAMMAR else self.exchange_sentence()


def _task_record(p: _SplitPlannerV2, task: T.Task) -> tuple[list[RecordTurn], dict[str, JSONValue]]:
    """``(turns, extra meta)`` of one record of ``task``."""
    rng, INS, book = p.rng, grammar.INSTRUCTIONS, p.plan.phrasebook
    if task is T.TEXT:
        sents = []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                sents.append(rng.choice(grammar.facts()))
            else:
                a = p.next_image().spec.attrs
                sents.append(p.phrase(lambda heldout: book.caption(a, rng, heldout=heldout)))
        p.state.image = None  # a text document is about no one image
        return [R.turn("assistant", R.text(". ".join(sents) + "."))], {}
    if task in (T.TEXT_QA, T.S2S, T.S2T):
        q, a = rng.choice(grammar.exchanges())
        if task is T.TEXT_QA:
            return [R.turn("user", R.text(q)), R.turn("assistant", R.text(a))], {}
        p.state.sentence = "exchange"
        reply = R.text(a) if task is T.S2T else p.assistant_speech(a)
        instr = INS["reply_text"] if task is T.S2T else INS["reply_speech"]
        return [R.turn("user", p.user_speech(q), R.text(instr)), R.turn("assistant", reply)], {}
    if task in (T.ASR, T.TTS):
        say = p.speech_sentence()
        if task is T.ASR:
            return [R.turn("user", R.text(INS[T.ASR.name]), p.user_speech(say)),
                    R.turn("assistant", R.text(say))], {}
        return [R.turn("user", R.text(f"{INS[T.TTS.name]} {say}")),
                R.turn("assistant", p.assistant_speech(say))], {}
    img = p.next_image()
    a = img.spec.attrs
    if task is T.CAPTION:
        cap = p.phrase(lambda heldout: book.caption(a, rng, heldout=heldout))
        return [R.turn("user", R.text(INS[T.CAPTION.name]), R.image(img.path)),
                R.turn("assistant", R.text(cap))], {}
    if task is T.T2I:
        make = book.caption if rng.random() < 0.5 else book.draw_request
        prompt = p.phrase(lambda heldout: make(a, rng, heldout=heldout))
        return [R.turn("user", R.text(f"{INS[T.T2I.name]} {prompt}")),
                R.turn("assistant", R.image(img.path))], {}
    if task is T.S2I:
        p.state.sentence = "grammar"
        make = book.caption if rng.random() < 0.5 else book.draw_request
        said = p.phrase(lambda heldout: make(a, rng, heldout=heldout), spoken=True)
        return [R.turn("user", p.user_speech(said), R.text(INS[T.S2I.name])),
                R.turn("assistant", R.text(said), R.image(img.path))], {}
    if task in (T.VQA_TEXT, T.VQA_SPEECH):
        p.state.sentence = "grammar"
        attr, q, ans = book.image_question(a, rng, heldout=p.heldout_phrasing)
        p.state.phrasing |= q.heldout
        instr = INS["reply_text" if task is T.VQA_TEXT else "reply_speech"]
        user = R.turn("user", R.image(img.path), p.user_speech(q.text), R.text(instr))
        reply = R.text(ans) if task is T.VQA_TEXT else p.assistant_speech(ans)
        return [user, R.turn("assistant", reply)], {"question_attribute": attr}
    if task is T.CHAT_IMAGE:
        return _chat_image(p, img)
    raise ValueError(f"no toy-world records for task {task.name!r}")


def _chat_image(p: _SplitPlannerV2, img: ImageJobV2) -> tuple[list[RecordTurn], dict[str, JSONValue]]:
    """Turn 1 asks for a picture (text or speech); turn 2 asks about the picture just drawn."""
    rng, INS, a, book = p.rng, grammar.INSTRUCTIONS, img.spec.attrs, p.plan.phrasebook
    spoken = rng.random() < 0.5
    request = p.phrase(lambda heldout: book.draw_request(a, rng, heldout=heldout), spoken=spoken)
    if spoken:
        ask = R.turn("user", p.user_speech(request), R.text(INS["reply_image"]))
    else:
        ask = R.turn("user", R.text(request))
    attr, q, ans = book.followup_question(a, rng, heldout=p.heldout_phrasing)
    p.state.phrasing |= q.heldout
    p.state.sentence = "grammar"
    in_speech = rng.random() < 0.5
    follow = R.turn("user", p.user_speech(q.text), R.text(INS["reply_speech" if in_speech else "reply_text"]))
    reply = R.turn("assistant", p.assistant_speech(ans) if in_speech else R.text(ans))
    turns = [ask, R.turn("assistant", R.image(img.path)), follow, reply]
    return turns, {"question_attribute": attr}


def record_texts(turns: list[RecordTurn]) -> list[str]:
    """Every text and transcript of a record's turns."""
    return [s.get("text") or s.get("transcript") or "" for t in turns for s in t["segments"]]


def _meta(p: _SplitPlannerV2, turns: list[RecordTurn], extra: dict[str, JSONValue]) -> dict[str, JSONValue]:
    st, held = p.state, set(p.plan.heldout_words)
    words = {w for text in record_texts(turns) for w in grammar.normalize(text).split()}
    has_user_speech = st.voice is not None
    meta: dict[str, JSONValue] = {}
    if st.image is not None:
        meta["image"] = st.image.spec.attrs.to_dict()
    meta.update(extra)
    meta.update({
        "heldout_combo": st.image.heldout_kind if st.image is not None else None,
        "sentence": st.sentence if any(s["type"] == "speech" for t in turns for s in t["segments"]) else None,
        "heldout_words": sorted(words & held),
        "heldout_phrasing": st.phrasing,
        "voice_kind": st.voice_kind,
        "heldout_voice": p.test and has_user_speech,
        "augmented": st.augmented,
    })
    return meta


def plan_world_v2(size: WorldSize, seed: int) -> WorldPlanV2:
    """The version-2 plan of a world of ``size`` from ``seed`` (flite voices only where flite is there)."""
    train_words, heldout_words = load_lexicon().split(seed, HELDOUT_WORD_FRACTION, keep=grammar_words())
    banned = attribute_words()  # no random sequence names an attribute (held-out pairs and synonyms stay out)
    speakers = {"heldout": V.test_voices(), "family": V.family_voices(), "synth": V.flite_voices()}
    plan = WorldPlanV2(seed, size, heldout_pairs(seed), [w for w in train_words if w not in banned],
                       [w for w in heldout_words if w not in banned], PhraseBook(seed),
                       bool(speakers["synth"]))
    for split in SPLITS:
        p = _SplitPlannerV2(plan, split, speakers)
        rows: list[WorldRecord] = []
        for world_task in WORLD_TASKS:
            task = world_task.name
            for i in range(size.records[task][split]):
                p.start_record()
                turns, extra = _task_record(p, world_task)
                rows.append({"id": f"{split}-{task}-{i:06d}", "task": task, "split": split, "turns": turns,
                             "meta": _meta(p, turns, extra)})
        plan.records[split] = rows
    return plan
