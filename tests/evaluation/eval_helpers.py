"""Helpers shared by the public-suite tests."""

from __future__ import annotations

import json
from pathlib import Path


def sample_records(out: Path) -> list[dict]:
    """The per-sample records a suite run wrote under ``out/samples``, in sample order."""
    recs = [json.loads(p.read_text()) for p in (out / "samples").glob("*.json")]
    return sorted(recs, key=lambda r: r["index"])
