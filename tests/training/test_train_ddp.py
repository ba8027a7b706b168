"""DDP on 2 CPU processes (gloo) follows the single-process trajectory for the same global batch."""

import pytest
import torch
from training_helpers import run_in_process, tiny_overrides, torchrun

from aromni.models import load_decoder
from aromni.training.metrics import read_metrics

pytestmark = pytest.mark.distributed


def test_ddp_equals_one_process_accumulating_the_same_global_batch(synth_dir, tmp_path):
    # Global batch per step: 4 packed rows. One process: 2 micro-batches of 2 rows, accumulated. DDP: 2 processes,
    # each 1 micro-batch of 2 rows. The loss normaliser is the global step total in both, so the gradients agree
    # up to float summation order; the tolerance is 1e-6 relative (observed: bitwise equal).
    common = {"optim.max_steps": 4, "checkpoint.every": 0, "log.sample_ids": True, "export.enabled": False,
              "data.micro_batch": 2}
    torchrun(tiny_overrides(synth_dir, tmp_path / "ddp", **common, **{"optim.grad_accum": 1}))
    run_in_process(tiny_overrides(synth_dir, tmp_path / "one", **common, **{"optim.grad_accum": 2}))
    one, ddp = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(tmp_path / "ddp" / "metrics.jsonl")
    assert len(one) == len(ddp) == 4
    for a, b in zip(one, ddp):
        assert a["samples"] == b["samples"]  # the same global batch, in the same order
        assert a["tokens"] == b["tokens"] and a["perc_positions"] == b["perc_positions"]
        assert (a["perc"] is None) == (b["perc"] is None)  # null in a step without image positions
        for key in ("loss", "ntp", "perc", "grad_norm"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-9), (a["step"], key)
    wa = load_decoder(tmp_path / "one" / "checkpoints" / "step-00000004").state_dict()
    wb = load_decoder(tmp_path / "ddp" / "checkpoints" / "step-00000004").state_dict()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6)
