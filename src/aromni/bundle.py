"""A bundle: everything a ready model needs, in one directory.

::

    BUNDLE/
      config.json        {"format": "aromni", "decoder": {...}, "layout": {...},
                          "bundle": {"version": 1, "prompt_style": "official", "tokenizers": {...}, "generation": {...}}}
      model.safetensors  decoder weights (our layout)
      text/              text tokenizer directory   (tokenizer.json + config.json)
      image/             image tokenizer directory  (config.json + model.safetensors)
      speech/            speech tokenizer directory (config.json + model.safetensors)

``config.json`` is a superset of a decoder checkpoint's, so ``aromni.models.load_decoder(BUNDLE)`` works too.
Tokenizer entries may be absent (a text-only or image-only model); the layout still owns every id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from aromni.errors import AromniError, CheckpointError, InputError
from aromni.inference.options import DecodeOptions
from aromni.models.checkpoint.aromni_format import build_from_state, load_state, read_config, save_decoder
from aromni.models.decoder import Decoder
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer, Tokenizer, load_tokenizer
from aromni.utils.io import JSONValue, path_kind
from aromni.vocab.conversation import PromptStyle, get_style
from aromni.vocab.layout import VocabLayout

BUNDLE_VERSION = 1
MODALITIES = ("text", "image", "speech")

#: Bundles known by name (``aromni.load("toy")``, ``--model toy``): name -> directory. The toy bundle ships
#: inside the package (``aromni/toyworld/assets/bundle``); its path is computed here without importing the toy
#: world.
NAMED_BUNDLES: dict[str, Path] = {"toy": Path(__file__).resolve().parent / "toyworld" / "assets" / "bundle"}


def resolve_bundle(name_or_path: str | Path) -> Path:
    """The directory of a bundle: a path, or a name of :data:`NAMED_BUNDLES` when no such path exists here
    (``"toy"`` opens ``./toy`` if there is one). A named bundle that this installation does not ship raises
    :class:`InputError`."""
    path = Path(name_or_path)
    name = str(name_or_path)
    if name in NAMED_BUNDLES and path_kind(path) == "missing":
        shipped = NAMED_BUNDLES[name]
        if path_kind(shipped / "config.json") != "file":
            raise InputError(f"this installation ships no {name} bundle",
                             "train one with `aromni toyworld train` and pass its bundle directory")
        return shipped
    return path


@dataclass
class Bundle:
    """A loaded bundle.

    Attributes:
        decoder: the AR model.
        layout: vocabulary layout.
        text, image, speech: tokenizers (``None`` when the bundle has none for that modality).
        style: prompt style the model was trained with.
        generation: default generation options saved with the model (free-form dict).
        path: where it was loaded from.
    """

    decoder: Decoder
    layout: VocabLayout
    text: Tokenizer | None = None
    image: ImageTokenizer | None = None
    speech: SpeechTokenizer | None = None
    style: PromptStyle = field(default_factory=lambda: get_style("official"))
    generation: dict[str, JSONValue] = field(default_factory=dict)
    path: Path | None = None

    @classmethod
    def load(cls, path: str | Path, *, dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
             tokenizers: bool = True) -> Bundle:
        """Open a bundle directory. Anything wrong with its files (missing, not safetensors, malformed or
        wrongly typed ``config.json``, weights that do not match the config) raises :class:`CheckpointError`
        naming the file."""
        path = Path(path)
        if path_kind(path) != "dir":
            if path_kind(path) == "file":
                raise CheckpointError(f"{path}: not a bundle directory (it is a file)",
                                      "pass the directory that holds config.json and model.safetensors")
            raise CheckpointError(f"{path}: not a bundle (no such directory)", "check the path (or pass \"toy\")")
        if path_kind(path / "config.json") != "file":
            raise CheckpointError(f"{path}: not a bundle (no config.json)", "pass a directory made by `aromni` "
                                  "(import-official, train, or the shipped toy bundle)")
        cfg_file = path / "config.json"
        with _as_checkpoint_error(cfg_file):
            cfg, raw = read_config(path)
        if raw.get("layout") is None:
            raise CheckpointError(f"{path}: config.json has no vocabulary layout", "re-export the bundle")
        with _as_checkpoint_error(cfg_file, "layout: "):
            layout = VocabLayout.from_dict(raw["layout"])
        if layout.vocab_size != cfg.vocab_size:
            raise CheckpointError(f"{path}: layout has {layout.vocab_size} ids but the decoder {cfg.vocab_size}")
        meta = _bundle_meta(cfg_file, raw.get("bundle", {}))
        with _as_checkpoint_error(cfg_file, "bundle.prompt_style: "):
            style = get_style(meta.get("prompt_style", "official"))
        generation = dict(meta.get("generation") or {})
        with _as_checkpoint_error(cfg_file, "bundle.generation: "):
            DecodeOptions().with_overrides(generation)  # refuse bad saved defaults here, naming the file
        with _as_checkpoint_error(path / "model.safetensors"):
            decoder = build_from_state(cfg, load_state(path), dtype=dtype, device=device, source=str(path))
        toks: dict[str, Tokenizer | None] = {m: None for m in MODALITIES}
        if tokenizers:
            for m, sub in meta.get("tokenizers", {}).items():
                if sub is None:
                    continue
                sub_path = path / sub
                if path_kind(sub_path) != "dir":
                    raise CheckpointError(f"{sub_path}: tokenizer directory missing", "the bundle is incomplete")
                with _as_checkpoint_error(sub_path):
                    toks[m] = load_tokenizer(sub_path)
                if m != "text" and hasattr(toks[m], "to"):
                    toks[m] = toks[m].to(device).eval()
        if toks["text"] is not None and hasattr(toks["text"], "check_layout"):
            with _as_checkpoint_error(path / str(meta["tokenizers"]["text"])):
                toks["text"].check_layout(layout)
        for m in ("image", "speech"):
            tok = toks[m]
            rng = getattr(layout, m)
            if tok is not None and tok.codebook_size != rng.size:
                raise CheckpointError(f"{path}: {m} tokenizer has {tok.codebook_size} codes, the layout {rng.size}",
                                      "the tokenizer and model come from different runs")
        return cls(decoder=decoder, layout=layout, style=style, generation=generation, path=path, **toks)


def _bundle_meta(cfg_file: Path, meta: Any) -> dict[str, Any]:
    """The ``"bundle"`` section of ``config.json``, type-checked (:class:`CheckpointError` naming the field)."""
    def bad(what: str, value: Any, hint: str = "re-export the bundle") -> CheckpointError:
        return CheckpointError(f"{cfg_file}: {what}, got {value!r:.80}", hint)

    if not isinstance(meta, dict):
        raise bad("bundle must be a mapping", meta)
    toks = meta.get("tokenizers", {})
    if toks is None:
        toks = {}
    if not isinstance(toks, dict):
        raise bad("bundle.tokenizers must map a modality to a subdirectory", toks)
    for m, sub in toks.items():
        if m not in MODALITIES:
            raise CheckpointError(f"{cfg_file}: unknown tokenizer modality {m!r}", f"one of {', '.join(MODALITIES)}")
        if sub is None:
            continue
        if not isinstance(sub, str) or not sub or Path(sub).is_absolute() or ".." in Path(sub).parts:
            raise bad(f"bundle.tokenizers.{m} must be a subdirectory name inside the bundle", sub)
    if not isinstance(meta.get("generation") or {}, dict):
        raise bad("bundle.generation must be a mapping of decoding options", meta.get("generation"))
    if not isinstance(meta.get("prompt_style", "official"), str):
        raise bad("bundle.prompt_style must be 'official' or 'paper'", meta.get("prompt_style"))
    return {**meta, "tokenizers": toks}


@contextlib.contextmanager
def _as_checkpoint_error(where: Path, prefix: str = "") -> Iterator[None]:
    """Re-raise the errors of reading one part of a bundle as :class:`CheckpointError` naming ``where``."""
    try:
        yield
    except CheckpointError as e:
        if str(where) in e.problem or str(where.parent) in e.problem:
            raise
        raise CheckpointError(f"{where}: {prefix}{e.problem}", e.hint) from None
    except AromniError as e:  # ConfigError / InputError from a malformed file in the bundle
        problem = e.problem if str(where) in e.problem else f"{where}: {prefix}{e.problem}"
        raise CheckpointError(problem, e.hint or "the bundle is damaged: re-export or re-download it") from None
    except RecursionError:
        raise CheckpointError(f"{where}: nested too deeply to be a bundle file", "re-export the bundle") from None
    except SafetensorError as e:
        raise CheckpointError(f"{where}: not a safetensors file or corrupt ({e})", "re-export the bundle") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{where}: malformed ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                              "re-export the bundle") from None


def save_bundle(path: str | Path, decoder: Decoder, layout: VocabLayout, *, text: Tokenizer | None = None,
                image: ImageTokenizer | None = None, speech: SpeechTokenizer | None = None,
                style: str | PromptStyle = "official", generation: dict[str, JSONValue] | None = None,
                dtype: torch.dtype | None = None, extra: dict[str, JSONValue] | None = None) -> None:
    """Write a bundle directory (weights in ``dtype`` when given, e.g. ``torch.float16`` for shipping)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    subdirs: dict[str, str | None] = {}
    for name, tok in (("text", text), ("image", image), ("speech", speech)):
        if tok is None:
            subdirs[name] = None
            continue
        if name != "text" and dtype is not None and hasattr(tok, "save_pretrained"):
            try:
                tok.save_pretrained(path / name, dtype=dtype)
            except TypeError:
                tok.save_pretrained(path / name)
        else:
            tok.save_pretrained(path / name)
        subdirs[name] = name
    bundle_meta = {"version": BUNDLE_VERSION, "prompt_style": get_style(style).name, "tokenizers": subdirs,
                   "generation": generation or {}}
    save_decoder(decoder, path, layout=layout, dtype=dtype, extra={"bundle": bundle_meta, **(extra or {})})
