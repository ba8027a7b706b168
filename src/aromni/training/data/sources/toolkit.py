"""The tokenizers, layout and prompt style a data build encodes with, and their identities for the manifest.

They come from a bundle directory (its ``config.json`` only: the decoder weights are never loaded) and/or from
explicit tokenizer directories plus a layout (a JSON file, ``aromni-7b``, or ``compact`` = derived from the
tokenizers' sizes the way :meth:`VocabLayout.compact` lays out models we train).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aromni.errors import ConfigError
from aromni.tokenizers.base import ImageTokenizer, SpeechTokenizer, Tokenizer, load_tokenizer
from aromni.tokenizers.text import TextTokenizer
from aromni.toyworld.demo import find_bundle
from aromni.utils.io import JSONValue, read_json
from aromni.vocab.conversation import PromptStyle, get_style
from aromni.vocab.layout import VocabLayout

MODALITIES = ("text", "image", "speech")


@dataclass
class ToolkitSpec:
    """Picklable description of the toolkit (what a worker process needs to load it)."""

    layout: dict[str, JSONValue]
    style: str
    tokenizers: dict[str, str] = field(default_factory=dict)  # modality -> directory


@dataclass
class Toolkit:
    spec: ToolkitSpec
    layout: VocabLayout
    style: PromptStyle
    text: TextTokenizer | None = None
    image: ImageTokenizer | None = None
    speech: SpeechTokenizer | None = None

    def tokenizer(self, modality: str) -> Tokenizer | None:
        return getattr(self, modality)


def _layout_from(value: JSONValue, base: Path, toks: Mapping[str, Tokenizer]) -> VocabLayout:
    if isinstance(value, dict):
        return VocabLayout.from_dict(value)
    if value == "aromni-7b":
        text = toks.get("text")
        # With the official tokenizer at hand, take the exact IMGIMG image mapping from it.
        src = getattr(text, "source", None)
        return VocabLayout.aromni_7b(src if src and Path(src).is_file() else None)
    if value == "compact":
        probe = VocabLayout.compact(0, 0, 0)
        n_special = len(probe.special_token_strings())
        if toks.get("text") is None:
            raise ConfigError("layout 'compact' is derived from the text tokenizer", "set tokenizers.text")
        sizes = {m: (toks[m].codebook_size if toks.get(m) is not None else 0) for m in ("image", "speech")}
        return VocabLayout.compact(toks["text"].vocab_size - n_special, sizes["image"], sizes["speech"])
    if isinstance(value, str):
        path = Path(value) if Path(value).is_absolute() else base / value
        d = read_json(path)
        return VocabLayout.from_dict(d["layout"] if isinstance(d, dict) and "layout" in d else d)
    raise ConfigError(f"layout {value!r} must be a JSON file, 'aromni-7b', 'compact' or a mapping")


def _bundle_dir(value: str, base: Path) -> Path:
    """The bundle directory ``value`` names (relative to ``base``); ``toy`` is the shipped toy bundle unless a
    ``toy`` directory exists there (as for ``aromni.load("toy")``)."""
    bundle = Path(value) if Path(value).is_absolute() else base / value
    if value == "toy" and not bundle.exists():
        shipped = find_bundle()
        if shipped is None:
            raise ConfigError("bundle: toy names the shipped toy bundle, which this installation lacks",
                              "point bundle: at a bundle directory (e.g. one `aromni toyworld train` wrote)")
        return shipped
    if not (bundle / "config.json").is_file():
        raise ConfigError(f"bundle: {bundle} is not a bundle directory (no config.json)",
                          "point bundle: at a bundle directory (relative paths start at `root`), or use "
                          "bundle: toy for the shipped toy bundle")
    return bundle


def resolve(cfg: Mapping[str, JSONValue], base: Path) -> tuple[dict[str, Path], JSONValue, str | None]:
    """(tokenizer dirs, layout value, bundle style) from the ``bundle`` / ``tokenizers`` / ``layout`` keys."""
    dirs: dict[str, Path] = {}
    layout: JSONValue = None
    style = None
    if cfg.get("bundle"):
        bundle = _bundle_dir(str(cfg["bundle"]), base)
        raw = read_json(bundle / "config.json")
        meta = raw.get("bundle") if isinstance(raw, dict) else None
        if not isinstance(meta, dict) or "layout" not in raw:
            raise ConfigError(f"{bundle}: not a bundle (config.json lacks 'bundle' or 'layout')")
        layout, style = raw["layout"], meta.get("prompt_style")
        for m, sub in (meta.get("tokenizers") or {}).items():
            if sub is not None and m in MODALITIES:
                dirs[m] = bundle / sub
    toks = cfg.get("tokenizers") or {}
    if not isinstance(toks, dict) or set(toks) - set(MODALITIES):
        raise ConfigError("'tokenizers' must map text / image / speech to tokenizer directories")
    for m, d in toks.items():
        if d is not None:
            dirs[m] = Path(d) if Path(d).is_absolute() else base / d
    if cfg.get("layout") is not None:
        layout = cfg["layout"]
    if layout is None:
        raise ConfigError(
            "the build config needs a 'bundle' or a 'layout'",
            "set bundle: DIR, or layout: FILE.json | aromni-7b | compact next to tokenizers:",
        )
    return dirs, layout, style


def load_toolkit(cfg: Mapping[str, JSONValue], base: Path) -> Toolkit:
    """Load every tokenizer the config names and check them against the layout."""
    dirs, layout_value, bundle_style = resolve(cfg, base)
    toks: dict[str, Tokenizer] = {}
    for m, d in dirs.items():
        if not d.is_dir():
            raise ConfigError(f"tokenizers.{m}: {d} is not a directory")
        toks[m] = load_tokenizer(d)
        if m != "text" and hasattr(toks[m], "eval"):
            toks[m] = toks[m].eval()
        if getattr(toks[m], "modality", m) != m:
            raise ConfigError(f"tokenizers.{m}: {d} holds a {toks[m].modality} tokenizer")
    layout = _layout_from(layout_value, base, toks)
    if toks.get("text") is not None and hasattr(toks["text"], "check_layout"):
        toks["text"].check_layout(layout)
    for m in ("image", "speech"):
        if toks.get(m) is not None and toks[m].codebook_size != getattr(layout, m).size:
            raise ConfigError(
                f"the {m} tokenizer has {toks[m].codebook_size} codes, the layout {getattr(layout, m).size}",
                "the tokenizers and the layout come from different runs",
            )
    style = get_style(cfg.get("style") or bundle_style or "official")
    spec = ToolkitSpec(layout.to_dict(), style.name, {m: str(d) for m, d in dirs.items()})
    return Toolkit(spec, layout, style, **toks)


def load_from_spec(spec: ToolkitSpec) -> Toolkit:
    """What a worker process does: load the tokenizers of an already-validated spec."""
    toks = {m: load_tokenizer(d) for m, d in spec.tokenizers.items()}
    for m, t in toks.items():
        if m != "text" and hasattr(t, "eval"):
            toks[m] = t.eval()
    return Toolkit(spec, VocabLayout.from_dict(spec.layout), get_style(spec.style), **toks)


def dir_digest(path: str | Path) -> str:
    """sha256 over the names and contents of the files in a directory (hidden files excluded)."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(root).parts)
    ):
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def identities(kit: Toolkit) -> dict[str, JSONValue]:
    """Per tokenizer: directory, type, size and content digest (what the manifest records)."""
    out: dict[str, JSONValue] = {}
    for m, d in kit.spec.tokenizers.items():
        tok = kit.tokenizer(m)
        out[m] = {
            "path": d,
            "type": getattr(tok, "type_name", type(tok).__name__),
            "codebook_size": int(tok.codebook_size),
            "sha256": dir_digest(d),
        }
    return out
