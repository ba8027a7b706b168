"""The world's small grammar: caption templates, spoken requests, questions with answers, fixed exchanges, facts.

Everything produced here is lowercase without punctuation (what :func:`normalize` returns), except the task
instructions, which follow the AR-Omni prompt templates (paper Table 10). Spoken forms are kept short (about
2–3 s at 170–205 words per minute) so that an utterance is 80–120 speech tokens at 40 tokens/s.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

from aromni.toyworld.attributes import (
    BACKGROUNDS,
    COLORS,
    CORNERS,
    POSITION_PHRASES,
    SHAPES,
    SIZES,
    ImageAttrs,
)
from aromni.vocab.tasks import ASR, CAPTION, CHAT_IMAGE, CHAT_SPEECH, S2I, T2I, TTS

# Task instructions: the registry's paper instructions (Table 10; S→I uses the speech-to-image chat one) and the
# world's chat variants.
INSTRUCTIONS = {
    ASR.name: ASR.paper_instruction,
    TTS.name: TTS.paper_instruction,
    CAPTION.name: CAPTION.paper_instruction,
    T2I.name: T2I.paper_instruction,
    S2I.name: CHAT_IMAGE.paper_instruction,
    "reply_text": CHAT_SPEECH.paper_instruction,
    "reply_speech": "Reply in speech.",
    "reply_image": "Reply with an image.",
}

CAPTION_TEMPLATES = (
    "a {size} {color} {shape} {at_pos} on a {bg} background",
    "there is a {size} {color} {shape} {at_pos} on a {bg} background",
    "a {bg} background with a {size} {color} {shape} {at_pos}",
    "this picture shows a {size} {color} {shape} {at_pos} on {bg}",
    "a {color} {shape} that is {size} sits {at_pos} on a {bg} background",
    "on a {bg} background a {size} {color} {shape} is {at_pos}",
)
# Short forms for speech (2–3 s).
SPOKEN_DESCRIPTION_TEMPLATES = (
    "a {size} {color} {shape} {at_pos} on {bg}",
    "{size} {color} {shape} {at_pos} on {bg}",
    "a {size} {color} {shape} on {bg} {at_pos}",
)
DRAW_REQUEST_TEMPLATES = (
    "draw a {size} {color} {shape} {at_pos} on a {bg} background",
    "please draw a {size} {color} {shape} {at_pos} on a {bg} background",
    "can you draw a {size} {color} {shape} {at_pos} on {bg}",
    "show me a {size} {color} {shape} {at_pos} on a {bg} background",
)
SPOKEN_DRAW_REQUEST_TEMPLATES = (
    "draw a {size} {color} {shape} {at_pos} on {bg}",
    "show me a {size} {color} {shape} {at_pos} on {bg}",
)

# attribute -> (questions, answer template). Questions about an image the user shows.
IMAGE_QUESTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "color": (("what color is the shape", "what color is it"), "it is {color}"),
    "shape": (("what shape is it", "what shape do you see", "which shape is this"), "it is a {shape}"),
    "size": (("is the shape big or small", "how big is the shape"), "it is {size}"),
    "position": (("where is the shape", "where is it"), "it is {at_pos}"),
    "background": (("what color is the background", "what is the background"), "the background is {bg}"),
    "describe": (("describe the picture", "what do you see"), "a {size} {color} {shape} {at_pos} on {bg}"),
}
# Follow-up questions about an image the assistant drew in the previous turn.
FOLLOWUP_QUESTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "shape": (("what shape did you draw",), "i drew a {shape}"),
    "color": (("what color did you use", "what color is it"), "it is {color}"),
    "position": (("where did you put it", "where is it"), "i put it {at_pos}"),
    "size": (("how big did you make it", "is it big or small"), "i made it {size}"),
    "background": (("what background did you use",), "a {bg} background"),
}

FIXED_EXCHANGES: tuple[tuple[str, str], ...] = (
    ("hello", "hello what shall i draw"),
    ("what can you do", "i can draw shapes and talk about them"),
    ("what can you draw", "i can draw six shapes in eight colors"),
    ("how many colors do you know", "i know eight colors"),
    ("how many shapes do you know", "i know six shapes"),
    ("what backgrounds do you know", "white black gray and beige"),
    ("who are you", "i am a small drawing assistant"),
    ("thank you", "you are welcome"),
    ("goodbye", "goodbye see you soon"),
)
OPPOSITES: tuple[tuple[str, str], ...] = (
    ("big", "small"), ("small", "big"), ("top", "bottom"), ("bottom", "top"),
    ("left", "right"), ("right", "left"), ("black", "white"), ("white", "black"),
)

_PUNCT = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> str:
    """Lowercase, drop punctuation, collapse spaces: the form of every transcript and spoken text."""
    return " ".join(_PUNCT.sub(" ", text.lower().replace("-", " ")).split())


_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")


def fill_template(template: str, a: ImageAttrs) -> str:
    """``template`` with the attributes of ``a`` filled in (``a`` becomes ``an`` before a vowel)."""
    text = template.format(
        size=a.size, color=a.color, shape=a.shape, at_pos=POSITION_PHRASES[a.position], bg=a.background
    )
    return _A_BEFORE_VOWEL.sub("an ", text)  # "an orange star"


def caption(a: ImageAttrs, rng: random.Random) -> str:
    """A text caption naming all five attributes."""
    return fill_template(rng.choice(CAPTION_TEMPLATES), a)


def spoken_description(a: ImageAttrs, rng: random.Random) -> str:
    return fill_template(rng.choice(SPOKEN_DESCRIPTION_TEMPLATES), a)


def draw_request(a: ImageAttrs, rng: random.Random, *, spoken: bool) -> str:
    return fill_template(rng.choice(SPOKEN_DRAW_REQUEST_TEMPLATES if spoken else DRAW_REQUEST_TEMPLATES), a)


def image_question(a: ImageAttrs, rng: random.Random) -> tuple[str, str, str]:
    """``(attribute, question, answer)`` about an image shown by the user."""
    attr = rng.choice(sorted(IMAGE_QUESTIONS))
    questions, answer = IMAGE_QUESTIONS[attr]
    return attr, rng.choice(questions), fill_template(answer, a)


def followup_question(a: ImageAttrs, rng: random.Random) -> tuple[str, str, str]:
    """``(attribute, question, answer)`` about the image the assistant drew."""
    attr = rng.choice(sorted(FOLLOWUP_QUESTIONS))
    questions, answer = FOLLOWUP_QUESTIONS[attr]
    return attr, rng.choice(questions), fill_template(answer, a)


def exchanges() -> list[tuple[str, str]]:
    """Every fixed spoken/text question with its one answer (no image involved)."""
    pairs = list(FIXED_EXCHANGES)
    for shape in SHAPES:
        n = CORNERS[shape]
        pairs.append((f"how many corners does a {shape} have", f"a {shape} has {n} corners"))
        pairs.append((f"is a {shape} a color", f"no a {shape} is a shape"))
    for color in COLORS:
        pairs.append((f"is {color} a color", f"yes {color} is a color"))
    for word, opposite in OPPOSITES:
        pairs.append((f"what is the opposite of {word}", f"the opposite of {word} is {opposite}"))
    return pairs


def facts() -> list[str]:
    """Plain statements about the world, for text-only documents."""
    out = [f"{c} is a color" for c in COLORS] + [f"a {s} is a shape" for s in SHAPES]
    out += [f"a {s} has {CORNERS[s]} corners" for s in SHAPES]
    out += [f"the opposite of {w} is {o}" for w, o in OPPOSITES]
    out += [f"a {b} background" for b in BACKGROUNDS] + ["there are six shapes", "there are eight colors"]
    out += ["a shape can be big or small", "a shape can be at the top or at the bottom"]
    return out


def _words(texts: Iterable[str]) -> set[str]:
    return {w for t in texts for w in normalize(t).split()}


def spoken_vocabulary() -> list[str]:
    """Every word any spoken utterance of the world can contain, sorted (the speech judge's output set)."""
    literal = list(SPOKEN_DESCRIPTION_TEMPLATES + SPOKEN_DRAW_REQUEST_TEMPLATES + CAPTION_TEMPLATES)
    for questions, answer in list(IMAGE_QUESTIONS.values()) + list(FOLLOWUP_QUESTIONS.values()):
        literal += [*questions, answer]
    literal = [re.sub(r"\{[a-z_]+\}", " ", t) for t in literal]
    values = ["an", *SHAPES, *COLORS, *SIZES, *BACKGROUNDS, *POSITION_PHRASES.values()]
    return sorted(_words(literal + values + [t for pair in exchanges() for t in pair]))
