"""The Python snippets of docs/models.md run as written (in order, sharing one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def test_docs_models_snippets_run(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) >= 4
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"docs/models.md[python block {i}]", "exec"), namespace)
    assert namespace["logits"].shape == (2, 1, namespace["cfg"].vocab_size)
    assert (tmp_path / "ckpt-mp" / "consolidated.01.pth").is_file()
