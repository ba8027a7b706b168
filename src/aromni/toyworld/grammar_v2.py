"""World version 2's phrasings: many caption and draw-request frames in several word orders, synonym
sets, optional modifiers and several question phrasings per attribute, a seeded part of them held out for the
test split.

Attribute *values* stay the words of :mod:`aromni.toyworld.attributes` (the image judge's classes); a synonym
is only another way to say a value ("large" for ``big``, "upper left" for ``top left``). :class:`PhraseBook`
holds out about 20% of the frames of each word order, one question phrasing per attribute and one synonym per
synonym set: training and validation text never uses them, test text uses them in the records marked
``meta.heldout_phrasing``. :data:`SYNONYMS` lists every synonym, held out or not, so the caption parser
(:func:`aromni.toyworld.evaluation.metrics.read_attributes`) reads all of them.

Every spoken word used here is a word of the shipped lexicon (:mod:`aromni.toyworld.lexicon`), which has no
two words that sound alike, so a transcript can always be spelled one way. Text is lowercase, no punctuation.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from aromni.toyworld.attributes import BACKGROUNDS, COLORS, SHAPES, ImageAttrs, vocabulary
from aromni.toyworld.grammar import INSTRUCTIONS, exchanges, facts, normalize, spoken_vocabulary

# Caption frames by word order. Slots: {size} {color} {shape} {pos} (a prepositional phrase) {bg}.
CAPTION_FRAMES: dict[str, tuple[str, ...]] = {
    "attribute_first": (
        "a {size} {color} {shape} {pos} on a {bg} background",
        "there is a {size} {color} {shape} {pos} on a {bg} background",
        "this picture shows a {size} {color} {shape} {pos} on {bg}",
        "a {color} {shape} that is {size} sits {pos} on a {bg} background",
        "the image shows a {size} {color} {shape} {pos} with a {bg} background",
        "a {size} {shape} in {color} {pos} on a {bg} background",
        "one {size} {color} {shape} {pos} and the background is {bg}",
        "a {size} {color} {shape} is placed {pos} on a {bg} background",
        "you can see a {size} {color} {shape} {pos} on {bg}",
        "a {size} {color} {shape} {pos} against a {bg} background",
        "the {shape} is {color} and {size} and it is {pos} on {bg}",
        "a single {size} {color} {shape} stands {pos} on a {bg} background",
        "here is a {size} {color} {shape} {pos} on a {bg} background",
        "i see a {size} {color} {shape} {pos} on a {bg} background",
    ),
    "position_first": (
        "{pos} there is a {size} {color} {shape} on a {bg} background",
        "{pos} of the image is a {size} {color} {shape} on {bg}",
        "{pos} you can see a {size} {color} {shape} on {bg}",
        "{pos} sits a {size} {color} {shape} and the background is {bg}",
        "{pos} of the picture a {size} {color} {shape} on a {bg} background",
        "{pos} is a {size} {color} {shape} over a {bg} background",
        "{pos} stands a {size} {color} {shape} on {bg}",
        "{pos} of the frame there is a {size} {color} {shape} on a {bg} background",
        "{pos} the image shows a {size} {color} {shape} on {bg}",
        "{pos} lies a {size} {shape} in {color} on a {bg} background",
        "{pos} there is one {size} {color} {shape} with a {bg} background",
        "{pos} a {color} {shape} that is {size} on a {bg} background",
        "{pos} is where the {size} {color} {shape} sits on {bg}",
    ),
    "background_first": (
        "on a {bg} background a {size} {color} {shape} is {pos}",
        "a {bg} background with a {size} {color} {shape} {pos}",
        "the background is {bg} and a {size} {color} {shape} is {pos}",
        "over a {bg} background there is a {size} {color} {shape} {pos}",
        "a {bg} background and a {size} {color} {shape} {pos}",
        "on {bg} a {size} {shape} in {color} sits {pos}",
        "the picture has a {bg} background and a {size} {color} {shape} {pos}",
        "against {bg} a {size} {color} {shape} appears {pos}",
        "a {bg} field with one {size} {color} {shape} {pos}",
        "on a {bg} surface a {size} {color} {shape} is shown {pos}",
    ),
    "shape_first": (
        "shape {shape} color {color} size {size} {pos} background {bg}",
        "the {shape} is {size} and {color} {pos} on a {bg} background",
        "the {color} {shape} is {size} and sits {pos} on a {bg} background",
    ),
}
# Requests to draw, said or typed; optional modifiers (REQUEST_PREFIXES, REQUEST_SUFFIXES) go around them.
DRAW_FRAMES: dict[str, tuple[str, ...]] = {
    "attribute_first": (
        "draw a {size} {color} {shape} {pos} on a {bg} background",
        "can you draw a {size} {color} {shape} {pos} on {bg}",
        "show me a {size} {color} {shape} {pos} on a {bg} background",
        "make a picture of a {size} {color} {shape} {pos} on {bg}",
        "i want a {size} {color} {shape} {pos} on a {bg} background",
        "paint a {size} {color} {shape} {pos} on a {bg} background",
        "could you make a {size} {color} {shape} {pos} on {bg}",
        "i would like a {size} {color} {shape} {pos} on a {bg} background",
        "put a {size} {color} {shape} {pos} on a {bg} background",
        "give me a {size} {shape} in {color} {pos} on {bg}",
    ),
    "position_first": (
        "{pos} draw a {size} {color} {shape} on a {bg} background",
        "{pos} put a {size} {color} {shape} on {bg}",
        "{pos} of a {bg} picture draw a {size} {color} {shape}",
        "{pos} i want a {size} {color} {shape} on a {bg} background",
        "{pos} paint a {color} {shape} that is {size} on {bg}",
    ),
    "background_first": (
        "on a {bg} background draw a {size} {color} {shape} {pos}",
        "make a {bg} background with a {size} {color} {shape} {pos}",
        "use a {bg} background and draw a {size} {color} {shape} {pos}",
        "on {bg} put a {size} {color} {shape} {pos}",
        "take a {bg} background and paint a {size} {color} {shape} {pos}",
    ),
}
REQUEST_PREFIXES = ("please", "now", "hey", "okay")
REQUEST_SUFFIXES = ("please", "now", "for me", "thanks", "thank you")
MODIFIER_PROBABILITY = 0.3  # of a prefix, and independently of a suffix

# value -> every way to say it, the value's own word first. No synonym sounds like another word of the world.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "size": {"big": ("big", "large", "huge"), "small": ("small", "little", "tiny")},
    "shape": {"circle": ("circle", "ring"), "square": ("square", "box"), "cross": ("cross", "plus")},
    "position": {
        "top left": ("top left", "upper left"), "top right": ("top right", "upper right"),
        "bottom left": ("bottom left", "lower left"), "bottom right": ("bottom right", "lower right"),
        "middle": ("middle", "center"),
    },
}
CANONICAL_PROBABILITY = 0.5  # a slot says the value's own word this often, a synonym otherwise
CORNER_PREPOSITIONS = ("at the {p}", "in the {p}", "in the {p} corner")
MIDDLE_PREPOSITIONS = ("in the {p}", "at the {p}")

# attribute -> (question phrasings, answer template). The answer names the value with its own word.
IMAGE_QUESTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "color": (("what color is the shape", "what color is it", "which color does the shape have",
               "tell me the color of the shape", "what color do you see"), "it is {color}"),
    "shape": (("what shape is it", "what shape do you see", "which shape is this", "what is the shape",
               "tell me the shape"), "it is a {shape}"),
    "size": (("is the shape big or small", "how big is the shape", "what size is the shape",
              "is it big or small", "tell me the size of the shape"), "it is {size}"),
    "position": (("where is the shape", "where is it", "where is the shape placed",
                  "where can you see the shape", "in which part of the picture is the shape"),
                 "it is {at_pos}"),
    "background": (("what color is the background", "what is the background", "which background is it",
                    "tell me the background color", "what background do you see"), "the background is {bg}"),
    "describe": (("describe the picture", "what do you see", "tell me what you see", "what is in the picture",
                  "describe the image"), "a {size} {color} {shape} {at_pos} on {bg}"),
}
# Disjoint from the image questions: a held-out follow-up must not be a training image question.
FOLLOWUP_QUESTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "shape": (("what shape did you draw", "which shape did you make", "what did you draw"),
              "i drew a {shape}"),
    "color": (("what color did you use", "which color did you pick", "what color did you make it"),
              "it is {color}"),
    "position": (("where did you put it", "where did you draw it", "where did you place it"),
                 "i put it {at_pos}"),
    "size": (("how big did you make it", "what size did you make it", "did you make it big or small"),
             "i made it {size}"),
    "background": (("what background did you use", "which background did you use",
                    "what background did you pick"), "a {bg} background"),
}
# Canonical prepositional phrases of the answers (v1's).
ANSWER_POSITIONS = {"top left": "at the top left", "top right": "at the top right", "middle": "in the middle",
                    "bottom left": "at the bottom left", "bottom right": "at the bottom right"}
FRAME_HELDOUT_FRACTION = 0.2

_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def _article(text: str) -> str:
    return _A_BEFORE_VOWEL.sub("an ", text)


def frame_pattern(frame: str, *, request: bool = False) -> re.Pattern[str]:
    """A regex that fully matches ``frame`` filled with any values and synonyms (and, for a draw request, with
    any modifiers): what tests use to find a frame in text."""
    pos_words = _alternation(s for s in SYNONYMS["position"]["middle"] + tuple(
        f for v, forms in SYNONYMS["position"].items() if v != "middle" for f in forms))
    slots = {
        "{size}": _alternation(f for forms in SYNONYMS["size"].values() for f in forms),
        "{color}": _alternation(COLORS), "{bg}": _alternation(BACKGROUNDS),
        "{shape}": _alternation([*SHAPES, *(f for forms in SYNONYMS["shape"].values() for f in forms)]),
        "{pos}": f"(?:at|in) the {pos_words}(?: corner)?",
    }
    rx = " ".join(slots.get(tok, "an?" if tok == "a" else re.escape(tok)) for tok in frame.split())
    if request:
        rx = f"(?:{_alternation(REQUEST_PREFIXES)} )?{rx}(?: {_alternation(REQUEST_SUFFIXES)})?"
    return re.compile(f"^{rx}$")


def _alternation(words: Iterable[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")"


@dataclass(frozen=True)
class Phrased:
    """One generated sentence: its text, and whether a held-out frame, phrasing or synonym is in it."""

    text: str
    heldout: bool


class PhraseBook:
    """The v2 phrasings of one world seed: which frames, question phrasings and synonyms are held out, and
    generators that use only the training ones (``heldout=False``) or at least one held-out one
    (``heldout=True``)."""

    def __init__(self, seed: int):
        self.seed = seed
        rng = random.Random(f"phrasing-{seed}")
        self.heldout_caption_frames = _hold_out_frames(CAPTION_FRAMES, rng)
        self.heldout_draw_frames = _hold_out_frames(DRAW_FRAMES, rng)
        self.heldout_questions = {a: rng.choice(qs) for a, (qs, _) in sorted(IMAGE_QUESTIONS.items())}
        self.heldout_followups = {a: rng.choice(qs) for a, (qs, _) in sorted(FOLLOWUP_QUESTIONS.items())}
        # One alternative (never the value's own word) per synonym set.
        self.heldout_synonyms = {(attr, value): rng.choice(forms[1:])
                                 for attr, table in sorted(SYNONYMS.items())
                                 for value, forms in sorted(table.items())}

    @cached_property
    def heldout_synonym_words(self) -> frozenset[str]:
        return frozenset(w for s in self.heldout_synonyms.values() for w in s.split())

    def summary(self) -> dict[str, list[str]]:
        """What is held out (for the manifest)."""
        return {
            "caption_frames": sorted(self.heldout_caption_frames),
            "draw_frames": sorted(self.heldout_draw_frames),
            "questions": [self.heldout_questions[a] for a in sorted(self.heldout_questions)],
            "followups": [self.heldout_followups[a] for a in sorted(self.heldout_followups)],
            "synonyms": sorted(self.heldout_synonyms.values()),
        }

    # ------------------------------------------------------------------ generators
    def caption(self, a: ImageAttrs, rng: random.Random, *, heldout: bool) -> Phrased:
        """A caption naming all five attributes."""
        return self._framed(CAPTION_FRAMES, self.heldout_caption_frames, a, rng, heldout)

    def draw_request(self, a: ImageAttrs, rng: random.Random, *, heldout: bool) -> Phrased:
        """A request to draw ``a``, with optional modifiers."""
        body = self._framed(DRAW_FRAMES, self.heldout_draw_frames, a, rng, heldout)
        prefix = rng.choice(REQUEST_PREFIXES) + " " if rng.random() < MODIFIER_PROBABILITY else ""
        suffix = " " + rng.choice(REQUEST_SUFFIXES) if rng.random() < MODIFIER_PROBABILITY else ""
        return Phrased(prefix + body.text + suffix, body.heldout)

    def image_question(self, a: ImageAttrs, rng: random.Random, *, heldout: bool) -> tuple[str, Phrased, str]:
        """``(attribute, question, answer)`` about an image the user shows."""
        return self._question(IMAGE_QUESTIONS, self.heldout_questions, a, rng, heldout)

    def followup_question(self, a: ImageAttrs, rng: random.Random, *,
                          heldout: bool) -> tuple[str, Phrased, str]:
        """``(attribute, question, answer)`` about the image the assistant drew."""
        return self._question(FOLLOWUP_QUESTIONS, self.heldout_followups, a, rng, heldout)

    # ------------------------------------------------------------------ internals
    def _framed(self, frames: dict[str, tuple[str, ...]], held: frozenset[str], a: ImageAttrs,
                rng: random.Random, heldout: bool) -> Phrased:
        everything = [f for group in frames.values() for f in group]
        train = [f for f in everything if f not in held]
        if not heldout:
            return Phrased(self._fill(rng.choice(train), a, rng, allow_heldout=False, force_slot=None), False)
        if rng.random() < 0.5:  # a held-out frame, any synonyms
            frame = rng.choice(sorted(held))
            return Phrased(self._fill(frame, a, rng, allow_heldout=True, force_slot=None), True)
        # A training frame with at least one held-out synonym (size and position always have one).
        slots = [x for x in ("size", "shape", "position") if (x, getattr(a, x)) in self.heldout_synonyms]
        frame = rng.choice(train)
        return Phrased(self._fill(frame, a, rng, allow_heldout=True, force_slot=rng.choice(slots)), True)

    def _say(self, attr: str, value: str, rng: random.Random, allow_heldout: bool, force: bool) -> str:
        forms = SYNONYMS.get(attr, {}).get(value, (value,))
        held = self.heldout_synonyms.get((attr, value))
        if force:
            if held is None:
                raise ValueError(f"{attr} {value!r} has no held-out synonym to force")
            return held
        if len(forms) == 1 or rng.random() < CANONICAL_PROBABILITY:
            return value
        return rng.choice([f for f in forms[1:] if allow_heldout or f != held] or [value])

    def _fill(self, frame: str, a: ImageAttrs, rng: random.Random, *, allow_heldout: bool,
              force_slot: str | None) -> str:
        said = {attr: self._say(attr, getattr(a, attr), rng, allow_heldout, attr == force_slot)
                for attr in ("size", "shape", "position")}
        corner = a.position != "middle"
        pos = rng.choice(CORNER_PREPOSITIONS if corner else MIDDLE_PREPOSITIONS).format(p=said["position"])
        text = frame.format(size=said["size"], color=a.color, shape=said["shape"], pos=pos, bg=a.background)
        return _article(text)

    def _question(self, table: dict[str, tuple[tuple[str, ...], str]], held: dict[str, str], a: ImageAttrs,
                  rng: random.Random, heldout: bool) -> tuple[str, Phrased, str]:
        attr = rng.choice(sorted(table))
        questions, answer = table[attr]
        q = held[attr] if heldout else rng.choice([x for x in questions if x != held[attr]])
        return attr, Phrased(q, heldout), fill_answer(answer, a)


def reference_captions(a: ImageAttrs) -> list[str]:
    """Every caption frame (held-out ones too) filled with the values' own words and each preposition that fits
    the position: the CIDEr references of an image in world version 2. Synonyms are left out: a reference is the
    plain description, so a caption that says "ring" for circle scores lower, as it would against human
    references."""
    preps = CORNER_PREPOSITIONS if a.position != "middle" else MIDDLE_PREPOSITIONS
    frames = [f for group in CAPTION_FRAMES.values() for f in group]
    return [_article(f.format(size=a.size, color=a.color, shape=a.shape, pos=p.format(p=a.position),
                              bg=a.background))
            for f in frames for p in preps]


def fill_answer(template: str, a: ImageAttrs) -> str:
    """An answer template filled with the values' own words (answers are not paraphrased)."""
    text = template.format(size=a.size, color=a.color, shape=a.shape, at_pos=ANSWER_POSITIONS[a.position],
                           bg=a.background)
    return _article(text)


