"""Install a trained toy OmniVIVO export and its VQ as the bundle that ships with the package.

    .venv/bin/python tools/ship_vivo_bundle.py runs/omnivivo/speech_toy/omnivivo runs/omnivivo/vq_toy/tokenizer

Writes ``src/aromni/toyworld/assets/vivo/{omnivivo,vq}/`` (``aromni demo`` runs it when present). A component the
export references by absolute path (too large to copy, e.g. the AR-Omni toy bundle's speech codec) must itself
live inside the package's assets; its path is rewritten relative to the installed export, so the bundle works
wherever the package is installed. The export is then loaded from its new place (fingerprints checked) before
the old bundle is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from aromni.omnivivo.api import VivoPipeline
from aromni.training.recipes.omnivivo import COMPONENTS

ASSETS = Path(__file__).resolve().parents[1] / "src" / "aromni" / "toyworld" / "assets"


def install(export: Path, vq: Path, dest: Path = ASSETS / "vivo") -> Path:
    config = json.loads((export / "config.json").read_text())
    staging = Path(tempfile.mkdtemp(prefix=".vivo-", dir=dest.parent))
    try:
        shutil.copytree(export, staging / "omnivivo")
        shutil.copytree(vq, staging / "vq")
        for name in COMPONENTS:
            entry = config[name]
            src = Path(entry["path"])
            if not src.is_absolute():
                continue
            if not src.resolve().is_relative_to(ASSETS.resolve()):
                sys.exit(f"{name} is referenced at {src}, outside the package's assets: it would not ship")
            entry["path"] = os.path.relpath(src.resolve(), (dest / "omnivivo").resolve())
        (staging / "omnivivo" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        # the relative paths are written for dest/omnivivo: check them from there, after the swap
        old = dest.with_name(".vivo-old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            dest.rename(old)
        staging.rename(dest)
        try:
            VivoPipeline.load(dest / "omnivivo", dest / "vq")
        except Exception:
            shutil.rmtree(dest)
            if old.exists():
                old.rename(dest)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("export", type=Path, help="the omnivivo/ directory of `aromni omnivivo train`")
    p.add_argument("vq", type=Path, help="the tokenizer/ directory of `aromni llamagen vq-train`")
    args = p.parse_args()
    dest = install(args.export, args.vq)
    size = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"installed {dest} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
