"""Task templates: build the :class:`Conversation` of each task in the official or the paper's format.

``official`` reproduces the prompts of the official AR-Omni code id for id (``official-formats.md`` §C.2, encoded
with :data:`~aromni.vocab.conversation.OFFICIAL`); ``paper`` follows Table 10 of the paper (encoded with
:data:`~aromni.vocab.conversation.PAPER`). Every builder takes the task's inputs (text, image codes, speech codes)
and optionally the response, so the same function serves training data (with a response) and generation
prompts (without one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aromni.errors import InputError
from aromni.vocab.conversation import (
    Conversation,
    ImageSegment,
    Segment,
    SpeechSegment,
    TextSegment,
    Turn,
)

Codes = Sequence[int] | np.ndarray


@dataclass(frozen=True)
class TaskSpec:
    """What a task takes and produces, and its default instruction per style."""

    name: str
    inputs: tuple[str, ...]  # of "text", "image", "speech"
    outputs: tuple[str, ...]
    official_instruction: str | None
    paper_instruction: str | None


TASKS: dict[str, TaskSpec] = {
    "tts": TaskSpec("tts", ("text",), ("speech",), "Convert this text into speech.", "Convert the text to speech:"),
    "asr": TaskSpec("asr", ("speech",), ("text",), "Can you please convert this speech into written text?",
                    "Transcribe the audio."),
    "caption": TaskSpec("caption", ("image",), ("text",), "Describe this image.", "Describe the image."),
    "t2i": TaskSpec("t2i", ("text",), ("image",), "Create a picture that matches the essence of this text.",
                    "Create an image for:"),
    # Paper Table 10 chat templates (speech in; text, or text then image, out).
    "chat_image": TaskSpec("chat_image", ("speech",), ("text", "image"), None,
                           "Transcribe the audio and generate an image for the transcript."),
    "chat_speech": TaskSpec("chat_speech", ("speech",), ("text",), None, "Reply in text."),
}

#: The official chat runner's default instruction appended after the user's speech.
OFFICIAL_CHAT_APPEND = "Please acknowledge the user's vocal input, create a textual response."


def _need(value: object, what: str, task: str) -> None:
    if value is None:
        raise InputError(f"task {task!r} needs {what}")


def _response(task: str, text: str | None, image: Codes | None, speech: Codes | None) -> list[Segment]:
    segs: list[Segment] = []
    for kind in TASKS[task].outputs:
        if kind == "text" and text is not None:
            segs.append(TextSegment(text))
        elif kind == "image" and image is not None:
            segs.append(ImageSegment(image))
        elif kind == "speech" and speech is not None:
            segs.append(SpeechSegment(speech))
    return segs


def task_conversation(task: str, *, style: str = "official", text: str | None = None, image: Codes | None = None,
                      speech: Codes | None = None, instruction: str | None = None,
                      response_text: str | None = None, response_image: Codes | None = None,
                      response_speech: Codes | None = None) -> Conversation:
    """Build the single-turn conversation of ``task`` (``tts``, ``asr``, ``caption``, ``t2i``, ``chat_image``,
    ``chat_speech``). Without a response it is a generation prompt.

    Example::

        conv = task_conversation("asr", speech=codes)                         # prompt
        conv = task_conversation("asr", speech=codes, response_text="hi")     # training sample
    """
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}", f"one of {', '.join(TASKS)}")
    if style not in ("official", "paper"):
        raise InputError(f"unknown prompt style {style!r}", "official or paper")
    spec = TASKS[task]
    instr = instruction if instruction is not None else (
        spec.official_instruction if style == "official" else spec.paper_instruction)
    if instr is None:
        raise InputError(f"task {task!r} has no official template", "use style='paper' or build the chat turn")
    for kind in spec.inputs:
        _need({"text": text, "image": image, "speech": speech}[kind], kind, task)

    prefix_override = None
    user: list[Segment]
    if style == "official":
        if task == "tts":
            user = [TextSegment(instr), TextSegment("This is input: "), TextSegment(text)]
        elif task == "t2i":
            # The official T2I prompt puts spaces around its pieces and before "GPT:" (§C.2).
            user = [TextSegment(instr), TextSegment(" This is input: "), TextSegment(text)]
            prefix_override = " GPT:"
        elif task == "asr":
            user = [TextSegment(instr), SpeechSegment(speech)]
        else:  # caption
            user = [ImageSegment(image), TextSegment(instr)]
    else:
        if task in ("tts", "t2i"):
            user = [TextSegment(f"{instr} {text}")]
        elif task == "asr":
            user = [TextSegment(instr), SpeechSegment(speech)]
        elif task == "caption":
            user = [TextSegment(instr), ImageSegment(image)]
        else:  # chat_image, chat_speech: audio first, then the instruction
            user = [SpeechSegment(speech), TextSegment(instr)]
    turns = [Turn("user", user, assistant_prefix=prefix_override)]
    resp = _response(task, response_text, response_image, response_speech)
    if resp:
        turns.append(Turn("assistant", resp))
    chat = task.startswith("chat_")
    return Conversation(turns, chat=chat, task=task)


def official_chat_turn(*, speech: Codes | None = None, text: str | None = None,
                       images: Sequence[Codes] = (), append_text: str | None = OFFICIAL_CHAT_APPEND) -> Turn:
    """A user turn as the official ``inference_chat.py`` builds it: images, then the speech (or typed text,
    which goes in as text — no external TTS), then the appended instruction."""
    if speech is None and text is None:
        raise InputError("a chat turn needs speech or text")
    segs: list[Segment] = [ImageSegment(c) for c in images]
    segs.append(SpeechSegment(speech) if speech is not None else TextSegment(text))
    if append_text:
        segs.append(TextSegment(append_text))
    return Turn("user", segs)
