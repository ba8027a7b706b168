"""Checkpoints: atomic step directories, pruning, weights-only loading, and exact resume after SIGKILL."""

import os
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from training_helpers import tiny_overrides

from aromni.errors import CheckpointError
from aromni.models import Decoder, DecoderConfig, load_decoder
from aromni.training import checkpoint as ckpt
from aromni.training.distributed import DistInfo
from aromni.training.metrics import read_metrics
from aromni.training.recipes import pretrain
from aromni.training.trainer import Trainer


def _cli(args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-m", "aromni", "train", "pretrain", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _in_process(args):
    threads = torch.get_num_threads()
    try:
        return Trainer(pretrain.config(None, args)).fit()
    finally:
        torch.set_num_threads(threads)


def test_sigkill_at_a_random_step_then_resume_is_bitwise_identical(synth_dir, tmp_path, capsys):
    # The run is killed in a subprocess; the reference and the resumed run execute in this process (one
    # interpreter start instead of three). All use one thread, fp32, CPU.
    steps = 10
    extra = {"optim.max_steps": steps, "checkpoint.every": 1, "checkpoint.keep_last": 2, "log.sample_ids": True,
             "export.enabled": False}
    kill_after = random.Random().randint(2, steps - 2)  # a different step every run; reported on failure
    out_b = tmp_path / "b"
    proc = _cli(tiny_overrides(synth_dir, out_b, **extra))
    _in_process(tiny_overrides(synth_dir, tmp_path / "a", **extra))
    ref = read_metrics(tmp_path / "a" / "metrics.jsonl")
    assert [r["step"] for r in ref] == list(range(1, steps + 1))

    metrics = out_b / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if metrics.is_file() and any(r["step"] >= kill_after for r in read_metrics(metrics)):
            break
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = ckpt.latest_checkpoint(out_b / "checkpoints")
    assert done is not None, f"killed after step {kill_after} before any checkpoint"
    resumed_at = int(done.name.split("-")[1])
    assert kill_after - 1 <= resumed_at < steps

    capsys.readouterr()
    _in_process(tiny_overrides(synth_dir, out_b, **extra))
    assert f"at step {resumed_at}" in capsys.readouterr().err
    got = read_metrics(metrics)
    assert [r["step"] for r in got] == list(range(1, steps + 1)), f"kill after {kill_after}"
    for a, b in zip(ref, got):
        # Bitwise: the float64 values written by json round-trip exactly.
        for key in ("loss", "ntp", "perc", "lr", "grad_norm", "tail_ratio", "tokens"):
            assert a[key] == b[key], (kill_after, a["step"], key, a[key], b[key])
        assert a["samples"] == b["samples"]  # same samples, same order: none skipped, none repeated
    last = f"step-{steps:08d}"
    da, db = load_decoder(tmp_path / "a" / "checkpoints" / last), load_decoder(out_b / "checkpoints" / last)
    for (k, va), vb in zip(da.state_dict().items(), db.state_dict().values()):
        assert torch.equal(va, vb), k
    assert [p.name for p in ckpt.list_checkpoints(out_b / "checkpoints")] == [f"step-{steps - 1:08d}", last]


def _state_and_cfg():
    cfg = DecoderConfig(vocab_size=64, dim=16, n_layers=1, n_heads=2, ffn_dim=32, max_seq_len=32)
    dec = Decoder(cfg)
    state = {f"decoder.{k}": v for k, v in dec.state_dict().items()}
    state["perceptual.proj.weight"] = torch.randn(3, 16)
    return cfg, state


def test_checkpoint_round_trip_pruning_and_partial_dirs(tmp_path, layout):
    cfg, state = _state_and_cfg()
    rng = ckpt.capture_rng()
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, decoder_cfg=cfg, layout=None, model_state=state,
                             trainer_state={"step": step, "rng": [rng]}, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    (tmp_path / ".step-00000004.abc").mkdir()  # what a save killed half-way leaves
    (tmp_path / "step-00000009").mkdir()  # not complete (no trainer state): ignored
    assert ckpt.latest_checkpoint(tmp_path).name == "step-00000003"
    ckpt.remove_partial(tmp_path)
    assert not (tmp_path / ".step-00000004.abc").exists()
    loaded, trainer = ckpt.load_checkpoint(tmp_path / "step-00000003")
    assert trainer["step"] == 3 and set(loaded) == set(state)
    for k in state:
        assert torch.equal(loaded[k], state[k])
    torch.manual_seed(123)
    a = torch.rand(3)
    ckpt.restore_rng(trainer["rng"][0])
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), a)
    assert ckpt.full_model_state(torch.nn.Linear(2, 2), DistInfo()).keys() == {"weight", "bias"}


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    cfg, state = _state_and_cfg()
    d = ckpt.save_checkpoint(tmp_path, 1, decoder_cfg=cfg, layout=None, model_state=state,
                             trainer_state={"step": 1}, keep_last=0)
    (d / ckpt.TRAINER_STATE).write_bytes(pickle.dumps({"evil": os.getcwd}))
    with pytest.raises(CheckpointError, match="weights_only"):
        ckpt.load_checkpoint(d)
