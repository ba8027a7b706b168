"""FSDP2 (fully_shard) on 2 CPU processes: runs, checkpoints (gathered full state), reloads and resumes."""

import pytest
import torch
from training_helpers import run_in_process, tiny_overrides, torchrun

from aromni.models import load_decoder
from aromni.training.checkpoint import load_checkpoint
from aromni.training.metrics import read_metrics

pytestmark = pytest.mark.distributed


def test_fsdp_checkpoint_reloads_and_resumes_on_the_single_process_trajectory(synth_dir, tmp_path):
    common = {"optim.max_steps": 4, "checkpoint.every": 0, "export.enabled": False, "data.micro_batch": 2,
              "optim.grad_accum": 1}
    fsdp = tmp_path / "fsdp"
    # Launch 1 stops after step 2 (checkpoint written from the gathered full state); launch 2 resumes under FSDP
    # (model and optimizer state broadcast from rank 0 and re-sharded) and finishes.
    torchrun(tiny_overrides(synth_dir, fsdp, **common, **{"dist.strategy": "fsdp", "checkpoint.stop_after": 2}))
    state, trainer = load_checkpoint(fsdp / "checkpoints" / "step-00000002")
    assert trainer["step"] == 2 and trainer["world"] == 2 and "perceptual.proj.weight" in state
    assert all("exp_avg" in v for v in trainer["optimizer"]["state"].values())
    log = torchrun(tiny_overrides(synth_dir, fsdp, **common, **{"dist.strategy": "fsdp"}))
    assert "strategy fsdp" in log and "at step 2" in log
    # Reference: one process accumulating the same 4-row global batch.
    run_in_process(tiny_overrides(synth_dir, tmp_path / "one", **{**common, "optim.grad_accum": 2}))
    one, got = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(fsdp / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for a, b in zip(one, got):
        assert (a["perc"] is None) == (b["perc"] is None)
        for key in ("loss", "ntp", "perc"):
            if a[key] is not None:
                assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)
    wa = load_decoder(tmp_path / "one" / "checkpoints" / "step-00000004").state_dict()
    wb = load_decoder(fsdp / "checkpoints" / "step-00000004").state_dict()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)


def test_fsdp_with_compiled_blocks_follows_the_single_process_trajectory(synth_dir, tmp_path):
    """model.compile=true under FSDP2: the compiled blocks are sharded per block like plain ones and train alike."""
    common = {"optim.max_steps": 2, "checkpoint.every": 0, "export.enabled": False, "data.micro_batch": 2,
              "optim.grad_accum": 1}
    fsdp = tmp_path / "fsdp"
    log = torchrun(tiny_overrides(synth_dir, fsdp, **common, **{"dist.strategy": "fsdp", "model.compile": True}))
    assert "strategy fsdp" in log and "'compile': 'each block (torch.compile)'" in log
    run_in_process(tiny_overrides(synth_dir, tmp_path / "one", **{**common, "optim.grad_accum": 2}))
    one, got = read_metrics(tmp_path / "one" / "metrics.jsonl"), read_metrics(fsdp / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2]
    for a, b in zip(one, got):
        for key in ("loss", "ntp"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), (a["step"], key)
    wa = load_decoder(tmp_path / "one" / "checkpoints" / "step-00000002").state_dict()
    wb = load_decoder(fsdp / "checkpoints" / "step-00000002").state_dict()
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5)
