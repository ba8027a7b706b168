"""The text-to-image recipe's data: (caption, image) pairs, and the VQ codes of their images, cached once per run.

Pairs come from a toy world's records or from a JSONL manifest:

* world ``records/<split>.jsonl``: a ``caption`` record gives (the assistant's caption, the user's image); a
  ``t2i`` record gives (the user's text without the task instruction, the assistant's image). Both carry the
  image's five attributes in ``meta.image``, which the image judge is scored against.
* manifest: one ``{"text": str, "image": path, "attrs": {...} (optional)}`` object per line, image paths
  relative to the manifest's directory.

Codes: LlamaGen encodes images online; here every distinct image is encoded once, before training, and the codes
``[U, h*w]`` are written atomically to ``OUT/cache/codes.safetensors`` with the VQ's weight digest and the image
list, so a resumed run reads them back instead of encoding again, and a cache made by another VQ or image set is
refused rather than silently used.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.tokenizers.image.dataset import load_images, to_model_range
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.records import WorldRecord, iter_records
from aromni.utils.io import JSONValue, atomic_path, read_jsonl
from aromni.vocab.tasks import CAPTION, T2I

CODES_FORMAT = "llamagen-t2i-codes"
Attrs = dict[str, str]


@dataclass(frozen=True)
class CaptionedImage:
    """One training pair: ``text`` describes the image file ``image``; ``attrs`` are its toy-world attributes
    (``None`` when unknown: the pair is not used to score the image judge)."""

    text: str
    image: Path
    attrs: Attrs | None = None


# ---------------------------------------------------------------------------------------------- pairs
def world_pairs(world: str | Path, split: str) -> list[CaptionedImage]:
    """The (caption, image) pairs of a toy world's ``split`` (``caption`` and ``t2i`` records, in file order)."""
    world = Path(world)
    pairs = [pair for record in iter_records(world, split) if (pair := _record_pair(world, record)) is not None]
    if not pairs:
        raise InputError(f"{world / 'records' / f'{split}.jsonl'}: no {CAPTION.name} or {T2I.name} records",
                         "build the world with `aromni toyworld build`")
    return pairs


def _record_pair(world: Path, record: WorldRecord) -> CaptionedImage | None:
    if record["task"] not in (CAPTION.name, T2I.name):
        return None
    user, assistant = record["turns"][0]["segments"], record["turns"][-1]["segments"]
    if record["task"] == CAPTION.name:
        text, image = _first(assistant, "text"), _first(user, "image")
    else:  # "<instruction> <prompt>": the prompt is the caption the image was drawn from
        text, image = _first(user, "text"), _first(assistant, "image")
        text = text.removeprefix(T2I.paper_instruction or "").strip() if text is not None else None
    if text is None or image is None:
        return None
    meta = record.get("meta") or {}
    return CaptionedImage(text, world / image, _attrs(meta.get("image")))


def _first(segments: Sequence[dict[str, str]], kind: str) -> str | None:
    key = "text" if kind == "text" else "path"
    return next((s[key] for s in segments if s.get("type") == kind), None)


def _attrs(value: JSONValue) -> Attrs | None:
    if isinstance(value, dict) and all(isinstance(value.get(k), str) for k in ATTRIBUTE_NAMES):
        return {k: str(value[k]) for k in ATTRIBUTE_NAMES}
    return None


def manifest_pairs(path: str | Path) -> list[CaptionedImage]:
    """The pairs of a JSONL manifest (module docstring); a malformed line raises :class:`InputError` naming it."""
    path = Path(path)
    pairs = []
    for n, row in read_jsonl(path, "manifest"):
        where = f"{path}:{n}"
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not isinstance(row.get("image"), str):
            raise InputError(f"{where}: expected an object with string fields \"text\" and \"image\"",
                             'e.g. {"text": "a red circle", "image": "images/0001.png"}')
        attrs = row.get("attrs")
        if attrs is not None and _attrs(attrs) is None:
            raise InputError(f"{where}: \"attrs\" must give the {len(ATTRIBUTE_NAMES)} attributes as strings",
                             f"keys {', '.join(ATTRIBUTE_NAMES)}")
        pairs.append(CaptionedImage(row["text"], path.parent / row["image"], _attrs(attrs)))
    if not pairs:
        raise InputError(f"{path}: no pairs (the manifest is empty)", 'one {"text", "image"} object per line')
    return pairs


# ---------------------------------------------------------------------------------------------- codes
def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (identifies the VQ weights the cached codes came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_images(vq: LlamaGenVQ, images: Sequence[Path], batch_size: int, progress: bool = True) -> torch.Tensor:
    """Image files -> codes ``[U, h*w]`` int64 (the package's image loader, ``batch_size`` images at a time, so
    only one batch of pixels is ever in memory)."""
    out = []
    show = progress and sys.stderr.isatty()
    for i in tqdm(range(0, len(images), batch_size), desc="encoding images", disable=not show, leave=False):
        pixels = load_images(list(images[i:i + batch_size]), vq.image_size, disable_progress=True)
        out.append(vq.encode(to_model_range(pixels)).cpu())
    return torch.cat(out)


def cached_codes(vq: LlamaGenVQ, vq_digest: str, images: Sequence[Path], cache: Path, batch_size: int,
                 progress: bool = True) -> torch.Tensor:
    """The codes ``[U, h*w]`` of ``images``: read from ``cache`` when it holds them for this VQ, else encoded and
    written there (atomically). A cache for another VQ or image list raises :class:`ConfigError`."""
    names = [str(p) for p in images]
    if cache.is_file():
        codes, meta = _read_cache(cache)
        if meta.get("vq_sha256") != vq_digest or json.loads(meta.get("images", "[]")) != names:
            raise ConfigError(f"{cache}: the cached codes come from another VQ or another image set",
                              "start a new run (--overwrite) or point vq= and the data at what this run used")
        return codes
    codes = encode_images(vq, images, batch_size, progress)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        save_file({"codes": codes.contiguous()}, str(tmp),
                  metadata={"format": CODES_FORMAT, "vq_sha256": vq_digest, "images": json.dumps(names)})
    return codes


def _read_cache(cache: Path) -> tuple[torch.Tensor, dict[str, str]]:
    try:
        with safe_open(str(cache), framework="pt") as f:
            meta = f.metadata() or {}
            codes = f.get_tensor("codes") if meta.get("format") == CODES_FORMAT else None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{cache}: unreadable code cache ({e})", "delete it to encode the images again") from None
    if codes is None or codes.dim() != 2 or codes.dtype != torch.int64:
        raise CheckpointError(f"{cache}: not a {CODES_FORMAT} file", "delete it to encode the images again")
    return codes, meta


def pair_codes(pairs: Sequence[CaptionedImage], images: Sequence[Path], codes: torch.Tensor) -> torch.Tensor:
    """Codes ``[len(pairs), h*w]`` of each pair's image, from the distinct images' ``codes [U, h*w]``."""
    row = {p: i for i, p in enumerate(images)}
    return codes[torch.tensor([row[p.image] for p in pairs], dtype=torch.long)]


def distinct_images(*splits: Sequence[CaptionedImage]) -> list[Path]:
    """The distinct image paths of all ``splits``, in first-seen order (the order of the cache's rows)."""
    return list(dict.fromkeys(p.image for pairs in splits for p in pairs))
