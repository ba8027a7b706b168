"""World version 1 stays exactly what the shipped bundle was trained on, for every seed.

The fingerprints were taken from the committed code before version 2 existed (HEAD 06a63b5): a digest of every
planned record, image spec and speech job, and of the record and image index files of a built smoke world.
"""

import hashlib
import json
import shutil

import pytest

from aromni.errors import InputError
from aromni.toyworld.build import build_world
from aromni.toyworld.plan import plan_world
from aromni.toyworld.sizes import SIZES

PLAN_FINGERPRINTS = {
    ("smoke", 0): "5ed677a79e88a7714db7b04514a2c07532a21c64a0ce8e3da4260271e4787569",
    ("smoke", 3): "e473fb5324ae5b6d0772e804f695dc1d09624bef82c26726725b445158a4a8fb",
    ("small", 0): "d52edd69a7d842d4f658e5f2e13bd34c6dd5507396515f3ed70789634fbb4d0a",
}
# sha256 of records/{train,validation,test}.jsonl + images.jsonl of a version-1 smoke world, seed 0.
BUILT_SMOKE_FINGERPRINT = "78f844684cfda414c0257162bcf834e9489e96df6c379dad0a1c2210c82f3d62"


def _plan_fingerprint(plan) -> str:
    h = hashlib.sha256()
    for split in sorted(plan.records):
        for r in plan.records[split]:
            h.update(json.dumps(r, sort_keys=True).encode() + b"\n")
    for j in plan.images:
        row = [j.path, j.split, j.spec.to_dict(), j.heldout_combo]
        h.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    for j in plan.speech:
        row = [j.path, j.split, j.text, j.voice.to_dict(), j.speed_jitter, j.pitch_jitter]
        h.update(json.dumps(row, sort_keys=True).encode() + b"\n")
    return h.hexdigest()


@pytest.mark.parametrize(("size", "seed"), sorted(PLAN_FINGERPRINTS))
def test_v1_plans_are_unchanged(size, seed):
    assert _plan_fingerprint(plan_world(SIZES[size], seed)) == PLAN_FINGERPRINTS[(size, seed)]


def test_v1_built_world_is_unchanged_and_says_version_1(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    out = tmp_path / "v1"
    manifest = build_world(out, size="smoke", seed=0, workers=2, progress=False, version=1)
    h = hashlib.sha256()
    for rel in ("records/train.jsonl", "records/validation.jsonl", "records/test.jsonl", "images.jsonl"):
        h.update((out / rel).read_bytes())
    assert h.hexdigest() == BUILT_SMOKE_FINGERPRINT
    assert manifest["version"] == 1 and json.loads((out / "manifest.json").read_text())["version"] == 1
    # Another version in the same directory is another world: refused, not silently returned.
    with pytest.raises(InputError, match="not this world"):
        build_world(out, size="smoke", seed=0, progress=False, version=2)
