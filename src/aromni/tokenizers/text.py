"""Text BPE tokenizer on Hugging Face ``tokenizers``.

Text token ids are ids of the joint vocabulary directly:

* Chameleon's ``text_tokenizer.json`` (and the AR-Omni tokenizer directory) already spans all 65,536 ids;
* a BPE we train reserves the layout's special-token strings as its first ids (so ``<s>`` gets ``layout.bos``)
  and puts its merges right after them, which is where :meth:`VocabLayout.compact` places the text range.

User text is encoded with ``encode_special_tokens`` on: a literal ``"</s>"`` typed by a user stays text and can
never inject a control token. Special tokens come from the :class:`~aromni.vocab.layout.VocabLayout`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer as HFTokenizer

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.tokenizers.base import Tokenizer
from aromni.utils.io import JSONValue, atomic_path, atomic_write_json, read_json

if TYPE_CHECKING:  # annotation only: importing aromni.vocab here would import this module back at run time
    from aromni.vocab.layout import VocabLayout

TOKENIZER_FILE = "tokenizer.json"

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: object, what: str = "text") -> str:
    """``text`` if it is a string of valid Unicode, else :class:`InputError` naming the problem.

    Python strings may hold unpaired surrogates (``"\\ud800"``, from ``surrogateescape`` decoding or broken
    JSON) that no encoding can write; the tokenizers library refuses them with a bare ``TypeError``. Control
    characters are valid text and pass.
    """
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string, got {type(text).__name__}")
    if not text.isascii():
        m = _SURROGATE.search(text)
        if m is not None:
            raise InputError(f"{what} contains an unpaired surrogate {m.group()!r} at position {m.start()}",
                             "the string is not valid Unicode; fix its source or decode it with errors='replace'")
    return text


class TextTokenizer(Tokenizer):
    """A BPE text tokenizer producing joint-vocabulary ids.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``.
        source: where it came from (for messages).
    """

    modality = "text"
    type_name = "bpe"

    def __init__(self, tokenizer: HFTokenizer, source: str = "<memory>"):
        self._tk = tokenizer
        self._tk.encode_special_tokens = True
        self.source = source

    # ------------------------------------------------------------------ protocol
    @property
    def codebook_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    @property
    def vocab_size(self) -> int:
        return self.codebook_size

    def metadata(self) -> dict[str, JSONValue]:
        return {"modality": "text", "type": self.type_name, "vocab_size": self.vocab_size}

    def encode(self, text: str) -> list[int]:
        """Text -> ids (no bos/eos added; special-token strings in ``text`` stay plain text).

        Raises :class:`InputError` for a non-string or a string with an unpaired surrogate (:func:`check_text`).
        """
        return self._tk.encode(check_text(text), add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InputError(f"encode_batch takes a list of strings, got {type(texts).__name__}")
        for i, t in enumerate(texts):
            check_text(t, f"text {i}")
        return [e.ids for e in self._tk.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        try:
            return self._tk.decode(list(ids), skip_special_tokens=skip_special_tokens)
        except (TypeError, OverflowError, ValueError):  # a non-integer or negative id
            raise InputError("decode takes a list of non-negative integer token ids") from None

    @cached_property
    def max_chars_per_token(self) -> int | None:
        """The most characters of input text one token can stand for, or ``None`` when that is unbounded.

        Without a normalizer and without fused unknown tokens, every token covers at most as many characters as
        its vocabulary string is long (byte-level BPE: one symbol per byte), so a text of ``n`` characters needs
        at least ``n / max_chars_per_token`` tokens. Callers use it to refuse a text that cannot fit a context
        before tokenizing all of it. A normalizer (which may delete characters) or ``fuse_unk`` voids the bound.
        """
        if self._tk.normalizer is not None:
            return None
        model = self._tk.model
        if getattr(model, "unk_token", None) is not None and getattr(model, "fuse_unk", False):
            return None
        return max((len(t) for t in self._tk.get_vocab(with_added_tokens=True)), default=1) or 1

    def token_to_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self._tk.id_to_token(i)

    def check_layout(self, layout: VocabLayout) -> None:
        """Raise :class:`ConfigError` unless every special-token string has the layout's id in this tokenizer."""
        for role, i in layout.special.items():
            name = layout.special_names.get(role)
            got = self._tk.token_to_id(name) if name else None
            if got is not None and got != i:
                raise ConfigError(f"tokenizer {self.source} gives {name!r} id {got}, the layout says {i}",
                                  "the tokenizer and the vocabulary layout come from different models")
        text = layout.text_ids
        if len(text) and int(text.max()) >= self.vocab_size:
            raise ConfigError(f"layout text ids reach {int(text.max())}, past the tokenizer's {self.vocab_size}")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def from_file(cls, path: str | Path) -> TextTokenizer:
        """Load a ``tokenizers`` JSON file (e.g. Chameleon's ``text_tokenizer.json``)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such tokenizer file", "pass a tokenizer.json / text_tokenizer.json")
        try:
            return cls(HFTokenizer.from_file(str(path)), source=str(path))
        except Exception as e:  # tokenizers raises a generic Exception on malformed JSON
            raise CheckpointError(f"{path}: not a valid tokenizers file ({e})") from None

    @classmethod
    def from_pretrained(cls, path: str | Path, **_: object) -> TextTokenizer:
        """Load from our tokenizer directory, an HF/AR-Omni tokenizer directory, a Chameleon ``tokenizer/``
        directory, or a tokenizer JSON file."""
        path = Path(path)
        if path.is_file():
            return cls.from_file(path)
        for candidate in (TOKENIZER_FILE, "text_tokenizer.json", "tokenizer/text_tokenizer.json"):
            if (path / candidate).is_file():
                if (path / "config.json").is_file() and candidate == TOKENIZER_FILE:
                    cfg = read_json(path / "config.json")
                    if isinstance(cfg, dict) and cfg.get("type") not in (None, cls.type_name):
                        raise CheckpointError(f"{path} holds a {cfg.get('type')!r} tokenizer, not a text BPE")
                return cls.from_file(path / candidate)
        raise CheckpointError(f"{path}: no tokenizer.json or text_tokenizer.json found",
                              "pass the tokenizer directory or file")

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / TOKENIZER_FILE) as tmp:
            self._tk.save(str(tmp))
        atomic_write_json(path / "config.json", {"type": self.type_name, **self.metadata()})

    # ------------------------------------------------------------------ training
    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str], *,
              min_frequency: int = 2, show_progress: bool = False) -> TextTokenizer:
        """Train a byte-level BPE whose first ids are ``special_tokens`` (in order).

        Args:
            texts: training corpus (strings).
            vocab_size: total size including the special tokens and the 256-byte alphabet.
            special_tokens: e.g. ``layout.special_token_strings()`` for a compact layout.
        """
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < len(special_tokens) + 256:
            raise ConfigError(f"BPE vocab_size {vocab_size} is too small",
                              f"need at least {len(special_tokens) + 256} (specials + 256 bytes)")
        tk = HFTokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(special_tokens), show_progress=show_progress,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tk.train_from_iterator(texts, trainer)
        for i, s in enumerate(special_tokens):
            assert tk.token_to_id(s) == i, "tokenizers must assign special tokens first"
        return cls(tk, source="trained")
