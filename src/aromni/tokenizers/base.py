"""The common interface of the modality tokenizers (text BPE, image VQGAN, speech codecs).

Every tokenizer is saved as a directory holding ``config.json`` (with a ``"type"`` field naming its class in
:data:`TOKENIZER_TYPES`) plus its weights (``model.safetensors``) or vocabulary (``tokenizer.json``).
:func:`load_tokenizer` opens any of them. Codes are codebook indices (``0..codebook_size-1``); a
:class:`~aromni.vocab.layout.VocabLayout` turns them into token ids of the joint vocabulary. Speech stream
decoders follow the one streaming protocol of :mod:`aromni.tokenizers.streaming` (``SpeechStreamDecoder`` is
re-exported here).
"""

from __future__ import annotations

import abc
import contextlib
import importlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:  # Pillow is an optional extra
    from PIL import Image

from aromni.errors import CheckpointError
from aromni.tokenizers.streaming import SpeechStreamDecoder
from aromni.utils.io import JSONValue, read_json

__all__ = ["TOKENIZER_TYPES", "ImageTokenizer", "SpeechStreamDecoder", "SpeechTokenizer", "Tokenizer",
           "load_tokenizer", "tokenizer_class"]

#: ``config.json["type"]`` -> ``"module:Class"``; classes are imported lazily so optional extras stay optional.
TOKENIZER_TYPES: dict[str, str] = {
    "bpe": "aromni.tokenizers.text:TextTokenizer",
    "chameleon_vqgan": "aromni.tokenizers.image.vqgan:VQGAN",
    "llamagen_vq": "aromni.tokenizers.image.llamagen_vq:LlamaGenVQ",
    "wavtokenizer": "aromni.tokenizers.speech.wavtokenizer.model:WavTokenizer",
    "aromni_codec": "aromni.tokenizers.speech.codec.model:StreamingCodec",
    "fsq_speech": "aromni.cosyvoice.fsq_tokenizer:FSQSpeechTokenizer",
}


class Tokenizer(abc.ABC):
    """Base of all modality tokenizers."""

    #: ``"text"``, ``"image"`` or ``"speech"``.
    modality: ClassVar[str]
    #: value of ``config.json["type"]``.
    type_name: ClassVar[str]

    @property
    @abc.abstractmethod
    def codebook_size(self) -> int:
        """Number of distinct codes (text: BPE vocabulary size)."""

    @abc.abstractmethod
    def metadata(self) -> dict[str, JSONValue]:
        """Facts a user or a layout needs: codebook size, codes per second or per image, rates, sizes."""

    @abc.abstractmethod
    def save_pretrained(self, path: str | Path) -> None:
        """Write ``config.json`` + weights into directory ``path`` (atomically)."""

    @classmethod
    @abc.abstractmethod
    def from_pretrained(cls, path: str | Path, **kwargs: object) -> Tokenizer:
        """Load a tokenizer saved by :meth:`save_pretrained`."""


class ImageTokenizer(Tokenizer, torch.nn.Module):
    """Images <-> code grids. Codes are flattened row-major: ``codes[b, r * w + c]``."""

    modality = "image"

    @property
    @abc.abstractmethod
    def image_size(self) -> int:
        """Side of the square images the model encodes and decodes (pixels)."""

    @property
    @abc.abstractmethod
    def grid(self) -> tuple[int, int]:
        """Code grid ``(h, w)``; ``h * w`` codes per image."""

    @property
    def codes_per_image(self) -> int:
        h, w = self.grid
        return h * w

    @abc.abstractmethod
    def encode(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """PIL images (any size/mode; preprocessed) or a tensor ``[B, 3, H, W]`` in [-1, 1] -> codes ``[B, h*w]``."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, h*w]`` -> images ``[B, 3, H, W]`` (unclamped model output, roughly in [-1, 1])."""


class SpeechTokenizer(Tokenizer, torch.nn.Module):
    """Mono waveforms at :attr:`sample_rate` <-> one code per frame of :attr:`hop_length` samples."""

    modality = "speech"

    @property
    @abc.abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abc.abstractmethod
    def hop_length(self) -> int:
        """Samples per code frame."""

    @property
    def frame_rate(self) -> float:
        """Codes per second."""
        return self.sample_rate / self.hop_length

    @abc.abstractmethod
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` float waveform at :attr:`sample_rate` -> codes ``[B, ceil(T / hop)]``."""

    @abc.abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``[B, F]`` -> waveform ``[B, F * hop]``."""

    @abc.abstractmethod
    def stream_decoder(self, batch_size: int = 1, **options: object) -> SpeechStreamDecoder:
        """A decoder, already streaming, turning codes pushed a few frames at a time into audio chunks."""

    @contextlib.contextmanager
    def streaming(self, batch_size: int = 1, **options: object) -> Iterator[SpeechStreamDecoder]:
        """``with tok.streaming(B) as dec: dec.push(codes)``; the stream's state is dropped on exit."""
        with self.stream_decoder(batch_size, **options).streaming(batch_size) as dec:
            yield dec


def tokenizer_class(type_name: str) -> type[Tokenizer]:
    if type_name not in TOKENIZER_TYPES:
        raise CheckpointError(f"unknown tokenizer type {type_name!r}", f"one of {', '.join(TOKENIZER_TYPES)}")
    module, cls = TOKENIZER_TYPES[type_name].split(":")
    return getattr(importlib.import_module(module), cls)


def load_tokenizer(path: str | Path, **kwargs: object) -> Tokenizer:
    """Open any tokenizer directory written by ``save_pretrained`` (dispatches on ``config.json["type"]``)."""
    path = Path(path)
    cfg = read_json(path / "config.json")
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise CheckpointError(f"{path / 'config.json'} has no 'type' field", "is this a tokenizer directory?")
    return tokenizer_class(cfg["type"]).from_pretrained(path, **kwargs)
