"""COCO suites of AR-Omni: captioning (Table 2, CIDEr on the Karpathy test split) and text-to-image (Table 4,
CLIP score of 30k validation captions).

Per-sample records: captions keep the references and the hypothesis (CIDEr's idf comes from the whole set, so
it is computed at the merge); T2I keeps the caption and the image's CLIP score.
"""

from __future__ import annotations

from collections.abc import Sequence

from aromni.evaluation.context import SuiteContext
from aromni.evaluation.datasets import EvalSample
from aromni.evaluation.judges import cider
from aromni.evaluation.judges.cider import resolve_tokenizer
from aromni.inference.omni import OmniModel
from aromni.tokenizers.image.image_io import load_image
from aromni.toyworld.evaluation.generation import decode_image, parse_generation
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import CAPTION, T2I
from aromni.vocab.templates import task_conversation

Record = dict[str, JSONValue]


def _model(ctx: SuiteContext) -> OmniModel:
    assert isinstance(ctx.model, OmniModel)
    return ctx.model


def caption_batch(ctx: SuiteContext, samples: Sequence[EvalSample]) -> list[Record]:
    """Greedy captions of the images with the caption task's own instruction (the official one)."""
    model = _model(ctx)
    opts = model.options(CAPTION.name, {"max_new_tokens": ctx.settings.text_tokens})
    opts = opts.replace(seed=ctx.seeds([s.id for s in samples]))
    outs = model.caption([load_image(s.path) for s in samples], options=opts, instruction=ctx.settings.instruction)
    return [{"cocoid": s.meta["cocoid"], "image": s.meta["image"], "refs": list(s.refs), "hyp": o.text,
             "stop_reason": o.stop_reason} for s, o in zip(samples, outs)]


def caption_metrics(records: Sequence[Record]) -> dict[str, JSONValue]:
    """Corpus CIDEr-D of the hypotheses against every reference (raw, as Table 7; x100, as Table 2)."""
    refs = {str(r["id"]): list(r["refs"]) for r in records}
    hyps = {str(r["id"]): str(r["hyp"]) for r in records}
    corpus, per = cider(refs, hyps)
    return {"n": len(records), "cider": float(corpus), "cider_x100": 100.0 * float(corpus),
            "cider_tokenizer": resolve_tokenizer("auto"),
            "empty_captions": sum(1 for r in records if not str(r["hyp"]).strip()),
            "per_sample": {k: float(v) for k, v in per.items()}}


def t2i_batch(ctx: SuiteContext, samples: Sequence[EvalSample]) -> list[Record]:
    """One image per caption (the T2I task's sampling and CFG), scored by CLIP against the caption. A reply
    without a complete image scores 0 (counted in ``missing_images``)."""
    model = _model(ctx)
    opts = model.options(T2I.name).replace(seed=ctx.seeds([s.id for s in samples]))
    prompts = [model.encode(task_conversation(T2I, style=model.style.name, text=s.text,
                                              instruction=ctx.settings.instruction)) for s in samples]
    outs = [parse_generation(model, g.prompt, g.tokens, g.stop_reason) for g in model.engine.run(prompts, opts)]
    images = [decode_image(model, o.image) for o in outs]
    for s, im in zip(samples, images):
        ctx.save_image(s.id, im)
    have = [i for i, im in enumerate(images) if im is not None]
    scores = ctx.judges.clip.score([images[i] for i in have], [samples[i].text for i in have]) if have else []
    score_of = dict(zip(have, scores))
    return [{"cocoid": s.meta["cocoid"], "text": s.text, "image": images[i] is not None,
             "clip_score": float(score_of.get(i, 0.0)), "stop_reason": outs[i].stop_reason}
            for i, s in enumerate(samples)]


def t2i_metrics(records: Sequence[Record]) -> dict[str, JSONValue]:
    """The mean CLIP score over every caption (missing images count 0)."""
    n = len(records)
    return {"n": n, "clip_score": sum(float(r["clip_score"]) for r in records) / n,
            "missing_images": sum(1 for r in records if not r["image"])}
