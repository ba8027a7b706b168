import math

import numpy as np
import pytest
import torch
from training_helpers import plain_sample

from aromni.models import Decoder, DecoderConfig
from aromni.training.config import LossConfig, PerceptualConfig
from aromni.training.data.batching import collate
from aromni.training.data.shards import Sample
from aromni.training.data.targets import TargetBuilder
from aromni.training.losses import StepTotals, TrainingObjective, weighted_ce_sum
from aromni.training.perceptual import PerceptualHead, load_table
from aromni.vocab.conversation import Span


@pytest.mark.parametrize("fused", [True, False])
def test_weighted_ce_matches_a_hand_computation_and_chunking(fused):
    torch.manual_seed(0)
    V, D = 7, 5
    head = torch.nn.Linear(D, V, bias=False)
    hidden = torch.randn(2, 3, D, requires_grad=True)
    targets = torch.tensor([[1, 4, 6], [0, 2, 3]])
    weights = torch.tensor([[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]])
    got = weighted_ce_sum(hidden, head.weight, targets, weights, chunk_size=0, fused=fused)
    # By hand: -w * log softmax(logits)[target], summed.
    want = 0.0
    for b in range(2):
        for t in range(3):
            z = head(hidden[b, t]).detach().double()
            logp = z[targets[b, t]] - math.log(float(torch.exp(z).sum()))
            want += -float(weights[b, t]) * float(logp)
    assert float(got.detach()) == pytest.approx(want, rel=1e-6)
    g_full = torch.autograd.grad(3.0 * got, (hidden, head.weight))
    chunked = weighted_ce_sum(hidden, head.weight, targets, weights, chunk_size=2, fused=fused)
    g_chunk = torch.autograd.grad(3.0 * chunked, (hidden, head.weight))
    assert float(chunked.detach()) == pytest.approx(float(got.detach()), rel=1e-6)
    for a, b in zip(g_chunk, g_full):
        torch.testing.assert_close(a, b)
    assert (g_full[0][0, 1] == 0).all() and (g_full[0][1, 2] == 0).all()  # zero weight: no gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_ce_equals_autograd_in_values_and_gradients(dtype):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(37, 16, generator=g, requires_grad=True)
    W = torch.randn(50, 16, generator=g, requires_grad=True)
    t = torch.randint(0, 50, (37,), generator=g)
    w = torch.rand(37, generator=g) * 2
    results = []
    for fused in (True, False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            loss = weighted_ce_sum(h[None], W, t[None], w[None], chunk_size=8, fused=fused)
        grads = torch.autograd.grad(0.5 * loss, (h, W))
        results.append((loss.detach(), *grads))
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, **tol)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        # inference: the loss only, no gradient work
        assert float(weighted_ce_sum(h[None], W, t[None], w[None])) == pytest.approx(float(results[0][0]), rel=1e-6)


def test_perceptual_head_is_eq3_with_mean_or_sum():
    torch.manual_seed(1)
    table = torch.randn(10, 4)
    head = PerceptualHead(6, table, reduction="sum")
    h = torch.randn(3, 6)
    codes = torch.tensor([2, 9, 2])
    want = torch.stack([((head.proj.weight @ h[i]) - table[codes[i]]).pow(2).sum() for i in range(3)])
    torch.testing.assert_close(head(h, codes), want)
    head.reduction = "mean"
    torch.testing.assert_close(head(h, codes), want / 4)
    assert head(h[:0], codes[:0]).shape == (0,)  # no image positions is fine
    assert "table" not in head.state_dict()  # E is frozen and not saved with the trainable weights


def test_load_table_reads_safetensors_and_refuses_pickles(tmp_path):
    from safetensors.torch import save_file

    t = torch.randn(8, 3)
    save_file({"table": t}, str(tmp_path / "e.safetensors"))
    torch.testing.assert_close(load_table(tmp_path / "e.safetensors"), t)
    torch.save({"quantize.embedding.weight": t, "other": torch.zeros(3)}, tmp_path / "e.pt")
    torch.testing.assert_close(load_table(tmp_path / "e.pt"), t)
    import pickle

    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"x": object()}))
    from aromni.errors import CheckpointError

    with pytest.raises(CheckpointError, match="weights_only"):
        load_table(tmp_path / "evil.ckpt")


def _caption_sample(layout, task="caption"):
    # <bos> p p <boi> i i i <eoi> p <eoh> p | r r r <eos>   (| = response starts)
    lo, img = layout.text_runs[0][0], layout.image.to_ids([3, 1, 4])
    ids = [layout.bos, lo, lo + 1, layout.boi, *img, layout.eoi, lo + 2, layout.eoh, lo + 3,
           lo + 4, lo + 5, lo + 6, layout.eos]
    resp = [False] * 11 + [True] * 4
    spans = [Span("image", 4, 7, "user", 0), Span("text", 11, 14, "assistant", 1)]
    return Sample(np.asarray(ids), np.asarray(resp), spans, task, "image", "cap0")


