"""The token-to-mel model (CosyVoice2's ``CausalMaskedDiffWithXvec``, ``cosyvoice/flow/flow.py``).

``tokens [B, T]`` (25 Hz) -> ``input_embedding`` -> ``encoder`` (:class:`UpsampleConformerEncoder`, x2 upsampling)
-> ``encoder_proj`` -> ``mu [B, 80, 2T]`` (50 Hz); the ``decoder`` (:class:`CausalConditionalCFM`) turns noise
into mel conditioned on ``mu``, the speaker (``spk_embed_affine_layer`` of the L2-normalised 192-d embedding)
and ``cond`` (the prompt's mel frames, zero elsewhere). Parameter names are the released ``flow.pt``'s, so
:func:`aromni.cosyvoice.flow.official.load_official_flow` loads it strictly.

Prompted inference packs every row as ``[prompt tokens ; tokens]`` (no padding between them), exactly as the
official single-row code concatenates them, so a padded batch equals its rows run one by one.

Streaming (``streaming=True``): chunk-masked attention in the encoder (25 tokens) and the estimator (50 frames).
For a token prefix of ``N`` tokens *including the prompt*, :func:`~aromni.cosyvoice.flow.encoder.final_frames`
``(N)`` frames (counted from the start of the prompt) no longer change when more tokens arrive: whole chunks of
the tokens whose 3 look-ahead tokens are known. ``finalize=False`` drops the held-back tokens' frames, as
CosyVoice2 does; the frames of a trailing incomplete chunk are returned but provisional.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from aromni.cosyvoice.flow.cfm import CausalConditionalCFM
from aromni.cosyvoice.flow.config import FlowConfig
from aromni.cosyvoice.flow.encoder import UpsampleConformerEncoder, pad_mask
from aromni.cosyvoice.flow.estimator import CausalConditionalDecoder
from aromni.errors import CheckpointError, InputError
from aromni.utils.io import atomic_dir, atomic_write_json, read_json

__all__ = ["FLOW_TYPE", "FlowBatch", "Token2Mel", "load_speaker_embedding"]

FLOW_TYPE = "aromni_cosyvoice_flow"
SPEAKER_FILE = "speaker.safetensors"


@dataclass
class FlowBatch:
    """A training batch: ``tokens [B, T]`` (padded), ``token_len [B]``, ``mel [B, 80, 2T]`` (target, zero past
    ``2 * token_len``), ``spk [B, 192]`` (raw speaker embeddings; normalised by the model)."""

    tokens: torch.Tensor
    token_len: torch.Tensor
    mel: torch.Tensor
    spk: torch.Tensor


def load_speaker_embedding(path: str | Path, dim: int = 192) -> torch.Tensor:
    """A ``[dim]`` float32 speaker embedding from ``.npy`` or ``.safetensors`` (one tensor, or key
    ``embedding``); anything else is one :class:`InputError` line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no speaker embedding file", f"pass a .npy or .safetensors holding [{dim}] floats")
    try:
        if path.suffix == ".npy":
            value = torch.from_numpy(np.load(path, allow_pickle=False))
        elif path.suffix == ".safetensors":
            tensors = load_file(str(path))
            value = tensors["embedding"] if "embedding" in tensors else next(iter(tensors.values()))
        else:
            raise InputError(f"{path}: unknown speaker embedding format", "use .npy or .safetensors")
    except InputError:
        raise
    except Exception as e:  # garbage bytes, object arrays, empty files
        raise InputError(f"{path}: unreadable speaker embedding ({type(e).__name__})",
                         f"write [{dim}] floats with numpy.save or safetensors") from None
    value = value.float().reshape(-1) if value.numel() == dim else value
    if value.shape != (dim,) or not torch.isfinite(value).all():
        raise InputError(f"{path}: speaker embedding of shape {tuple(value.shape)}, expected [{dim}] finite floats")
    return value


