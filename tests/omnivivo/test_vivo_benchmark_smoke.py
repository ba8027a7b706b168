"""benchmarks/vivo_parallel.py runs end to end at its smallest size (toy, B 1, one repetition, short speech) and
writes a JSON with every field the table and the README rely on; both arms drew the same images and exactly the
requested speech length. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

ROW_FIELDS = {
    "size": str, "backbone_M": float, "speech_path_M": float, "n_layer": int, "dim": int, "branch_layers": int,
    "batch": int, "image_tokens": int, "speech_tokens": int, "guided_cfg_rows": bool, "reps": int,
    "parallel_s": float, "sequential_s": float, "ratio": float, "sequential_image_s": float,
    "sequential_speech_s": float, "parallel_s_median": float, "sequential_s_median": float,
    "ratio_median": float, "parallel_s_all": list, "sequential_s_all": list, "image_codes_equal": bool,
    "speech_codes_equal": bool, "speech_lengths_ok": bool,
}
DEVICE_FIELDS = {"device", "device_type", "threads", "torch", "python", "cpu_count", "dtype", "weights"}


def _load_script(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their helpers as `from _common import ...`
    spec = importlib.util.spec_from_file_location("vivo_parallel_bench", BENCHMARKS / "vivo_parallel.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_vivo_parallel_benchmark_writes_its_json(tmp_path, monkeypatch, capsys):
    script = _load_script(monkeypatch)
    out = tmp_path / "vivo.json"
    status = script.main(["--sizes", "toy", "--batches", "1", "--reps", "1", "--threads", "1",
                          "--speech-tokens", "12", "--json", str(out)])
    report = json.loads(out.read_text())

    assert status == 0  # 0 means every row's image codes agreed between the arms
    assert DEVICE_FIELDS <= set(report["device"])
    assert report["device"]["device_type"] == "cpu" and report["device"]["threads"] == 1
    [row] = report["results"]
    for name, kind in ROW_FIELDS.items():
        assert isinstance(row[name], kind), (name, row[name])
    assert (row["size"], row["batch"], row["speech_tokens"], row["reps"]) == ("toy", 1, 12, 1)
    assert row["image_tokens"] == 64 and row["guided_cfg_rows"]
    assert len(row["parallel_s_all"]) == len(row["sequential_s_all"]) == 1
    assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("parallel_s", "sequential_s", "ratio"))
    assert row["image_codes_equal"] and row["speech_lengths_ok"]
    table = capsys.readouterr().out
    assert "RANDOM weights" in table and "ratio seq/par" in table and "torch " in table