def _hold_out_frames(frames: dict[str, tuple[str, ...]], rng: random.Random) -> frozenset[str]:
    """About :data:`FRAME_HELDOUT_FRACTION` of the frames of each word order, at least one each."""
    held: set[str] = set()
    for order in sorted(frames):
        group = frames[order]
        held.update(rng.sample(group, max(1, round(FRAME_HELDOUT_FRACTION * len(group)))))
    return frozenset(held)


def exchange_lines() -> list[str]:
    """Every line of the fixed exchanges, questions and answers (v1's exchanges)."""
    return [t for pair in exchanges() for t in pair]


def all_frames() -> list[str]:
    return [f for table in (CAPTION_FRAMES, DRAW_FRAMES) for group in table.values() for f in group]


def spoken_words() -> set[str]:
    """Every word a v2 phrasing, answer or exchange line can contain: what users or the assistant say."""
    texts = [re.sub(r"\{[a-z_]+\}", " ", f) for f in all_frames()]
    texts += [*REQUEST_PREFIXES, *REQUEST_SUFFIXES, *CORNER_PREPOSITIONS, *MIDDLE_PREPOSITIONS]
    for table in (IMAGE_QUESTIONS, FOLLOWUP_QUESTIONS):
        for questions, answer in table.values():
            texts += [*questions, re.sub(r"\{[a-z_]+\}", " ", answer)]
    texts += [s for table in SYNONYMS.values() for forms in table.values() for s in forms]
    texts += [*ANSWER_POSITIONS.values(), *exchange_lines()]
    texts = [t.replace("{p}", " ") for t in texts]
    return {w for t in texts for w in normalize(t).split()} | set(spoken_vocabulary())


def grammar_words() -> set[str]:
    """:func:`spoken_words` plus the words of the text-only facts and task instructions: the lexicon words a
    world never holds out."""
    texts = [*facts(), *INSTRUCTIONS.values()]
    return spoken_words() | {w for t in texts for w in normalize(t).split()}


def attribute_words() -> set[str]:
    """The words that name attribute values, synonyms included: never drawn into a random word sequence, so
    that a random sequence cannot name a held-out attribute combination or a held-out synonym."""
    words = {w for values in vocabulary().values() for v in values for w in v.split()}
    words |= {w for table in SYNONYMS.values() for forms in table.values() for f in forms for w in f.split()}
    return words
