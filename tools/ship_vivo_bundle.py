"""Install a trained toy OmniVIVO export and its VQ as the bundle that ships with the package.

    .venv/bin/python tools/ship_vivo_bundle.py runs/omnivivo/speech_toy/omnivivo runs/omnivivo/vq_toy/tokenizer

Writes ``src/aromni/toyworld/assets/vivo/{omnivivo,vq}/`` (``aromni demo`` runs it when present); the VQ is
stored in half precision (it loads as float32). A component the
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

import torch

from aromni.omnivivo.api import VivoPipeline
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.training.recipes.omnivivo import COMPONENTS

ASSETS = Path(__file__).resolve().parents[1] / "src" / "aromni" / "toyworld" / "assets"


def install(export: Path, vq: Path, dest: Path = ASSETS / "vivo") -> Path:
    config = json.loads((export / "config.json").read_text())
    staging = Path(tempfile.mkdtemp(prefix=".vivo-", dir=dest.parent))
    try:
        shutil.copytree(export, staging / "omnivivo")
        # the VQ in half precision: half the file, decoded in float32 (LlamaGenVQ.from_pretrained)
        # (its usage window stays float32: it holds code indices)
        tokenizer = LlamaGenVQ.from_pretrained(vq)
        used = tokenizer.quantize.codebook_used.clone()
        tokenizer.to(torch.float16).quantize.codebook_used.data = used
        tokenizer.save_pretrained(staging / "vq")
        for name in COMPONENTS:
            entry = config[name]
            src = Path(entry["path"])
            if not src.is_absolute():
                continue
            if not src.resolve().is_relative_to(ASSETS.resolve()):
                sys.exit(f"{name} is referenced at {src}, outside the package's assets: it would not ship")
            entry["path"] = os.path.relpath(src.resolve(), (dest / "omnivivo").resolve())
        (staging / "omnivivo" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        adapter = staging / "omnivivo" / "adapter" / "adapter_config.json"
        if adapter.is_file() and config["backbone"].get("copied"):  # peft's note of the base: the copy, not /home/...
            peft = json.loads(adapter.read_text())
            peft["base_model_name_or_path"] = config["backbone"]["path"]
            adapter.write_text(json.dumps(peft, indent=2) + "\n")
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
