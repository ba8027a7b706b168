"""Averaging the last N checkpoints of any loop run (training/checkpoint_average.py): the exact arithmetic mean of
the selected tensors of the newest N step directories, non-floating tensors from the newest, the schedule filter,
and clear errors for too few checkpoints, mismatched checkpoints, an empty filter and an existing output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError, InputError
from aromni.training.checkpoint import CHECKPOINTS, TRAINER_STATE, step_dir
from aromni.training.checkpoint_average import (
    average_checkpoints,
    average_last,
    last_checkpoints,
    prefix_filter,
    save_average,
)


def _run(root: Path, steps: list[int], tensors=None) -> Path:
    """A fake run: step dirs whose tensors are known functions of the step (plus a partial, unlisted dir)."""
    for s in steps:
        d = step_dir(root / CHECKPOINTS, s)
        d.mkdir(parents=True)
        state = tensors(s) if tensors else {
            "m.w": torch.full((2, 3), float(s)), "m.half": torch.full((4,), s / 8, dtype=torch.float16),
            "m.count": torch.tensor([s]), "other.x": torch.full((1,), 100.0 * s)}
        save_file(state, str(d / "model.safetensors"))
        (d / TRAINER_STATE).write_bytes(b"")
    (root / CHECKPOINTS / ".step-00000999.tmp").mkdir()  # a save killed half-way is never averaged
    return root


def test_mean_of_the_newest_n_is_exact(tmp_path):
    run = _run(tmp_path, [10, 20, 30, 40, 50, 60])
    state, dirs = average_last(run, 5, keys=prefix_filter("m."))
    assert [d.name for d in dirs] == [f"step-{s:08d}" for s in (20, 30, 40, 50, 60)]
    assert set(state) == {"m.w", "m.half", "m.count"}  # the filter left "other.x" out
    assert torch.equal(state["m.w"], torch.full((2, 3), 40.0))  # (20 + 30 + 40 + 50 + 60) / 5
    assert state["m.half"].dtype == torch.float16 and torch.equal(state["m.half"], torch.full((4,), 5.0).half())
    assert torch.equal(state["m.count"], torch.tensor([60]))  # integers are not averaged: the newest


def test_random_tensors_match_a_hand_computed_mean(tmp_path):
    g = torch.Generator().manual_seed(0)
    saved = {s: {"a": torch.randn(5, 7, generator=g), "b": torch.randn(3, generator=g)} for s in (1, 2, 3)}
    run = _run(tmp_path, [1, 2, 3], tensors=lambda s: saved[s])
    state = average_checkpoints(last_checkpoints(run, 3))
    for k in ("a", "b"):
        hand = sum(saved[s][k].double() for s in (1, 2, 3)) / 3
        assert torch.equal(state[k], hand.float())
        assert not torch.equal(state[k], saved[3][k])


def test_select_counts_only_the_scheduled_checkpoints(tmp_path):
    run = _run(tmp_path, [2, 3, 4, 6])  # step 3: a checkpoint written on an interruption
    dirs = last_checkpoints(run, 3, select=lambda s: s % 2 == 0)
    assert [d.name for d in dirs] == ["step-00000002", "step-00000004", "step-00000006"]
    assert torch.equal(average_checkpoints(dirs)["m.w"], torch.full((2, 3), 4.0))


def test_more_than_available_is_a_clear_error(tmp_path):
    run = _run(tmp_path, [1, 2, 3])
    with pytest.raises(CheckpointError, match="3 checkpoints, fewer than the 5 to average"):
        last_checkpoints(run, 5)
    with pytest.raises(CheckpointError, match="2 checkpoints of the schedule, fewer than the 3"):
        last_checkpoints(run, 3, select=lambda s: s != 2)
    with pytest.raises(CheckpointError, match="0 checkpoints"):
        last_checkpoints(tmp_path / "empty", 1)
    with pytest.raises(InputError, match="positive integer"):
        last_checkpoints(run, 0)


def test_mismatched_checkpoints_and_empty_filter_are_refused(tmp_path):
    run = _run(tmp_path, [1, 2], tensors=lambda s: {"w": torch.zeros(2 + (s == 2))})
    with pytest.raises(CheckpointError, match="w is torch.float32 \\(3,\\)"):
        average_last(run, 2)
    run2 = _run(tmp_path / "r2", [1, 2], tensors=lambda s: {"w": torch.zeros(2), f"x{s}": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="holds other tensors"):
        average_last(run2, 2)
    with pytest.raises(CheckpointError, match="selects no tensor"):
        average_last(run2, 2, keys=prefix_filter("nothing."))


def test_save_average_is_atomic_and_never_overwrites(tmp_path):
    run = _run(tmp_path, [1, 2])
    state, dirs = average_last(run, 2)
    out = tmp_path / "avg.safetensors"
    save_average(out, state, dirs)
    assert torch.equal(load_file(str(out))["m.w"], torch.full((2, 3), 1.5))
    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["averaged_from"]) == [str(d) for d in dirs]
    with pytest.raises(InputError, match="already exists"):
        save_average(out, state, dirs)
    save_average(out, {"w": torch.ones(1)}, dirs, overwrite=True)
    assert set(load_file(str(out))) == {"w"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left behind
