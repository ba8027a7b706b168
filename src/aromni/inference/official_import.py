"""Build a bundle from the official AR-Omni release layout.

::

    AROMNI_DIR/models/7b/{params.json, consolidate_params.json, consolidated.pth}   (Meta-native decoder)
               or an HF Chameleon directory (config.json + *.safetensors) at AROMNI_DIR or given separately
    AROMNI_DIR/tokenizer/text_tokenizer.json
    AROMNI_DIR/tokenizer/vqgan.yaml, vqgan.ckpt
    WavTokenizer yaml + ckpt (e.g. WavTokenizer_small_600_24k_4096)

The bundle gets the official vocabulary layout (:meth:`VocabLayout.aromni_7b` read from ``text_tokenizer.json``),
the official prompt style and the official decoding defaults, with ``bare_speech`` on (the official decoder lets
speech codes appear without ``<boa>``; see :class:`~aromni.inference.options.DecodeOptions`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import torch

from aromni.bundle import save_bundle
from aromni.errors import CheckpointError, InputError
from aromni.inference.options import DecodeOptions
from aromni.models.checkpoint.auto import detect_format, load_decoder
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.tokenizers.speech.wavtokenizer.model import WavTokenizer
from aromni.tokenizers.text import TextTokenizer
from aromni.utils.io import JSONValue, atomic_dir
from aromni.vocab.layout import VocabLayout


def official_generation_defaults() -> dict[str, JSONValue]:
    """The official ``Options`` defaults (as our option names) plus ``bare_speech``."""
    d = DecodeOptions(bare_speech=True).to_dict()
    for key in ("seed", "image_tokens", "max_seq_len"):
        d.pop(key)
    return d


def find_release_files(root: Path, decoder: Path | None) -> dict[str, Path]:
    """Locate the decoder and tokenizer files of a release; raise a clear error for what is missing."""
    if not root.is_dir():
        raise InputError(f"{root}: no such directory", "pass the AR-Omni release root (models/7b + tokenizer/)")
    files = {"text": root / "tokenizer" / "text_tokenizer.json", "vqgan_yaml": root / "tokenizer" / "vqgan.yaml",
             "vqgan_ckpt": root / "tokenizer" / "vqgan.ckpt"}
    for f in files.values():
        if not f.is_file():
            raise InputError(f"{f}: missing from the release", "expected tokenizer/text_tokenizer.json, "
                             "tokenizer/vqgan.yaml and tokenizer/vqgan.ckpt under --aromni")
    files["decoder"] = decoder if decoder is not None else root
    detect_format(files["decoder"])  # raises CheckpointError naming the expected layouts
    return files


def import_official(aromni_dir: str | Path, wavtokenizer_config: str | Path, wavtokenizer_ckpt: str | Path,
                    out: str | Path, *, decoder: str | Path | None = None, dtype: torch.dtype | None = None,
                    overwrite: bool = False, log: Callable[[str], None] = print) -> Path:
    """Convert an official release into a bundle directory at ``out`` (built aside, moved into place at the end)."""
    root, out = Path(aromni_dir), Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} already exists and is not empty", "choose another path or pass --overwrite")
    for f in (wavtokenizer_config, wavtokenizer_ckpt):
        if not Path(f).is_file():
            raise InputError(f"{f}: no such file", "pass the WavTokenizer yaml and .ckpt")
    files = find_release_files(root, Path(decoder) if decoder is not None else None)
    log(f"layout and text tokenizer: {files['text']}")
    layout = VocabLayout.aromni_7b(files["text"])
    text = TextTokenizer.from_file(files["text"])
    text.check_layout(layout)
    log(f"image tokenizer: {files['vqgan_yaml']}")
    image = VQGAN.from_chameleon(files["vqgan_yaml"], files["vqgan_ckpt"])
    log(f"speech tokenizer: {wavtokenizer_config}")
    speech = WavTokenizer.from_official(wavtokenizer_config, wavtokenizer_ckpt)
    log(f"decoder: {files['decoder']}")
    model = load_decoder(files["decoder"], dtype=dtype)
    for what, size, want in (("decoder vocabulary", model.cfg.vocab_size, layout.vocab_size),
                             ("VQGAN codebook", image.codebook_size, layout.image.size),
                             ("WavTokenizer codebook", speech.codebook_size, layout.speech.size)):
        if size != want:
            raise CheckpointError(f"{what} has {size} entries, the AR-Omni layout needs {want}",
                                  "these files are not the AR-Omni release")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        save_bundle(tmp, model, layout, text=text, image=image, speech=speech, style="official",
                    generation=official_generation_defaults(), dtype=dtype,
                    extra={"source": {"aromni": str(root), "wavtokenizer_config": str(wavtokenizer_config),
                                      "wavtokenizer_ckpt": str(wavtokenizer_ckpt)}})
    log(f"wrote {out}")
    return out
