"""``torchrun --nproc-per-node 2 -m aromni eval`` (two CPU processes, gloo): each rank evaluates its shard, rank 0
alone merges and reports, and the result equals a single process's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_public_layouts import write_coco, write_librispeech

from aromni.cli.main import main

pytestmark = pytest.mark.distributed


def test_torchrun_two_ranks_equal_one_process(tmp_path, capsys):
    coco, ls = write_coco(tmp_path / "coco"), write_librispeech(tmp_path / "ls")
    args = ["eval", "--suite", "coco-caption,librispeech", "--model", "toy", "--coco", str(coco),
            "--librispeech", str(ls), "--batch-size", "1", "--quiet", "--json", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "aromni",
           *args, "--out", str(tmp_path / "two")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    two = json.loads(proc.stdout)["results"]  # only rank 0 prints
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads(capsys.readouterr().out)["results"]
    assert [r["metrics"] for r in two] == [r["metrics"] for r in one]
    assert [r["machine"]["world_size"] for r in two] == [2, 2]
    for suite in ("coco-caption", "librispeech"):
        shards = sorted(p.name for p in (tmp_path / "two" / "toy" / suite / "shards").iterdir())
        assert shards == ["rank-0-of-2.done", "rank-1-of-2.done"]
