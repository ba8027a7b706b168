"""OmniVIVO (omnivivo.md §4.2-§4.5): a frozen LlamaGen t2i backbone with per-row LoRA, plus the trainable speech
modules as siblings outside it.

Parts: ``backbone`` (:class:`~aromni.omnivivo.t2i_model.T2IBackbone`, every original weight frozen, LoRA on its
blocks' ``wqkv, wo, w1, w2, w3``) and ``branch`` (:class:`~aromni.omnivivo.speech_branch.SpeechBranch`: speech
embedding, N blocks, norm, head). Only the LoRA factors and the branch train.

**The backbone stays in eval mode, always** (:meth:`VivoModel.train` puts it back): in train mode LlamaGen's
token / residual / FFN dropouts (0.1 each) would fire inside the frozen network and change what the speech path
learns from, and the image rows would no longer compute LlamaGen's function (§5.5). The caption CFG drop is
never requested either (``caption_embeddings(train=False)``). LoRA's own dropout, if configured, follows the
model's mode. The speech modules take the backbone's dtype (as the LoRA factors do); for mixed precision keep the
model in float32 and train under autocast.

Two entry points: :meth:`VivoModel.speech_loss` (teacher forcing, LoRA on for every row) and
:meth:`VivoModel.joint_forward` (one cached step of the joint decoding loop: image rows with LoRA off and
LlamaGen's RoPE, speech rows with LoRA on and the speech RoPE, in ONE backbone call).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import ConfigError, InputError
from aromni.omnivivo.lora import RowScale, inject_lora, lora_layers, lora_parameters, lora_rows
from aromni.omnivivo.speech_branch import SpeechBranch
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.t2i_rope import rope_1d, rope_2d
from aromni.omnivivo.vivo_config import VivoConfig

IGNORE = -100  # cross-entropy target of padding


def raster_rope_2d(grid_size: int, head_dim: int, base: float, cls_token_num: int, n_positions: int
                   ) -> torch.Tensor:
    """LlamaGen's 2-D zero-prefix table extended to ``n_positions`` raster positions ``[cls + n, head_dim/2, 2]``:
    position ``p`` is (row ``p // grid``, col ``p % grid``), so rows past the grid continue the image downwards.
    On its first ``cls + grid**2`` rows it equals ``rope_2d`` bit for bit (same angles, taken from a larger
    square grid)."""
    side = max(grid_size, math.ceil(n_positions / grid_size))
    square = rope_2d(side, head_dim, base, 0)  # [side * side, P, 2], position r * side + c
    p = torch.arange(n_positions)
    table = square[(p // grid_size) * side + p % grid_size]
    return torch.cat([table.new_zeros(cls_token_num, *table.shape[1:]), table])


def check_captions(cfg: T2IConfig, feats: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Refuse captions that do not fit the backbone: ``feats [B >= 1, cls_token_num, caption_dim]`` and ``mask``
    ``[B, cls_token_num]`` (or ``None``), with :class:`InputError` naming the shape and the fix."""
    want = f"[B, {cfg.cls_token_num}, {cfg.caption_dim}]"
    if not isinstance(feats, torch.Tensor) or feats.dim() != 3 or tuple(feats.shape[1:]) != (
            cfg.cls_token_num, cfg.caption_dim) or not feats.is_floating_point():
        got = tuple(feats.shape) if isinstance(feats, torch.Tensor) else type(feats).__name__
        raise InputError(f"caption features of shape {got}, expected float {want}",
                         "encode the captions with the backbone's text conditioner (left-padded)")
    if feats.shape[0] == 0:
        raise InputError("no prompts (an empty batch of captions)", "pass at least one caption")
    if mask is not None and (not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(feats.shape[:2])):
        got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InputError(f"caption mask of shape {got} for features {tuple(feats.shape)}",
                         "pass one mask entry per caption slot, [B, cls_token_num]")


class VivoModel(nn.Module):
    """The frozen backbone with LoRA, and the speech branch.

    Args:
        backbone: a loaded (or initialised) t2i backbone WITHOUT adapters; LoRA is injected here and every
            original parameter frozen.
        cfg: the speech path's configuration (checked against the backbone).
        generator: draws the LoRA ``A`` init.
    """

    def __init__(self, backbone: T2IBackbone, cfg: VivoConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        if not isinstance(backbone, T2IBackbone):
            raise ConfigError(f"OmniVIVO needs a T2IBackbone, got {type(backbone).__name__}")
        self.cfg = cfg
        self.tap = cfg.tap_index(backbone.cfg.n_layer)
        self.backbone = backbone
        # No LoRA (cfg.lora None): the branch alone learns speech from the frozen backbone's states.
        if cfg.lora is None:
            backbone.requires_grad_(False)
            self.lora_targets: list[str] = []
        else:
            self.lora_targets = inject_lora(backbone, cfg.lora, generator=generator)
        ref = backbone.output.weight
        self.branch = SpeechBranch(cfg, backbone.cfg).to(device=ref.device, dtype=ref.dtype)
        self._speech_rope: dict[torch.device, torch.Tensor] = {}
        self.train(self.training)

    def train(self, mode: bool = True) -> VivoModel:
        """Train or eval mode for the branch and LoRA's dropout; the backbone stays in eval (module docstring)."""
        super().train(mode)
        self.backbone.eval()
        for _, layer in lora_layers(self.backbone):
            layer.lora_dropout.train(mode)
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """LoRA ``A``/``B`` of every adapted projection, then the speech embedding, branch and head."""
        adapters = lora_parameters(self.backbone) if self.lora_targets else []
        return adapters + list(self.branch.parameters())

    def _lora_rows(self, scale: RowScale) -> contextlib.AbstractContextManager[None]:
        """Per-row LoRA scale for one backbone call; nothing to set on a model without adapters."""
        return lora_rows(self.backbone, scale) if self.lora_targets else contextlib.nullcontext()

    # ------------------------------------------------------------------ tables
    def speech_rope_table(self, device: torch.device | None = None) -> torch.Tensor:
        """The speech rows' backbone table ``[cls + max_speech_len, head_dim / 2, 2]`` (``cfg.speech_rope``)."""
        device = torch.device(device) if device is not None else self.backbone.output.weight.device
        table = self._speech_rope.get(device)
        if table is None:
            b = self.backbone.cfg
            with torch.inference_mode(False):
                if self.cfg.speech_rope == "zero_prefix":
                    table = raster_rope_2d(b.grid_size, b.head_dim, b.rope_base, b.cls_token_num,
                                           self.cfg.max_speech_len).to(device)
                else:
                    table = rope_1d(self.cfg.max_speech_len, b.head_dim, b.rope_base, b.cls_token_num,
                                    zero_prefix=False, device=device)
            self._speech_rope[device] = table
        return table

    # ------------------------------------------------------------------ forward pieces
    def backbone_hidden(self, x: torch.Tensor, input_pos: torch.Tensor | None, *, rope: torch.Tensor,
                        caption_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the backbone blocks (LoRA as currently set) -> ``(last block output, tapped output)``, both
        ``[R, T, dim]`` and before the final norm; the tap is read with a forward hook when it is not the last
        block (the image rows still need every block)."""
        def run() -> torch.Tensor:
            return self.backbone.forward_embeddings(x, input_pos, caption_mask=caption_mask, rope=rope,
                                                    return_hidden=True)
        if self.tap == self.backbone.cfg.n_layer - 1:
            h = run()
            return h, h
        with _capture(self.backbone.layers[self.tap]) as captured:
            h = run()
        return h, captured[0]

    def joint_forward(self, x: torch.Tensor, input_pos: torch.Tensor, *, n_image: int, rope: torch.Tensor,
                      caption_mask: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One cached step of the joint loop on rows ``[0:n_image]`` (image: LoRA off, LlamaGen's function) and
        ``[n_image:R]`` (speech: LoRA on, then the branch with its own cache of ``R - n_image`` rows).

        Args:
            x: ``[R, T, dim]`` embeddings at slots ``input_pos [T]``.
            n_image: image rows (cond and uncond), first.
            rope: ``[S, P, 2]`` shared or ``[R, S, P, 2]`` per row.
            caption_mask: ``[R, L]`` caption mask of every row.

        Returns:
            ``(image logits [n_image, V] | None, speech logits [R - n_image, K + 1] | None)`` float32, at the
            last position.
        """
        R = x.shape[0]
        n_speech = R - n_image
        scale: RowScale = 1.0 if n_image == 0 else 0.0 if n_speech == 0 else torch.cat(
            [torch.zeros(n_image), torch.ones(n_speech)]).to(x.device)
        with self._lora_rows(scale):
            last, tap = self.backbone_hidden(x, input_pos, rope=rope, caption_mask=caption_mask)
        image = self.backbone.head(last[:n_image, -1:])[:, -1] if n_image else None
        speech = None
        if n_speech:
            speech = self.branch(tap[n_image:], input_pos, caption_mask=caption_mask[n_image:],
                                 logits_to_keep=1)[:, -1]
        return image, speech

    # ------------------------------------------------------------------ training
    def speech_logits(self, feats: torch.Tensor, caption_mask: torch.Tensor, speech_codes: torch.Tensor
                      ) -> torch.Tensor:
        """Teacher-forced speech logits (§4.2), cache-free, LoRA on.

        Args:
            feats: ``[B, L, caption_dim]`` left-padded caption features (``L = cls_token_num``).
            caption_mask: ``[B, L]``.
            speech_codes: ``[B, N]`` ids in ``[0, K]`` fed after the prefix (``N <= max_speech_len``).

        Returns:
            ``[B, N + 1, K + 1]`` float32: entry ``j`` is predicted from position ``L - 1 + j`` (the last caption
            slot predicts the first code; no BOS, LlamaGen's convention).
        """
        L = self.backbone.cfg.cls_token_num
        prefix = self.backbone.caption_embeddings(feats)  # train=False: never the caption CFG drop (§5.5)
        x = torch.cat([prefix, self.branch.embed(speech_codes)], dim=1)
        with self._lora_rows(1.0):
            _, tap = self.backbone_hidden(x, None, rope=self.speech_rope_table(x.device), caption_mask=caption_mask)
        return self.branch(tap, caption_mask=caption_mask)[:, L - 1:]

    def speech_loss(self, feats: torch.Tensor, caption_mask: torch.Tensor, speech_codes: torch.Tensor,
                    speech_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy of the speech codes and EOS, padding ignored.

        Args:
            feats: ``[B, L, caption_dim]`` left-padded captions; caption_mask ``[B, L]``.
            speech_codes: ``[B, N]`` codes in ``[0, K)``, right-padded (pad values are never read).
            speech_lengths: ``[B]`` valid codes per row, in ``[0, N]``.

        Returns:
            ``(mean loss over the target tokens, their count)``: ``sum(lengths) + B`` targets (codes and EOS).
        """
        codes, valid = self._check_training_inputs(feats, caption_mask, speech_codes, speech_lengths)
        logits = self.speech_logits(feats, caption_mask, codes.masked_fill(~valid, 0))
        B, N = codes.shape
        lengths = speech_lengths.to(codes.device)
        target = torch.full((B, N + 1), IGNORE, dtype=torch.long, device=codes.device)
        target[:, :N] = codes.masked_fill(~valid, IGNORE)
        target = torch.where(torch.arange(N + 1, device=codes.device) == lengths[:, None], self.cfg.eos, target)
        n_tokens = (target != IGNORE).sum()
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE, reduction="sum")
        return loss / n_tokens, n_tokens

    def _check_training_inputs(self, feats: torch.Tensor, caption_mask: torch.Tensor, codes: torch.Tensor,
                               lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_captions(self.backbone.cfg, feats, caption_mask)
        B = feats.shape[0]
        if codes.dim() != 2 or codes.shape[0] != B or codes.dtype.is_floating_point or codes.dtype == torch.bool:
            raise InputError(f"speech codes of {codes.dtype} {tuple(codes.shape)} for {B} captions",
                             "pass integer codes [B, N], right-padded")
        if codes.shape[1] > self.cfg.max_speech_len:
            raise InputError(f"{codes.shape[1]} speech codes per row, more than max_speech_len "
                             f"{self.cfg.max_speech_len}", "cut the utterance or raise max_speech_len")
        if lengths.shape != (B,) or lengths.dtype.is_floating_point:
            raise InputError(f"speech lengths of {lengths.dtype} {tuple(lengths.shape)} for {B} captions",
                             "pass one integer length per row")
        lengths = lengths.to(codes.device)
        if B and (int(lengths.min()) < 0 or int(lengths.max()) > codes.shape[1]):
            raise InputError(f"speech lengths must lie in [0, {codes.shape[1]}], got {lengths.tolist()}")
        valid = torch.arange(codes.shape[1], device=codes.device)[None, :] < lengths[:, None]
        held = codes[valid]
        if held.numel() and (int(held.min()) < 0 or int(held.max()) >= self.cfg.speech_vocab):
            raise InputError(f"speech code outside [0, {self.cfg.speech_vocab})",
                             "speech_vocab must equal the speech tokenizer's codebook size")
        return codes.long(), valid


@contextlib.contextmanager
def _capture(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """``with _capture(module) as out:`` collects ``module``'s forward outputs into the list ``out``."""
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        yield outputs
    finally:
        handle.remove()
