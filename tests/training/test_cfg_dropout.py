"""Condition dropout: the unconditional sample is the inference-time CFG context followed by the image."""

import numpy as np
import pytest
from training_helpers import plain_sample

from aromni.errors import ConfigError
from aromni.inference.cfg import cfg_contexts
from aromni.training.config import DataConfig, LossConfig, MixingConfig, PerceptualConfig
from aromni.training.data.cfg_dropout import CfgDropout, unconditional
from aromni.training.data.pipeline import build_batcher
from aromni.training.data.shards import Sample, write_manifest, write_samples
from aromni.vocab.conversation import Conversation, ImageSegment, TextSegment, Turn, encode_conversation


def _t2i(layout, words, seed, style="paper", task="t2i"):
    codes = np.random.default_rng(seed).integers(0, layout.image.size, 9)
    conv = Conversation([Turn("user", [TextSegment(f"draw a red circle {seed % 5}")]),
                         Turn("assistant", [ImageSegment(codes)])])
    enc = encode_conversation(conv, layout, words, style=style)
    return Sample.from_encoded(enc, task=task, group="image", source=f"t{seed}"), codes


@pytest.mark.parametrize("style", ["paper", "official"])
def test_unconditional_is_the_cfg_context_then_the_image(layout, words, style):
    sample, codes = _t2i(layout, words, 3, style)
    u = unconditional(sample, layout)
    prompt = sample.ids[:np.nonzero(sample.response)[0][0] + 1]  # up to and including <boi>
    uncond_row = cfg_contexts([prompt.tolist()], layout)[2]
    assert uncond_row == [layout.bos, layout.boi]
    assert u.ids[:2].tolist() == uncond_row
    assert u.ids[2:11].tolist() == layout.image.to_ids(codes).tolist()
    assert u.ids[11:].tolist() == [layout.eoi, layout.eos]
    assert u.response.tolist() == [False] + [True] * 12
    assert [(s.kind, s.start, s.stop, s.role) for s in u.spans] == [("image", 2, 11, "assistant")]
    assert u.task == "t2i" and u.source == "t3#uncond"
    # Nothing to drop: no assistant image.
    assert unconditional(plain_sample(10, "text", layout, "x"), layout) is None


def test_dropout_picks_a_seeded_share_of_the_named_tasks(layout):
    tasks = ["t2i"] * 2000 + ["image_caption"] * 500 + ["text_to_image"] * 500  # the official name of t2i
    d = CfgDropout(tasks, 0.1, ["t2i"], layout, seed=1)
    assert not d.mask[2000:2500].any()
    assert 0.08 < d.mask[:2000].mean() < 0.12 and 0.07 < d.mask[2500:].mean() < 0.13
    assert (CfgDropout(tasks, 0.1, ["t2i"], layout, seed=1).mask == d.mask).all()
    assert (CfgDropout(tasks, 0.1, ["t2i"], layout, seed=2).mask != d.mask).any()
    assert not CfgDropout(tasks, 0.0, ["t2i"], layout).mask.any()


def test_batches_with_dropout_keep_the_order_and_shorten_only_the_dropped(tmp_path, layout, words):
    samples = [_t2i(layout, words, i)[0] for i in range(60)]
    samples += [_t2i(layout, words, 100 + i, task="caption")[0] for i in range(20)]
    write_samples(tmp_path, "train", samples)
    write_manifest(tmp_path, layout, {}, {})

    def batches(prob):
        cfg = DataConfig(root=str(tmp_path), seq_len=64, micro_batch=2, mixing=MixingConfig(ratios={}), seed=3,
                         cfg_dropout=prob)
        b, rep = build_batcher(cfg, LossConfig(), PerceptualConfig(enabled=False), layout, grad_accum=1)
        return [b.next_step()[0] for _ in range(6)], rep

    plain, rep0 = batches(0.0)
    dropped, rep = batches(0.3)
    assert rep0.cfg_dropout == 0 and 8 <= rep.cfg_dropout <= 30 and "cfg_dropout" in rep.line()
    n_uncond = 0
    for a, b in zip(plain, dropped):
        ids_a = [s.split("#")[0] for s in a.sample_ids]
        assert ids_a == [s.split("#")[0] for s in b.sample_ids]  # the same samples in the same order
        n_uncond += sum(s.endswith("#uncond") for s in b.sample_ids)
        assert not any(s.endswith("#uncond") and not s.startswith("t") for s in b.sample_ids)
        assert b.n_real <= a.n_real
    assert n_uncond > 0
    assert sum(b.n_real for b in dropped) < sum(a.n_real for a in plain)


def test_bad_dropout_share_is_refused():
    with pytest.raises(ConfigError, match="cfg_dropout"):
        DataConfig(cfg_dropout=1.0)
    with pytest.raises(ConfigError, match="cfg_dropout"):
        DataConfig(cfg_dropout=-0.1)


def test_held_out_loss_drops_no_condition(tmp_path, layout, words):
    from aromni.training.config import TrainConfig
    from aromni.training.distributed import DistInfo
    from aromni.training.evaluate import Evaluator

    write_samples(tmp_path, "validation", [_t2i(layout, words, i)[0] for i in range(40)])
    write_manifest(tmp_path, layout, {}, {})
    cfg = TrainConfig(data=DataConfig(root=str(tmp_path), seq_len=64, micro_batch=2, cfg_dropout=0.5))
    ev = Evaluator(cfg, layout, DistInfo())
    assert ev.report.cfg_dropout == 0 and ev.batcher.transform is None
