"""The toy world's text front end: a small trainable bidirectional encoder, the T5 conditioner's interface.

Same contract as :class:`~aromni.omnivivo.t5_conditioner.T5Conditioner` (omnivivo.md §4.1): the same caption
cleaning, the same truncation rule (first ``L - 1`` tokens + EOS, :func:`~aromni.omnivivo.text_conditioner.
pad_token_ids`), features computed on right-padded ids, then left-padded with zero pad rows. Architecture::

    our BPE TextTokenizer -> ids (+ two own rows: pad = vocab_size, eos = vocab_size + 1)
    -> token embedding + learned absolute position embedding (position 0 = first token)
    -> n_layer x torch.nn.TransformerEncoderLayer (pre-norm, GELU, no causal mask; pad keys masked out)
    -> LayerNorm -> features [B, L, dim]

Why these choices: positions count from the first token and pads are masked as keys, so a valid row's features
do not depend on how much padding follows (as for T5); torch's encoder layer is the standard non-causal block
and needs no new code; pad and EOS get rows of their own so the conditioner needs no vocabulary layout.

Saved artefact: a directory with ``config.json`` (``"type": "omnivivo_toy_text"``), ``model.safetensors`` and
``tokenizer/`` (the :class:`~aromni.tokenizers.text.TextTokenizer`), written atomically; an existing non-empty
directory is refused unless ``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.models.checkpoint.tensor_files import check_floating
from aromni.omnivivo.caption_clean import preprocess_caption
from aromni.omnivivo.text_conditioner import check_texts, left_pad, pad_token_ids
from aromni.tokenizers.text import TextTokenizer
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue, atomic_dir, atomic_path, atomic_write_json, read_json

TYPE = "omnivivo_toy_text"
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


@dataclass
class ToyTextConfig:
    """Architecture of :class:`ToyTextConditioner`.

    Attributes:
        vocab_size: ids of the text tokenizer (``[0, vocab_size)``); two more rows hold pad and EOS.
        dim: feature width ``C`` (the backbone's ``caption_dim``; 64 for the toy preset).
        max_length: caption slots ``L`` (the backbone's ``cls_token_num``; 16 for the toy preset), >= 2.
        n_layer, n_head, ffn_dim: encoder layers, attention heads (``dim % n_head == 0``), feed-forward width.
        dropout: dropout inside the encoder layers (train mode only).
        clean_captions: LlamaGen's caption cleaning before tokenizing (as the T5 conditioner).
    """

    vocab_size: int
    dim: int = 64
    max_length: int = 16
    n_layer: int = 2
    n_head: int = 4
    ffn_dim: int = 256
    dropout: float = 0.0
    clean_captions: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "max_length", "n_layer", "n_head", "ffn_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"toy text config: {name} must be a positive integer, got {value!r}")
        if self.max_length < 2:
            raise ConfigError(f"toy text config: max_length {self.max_length} leaves no room for text + EOS")
        if self.dim % self.n_head:
            raise ConfigError(f"toy text config: dim {self.dim} is not divisible by n_head {self.n_head}")
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"toy text config: dropout must be a probability in [0, 1), got {p!r}")
        if not isinstance(self.clean_captions, bool):
            raise ConfigError("toy text config: clean_captions must be true or false, "
                              f"got {self.clean_captions!r}")

    def to_dict(self) -> dict[str, JSONValue]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, JSONValue]) -> ToyTextConfig:
        return dataclass_from_dict(cls, d, "toy text config")


class ToyTextConditioner(nn.Module):
    """Trainable caption encoder (a :class:`~aromni.omnivivo.text_conditioner.TextConditioner`).

    Args:
        config: architecture; ``config.vocab_size`` must equal ``tokenizer.vocab_size``.
        tokenizer: the BPE text tokenizer (ids without special tokens).
    """

    def __init__(self, config: ToyTextConfig, tokenizer: TextTokenizer):
        super().__init__()
        if tokenizer.vocab_size != config.vocab_size:
            raise ConfigError(f"toy text config: vocab_size {config.vocab_size} but the tokenizer has "
                              f"{tokenizer.vocab_size} ids", "set vocab_size=tokenizer.vocab_size")
        self.config = config
        self.tokenizer = tokenizer
        self.pad_id, self.eos_id = config.vocab_size, config.vocab_size + 1
        self.tok_embeddings = nn.Embedding(config.vocab_size + 2, config.dim)
        self.pos_embeddings = nn.Embedding(config.max_length, config.dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(config.dim, config.n_head, config.ffn_dim, config.dropout,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(config.n_layer))
        self.norm = nn.LayerNorm(config.dim)
        with torch.no_grad():  # small embeddings, as is usual for pre-norm transformers
            self.tok_embeddings.weight.normal_(0.0, 0.02)
            self.pos_embeddings.weight.normal_(0.0, 0.02)

    # ------------------------------------------------------------------ the protocol
    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean, tokenize, truncate to ``L - 1`` tokens + EOS, right-pad: ``ids, mask [B, L]`` (CPU)."""
        texts = [preprocess_caption(t, self.config.clean_captions) for t in check_texts(texts)]
        ids = self.tokenizer.encode_batch(texts)
        return pad_token_ids(ids, self.config.max_length, self.pad_id, self.eos_id)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ``ids [B, T]`` long with ``mask [B, T]`` (valid first, ``T <= L``; pad slots may hold
        any id) -> left-padded ``feats [B, L, dim]`` (pad rows zero) and ``mask [B, L]`` bool."""
        self._check_ids(ids, mask)
        device = self.tok_embeddings.weight.device
        ids, mask = ids.to(device), mask.to(device).bool()
        # Pad slots are masked as keys; their ids are replaced so any value there is harmless.
        ids = torch.where(mask, ids, torch.full_like(ids, self.pad_id))
        x = self.tok_embeddings(ids) + self.pos_embeddings(torch.arange(ids.shape[1], device=device))
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=~mask)
        return left_pad(self.norm(x), mask, self.config.max_length)

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``texts`` (B strings) -> ``feats [B, L, dim]``, pad rows zero, ``mask [B, L]`` bool (left padded).
        Gradients flow (call under ``torch.no_grad()`` when frozen). Empty list, bare string or non-string
        item: :class:`InputError`."""
        return self(*self.tokenize(texts))

    def _check_ids(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.long, torch.int32) or mask.shape != ids.shape:
            raise InputError(f"ids {tuple(ids.shape)} ({ids.dtype}) and mask {tuple(mask.shape)}: expected "
                             "integer ids [B, T] and a mask of the same shape", "use tokenize(texts)")
        if not 1 <= ids.shape[1] <= self.config.max_length:
            raise InputError(f"{ids.shape[1]} caption slots, expected 1 to {self.config.max_length}")
        valid = ids[mask.bool()]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) > self.eos_id):
            raise InputError(f"caption token id outside [0, {self.eos_id}]", "use tokenize(texts)")
        if not mask.bool().any(dim=1).all():  # a row with no key would make attention undefined (NaN)
            raise InputError("a caption row has no valid token", "every caption holds at least its EOS")

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write ``config.json`` + ``model.safetensors`` + ``tokenizer/`` into ``path`` atomically; an
        existing non-empty ``path`` raises :class:`InputError` unless ``overwrite``."""
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_dir(path, overwrite=overwrite) as tmp:
            with atomic_path(tmp / WEIGHTS) as weights:
                save_file(state, str(weights), metadata={"type": TYPE})
            self.tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
            atomic_write_json(tmp / CONFIG, {"type": TYPE, "format_version": FORMAT_VERSION,
                                             "config": self.config.to_dict()})

    @classmethod
    def from_pretrained(cls, path: str | Path, *,
                        map_location: str | torch.device = "cpu") -> ToyTextConditioner:
        """Load a directory written by :meth:`save_pretrained` (eval mode); anything missing, malformed or not
        matching raises :class:`CheckpointError` naming the file."""
        path = Path(path)
        config = _read_config(path)
        tokenizer = TextTokenizer.from_pretrained(path / TOKENIZER_DIR)
        try:
            state = load_file(str(path / WEIGHTS), device=str(map_location))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path / WEIGHTS}: missing or not a safetensors file ({e})",
                                  "save the conditioner again") from None
        for key, tensor in state.items():
            check_floating(key, tensor.dtype, str(path / WEIGHTS))
        model = cls(config, tokenizer)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first_line = str(e).splitlines()[0][:200]
            raise CheckpointError(f"{path / WEIGHTS}: does not match {CONFIG} ({first_line})",
                                  "the weights and the config come from different conditioners") from None
        return model.to(map_location).eval()


def _read_config(path: Path) -> ToyTextConfig:
    try:
        raw = read_json(path / CONFIG)
    except InputError as e:
        raise CheckpointError(e.problem, f"a {TYPE} artefact is a directory with {CONFIG}, {WEIGHTS} and "
                                         f"{TOKENIZER_DIR}/") from None
    if not isinstance(raw, dict) or raw.get("type") != TYPE or not isinstance(raw.get("config"), dict):
        raise CheckpointError(f"{path / CONFIG}: not a {TYPE} config", f'expected {{"type": "{TYPE}", ...}}')
    version = raw.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path / CONFIG}: format_version {version!r} is not one this aromni reads",
                              f"this version reads format {FORMAT_VERSION}; upgrade aromni")
    try:
        return ToyTextConfig.from_dict(raw["config"])
    except ConfigError as e:
        raise CheckpointError(f"{path / CONFIG}: {e.problem}", e.hint) from None
