"""The released models' text front end: a frozen Flan-T5 encoder (LlamaGen's ``language/t5.py``).

Pipeline (omnivivo.md §1.3): :func:`~aromni.omnivivo.caption_clean.preprocess_caption` (LlamaGen's cleaning,
twice) -> T5 tokenizer with ``max_length=120, padding="max_length", truncation=True, add_special_tokens=True``
(so at most 119 text tokens and EOS, right-padded) -> ``T5EncoderModel(...).last_hidden_state`` ``[B, 120,
d_model]`` (2048 for flan-t5-xl) -> left padding by rotation with the pad rows zeroed
(:func:`~aromni.omnivivo.text_conditioner.left_pad`).

The model is read from a LOCAL directory only (``config.json``, ``tokenizer.json`` or ``spiece.model``, the
weights), never downloaded: ``T5Conditioner.from_pretrained("pretrained/flan-t5-xl")``. A directory holding
the full ``T5ForConditionalGeneration`` (``google/flan-t5-xl``) works; its decoder weights are ignored.
``transformers`` is an optional extra (``pip install "aromni[vivo]"``), imported only when a model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from aromni.errors import CheckpointError, InputError
from aromni.omnivivo.caption_clean import preprocess_caption
from aromni.omnivivo.text_conditioner import check_texts, left_pad
from aromni.utils.device import resolve_device
from aromni.utils.extras import optional
from aromni.utils.io import path_kind, read_json

if TYPE_CHECKING:  # annotations only: transformers is optional
    from transformers import PreTrainedTokenizerBase, T5EncoderModel

#: LlamaGen's caption length (``--t5-feature-max-len``, ``cls_token_num``).
T5_MAX_LENGTH = 120
_EXTRA = "vivo"
_FEATURE = "the Flan-T5 text conditioner"
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_HINT = ("pass a local Flan-T5 directory with config.json, tokenizer.json (or spiece.model) and the weights, "
         "e.g. a download of google/flan-t5-xl")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_t5_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """``None`` -> bfloat16 on an accelerator (LlamaGen's precision) and float32 on CPU; else float32 or
    bfloat16 (float16 is refused: T5's activations overflow it)."""
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    resolved = _DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in (torch.float32, torch.bfloat16):
        raise InputError(f"T5 dtype {dtype!r} is not supported",
                         "use bfloat16 (as LlamaGen) or float32; T5 overflows in float16")
    return resolved


class T5Conditioner:
    """Frozen T5 encoder features, left-padded (a :class:`~aromni.omnivivo.text_conditioner.TextConditioner`).

    Args:
        encoder: a ``transformers.T5EncoderModel`` (put in eval mode and frozen here).
        tokenizer: its tokenizer; its padding and truncation side are set to the right, as LlamaGen's rule
            assumes (the rotation to left padding happens after the encoder).
        max_length: caption slots ``L`` (120 for the released models).
        clean_captions: LlamaGen's cleaning (default, as in training); ``False``: lower-case and strip only.
        source: where it came from (for messages).
    """

    def __init__(self, encoder: T5EncoderModel, tokenizer: PreTrainedTokenizerBase, *,
                 max_length: int = T5_MAX_LENGTH, clean_captions: bool = True, source: str = "<memory>"):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise InputError(f"T5 max_length must be an integer of at least 2, got {max_length!r}")
        self.encoder = encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = "right"  # keep the start of a long caption, as LlamaGen does
        self._max_length = max_length
        self.clean_captions = clean_captions
        self.source = source

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype | str | None = None,
                        device: str | torch.device | None = None, max_length: int = T5_MAX_LENGTH,
                        clean_captions: bool = True) -> T5Conditioner:
        """Load a local T5 directory (see the module docstring); ``dtype`` as :func:`resolve_t5_dtype`.

        A missing path raises :class:`InputError`; a directory that is not a loadable T5 encoder (no config, a
        non-T5 ``model_type``, no weights or tokenizer, weights that do not fill the encoder) raises
        :class:`CheckpointError` naming it; a missing ``transformers`` raises ``MissingExtraError``.
        """
        path = Path(path)
        device = resolve_device(device)
        dtype = resolve_t5_dtype(dtype, device)
        _check_directory(path)
        transformers = optional("transformers", extra=_EXTRA, feature=_FEATURE)
        if not (path / "tokenizer.json").is_file():  # the slow spiece.model is converted with these two
            optional("sentencepiece", extra=_EXTRA, feature=f"reading {path / 'spiece.model'}")
            optional("google.protobuf", extra=_EXTRA, feature=f"reading {path / 'spiece.model'}")
        dtype_kwarg = "dtype" if _version(transformers.__version__) >= (4, 56) else "torch_dtype"
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            encoder, info = transformers.T5EncoderModel.from_pretrained(
                str(path), local_files_only=True, output_loading_info=True, **{dtype_kwarg: dtype})
        except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, SafetensorError, ...
            raise CheckpointError(f"{path}: transformers cannot load it as a T5 encoder ({_short(e)})",
                                  _HINT) from None
        missing = sorted(info.get("missing_keys") or ())
        if missing:  # transformers would silently start these from random values
            raise CheckpointError(f"{path}: the weights lack {len(missing)} T5 encoder tensor(s) (first "
                                  f"{missing[0]!r})", "the weights are not a T5 encoder's; " + _HINT)
        if len(tokenizer) > encoder.config.vocab_size:
            raise CheckpointError(f"{path}: the tokenizer has {len(tokenizer)} tokens but the encoder embeds "
                                  f"{encoder.config.vocab_size}",
                                  "the tokenizer and the weights come from different models")
        return cls(encoder.to(device), tokenizer, max_length=max_length, clean_captions=clean_captions,
                   source=str(path))

    # ------------------------------------------------------------------ the protocol
    @property
    def dim(self) -> int:
        """``d_model`` of the encoder (2048 for flan-t5-xl)."""
        return int(self.encoder.config.d_model)

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean and tokenize: ``ids [B, L]`` long and ``mask [B, L]`` bool, right-padded, EOS last (CPU)."""
        texts = [preprocess_caption(t, self.clean_captions) for t in check_texts(texts)]
        batch = self.tokenizer(texts, max_length=self._max_length, padding="max_length", truncation=True,
                               add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        return batch["input_ids"], batch["attention_mask"].bool()

    def features(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``ids, mask [B, L]`` -> left-padded ``feats [B, L, d_model]`` (encoder dtype, on its
        device) and ``mask [B, L]`` bool."""
        ids, mask = ids.to(self.device), mask.to(self.device)
        # no_grad rather than inference_mode: the features feed trainable modules (LoRA, the speech branch),
        # and autograd refuses to save inference tensors for backward.
        with torch.no_grad():
            hidden = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        return left_pad(hidden, mask, self._max_length)

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` (B strings) -> ``feats [B, L, d_model]``, pad rows zero, and ``mask [B, L]`` bool (left
        padded). Empty list, bare string or non-string item: :class:`InputError`."""
        return self.features(*self.tokenize(texts))


def _check_directory(path: Path) -> None:
    """The checks that need no transformers: a directory with a T5 ``config.json``, weights, a tokenizer."""
    kind = path_kind(path)
    if kind != "dir":
        problem = "no such directory" if kind == "missing" else "not a directory"
        raise InputError(f"{path}: {problem}", _HINT)
    try:
        config = read_json(path / "config.json")
    except InputError as e:
        raise CheckpointError(f"{path}: no readable config.json ({e.problem})", _HINT) from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type != "t5":
        raise CheckpointError(f"{path / 'config.json'}: model_type {model_type!r}, not 't5'", _HINT)
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise CheckpointError(f"{path}: no weights ({', '.join(_WEIGHT_FILES)})", _HINT)
    if not any((path / name).is_file() for name in ("tokenizer.json", "spiece.model")):
        raise CheckpointError(f"{path}: no tokenizer (tokenizer.json or spiece.model)", _HINT)


def _version(text: str) -> tuple[int, int]:
    major, minor = (int(x) for x in re.findall(r"\d+", text)[:2])
    return major, minor


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:200] or type(e).__name__
