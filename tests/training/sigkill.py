"""Kill a recipe's run with SIGKILL after a random step, resume it, and compare with an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from loop_driver import STEPS
from safetensors.torch import load_file

from aromni.training.loop import find_checkpoint
from aromni.training.metrics import read_metrics

DRIVER = Path(__file__).with_name("loop_driver.py")
#: Fields that measure time, not the run.
TIMING = ("steps_per_s", "train_minutes")


def _start(recipe: str, out: Path, world: Path | None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    args = [sys.executable, str(DRIVER), recipe, str(out)] + ([str(world)] if world else [])
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> None:
    output = proc.communicate()[0]
    assert proc.returncode == 0, output


def _losses(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in read_metrics(out / "metrics.jsonl")]


def check_sigkill_resume(recipe: str, tmp_path: Path, world: Path | None = None) -> None:
    """Reference run, killed run (after a random logged step), resumed run: logs and weights bitwise equal."""
    kill_after = random.Random().randint(1, STEPS - 2)  # a different step every run; reported on failure
    ref = _start(recipe, tmp_path / "a", world)
    proc = _start(recipe, tmp_path / "b", world)
    metrics = tmp_path / "b" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if metrics.is_file() and any(r.get("step", 0) >= kill_after for r in read_metrics(metrics)):
            break
        assert proc.poll() is None, proc.communicate()[0]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"{recipe}: finished before the kill after step {kill_after}"
    _finish(ref)
    _finish(_start(recipe, tmp_path / "b", world))  # resumes from b/checkpoints/step-N
    a, b = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert a == b, f"{recipe}: killed after step {kill_after}"
    assert max(r["step"] for r in a) == STEPS
    ca, cb = find_checkpoint(tmp_path / "a"), find_checkpoint(tmp_path / "b")
    assert ca is not None and cb is not None and ca.name == cb.name == f"step-{STEPS:08d}"
    wa, wb = load_file(str(ca / "model.safetensors")), load_file(str(cb / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f"{recipe}: kill after {kill_after}"
