"""Per-sample training targets: shifted ids, per-target loss weights, tail flags and perceptual codes.

A sample of ``L`` ids gives ``L - 1`` positions: input ``ids[j]`` predicts target ``ids[j + 1]``. Weights are
decided per *token* and read at the target (``w[j] = w_tok[j + 1]``):

* pretrain: every token 1 (the official pretrain has no prompt masking); SFT: the ``response`` column (1/0);
* tail weighting (paper eq. 2, official ``--response_weighted_tasks``): in the tasks of ``loss.tail_tasks``, the
  assistant's *text* tokens (``spans`` of kind text, role assistant; so never ``<eos>``/``<eom>`` or markers)
  get ``loss.tail_weight``;
* SFT segment weight: tokens strictly inside ``<ins> ... <res>`` get ``loss.segment_weight``;
* ``loss.weighted_ntp = false`` keeps only which tokens count (weight 1 each).

Perceptual positions (``perc_codes[j] >= 0``, the image code to regress onto) follow ``perceptual.align``:
``"target"``: targets that are image codes (eq. 3); ``"input"``: inputs that are image codes (the official code).
Either way only codes that are themselves trained on (token weight > 0) count, optionally only for some tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aromni.training.config import LossConfig, PerceptualConfig
from aromni.training.data.shards import Sample
from aromni.training.tasks import canonical_task, canonical_tasks
from aromni.vocab.layout import VocabLayout


@dataclass
class SampleTargets:
    """Arrays of one sample, all ``[L - 1]``."""

    inputs: np.ndarray  # int64
    targets: np.ndarray  # int64
    weights: np.ndarray  # float32
    tail: np.ndarray  # bool: target is an up-weighted tail token
    perc_codes: np.ndarray  # int64 image code, -1 where no perceptual term

    def __len__(self) -> int:
        return int(self.inputs.size)


class TargetBuilder:
    """Turns a :class:`Sample` into :class:`SampleTargets` under a loss configuration.

    Args:
        layout: the vocabulary layout of the data.
        loss: weighting options.
        perceptual: perceptual options (``None`` or disabled: no perceptual codes).
        max_positions: truncate longer samples to this many positions.
    """

    def __init__(self, layout: VocabLayout, loss: LossConfig, perceptual: PerceptualConfig | None = None,
                 max_positions: int | None = None):
        self.layout = layout
        self.loss = loss
        self.perc = perceptual if perceptual is not None and perceptual.enabled else None
        self.tail_tasks = canonical_tasks(loss.tail_tasks)
        self.perc_tasks = canonical_tasks(perceptual.tasks) if self.perc is not None else frozenset()
        self.max_positions = max_positions

    def token_weights(self, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
        """Per-token weights ``[L]`` (float32) and tail flags ``[L]`` (bool)."""
        ids = sample.ids
        L = ids.size
        base = np.ones(L, dtype=np.float32) if self.loss.mode == "pretrain" else sample.response.astype(np.float32)
        tail = np.zeros(L, dtype=bool)
        if canonical_task(sample.task) in self.tail_tasks:
            for s in sample.spans:
                if s.kind == "text" and s.role == "assistant":
                    tail[max(s.start, 0):min(s.stop, L)] = True
        tail &= base > 0
        if not self.loss.weighted_ntp:
            return (base > 0).astype(np.float32), np.zeros(L, dtype=bool)
        w = base.copy()
        w[tail] *= np.float32(self.loss.tail_weight)
        if self.loss.segment_weight != 1.0:
            is_ins, is_res = ids == self.layout.ins, ids == self.layout.res
            depth = np.cumsum(is_ins.astype(np.int64)) - np.cumsum(is_res.astype(np.int64))
            inside = (depth > 0) & ~is_ins & ~is_res
            w[inside] *= np.float32(self.loss.segment_weight)
        return w, tail

    def __call__(self, sample: Sample) -> SampleTargets:
        ids = sample.ids.astype(np.int64)
        w_tok, tail_tok = self.token_weights(sample)
        inputs, targets = ids[:-1], ids[1:]
        weights, tail = w_tok[1:], tail_tok[1:]
        perc = np.full(inputs.size, -1, dtype=np.int64)
        if self.perc is not None and (not self.perc_tasks or canonical_task(sample.task) in self.perc_tasks):
            img = self.layout.image
            if self.perc.align == "target":
                sel = img.contains(targets) & (weights > 0)
                perc[sel] = img.to_codes(targets[sel])
            else:
                sel = img.contains(inputs) & (w_tok[:-1] > 0)
                perc[sel] = img.to_codes(inputs[sel])
        out = SampleTargets(inputs, targets, weights.astype(np.float32), tail, perc)
        if self.max_positions is not None and len(out) > self.max_positions:
            n = self.max_positions
            out = SampleTargets(out.inputs[:n], out.targets[:n], out.weights[:n], out.tail[:n], out.perc_codes[:n])
        return out
