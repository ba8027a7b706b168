"""Task templates: build the :class:`Conversation` of each task in the official or the paper's format.

``official`` reproduces the prompts of the official AR-Omni code id for id (``official-formats.md`` §C.2, encoded
with :data:`~aromni.vocab.conversation.OFFICIAL`); ``paper`` follows Table 10 of the paper (encoded with
:data:`~aromni.vocab.conversation.PAPER`). Every builder takes the task's inputs (text, image codes, speech codes)
and optionally the response, so the same function serves training data (with a response) and generation
prompts (without one).
"""

from __future__ import annotations

from collections.abc import Sequence
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
from aromni.vocab.tasks import ASR, CAPTION, T2I, TTS, Task, get_task

Codes = Sequence[int] | np.ndarray


#: The official chat runner's default instruction appended after the user's speech.
OFFICIAL_CHAT_APPEND = "Please acknowledge the user's vocal input, create a textual response."


def _need(value: object, what: str, task: str) -> None:
    if value is None:
        raise InputError(f"task {task!r} needs {what}")


def _response(task: Task, text: str | None, image: Codes | None, speech: Codes | None) -> list[Segment]:
    segs: list[Segment] = []
    for kind in task.outputs:
        if kind == "text" and text is not None:
            segs.append(TextSegment(text))
        elif kind == "image" and image is not None:
            segs.append(ImageSegment(image))
        elif kind == "speech" and speech is not None:
            segs.append(SpeechSegment(speech))
    return segs


def task_conversation(task: str | Task, *, style: str = "official", text: str | None = None, image: Codes | None = None,
                      speech: Codes | None = None, instruction: str | None = None,
                      response_text: str | None = None, response_image: Codes | None = None,
                      response_speech: Codes | None = None) -> Conversation:
    """Build the single-turn conversation of ``task`` (a :class:`~aromni.vocab.tasks.Task` or its name: one with
    an instruction in ``style``). Without a response it is a generation prompt.

    Example::

        conv = task_conversation("asr", speech=codes)                         # prompt
        conv = task_conversation("asr", speech=codes, response_text="hi")     # training sample
    """
    spec = get_task(task)
    if style not in ("official", "paper"):
        raise InputError(f"unknown prompt style {style!r}", "official or paper")
    instr = instruction if instruction is not None else (
        spec.official_instruction if style == "official" else spec.paper_instruction)
    if instr is None:
        raise InputError(f"task {spec.name!r} has no {style} template",
                         "use the other style, or build the chat turn")
    for kind in spec.inputs:
        _need({"text": text, "image": image, "speech": speech}[kind], kind, spec.name)

    prefix_override = None
    user: list[Segment]
    if style == "official":
        if spec is TTS:
            user = [TextSegment(instr), TextSegment("This is input: "), TextSegment(text)]
        elif spec is T2I:
            # The official T2I prompt puts spaces around its pieces and before "GPT:" (§C.2).
            user = [TextSegment(instr), TextSegment(" This is input: "), TextSegment(text)]
            prefix_override = " GPT:"
        elif spec is ASR:
            user = [TextSegment(instr), SpeechSegment(speech)]
        else:  # caption
            user = [ImageSegment(image), TextSegment(instr)]
    else:
        if spec in (TTS, T2I):
            user = [TextSegment(f"{instr} {text}")]
        elif spec is ASR:
            user = [TextSegment(instr), SpeechSegment(speech)]
        elif spec is CAPTION:
            user = [TextSegment(instr), ImageSegment(image)]
        else:  # chat_image, chat_speech: audio first, then the instruction
            user = [SpeechSegment(speech), TextSegment(instr)]
    turns = [Turn("user", user, assistant_prefix=prefix_override)]
    resp = _response(spec, response_text, response_image, response_speech)
    if resp:
        turns.append(Turn("assistant", resp))
    return Conversation(turns, chat=spec.chat, task=spec.name)


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
