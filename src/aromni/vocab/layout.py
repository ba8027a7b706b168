"""The vocabulary layout: the one object that owns every token id.

AR-Omni reads and writes text, image codes and speech codes as one token stream over a joint vocabulary. This
module says which id is which: the special tokens (bos, eos, pad, boi, eoi, boa, eoa, eoh, eom, INS, RES), the
text ids, the image-code ids and the speech-code ids. No other module writes a token id literally; everything
asks a :class:`VocabLayout`.

Two presets:

* :meth:`VocabLayout.aromni_7b`: the official AR-Omni / Chameleon / Anole layout (65,536 ids). Image codes map
  through the ``IMGIMG<letters>Z`` names of a Chameleon ``text_tokenizer.json`` when one is given, else through
  the ``id = code + 4`` rule those names follow.
* :meth:`VocabLayout.compact`: contiguous ranges ``[specials][reserved][text][image][speech][padding]`` for the
  models we train.

Code <-> id maps are vectorized and accept Python ints/lists, numpy arrays or torch tensors.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Union

import numpy as np
import numpy.typing as npt
import torch

from aromni.errors import ConfigError, InputError
from aromni.utils.io import JSONValue

ArrayLike = Union[int, Sequence[int], np.ndarray, torch.Tensor]
#: What :meth:`CodeRange.to_ids` / :meth:`CodeRange.to_codes` return: the input's container type (a Python int or
#: list for Python input, an int64 array for numpy input, a long tensor for tensor input).
IdsLike = int | list[int] | npt.NDArray[np.int64] | torch.Tensor
#: What :meth:`CodeRange.contains` returns: a boolean array (or numpy bool for a scalar) or a boolean tensor.
MaskLike = npt.NDArray[np.bool_] | np.bool_ | torch.Tensor

#: The roles every layout defines, in the order compact layouts assign them.
SPECIAL_ROLES: tuple[str, ...] = ("pad", "bos", "eos", "boi", "eoi", "boa", "eoa", "eoh", "eom", "ins", "res")

#: Token strings compact layouts give the special roles (also the strings our BPE tokenizers reserve).
COMPACT_SPECIAL_NAMES: dict[str, str] = {
    "pad": "<pad>", "bos": "<s>", "eos": "</s>", "boi": "<boi>", "eoi": "<eoi>", "boa": "<boa>",
    "eoa": "<eoa>", "eoh": "<eoh>", "eom": "<eom>", "ins": "<ins>", "res": "<res>",
}


def _runs(ids: np.ndarray) -> list[list[int]]:
    """Compress a code->id table into ``[[start, stop), ...]`` runs of consecutive ids (for JSON)."""
    if ids.size == 0:
        return []
    breaks = np.nonzero(np.diff(ids) != 1)[0] + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [ids.size]])
    return [[int(ids[a]), int(ids[b - 1]) + 1] for a, b in zip(starts, stops)]


#: Largest vocabulary a layout may describe (Chameleon / AR-Omni use 65,536 ids); bounds what a malformed
#: config can make us allocate.
MAX_VOCAB = 1 << 24


def _from_runs(runs: Iterable[Sequence[int]]) -> np.ndarray:
    parts = [np.arange(int(a), int(b), dtype=np.int64) for a, b in runs]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class CodeRange:
    """Maps the codes ``0..size-1`` of one modality (image or speech) to token ids, and back.

    Attributes:
        modality: ``"image"`` or ``"speech"``.
        code_to_id: int64 array ``[size]``; ``code_to_id[c]`` is the token id of code ``c``.
    """

    modality: str
    code_to_id: np.ndarray

    @classmethod
    def contiguous(cls, modality: str, start: int, size: int) -> CodeRange:
        return cls(modality, np.arange(start, start + size, dtype=np.int64))

    @property
    def size(self) -> int:
        return int(self.code_to_id.size)

    @cached_property
    def is_contiguous(self) -> bool:
        return self.size == 0 or bool(np.all(np.diff(self.code_to_id) == 1))

    @property
    def start(self) -> int:
        """Smallest id of the range (the offset when the range is contiguous)."""
        return int(self.code_to_id.min())

    @property
    def stop(self) -> int:
        return int(self.code_to_id.max()) + 1

    @cached_property
    def _id_to_code(self) -> np.ndarray:
        table = np.full(self.stop, -1, dtype=np.int64)
        table[self.code_to_id] = np.arange(self.size, dtype=np.int64)
        return table

    @cached_property
    def _torch_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.code_to_id), torch.from_numpy(self._id_to_code)

    def to_ids(self, codes: ArrayLike) -> IdsLike:
        """Codes ``[...]`` -> token ids ``[...]`` (same container type). Raises on codes out of range."""
        if isinstance(codes, torch.Tensor):
            if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.size):
                raise InputError(f"{self.modality} code out of range [0, {self.size})")
            if self.is_contiguous:
                return codes.long() + self.start
            return self._torch_tables[0].to(codes.device)[codes.long()]
        arr = np.asarray(codes, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= self.size):
            raise InputError(f"{self.modality} code out of range [0, {self.size})")
        out = arr + self.start if self.is_contiguous else self.code_to_id[arr]
        return out.tolist() if isinstance(codes, (list, tuple, int)) else out

    def to_codes(self, ids: ArrayLike) -> IdsLike:
        """Token ids ``[...]`` -> codes ``[...]``. Raises if an id is not in this range."""
        if isinstance(ids, torch.Tensor):
            if self.is_contiguous:
                out = ids.long() - self.start
                bad = (out < 0) | (out >= self.size)
            else:
                table = self._torch_tables[1].to(ids.device)
                inside = (ids >= 0) & (ids < table.numel())
                out = torch.where(inside, table[ids.long().clamp(0, table.numel() - 1)], -1)
                bad = out < 0
            if bool(bad.any()):
                raise InputError(f"token id outside the {self.modality} range")
            return out
        arr = np.asarray(ids, dtype=np.int64)
        if self.is_contiguous:
            out = arr - self.start
            bad = (out < 0) | (out >= self.size)
        else:
            inside = (arr >= 0) & (arr < self.stop)
            out = np.where(inside, self._id_to_code[np.clip(arr, 0, self.stop - 1)], -1)
            bad = out < 0
        if np.any(bad):
            raise InputError(f"token id outside the {self.modality} range")
        return out.tolist() if isinstance(ids, (list, tuple, int)) else out

    def contains(self, ids: ArrayLike) -> MaskLike:
        """Boolean mask: which ids belong to this range."""
        if isinstance(ids, torch.Tensor):
            if self.is_contiguous:
                return (ids >= self.start) & (ids < self.stop)
            table = self._torch_tables[1].to(ids.device)
            inside = (ids >= 0) & (ids < table.numel())
            return inside & (table[ids.long().clamp(0, table.numel() - 1)] >= 0)
        arr = np.asarray(ids, dtype=np.int64)
        inside = (arr >= 0) & (arr < self.stop)
        return inside & (self._id_to_code[np.clip(arr, 0, self.stop - 1)] >= 0)

    def to_dict(self) -> dict[str, JSONValue]:
        if self.is_contiguous:
            return {"start": self.start if self.size else 0, "size": self.size}
        return {"runs": _runs(self.code_to_id)}

    @classmethod
    def from_dict(cls, modality: str, d: Mapping[str, object]) -> CodeRange:
        if "runs" in d:
            return cls(modality, _from_runs(d["runs"]))
        return cls.contiguous(modality, int(d["start"]), int(d["size"]))


@dataclass(frozen=True, eq=False)
class VocabLayout:
    """Every token id of a model's vocabulary.

    Attributes:
        name: preset name (``"aromni-7b"``, ``"compact"``) for display and serialization.
        vocab_size: number of rows of the embedding / LM head.
        special: role -> id for every role in :data:`SPECIAL_ROLES`.
        special_names: role -> token string (how the text tokenizer spells it).
        image: image-code range (codebook index -> id).
        speech: speech-code range (codebook index -> id).
        text_runs: ``[[start, stop), ...]`` ranges of text (BPE) ids, or ``None`` when unknown: then every id
            that is not special, image or speech counts as text-allowed (the official layout without its
            tokenizer file, matching the official decoder, which allows every non-image id in text mode).
        reserved: other named ids (e.g. ``{"unk": 3}``) that are neither text nor codes.
    """

    name: str
    vocab_size: int
    special: Mapping[str, int]
    special_names: Mapping[str, str]
    image: CodeRange
    speech: CodeRange
    text_runs: tuple[tuple[int, int], ...] | None = None
    reserved: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- special tokens
    def __getattr__(self, role: str) -> int:
        # layout.bos, layout.eoi, ... read the special table. Only called for missing attributes.
        special = self.__dict__.get("special")
        if special is not None and role in special:
            return special[role]
        raise AttributeError(role)

    def special_id(self, role: str) -> int:
        try:
            return self.special[role]
        except KeyError:
            raise ConfigError(f"unknown special token role {role!r}", f"one of {', '.join(SPECIAL_ROLES)}") from None

    # ----------------------------------------------------------------- masks and sets
    @cached_property
    def _modality_of(self) -> np.ndarray:
        """int8 ``[V]``: 0 other, 1 text, 2 image, 3 speech, 4 special."""
        kind = np.zeros(self.vocab_size, dtype=np.int8)
        if self.text_runs is None:
            kind[:] = 1
        else:
            for a, b in self.text_runs:
                kind[a:b] = 1
        kind[list(self.reserved.values())] = 0
        kind[self.image.code_to_id] = 2
        kind[self.speech.code_to_id] = 3
        kind[list(self.special.values())] = 4
        return kind

    def mask(self, kind: str, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean ``[V]`` mask of the ids of ``kind`` in {"text", "image", "speech", "special"}."""
        code = {"text": 1, "image": 2, "speech": 3, "special": 4}.get(kind)
        if code is None:
            raise ConfigError(f"unknown id kind {kind!r}", "one of text, image, speech, special")
        return torch.from_numpy(self._modality_of == code).to(device)

    def kind_of(self, ids: ArrayLike) -> np.ndarray:
        """Per-id kind code (0 other, 1 text, 2 image, 3 speech, 4 special) as an int8 numpy array."""
        arr = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids, dtype=np.int64)
        return self._modality_of[arr]

    @property
    def text_ids(self) -> np.ndarray:
        return np.nonzero(self._modality_of == 1)[0]

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        V = self.vocab_size
        if V <= 0:
            raise ConfigError(f"vocab_size must be positive, got {V}")
        missing = [r for r in SPECIAL_ROLES if r not in self.special]
        if missing:
            raise ConfigError(f"layout {self.name!r} lacks special tokens {missing}", "define every role")
        owners: dict[int, str] = {}

        def claim(ids: Iterable[int], what: str) -> None:
            for i in ids:
                i = int(i)
                if not 0 <= i < V:
                    raise ConfigError(f"layout {self.name!r}: {what} id {i} is past the vocabulary size {V}",
                                      "raise vocab_size or move the range")
                if i in owners:
                    raise ConfigError(f"layout {self.name!r}: id {i} is both {owners[i]} and {what}",
                                      "ranges and special tokens must not overlap")
                owners[i] = what

        for role, i in self.special.items():
            claim([i], f"special <{role}>")
        for role, i in self.reserved.items():
            claim([i], f"reserved <{role}>")
        for rng in (self.image, self.speech):
            if rng.size and (rng.code_to_id.min() < 0 or rng.code_to_id.max() >= V):
                raise ConfigError(f"layout {self.name!r}: {rng.modality} range [{rng.start}, {rng.stop}) "
                                  f"is past the vocabulary size {V}", "raise vocab_size or move the range")
            if np.unique(rng.code_to_id).size != rng.size:
                raise ConfigError(f"layout {self.name!r}: {rng.modality} codes share token ids")
        # Ranges can be large (65k ids): check pairwise overlap with vectorized membership instead of claim().
        taken = np.zeros(V, dtype=bool)
        taken[list(owners)] = True
        for rng in (self.image, self.speech):
            if taken[rng.code_to_id].any():
                clash = int(rng.code_to_id[taken[rng.code_to_id]][0])
                raise ConfigError(f"layout {self.name!r}: {rng.modality} id {clash} is also "
                                  f"{owners.get(clash, 'in another code range')}",
                                  "ranges and special tokens must not overlap")
            taken[rng.code_to_id] = True
        if self.text_runs is not None:
            for a, b in self.text_runs:
                if not 0 <= a <= b <= V:
                    raise ConfigError(f"layout {self.name!r}: text range [{a}, {b}) is past the vocabulary size {V}")
                if taken[a:b].any():
                    clash = a + int(np.argmax(taken[a:b]))
                    raise ConfigError(f"layout {self.name!r}: text id {clash} overlaps "
                                      f"{owners.get(clash, 'an image/speech range')}",
                                      "ranges and special tokens must not overlap")
                taken[a:b] = True

    # ----------------------------------------------------------------- serialization
    def to_dict(self) -> dict[str, JSONValue]:
        return {
            "name": self.name,
            "vocab_size": self.vocab_size,
            "special": dict(self.special),
            "special_names": dict(self.special_names),
            "image": self.image.to_dict(),
            "speech": self.speech.to_dict(),
            "text": None if self.text_runs is None else [list(r) for r in self.text_runs],
            "reserved": dict(self.reserved),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> VocabLayout:
        try:
            if not isinstance(d, Mapping):
                raise TypeError(f"expected a mapping, got {type(d).__name__}")
            V = int(d["vocab_size"])
            if not 0 < V <= MAX_VOCAB:
                raise ConfigError(f"malformed vocabulary layout: vocab_size {V} is outside [1, {MAX_VOCAB:,}]",
                                  "regenerate the config")
            for m in ("image", "speech"):  # bound the ranges before arrays of their size are allocated
                r = d[m]
                ends = ([v for run in r["runs"] for v in run] if "runs" in r
                        else [int(r["start"]), int(r["start"]) + int(r["size"])])
                if any(not 0 <= int(v) <= V for v in ends):
                    raise ConfigError(f"malformed vocabulary layout: the {m} range {dict(r)} is outside [0, {V}]",
                                      "regenerate the config")
            return cls(
                name=str(d["name"]),
                vocab_size=int(d["vocab_size"]),
                special={k: int(v) for k, v in d["special"].items()},
                special_names=dict(d.get("special_names", {})),
                image=CodeRange.from_dict("image", d["image"]),
                speech=CodeRange.from_dict("speech", d["speech"]),
                text_runs=None if d.get("text") is None else tuple((int(a), int(b)) for a, b in d["text"]),
                reserved={k: int(v) for k, v in d.get("reserved", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, IndexError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"malformed vocabulary layout: {e!r}", "regenerate the config") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VocabLayout) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def replace(self, **changes: object) -> VocabLayout:
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- presets
    @classmethod
    def aromni_7b(cls, tokenizer_file: str | Path | None = None) -> VocabLayout:
        """The official AR-Omni layout (65,536 ids; ``official-formats.md`` §B.4, §C.1).

        Args:
            tokenizer_file: optional Chameleon ``text_tokenizer.json`` (native) or ``tokenizer.json``. When given,
                image codes map through the ``IMGIMG`` names and the text ids are the names that are neither
                image codes nor ``<...>`` tokens (Chameleon's own rule). Otherwise image id = code + 4.
        """
        vocab_size = 65536
        # Chameleon names reserved ids <reservedNNNNN> = NNNNN + 4; AR-Omni repurposes some of them.
        special = {"bos": 0, "pad": 1, "eos": 2, "eoi": 8196, "boi": 8197, "eoa": 12820, "boa": 12821,
                   "eoh": 12830, "eom": 12831, "ins": 12840, "res": 12841}

        def reserved_name(i: int) -> str:
            return f"<reserved{i - 4:05d}>"

        names = {"bos": "<s>", "pad": "<pad>", "eos": "</s>", "eoi": "<eoss>", "boi": "<racm3:break>"}
        for role in ("eoa", "boa", "eoh", "eom", "ins", "res"):
            names[role] = reserved_name(special[role])
        reserved = {"unk": 3, "sep": 8710}
        speech = CodeRange.contiguous("speech", 8724, 4096)
        if tokenizer_file is None:
            image = CodeRange.contiguous("image", 4, 8192)
            text_runs = None
        else:
            vocab = _read_tokenizer_vocab(tokenizer_file)
            if len(vocab) > vocab_size:
                raise ConfigError(f"{tokenizer_file}: {len(vocab)} tokens exceed the 65,536-id AR-Omni vocabulary")
            image = CodeRange("image", _imgimg_table(vocab, tokenizer_file))
            text = sorted(i for n, i in vocab.items() if not n.startswith("IMGIMG") and not (n.startswith("<") and n != "<"))
            text_ids = np.asarray([i for i in text if i not in special.values()], dtype=np.int64)
            text_runs = tuple((a, b) for a, b in _runs(text_ids))
        return cls("aromni-7b", vocab_size, special, names, image, speech, text_runs, reserved)

    @classmethod
    def compact(cls, n_text: int, n_image: int, n_speech: int, *, n_reserved: int = 5,
                pad_to_multiple: int = 64) -> VocabLayout:
        """Contiguous layout ``[11 specials][n_reserved][n_text][n_image][n_speech][padding]``.

        The text ids start right after the specials and reserved ids, which is where a BPE tokenizer trained
        with :meth:`special_token_strings` as its first special tokens puts its vocabulary (see
        ``aromni.tokenizers.text``). The padding rounds ``vocab_size`` up for efficient matmuls.
        """
        if min(n_text, n_image, n_speech, n_reserved) < 0:
            raise ConfigError("compact layout sizes must be non-negative")
        special = {role: i for i, role in enumerate(SPECIAL_ROLES)}
        k = len(SPECIAL_ROLES)
        reserved = {f"reserved{j}": k + j for j in range(n_reserved)}
        text_start = k + n_reserved
        image_start = text_start + n_text
        speech_start = image_start + n_image
        used = speech_start + n_speech
        vocab_size = -(-used // pad_to_multiple) * pad_to_multiple if pad_to_multiple > 1 else used
        return cls(
            name="compact",
            vocab_size=vocab_size,
            special=special,
            special_names=dict(COMPACT_SPECIAL_NAMES),
            image=CodeRange.contiguous("image", image_start, n_image),
            speech=CodeRange.contiguous("speech", speech_start, n_speech),
            text_runs=((text_start, image_start),),
            reserved=reserved,
        )

    def special_token_strings(self) -> list[str]:
        """Strings of special + reserved ids in id order (what a compact BPE tokenizer reserves first)."""
        named = {i: self.special_names.get(r, f"<{r}>") for r, i in self.special.items()}
        named.update({i: f"<{r}>" for r, i in self.reserved.items() if i not in named})
        return [named[i] for i in sorted(named)]

    def describe(self) -> str:
        """Human-readable summary, one line per range."""
        lines = [f"layout {self.name}: {self.vocab_size} ids"]
        lines += [f"  <{r}> = {i}" for r, i in sorted(self.special.items(), key=lambda kv: kv[1])]
        if self.text_runs is None:
            lines.append("  text: every id not otherwise assigned")
        else:
            lines.append(f"  text: {sum(b - a for a, b in self.text_runs)} ids in {len(self.text_runs)} range(s)")
        for rng in (self.image, self.speech):
            where = f"[{rng.start}, {rng.stop})" if rng.is_contiguous else f"{len(rng.to_dict()['runs'])} runs"
            lines.append(f"  {rng.modality}: {rng.size} codes at {where}")
        return "\n".join(lines)


def _read_tokenizer_vocab(path: str | Path) -> dict[str, int]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such tokenizer file", "pass a Chameleon text_tokenizer.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        vocab = dict(data["model"]["vocab"])
        for tok in data.get("added_tokens", []):
            vocab.setdefault(tok["content"], int(tok["id"]))
        return {str(k): int(v) for k, v in vocab.items()}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a tokenizers JSON file ({e!r})", "pass a Chameleon text_tokenizer.json") from None


def imgimg_code(name: str) -> int:
    """``IMGIMG<letters>Z`` -> codebook index (letters A..J are digits 0..9), e.g. ``IMGIMGBAZ`` -> 10."""
    body = name[len("IMGIMG"):-1]
    return int("".join(str(ord(c) - ord("A")) for c in body))


def _imgimg_table(vocab: Mapping[str, int], source: str | Path) -> np.ndarray:
    pairs = [(imgimg_code(n), i) for n, i in vocab.items() if n.startswith("IMGIMG")]
    if not pairs:
        raise InputError(f"{source}: no IMGIMG image tokens", "pass a Chameleon text_tokenizer.json")
    pairs.sort()
    codes = np.asarray([c for c, _ in pairs])
    if not np.array_equal(codes, np.arange(codes.size)):
        raise InputError(f"{source}: IMGIMG codes are not 0..{codes.size - 1}", "the tokenizer file is damaged")
    return np.asarray([i for _, i in pairs], dtype=np.int64)
