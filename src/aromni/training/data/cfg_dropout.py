"""Condition dropout: train the unconditional row that classifier-free guidance subtracts.

At inference, CFG for image generation (:mod:`aromni.inference.cfg`) mixes the logits of the full prompt with
those of ``[<bos>, <boi>]``, a context without any condition. A model that never saw that context has an
untrained unconditional branch: a T2I-only toy run scored *worse* with CFG than without (docs/toyworld.md, "T2I
only, one fresh image per request"; there, 10% dropout for 1,200 steps did not make CFG help either, and cost
conditional quality, so it is off by default). Diffusion and AR image models train
that branch by dropping the condition from a share of their training samples (LlamaGen: 10% of the class or text
embeddings); here the dropped sample is exactly the inference-time context followed by the image:

    [<bos>, <boi>, code_1 ... code_n, <eoi>, <eos>]      response (loss) from <boi> on

Which samples are dropped is a fixed, seeded share of each listed task's samples (a mask over dataset indices),
so the data order and a resumed run are unchanged by it. Held-out evaluation drops nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from aromni.training.data.shards import Sample
from aromni.training.tasks import canonical_task
from aromni.vocab.conversation import Span
from aromni.vocab.layout import VocabLayout


def unconditional(sample: Sample, layout: VocabLayout) -> Sample | None:
    """``sample``'s last assistant image alone, after ``[<bos>, <boi>]``; ``None`` when it has no such image
    (or its image is not closed by ``<eoi>``), so the caller keeps the sample as it is."""
    spans = [s for s in sample.spans if s.kind == "image" and s.role == "assistant"]
    if not spans:
        return None
    img = spans[-1]
    ids = sample.ids
    if img.start < 1 or img.stop >= ids.size or ids[img.start - 1] != layout.boi or ids[img.stop] != layout.eoi:
        return None
    # <boi> codes <eoi>, then <eos> when the sample ends there (a T2I pair does; a longer dialog is cut after it)
    end = img.stop + 1
    tail = [layout.eos] if end < ids.size and ids[end] == layout.eos else []
    new_ids = np.concatenate([[layout.bos], ids[img.start - 1:end], tail]).astype(np.int64)
    response = np.ones(new_ids.size, dtype=bool)
    response[0] = False
    n = img.stop - img.start
    return Sample(new_ids, response, [Span("image", 2, 2 + n, "assistant", img.turn)], sample.task, sample.group,
                  sample.source + "#uncond")


class CfgDropout:
    """Replaces a seeded share ``prob`` of the samples of ``tasks`` by their :func:`unconditional` form.

    Args:
        tasks_column: the dataset's ``task`` column (one entry per dataset index).
        prob: share of those samples to drop the condition of (0 disables).
        tasks: task names (official names accepted).
        layout: the shards' vocabulary layout.
        seed: which samples (the same seed, the same samples).
    """

    def __init__(self, tasks_column: Sequence[str], prob: float, tasks: Iterable[str], layout: VocabLayout,
                 seed: int = 0):
        wanted = {canonical_task(t) for t in tasks}
        in_task = np.asarray([canonical_task(t) in wanted for t in tasks_column], dtype=bool)
        draws = np.random.default_rng([seed, 0xCF6]).random(in_task.size)
        self.mask = in_task & (draws < prob)
        self.layout = layout

    def __call__(self, index: int, sample: Sample) -> Sample:
        if not self.mask[index]:
            return sample
        return unconditional(sample, self.layout) or sample
