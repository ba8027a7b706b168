"""Generation prompts from world records, built exactly as the training samples were.

The data builder's ``dialogs`` source turns a record into a :class:`~aromni.vocab.conversation.Conversation`
(media files replaced by their codes: images through ``load_image`` + the image tokenizer, audio through
``load_audio`` at the codec's rate + the speech tokenizer) and encodes it with the bundle's prompt style.
Here the same conversation is cut after a user turn: encoding a conversation that ends with a user turn gives the
ids up to and including the assistant prefix, i.e. the prompt the model saw before each response in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aromni.errors import InputError
from aromni.inference.omni import OmniModel
from aromni.tokenizers.image.image_io import load_image
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.toyworld.records import RecordSegment, WorldRecord
from aromni.vocab.conversation import (
    Conversation,
    ImageSegment,
    Segment,
    SpeechSegment,
    TextSegment,
    Turn,
    encode_conversation,
)


class MediaEncoder:
    """World media files -> codes with a bundle's tokenizers (cached: an image used by several records is
    encoded once)."""

    def __init__(self, model: OmniModel, root: str | Path):
        self.model, self.root = model, Path(root)
        self._images: dict[str, np.ndarray] = {}
        self._speech: dict[str, np.ndarray] = {}

    def path(self, rel: str) -> Path:
        p = Path(rel)
        p = p if p.is_absolute() else self.root / p
        if not p.is_file():
            raise InputError(f"{p}: no such file", "is --world the world these records come from?")
        return p

    @torch.no_grad()
    def image(self, rel: str) -> np.ndarray:
        if rel not in self._images:
            codes = self.model.image.encode([load_image(self.path(rel))])
            self._images[rel] = codes[0].cpu().numpy().astype(np.int64)
        return self._images[rel]

    def waveform(self, rel: str) -> torch.Tensor:
        """``[T]`` float32 at the codec's sample rate."""
        return load_audio(self.path(rel), self.model.speech.sample_rate)

    @torch.no_grad()
    def speech(self, rel: str) -> np.ndarray:
        if rel not in self._speech:
            wav = self.waveform(rel).to(_device(self.model.speech))
            self._speech[rel] = self.model.speech.encode(wav[None])[0].cpu().numpy().astype(np.int64)
        return self._speech[rel]


def _device(module: object) -> torch.device:
    p = next(module.parameters(), None) if hasattr(module, "parameters") else None
    return p.device if p is not None else torch.device("cpu")


def record_turns(record: WorldRecord, media: MediaEncoder, n_turns: int | None = None) -> list[Turn]:
    """The record's first ``n_turns`` turns (all by default) with media replaced by codes."""
    out = []
    for t in record["turns"][:n_turns]:
        segs: list[Segment] = []
        for s in t["segments"]:
            if s["type"] == "text":
                segs.append(TextSegment(s["text"]))
            elif s["type"] == "image":
                segs.append(ImageSegment(media.image(s["path"])))
            else:
                segs.append(SpeechSegment(media.speech(s["path"]), transcript=s.get("transcript")))
        out.append(Turn(t["role"], segs))
    return out


def encode_prompt(model: OmniModel, turns: Sequence[Turn], chat: bool | None = None) -> list[int]:
    """Ids of ``turns`` (ending with a user turn) in the bundle's prompt style: a generation prompt."""
    if not turns or turns[-1].role != "user":
        raise InputError("a generation prompt must end with a user turn")
    conv = Conversation(list(turns), chat=chat)
    return encode_conversation(conv, model.layout, model.text, model.style).ids.tolist()


def record_prompt(model: OmniModel, record: WorldRecord, media: MediaEncoder, user_turn: int = 0) -> list[int]:
    """Prompt for the assistant turn after user turn ``user_turn`` (0-based count of user turns), with the
    record's own earlier turns as history."""
    n = 2 * user_turn + 1
    if len(record["turns"]) < n or record["turns"][n - 1]["role"] != "user":
        raise InputError(f"record {record.get('id')}: no user turn {user_turn}")
    chat = record.get("chat") if isinstance(record.get("chat"), bool) else None
    if chat is None:  # as the data builder decides it: chat when the whole record has several user turns
        chat = sum(t["role"] == "user" for t in record["turns"]) > 1
    return encode_prompt(model, record_turns(record, media, n), chat)


def reference_segment(record: WorldRecord, turn: int, kind: str) -> RecordSegment | None:
    """The first ``kind`` segment of turn ``turn`` of a record (``None`` when there is none)."""
    return next((s for s in record["turns"][turn]["segments"] if s["type"] == kind), None)
