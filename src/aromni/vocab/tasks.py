"""The task registry: every task the package knows, written once, like the token ids in ``VocabLayout``.

A :class:`Task` holds everything the rest of the code asks about a task:

* its name (what shards, configs, the toy world and the API call it) and the official training code's aliases
  (``text_to_speech`` is ``tts``);
* its input and output modalities;
* its prompt templates: the official code's instruction and the paper's (Table 10); the layout of the user turn
  is built by :func:`aromni.vocab.templates.task_conversation` from these fields;
* its decode policy: the official per-task generation settings, as overrides of
  :class:`aromni.inference.options.DecodeOptions` (``None`` for a task that is trained on but not served);
* its loss-tail weighting: whether its assistant text targets are up-weighted by default (paper eq. 2, official
  ``--response_weighted_tasks``: captioning and ASR).

Code elsewhere names a task through the constants below (``TTS.name``, ``get_task("asr")`` on user input), never
through a string literal; adding a task is one entry in :data:`_ENTRIES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from aromni.errors import InputError

Modality = Literal["text", "image", "speech"]
#: A value of a ``DecodeOptions`` override: a number, a flag, a stop-token role list or a nested mapping.
OverrideValue = bool | int | float | str | list[str] | Mapping[str, bool | int | float]


@dataclass(frozen=True)
class Task:
    """One task. See the module docstring for what each field is for.

    Attributes:
        name: our name (``"tts"``).
        aliases: the official training code's names of the same task (``("text_to_speech",)``).
        inputs, outputs: modalities of the user turn and of the assistant reply, in order.
        official_instruction: the official code's instruction; ``None`` when it has no single-turn template.
        paper_instruction: the paper's Table 10 instruction; ``None`` when the paper has none.
        decode: official generation settings as ``DecodeOptions`` overrides; ``None`` = not served by
            :meth:`OmniModel.options`.
        tail_weighted: up-weight its assistant text targets by default (``loss.tail_tasks``).
        chat: a dialog task (its conversation carries the chat flag).
    """

    name: str
    inputs: tuple[Modality, ...]
    outputs: tuple[Modality, ...]
    aliases: tuple[str, ...] = ()
    official_instruction: str | None = None
    paper_instruction: str | None = None
    decode: Mapping[str, OverrideValue] | None = None
    tail_weighted: bool = False
    chat: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.decode is not None:  # read-only: a caller cannot change the official settings for everyone
            object.__setattr__(self, "decode", MappingProxyType(dict(self.decode)))


# ``text.greedy=True`` (TTS, ASR, caption) is each row's *starting* mode, not a promise that nothing is ever
# sampled: the official switch (aromni.inference.fsm) keeps greedy on inside speech spans (``<boa>`` turns it on)
# and turns sampling on after ``<eoa>`` or ``<res>``. So in TTS the speech codes are always greedy, while
# ``text.temperature``/``top_p``/``top_k`` apply only to tokens after the model closes a speech span with
# ``<eoa>`` (typically the stop token), as in the official decoder. ``text.repetition_penalty`` applies in greedy
# mode too (it can move the argmax), to text and speech codes alike. Image settings matter only where images are
# allowed (T2I, chat).
_GREEDY_TEXT_TASK: dict[str, OverrideValue] = {"text": {"greedy": True}, "allow_image": False, "extra_eos": ["eom"]}

#: Every task, in the order they are listed to users.
_ENTRIES: tuple[Task, ...] = (
    Task("tts", ("text",), ("speech",), aliases=("text_to_speech",),
         official_instruction="Convert this text into speech.", paper_instruction="Convert the text to speech:",
         # Speech codes are always greedy (the FSM turns greedy on after <boa>); the text settings only reach
         # tokens outside the speech span, chiefly the stop token after <eoa>.
         decode={**_GREEDY_TEXT_TASK, "max_new_tokens": 1024}, description="text to speech"),
    Task("asr", ("speech",), ("text",), aliases=("speech_to_text",),
         official_instruction="Can you please convert this speech into written text?",
         paper_instruction="Transcribe the audio.", decode={**_GREEDY_TEXT_TASK, "max_seq_len": 1024},
         tail_weighted=True, description="speech to text"),
    Task("caption", ("image",), ("text",), aliases=("image_caption", "image_to_text"),
         official_instruction="Describe this image.", paper_instruction="Describe the image.",
         decode={**_GREEDY_TEXT_TASK, "max_new_tokens": 128}, tail_weighted=True,
         description="image to text (image-first documents train like captioning)"),
    Task("t2i", ("text",), ("image",), aliases=("text_to_image",),
         official_instruction="Create a picture that matches the essence of this text.",
         paper_instruction="Create an image for:",
         # Image only (official txt=False), the CLI/README image guidance scale 1.32, image temperature 1.0.
         decode={"allow_text": False, "extra_eos": ["eom"], "image": {"guidance_scale_image": 1.32,
                                                                      "temperature": 1.0}},
         description="text to image"),
    Task("chat", ("text", "image", "speech"), ("text", "image", "speech"), decode={"extra_eos": ["eom"]},
         chat=True, description="multi-turn dialog (the official inference_chat.py runner)"),
    Task("chat_image", ("speech",), ("text", "image"),
         paper_instruction="Transcribe the audio and generate an image for the transcript.", chat=True,
         description="paper Table 10: speech in, transcript then image out"),
    Task("chat_speech", ("speech",), ("text",), paper_instruction="Reply in text.", chat=True,
         description="paper Table 10: speech in, text reply out"),
    Task("s2i", ("speech",), ("image",), aliases=("speech_to_image",), description="speech to image"),
    Task("text", ("text",), ("text",), aliases=("text_to_text",), description="text-only documents"),
    # Toy-world dialog tasks (aromni.toyworld): trained on and scored, served through chat.
    Task("vqa_text", ("image", "text"), ("text",), description="a typed question about an image"),
    Task("vqa_speech", ("image", "speech"), ("speech",), description="a spoken question about an image"),
    Task("s2s", ("speech",), ("speech",), description="a spoken question, a spoken answer"),
    Task("s2t", ("speech",), ("text",), description="a spoken question, a typed answer"),
    Task("text_qa", ("text",), ("text",), description="a typed question, a typed answer"),
)

#: Every task by name.
TASKS: Mapping[str, Task] = MappingProxyType({t.name: t for t in _ENTRIES})
#: Official training-code name -> our task.
ALIASES: Mapping[str, Task] = MappingProxyType({a: t for t in _ENTRIES for a in t.aliases})

TTS, ASR, CAPTION, T2I, CHAT, CHAT_IMAGE, CHAT_SPEECH, S2I, TEXT = (
    TASKS[n] for n in ("tts", "asr", "caption", "t2i", "chat", "chat_image", "chat_speech", "s2i", "text"))
VQA_TEXT, VQA_SPEECH, S2S, S2T, TEXT_QA = (TASKS[n] for n in ("vqa_text", "vqa_speech", "s2s", "s2t", "text_qa"))


def get_task(name: str | Task) -> Task:
    """The task called ``name`` (ours or an official alias, any case); :class:`InputError` otherwise."""
    if isinstance(name, Task):
        return name
    key = str(name).strip().lower()
    task = TASKS.get(key) or ALIASES.get(key)
    if task is None:
        raise InputError(f"unknown task {name!r}", f"one of {', '.join(TASKS)} (or an official name: "
                         f"{', '.join(ALIASES)})")
    return task


def canonical_task(name: str | Task) -> str:
    """Our name for ``name``: official names are mapped, ours kept; an unknown name is returned lower-cased
    (shards may carry tasks of a user's own data, which train like any other)."""
    if isinstance(name, Task):
        return name.name
    key = str(name).strip().lower()
    task = TASKS.get(key) or ALIASES.get(key)
    return task.name if task is not None else key


def canonical_tasks(names: Iterable[str | Task]) -> frozenset[str]:
    return frozenset(canonical_task(n) for n in names)


def served_tasks() -> tuple[Task, ...]:
    """Tasks with a decode policy, in listing order (what :meth:`OmniModel.options` accepts)."""
    return tuple(t for t in _ENTRIES if t.decode is not None)


def tail_weighted_tasks() -> tuple[str, ...]:
    """The default of ``loss.tail_tasks``."""
    return tuple(t.name for t in _ENTRIES if t.tail_weighted)
