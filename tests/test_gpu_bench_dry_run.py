"""The prepared GPU benchmark (benchmarks/gpu.sh -> gpu_bench.py) runs its every part on CPU with ``--dry-run``,
so it is known to work before a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_benchmark_dry_run(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "gpu_bench.py", "--dry-run", "--json", str(out)],
                          cwd=ROOT / "benchmarks", capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["bandwidth"]["GB_s"] > 0
    rows = result["decode"]
    assert [r["batch"] for r in rows] == [1, 8]
    for r in rows:
        assert all(r[f"{v}_tok_s"] > 0 for v in ("eager", "compiled", "int8", "int8-compiled", "hf"))
    assert result["tts"]["speech_tokens"] > 0
    assert result["t2i"]["image_tokens"] == 16 and result["t2i"]["seconds_per_image"] > 0
    # The FSDP2 train step (one-process group), eager and compiled, with its MFU.
    train = result["train"]
    assert [r["mode"] for r in train] == ["eager", "compiled"]
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu_measured_peak"] for r in train)
    assert "train compiled:" in proc.stdout