class Token2Mel(nn.Module):
    """See the module docstring. ``speaker``: the default 192-d embedding used when ``spk`` is None (the toy's
    learned vector; not part of the state dict, saved beside it)."""

    def __init__(self, cfg: FlowConfig):
        super().__init__()
        self.config = cfg
        enc = cfg.encoder
        self.input_embedding = nn.Embedding(cfg.vocab_size, enc.d_model)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.n_mels)
        self.encoder = UpsampleConformerEncoder(enc)
        self.encoder_proj = nn.Linear(enc.d_model, cfg.n_mels)
        estimator = CausalConditionalDecoder(cfg.estimator, enc.static_chunk_size * enc.upsample_stride)
        self.decoder = CausalConditionalCFM(cfg.cfm, estimator)
        self.speaker: torch.Tensor | None = None

    @property
    def pre_lookahead_len(self) -> int:
        return self.config.encoder.pre_lookahead_len

    # ------------------------------------------------------------------ pieces
    def embed_speaker(self, spk: torch.Tensor) -> torch.Tensor:
        """``[B, 192]`` -> ``[B, 80]``: L2-normalise, then the affine layer."""
        return self.spk_embed_affine_layer(F.normalize(spk.float(), dim=1).to(self.encoder_proj.weight.dtype))

    def encode(self, tokens: torch.Tensor, token_len: torch.Tensor, *, streaming: bool = False,
               hold_back: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens [B, T]``, ``token_len [B]`` -> ``(mu [B, 80, 2(T - hold_back)], mu_len [B])`` (padded frames
        hold garbage; mask them with ``mu_len``)."""
        valid = pad_mask(token_len, tokens.shape[1])
        x = self.input_embedding(tokens.clamp(min=0) * valid) * valid[..., None]
        h, h_len = self.encoder(x, token_len, streaming=streaming, hold_back=hold_back)
        return self.encoder_proj(h).transpose(1, 2), h_len

    # ------------------------------------------------------------------ training
    def forward(self, batch: FlowBatch, *, generator: torch.Generator | None = None,
                streaming: bool | None = None, prior_weight: float = 0.0) -> torch.Tensor:
        """The CFM loss of ``batch`` (``streaming`` None: drawn with ``streaming_prob``). Prompt conditioning:
        with probability ``prompt_prob`` a row's ``cond`` holds its first ``U[0, 0.3 len]`` target frames.

        ``prior_weight > 0`` adds Matcha-TTS's prior term, the masked MSE between ``mu`` and the target mel (per
        frame and bin). CosyVoice2 trains ``mu`` through the flow loss alone (weight 0, the default); the term
        makes ``mu`` a mel estimate and speeds up learning at toy scale (docs/cosyvoice.md)."""
        cfg, dev = self.config, batch.tokens.device
        if streaming is None:
            streaming = bool(torch.rand(1, generator=generator, device=dev) < cfg.streaming_prob)
        mu, mu_len = self.encode(batch.tokens, batch.token_len, streaming=streaming)
        mask = pad_mask(mu_len, mu.shape[-1])[:, None].to(mu.dtype)
        cond = torch.zeros_like(batch.mel)
        draws = torch.rand(len(mu_len), 2, generator=generator, device=dev)
        for i, n in enumerate(mu_len.tolist()):
            if draws[i, 0] < cfg.prompt_prob:
                continue
            keep = int(draws[i, 1] * (int(cfg.prompt_max_ratio * n) + 1))  # uniform on 0..int(0.3 n)
            cond[i, :, :keep] = batch.mel[i, :, :keep]
        loss = self.decoder.compute_loss(batch.mel, mask, mu, self.embed_speaker(batch.spk), cond,
                                         streaming=streaming, generator=generator)
        if prior_weight:
            prior = ((mu - batch.mel) ** 2 * mask).sum() / (mask.sum() * mu.shape[1])
            loss = loss + prior_weight * prior
        return loss

    # ------------------------------------------------------------------ inference
    def _speakers(self, spk: torch.Tensor | None, b: int, like: torch.Tensor) -> torch.Tensor:
        if spk is None:
            spk = self.speaker if self.speaker is not None else torch.zeros(self.config.spk_embed_dim)
        spk = spk.to(like.device)
        if spk.dim() == 1:
            spk = spk[None].expand(b, -1)
        if spk.shape != (b, self.config.spk_embed_dim):
            raise InputError(f"speaker embedding of shape {tuple(spk.shape)}, expected [{b}, "
                             f"{self.config.spk_embed_dim}] or [{self.config.spk_embed_dim}]")
        return self.embed_speaker(spk)

    def _check_tokens(self, tokens: torch.Tensor, lens: torch.Tensor, what: str) -> None:
        if tokens.dim() != 2 or lens.shape != (tokens.shape[0],):
            raise InputError(f"{what}: expected [B, T] ids with [B] lengths, got {tuple(tokens.shape)} and "
                             f"{tuple(lens.shape)}")
        if lens.numel() and (int(lens.min()) < 0 or int(lens.max()) > tokens.shape[1]):
            raise InputError(f"{what}: lengths must lie in [0, {tokens.shape[1]}], got {lens.tolist()}")
        valid = tokens[pad_mask(lens, tokens.shape[1])]
        if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= self.config.vocab_size):
            raise InputError(f"{what}: speech token ids must lie in [0, {self.config.vocab_size}), got "
                             f"[{int(valid.min())}, {int(valid.max())}]", "strip EOS and special tokens first")

    def _pack(self, tokens: torch.Tensor, token_len: torch.Tensor, prompt_tokens: torch.Tensor,
              prompt_len: torch.Tensor, prompt_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows ``[prompt ; tokens]`` -> ``(ids [B, T_all], lengths [B], cond [B, 80, 2 T_all])``."""
        b = tokens.shape[0]
        total = prompt_len + token_len
        ids = torch.zeros(b, int(total.max()) if b else 0, dtype=torch.long, device=tokens.device)
        cond = torch.zeros(b, self.config.n_mels, 2 * ids.shape[1], device=tokens.device)
        for i in range(b):
            p, n = int(prompt_len[i]), int(token_len[i])
            ids[i, :p], ids[i, p:p + n] = prompt_tokens[i, :p], tokens[i, :n]
            cond[i, :, : 2 * p] = prompt_mel[i, :, : 2 * p]
        return ids, total, cond

    @torch.no_grad()
    def inference(self, tokens: torch.Tensor, token_len: torch.Tensor | None = None,
                  prompt_tokens: torch.Tensor | None = None, prompt_token_len: torch.Tensor | None = None,
                  prompt_mel: torch.Tensor | None = None, spk: torch.Tensor | None = None, *,
                  n_timesteps: int = 10, cfg_rate: float = 0.7, finalize: bool = True, streaming: bool = False,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens -> mel, CosyVoice2's ``inference`` for a batch.

        Args:
            tokens: ``[B, T]`` ids in ``[0, vocab_size)`` (padding past ``token_len`` is ignored).
            token_len: ``[B]`` (None: all ``T``).
            prompt_tokens, prompt_token_len: ``[B, Tp]``, ``[B]`` (None: no prompt).
            prompt_mel: ``[B, 80, 2 Tp]`` log-mel of the prompt (channels first; row ``b``'s first
                ``2 * prompt_token_len[b]`` frames are used). Required with ``prompt_tokens``.
            spk: ``[B, 192]`` or ``[192]`` raw speaker embedding (None: the model's ``speaker``, else zeros).
            n_timesteps, cfg_rate: Euler steps and guidance ``v = (1 + r) v_cond - r v_uncond``.
            finalize: False holds back the last ``pre_lookahead_len`` tokens (their frames are not returned).
            streaming: chunk-masked attention (needed for frames that do not change as tokens arrive).
            noise: ``[B or 1, 80, >= 2 (Tp + T)]`` starting noise over the packed ``[prompt ; tokens]`` frames
                (None: CosyVoice2's fixed seeded noise, so equal inputs give bit-identical mel).

        Returns:
            ``[B, 80, 2 T']`` float32 mel without the prompt, ``T' = T`` (``T - 3`` when not ``finalize``); row
            ``b`` is valid for ``2 * (token_len[b] - held back)`` frames, zero after.
        """
        dev = self.encoder_proj.weight.device
        if tokens.dim() != 2:
            raise InputError(f"tokens: expected [B, T] ids, got shape {tuple(tokens.shape)}", "add a batch axis")
        tokens = tokens.to(dev)
        b = tokens.shape[0]
        token_len = torch.full((b,), tokens.shape[1], device=dev) if token_len is None else token_len.to(dev)
        self._check_tokens(tokens, token_len, "tokens")
        prompt_tokens, prompt_token_len, prompt_mel = self._check_prompt(b, prompt_tokens, prompt_token_len,
                                                                         prompt_mel, dev)
        ids, total, cond = self._pack(tokens, token_len, prompt_tokens, prompt_token_len, prompt_mel)
        hold = 0 if finalize else self.pre_lookahead_len
        if not finalize and int(token_len.min()) < hold:
            raise InputError(f"finalize=False needs at least {hold} tokens per row, got {token_len.tolist()}",
                             "pass more tokens, or finalize=True for the last piece")
        mu, mu_len = self.encode(ids, total, streaming=streaming, hold_back=hold)
        mask = pad_mask(mu_len, mu.shape[-1])[:, None].to(mu.dtype)
        cond = cond[:, :, : mu.shape[-1]].to(mu.dtype)
        if noise is not None and (noise.dim() != 3 or noise.shape[0] not in (1, b) or noise.shape[1] != mu.shape[1]
                                  or noise.shape[2] < mu.shape[2]):
            raise InputError(f"noise of shape {tuple(noise.shape)}, expected [{b} or 1, {mu.shape[1]}, "
                             f">= {mu.shape[2]}]")
        mel = self.decoder.sample(mu, mask, self._speakers(spk, b, mu), cond, n_timesteps=n_timesteps,
                                  cfg_rate=cfg_rate, noise=noise, streaming=streaming) * mask
        ratio = self.config.token_mel_ratio
        out = torch.zeros(b, mel.shape[1], ratio * max(0, tokens.shape[1] - hold), device=dev)
        for i in range(b):
            start, n = ratio * int(prompt_token_len[i]), ratio * max(0, int(token_len[i]) - hold)
            out[i, :, :n] = mel[i, :, start:start + n]
        return out

    def _check_prompt(self, b: int, prompt_tokens: torch.Tensor | None, prompt_len: torch.Tensor | None,
                      prompt_mel: torch.Tensor | None, dev: torch.device
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if prompt_tokens is None:
            if prompt_mel is not None:
                raise InputError("prompt_mel given without prompt_tokens", "pass both, or neither")
            return (torch.zeros(b, 0, dtype=torch.long, device=dev), torch.zeros(b, dtype=torch.long, device=dev),
                    torch.zeros(b, self.config.n_mels, 0, device=dev))
        prompt_tokens = prompt_tokens.to(dev)
        prompt_len = (torch.full((b,), prompt_tokens.shape[1], device=dev) if prompt_len is None
                      else prompt_len.to(dev))
        if prompt_tokens.shape[0] != b:
            raise InputError(f"prompt_tokens has {prompt_tokens.shape[0]} rows, tokens {b}")
        self._check_tokens(prompt_tokens, prompt_len, "prompt_tokens")
        want = (b, self.config.n_mels, self.config.token_mel_ratio * prompt_tokens.shape[1])
        if prompt_mel is None or tuple(prompt_mel.shape) != want:
            got = None if prompt_mel is None else tuple(prompt_mel.shape)
            raise InputError(f"prompt_mel of shape {got}, expected {list(want)} ([B, 80, 2 * prompt tokens], "
                             "channels first)", "CosyVoice2 needs len(prompt mel) == 2 * len(prompt tokens)")
        return prompt_tokens, prompt_len, prompt_mel.to(dev).float()

    # ------------------------------------------------------------------ files
    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """``path/{config.json, model.safetensors, speaker.safetensors?}``, written atomically."""
        with atomic_dir(path, overwrite=overwrite) as tmp:
            atomic_write_json(tmp / "config.json", {"type": FLOW_TYPE, **self.config.to_dict()})
            save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                      str(tmp / "model.safetensors"))
            if self.speaker is not None:
                save_file({"embedding": self.speaker.detach().float().cpu().contiguous()}, str(tmp / SPEAKER_FILE))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Token2Mel:
        """Open a :meth:`save_pretrained` directory (strict: every key)."""
        path = Path(path)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise CheckpointError(f"{path}: not a flow model directory (config.json + model.safetensors)",
                                  "pass the flow/ folder written by `aromni cosyvoice flow-train`")
        raw = read_json(path / "config.json")
        if not isinstance(raw, dict) or raw.get("type") != FLOW_TYPE:
            raise CheckpointError(f"{path / 'config.json'}: not an {FLOW_TYPE} config")
        model = cls(FlowConfig.from_dict({k: v for k, v in raw.items() if k != "type"}))
        state = load_file(str(path / "model.safetensors"))
        missing, unexpected = sorted(set(model.state_dict()) - set(state)), sorted(set(state) - set(model.state_dict()))
        if missing or unexpected:
            raise CheckpointError(f"{path}: flow weights do not match the config (missing {missing[:5]}, "
                                  f"unexpected {unexpected[:5]})")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: flow weights do not fit the config "
                                  f"({str(e).splitlines()[-1].strip()})") from None
        if (path / SPEAKER_FILE).is_file():
            model.speaker = load_speaker_embedding(path / SPEAKER_FILE, model.config.spk_embed_dim)
        return model.eval()