def test_tail_weighting_uses_official_and_our_task_names(layout):
    s = _caption_sample(layout)
    for tasks in (["caption"], ["image_caption"]):
        t = TargetBuilder(layout, LossConfig(mode="pretrain", tail_tasks=tasks, tail_weight=2.0))(s)
        # Targets are ids[1:]: the response text tokens are targets 10..12, <eos> is target 13.
        want = np.ones(14, dtype=np.float32)
        want[10:13] = 2.0
        assert t.weights.tolist() == want.tolist()
        assert t.tail.tolist() == [False] * 10 + [True] * 3 + [False]
    s_asr = _caption_sample(layout, task="speech_to_text")
    t = TargetBuilder(layout, LossConfig(mode="pretrain", tail_tasks=["asr"]))(s_asr)
    assert t.weights.max() == 2.0
    t = TargetBuilder(layout, LossConfig(mode="pretrain", tail_tasks=["tts"]))(s)
    assert (t.weights == 1).all()
    t = TargetBuilder(layout, LossConfig(mode="sft", tail_tasks=["caption"]))(s)
    assert t.weights.tolist() == [0.0] * 10 + [2.0] * 3 + [1.0]
    t = TargetBuilder(layout, LossConfig(mode="sft", weighted_ntp=False))(s)  # "simple NTP"
    assert t.weights.tolist() == [0.0] * 10 + [1.0] * 4


def test_segment_weight_inside_ins_res(layout):
    lo = layout.text_runs[0][0]
    ids = [layout.bos, lo, layout.eoh, layout.ins, lo + 1, lo + 2, layout.res, lo + 3, layout.eos]
    resp = [False, False, False, True, True, True, True, True, True]
    s = Sample(np.asarray(ids), np.asarray(resp), [], "chat", "text", "x")
    t = TargetBuilder(layout, LossConfig(mode="sft", tail_tasks=[], segment_weight=3.0))(s)
    assert t.weights.tolist() == [0, 0, 1, 3, 3, 1, 1, 1]


def test_perceptual_alignment_target_vs_input(layout):
    s = _caption_sample(layout, task="t2i")
    t = TargetBuilder(layout, LossConfig(), PerceptualConfig(table="x", align="target"))(s)
    assert t.perc_codes.tolist() == [-1, -1, -1, 3, 1, 4] + [-1] * 8  # targets ids[4:7] are the codes
    t = TargetBuilder(layout, LossConfig(), PerceptualConfig(table="x", align="input"))(s)
    assert t.perc_codes.tolist() == [-1, -1, -1, -1, 3, 1, 4] + [-1] * 7
    t = TargetBuilder(layout, LossConfig(mode="sft"), PerceptualConfig(table="x"))(s)
    assert (t.perc_codes == -1).all()  # prompt images are not trained on in SFT
    t = TargetBuilder(layout, LossConfig(), PerceptualConfig(table="x", tasks=["caption"]))(s)
    assert (t.perc_codes == -1).all()
    t = TargetBuilder(layout, LossConfig(), PerceptualConfig(table="x", tasks=["text_to_image"]))(s)
    assert (t.perc_codes >= 0).sum() == 3


def _objective(layout, reduction="mean", lam=0.5):
    cfg = DecoderConfig(vocab_size=layout.vocab_size, dim=16, n_layers=2, n_heads=2, ffn_dim=32, max_seq_len=64)
    dec = Decoder(cfg)
    dec.init_weights(0.1, generator=torch.Generator().manual_seed(0))
    table = torch.randn(layout.image.size, 5, generator=torch.Generator().manual_seed(1))
    return TrainingObjective(dec, PerceptualHead(16, table, reduction), perc_weight=lam).eval()


@pytest.mark.parametrize("normalize", ["weight", "tokens"])
def test_packed_objective_equals_per_sample_hand_computation(layout, normalize):
    torch.manual_seed(0)
    obj = _objective(layout)
    samples = [_caption_sample(layout, "t2i"), plain_sample(9, "text", layout, "p"), _caption_sample(layout)]
    tb = TargetBuilder(layout, LossConfig(mode="pretrain", tail_tasks=["caption"], normalize=normalize),
                       PerceptualConfig(table="x"))
    tg = [tb(s) for s in samples]
    packed = collate([[tg[0], tg[1]], [tg[2]]], layout.pad, length=32)
    w_sum = float(packed.weights.sum()) if normalize == "weight" else float((packed.weights > 0).sum())
    n_perc = float((packed.perc_codes >= 0).sum())
    loss, ntp_sum, perc_sum = obj(packed.tokens, packed.targets, packed.weights, packed.perc_codes,
                                  packed.segment_ids, StepTotals(w_sum, n_perc))
    # By hand, one sample at a time with a plain (unpacked) causal forward.
    want_ntp, want_perc = 0.0, 0.0
    for t in tg:
        inp = torch.from_numpy(t.inputs)[None]
        h = obj.decoder(inp, return_hidden=True)[0].detach()
        logp = torch.log_softmax(obj.decoder.head(h).double(), -1)
        tgt = torch.from_numpy(t.targets)
        want_ntp += float(-(torch.from_numpy(t.weights).double() * logp[torch.arange(len(t)), tgt]).sum())
        for j in np.nonzero(t.perc_codes >= 0)[0]:
            e = obj.perceptual.proj(h[j]).double() - obj.perceptual.table[int(t.perc_codes[j])].double()
            want_perc += float(e.pow(2).mean())
    assert n_perc == 6  # pretrain: the caption prompt image is trained on too
    assert float(ntp_sum) == pytest.approx(want_ntp, rel=1e-5)
    assert float(perc_sum) == pytest.approx(want_perc, rel=1e-5)
    assert float(loss) == pytest.approx(want_ntp / w_sum + 0.5 * want_perc / n_perc, rel=1e-5)
