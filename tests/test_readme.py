"""Every ```python block of the README runs as written (in a scratch directory holding the demo inputs)."""

import re
import shutil
from pathlib import Path

import pytest
import torch

from aromni.bundle import NAMED_BUNDLES

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S | re.M)
DEMO_INPUTS = ROOT / "src" / "aromni" / "toyworld" / "assets" / "demo_inputs"


def test_readme_has_the_python_api_blocks():
    assert len(BLOCKS) >= 2
    assert any("aromni.load(" in b for b in BLOCKS) and any("setup_caches" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    code = BLOCKS[index]
    if 'aromni.load("toy"' in code and not (NAMED_BUNDLES["toy"] / "config.json").is_file():
        pytest.skip("no toy bundle shipped in this installation")
    for f in DEMO_INPUTS.iterdir():
        shutil.copy(f, tmp_path / f.name)
    monkeypatch.chdir(tmp_path)
    grad = torch.is_grad_enabled()  # a block may switch autograd off globally (inference examples do)
    try:
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "__readme__"})
    finally:
        torch.set_grad_enabled(grad)
