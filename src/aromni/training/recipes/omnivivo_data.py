"""What the OmniVIVO speech stage reads: the frozen components and the (text, speech codes) pairs.

Components (:func:`load_components`): the t2i backbone (our ``save_t2i`` directory or an official LlamaGen
``.pt``), the text conditioner (a toy conditioner directory or a local Flan-T5 directory, told apart by their
``config.json``) and the speech tokenizer (any speech ``load_tokenizer`` directory; its codebook size is ``K``).
All are frozen: eval mode, no gradients.

Data: a JSONL manifest, one ``{"text": "...", "audio": "path"}`` object per line (other keys are ignored; audio
paths are relative to the manifest's directory). The audio is encoded ONCE with the speech tokenizer and the codes
cached in ``OUT/speech_codes/<split>.safetensors`` (written atomically) under a fingerprint of the tokenizer's
files (their bytes) and of every audio file (path, size, modification time): a resumed run reads the cache, a
changed tokenizer or audio file is re-encoded. Each file is encoded alone (batching would pad the shorter ones,
and a non-causal encoder would see the padding). Caption features are not cached: the conditioner runs on each
batch (cheap beside the backbone; a Flan-T5-XL cache would hold 1 MB per utterance).

Batches (:class:`EpochSampler`): ``batch_size`` indices at a time from a seeded permutation per epoch, a batch
running on into the next epoch when one ends, so every batch is full; its state is two integers.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.omnivivo.t2i_checkpoint import load_backbone
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.t5_conditioner import T5Conditioner
from aromni.omnivivo.text_conditioner import TextConditioner
from aromni.omnivivo.toy_conditioner import TYPE as TOY_TYPE
from aromni.omnivivo.toy_conditioner import ToyTextConditioner
from aromni.tokenizers.base import SpeechTokenizer, load_tokenizer
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.utils.io import atomic_path, path_kind, read_json, read_jsonl

CODES_DIR = "speech_codes"
_LINE_HINT = 'each line is {"text": "...", "audio": "path/to/file.wav"} (paths relative to the manifest)'


# ---------------------------------------------------------------------------------------------- components
@dataclass
class VivoComponents:
    """The frozen inputs of the speech stage; ``conditioner_kind`` is ``"toy"`` or ``"t5"``."""

    backbone: T2IBackbone
    conditioner: TextConditioner
    conditioner_kind: str
    speech_tokenizer: SpeechTokenizer


def _require(path: Path, what: str, hint: str) -> None:
    if path_kind(path) not in ("file", "dir"):
        raise InputError(f"{path}: no such {what}", hint)


def conditioner_kind(path: Path) -> str:
    """``"toy"`` (a :class:`ToyTextConditioner` directory) or ``"t5"`` (a Flan-T5 directory), from its
    ``config.json``; anything else raises :class:`CheckpointError`."""
    hint = "conditioner= a toy conditioner directory (ToyTextConditioner.save_pretrained) or a local Flan-T5 directory"
    _require(path, "text conditioner", hint)
    raw = read_json(path / "config.json") if (path / "config.json").is_file() else None
    if isinstance(raw, dict) and raw.get("type") == TOY_TYPE:
        return "toy"
    if isinstance(raw, dict) and raw.get("model_type") == "t5":
        return "t5"
    raise CheckpointError(f"{path}: not a text conditioner (no config.json of type {TOY_TYPE!r} or model_type 't5')",
                          hint)


def load_conditioner(path: Path, device: torch.device) -> tuple[TextConditioner, str]:
    """The frozen conditioner at ``path`` on ``device`` and its kind."""
    kind = conditioner_kind(path)
    if kind == "toy":
        toy = ToyTextConditioner.from_pretrained(path, map_location=device)
        toy.eval().requires_grad_(False)
        return toy, kind
    return T5Conditioner.from_pretrained(path, device=device), kind


def load_speech_tokenizer(path: Path, device: torch.device) -> SpeechTokenizer:
    """The frozen speech tokenizer at ``path``; a tokenizer of another modality raises :class:`InputError`."""
    _require(path, "speech tokenizer directory", "speech_tokenizer= a directory written by save_pretrained "
                                                 "(e.g. the tokenizer/ of `aromni codec train`)")
    tok = load_tokenizer(path)
    if not isinstance(tok, SpeechTokenizer):
        raise InputError(f"{path}: a {tok.modality} tokenizer, not a speech tokenizer",
                         "set speech_tokenizer= a speech codec directory (e.g. the tokenizer/ of `aromni codec train`)")
    return tok.to(device).eval().requires_grad_(False)


def load_components(backbone: Path, conditioner: Path, speech_tokenizer: Path, *, block_size: int | None,
                    device: torch.device) -> VivoComponents:
    """Load and check the three frozen components (the conditioner's features must fit the backbone's caption
    prefix: ``dim == caption_dim``, ``max_length == cls_token_num``)."""
    tok = load_speech_tokenizer(speech_tokenizer, device)
    cond, kind = load_conditioner(conditioner, device)
    _require(backbone, "t2i backbone", "backbone= a save_t2i directory or an official LlamaGen .pt file")
    model = load_backbone(backbone, block_size=block_size, device=device)
    cfg = model.cfg
    if (cond.dim, cond.max_length) != (cfg.caption_dim, cfg.cls_token_num):
        raise ConfigError(f"the conditioner {conditioner} gives [{cond.max_length}, {cond.dim}] caption features, "
                          f"the backbone {backbone} takes [{cfg.cls_token_num}, {cfg.caption_dim}]",
                          "use the conditioner the backbone was trained with")
    return VivoComponents(model, cond, kind, tok)


def _files(path: Path) -> list[Path]:
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def fingerprint(path: Path) -> str:
    """A cheap identity of a file or directory: sha256 of its files' relative names and sizes (no contents, so
    it costs nothing on a multi-GB backbone; it catches a swapped or re-architected component, not a retrain of
    the same size)."""
    files = [[str(f.relative_to(path)) if f != path else f.name, f.stat().st_size] for f in _files(path)]
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()


def content_hash(path: Path) -> str:
    """sha256 over the names and bytes of every file of ``path`` (for small components, e.g. a tokenizer)."""
    h = hashlib.sha256()
    for f in _files(path):
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- manifest
@dataclass(frozen=True)
class SpeechText:
    """One manifest line: the caption, the audio file (absolute) and where it came from (``file:line``)."""

    text: str
    audio: Path
    where: str


def read_manifest(path: str | Path) -> list[SpeechText]:
    """Every line of a JSONL manifest, checked: an object with a non-empty ``"text"`` string and an ``"audio"``
    path to an existing file. The first bad line raises :class:`InputError` naming ``file:line``."""
    path = Path(path)
    items = []
    for n, obj in read_jsonl(path, "manifest"):
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            raise InputError(f"{where}: a JSON {type(obj).__name__}, not an object", _LINE_HINT)
        text, audio = obj.get("text"), obj.get("audio")
        if not isinstance(audio, str) or not audio.strip():
            raise InputError(f"{where}: no \"audio\" path", _LINE_HINT)
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{where}: no \"text\" (a non-empty string)", _LINE_HINT)
        file = (path.parent / audio).expanduser()
        if path_kind(file) != "file":
            raise InputError(f"{where}: audio file {file} does not exist",
                             "fix the path (relative paths start at the manifest's directory)")
        items.append(SpeechText(text, file.resolve(), where))
    if not items:
        raise InputError(f"{path}: the manifest holds no lines", _LINE_HINT)
    return items


# ---------------------------------------------------------------------------------------------- codes
def _cache_key(items: Sequence[SpeechText], tokenizer_dir: Path) -> str:
    audio = [[str(it.audio), it.audio.stat().st_size, it.audio.stat().st_mtime_ns] for it in items]
    return hashlib.sha256(json.dumps({"tokenizer": content_hash(tokenizer_dir), "audio": audio}).encode()).hexdigest()


@torch.no_grad()
def encode_items(items: Sequence[SpeechText], tokenizer: SpeechTokenizer, *, progress: bool = True
                 ) -> list[torch.Tensor]:
    """Each item's audio (resampled to the tokenizer's rate, mono) -> codes ``[F_i]`` int64 on the CPU."""
    device = next(iter(tokenizer.parameters()), torch.empty(0)).device
    out = []
    for it in tqdm(items, desc="encoding speech", disable=not progress, leave=False):
        wav = load_audio(it.audio, tokenizer.sample_rate)
        out.append(tokenizer.encode(wav[None].to(device))[0].long().cpu())
    return out


def cached_codes(items: Sequence[SpeechText], tokenizer: SpeechTokenizer, tokenizer_dir: Path, cache: Path, *,
                 progress: bool = True) -> list[torch.Tensor]:
    """The codes of ``items`` from ``cache`` when its fingerprint matches, else encoded and cached (atomically)."""
    key = _cache_key(items, tokenizer_dir)
    if cache.is_file() and _cache_fingerprint(cache) == key:
        return _read_cache(cache)
    codes = encode_items(items, tokenizer, progress=progress)
    offsets = torch.tensor([0] + [len(c) for c in codes]).cumsum(0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file({"codes": torch.cat(codes), "offsets": offsets}, str(tmp),
                  metadata={"fingerprint": key, "items": str(len(codes))})
    return codes


def _cache_fingerprint(cache: Path) -> str | None:
    try:
        with safe_open(str(cache), "pt") as f:
            return (f.metadata() or {}).get("fingerprint")
    except (SafetensorError, OSError, ValueError):
        return None  # a damaged cache is rebuilt


def _read_cache(cache: Path) -> list[torch.Tensor]:
    try:
        state = load_file(str(cache))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{cache}: unreadable speech code cache ({e})", "delete it; it is rebuilt") from None
    codes, offsets = state["codes"], state["offsets"].tolist()
    return [codes[a:b].clone() for a, b in itertools.pairwise(offsets)]


class SpeechTextSet:
    """Captions and their speech codes, refused when an utterance exceeds ``max_len`` codes."""

    def __init__(self, items: Sequence[SpeechText], codes: Sequence[torch.Tensor], max_len: int):
        for it, c in zip(items, codes):
            if len(c) > max_len:
                raise InputError(f"{it.where}: {it.audio.name} encodes to {len(c)} speech codes, more than "
                                 f"vivo.max_speech_len {max_len}", "raise vivo.max_speech_len or drop the line")
        self.texts = [it.text for it in items]
        self.codes = list(codes)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_codes(self) -> int:
        return sum(len(c) for c in self.codes)

    def batch(self, indices: Sequence[int]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
        """``(texts [B], codes [B, N] right-padded with 0, lengths [B])``, ``N`` the longest in the batch."""
        lengths = torch.tensor([len(self.codes[i]) for i in indices])
        codes = torch.zeros(len(indices), int(lengths.max()), dtype=torch.long)
        for row, i in enumerate(indices):
            codes[row, : lengths[row]] = self.codes[i]
        return [self.texts[i] for i in indices], codes, lengths


class EpochSampler:
    """Full batches of indices in ``[0, n)``: a seeded permutation per epoch, read ``batch_size`` at a time."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.pos = 0, 0
        self._perm: tuple[int, list[int]] | None = None

    def _permutation(self) -> list[int]:
        if self._perm is None or self._perm[0] != self.epoch:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**63)
            self._perm = (self.epoch, torch.randperm(self.n, generator=g).tolist())
        return self._perm[1]

    def next_batch(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.batch_size:
            perm = self._permutation()
            take = perm[self.pos: self.pos + self.batch_size - len(out)]
            out += take
            self.pos += len(take)
            if self.pos == self.n:
                self.epoch, self.pos = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
