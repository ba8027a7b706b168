"""Reconstruction quality of VQGAN tokenizers on shape images (plain background, one shape), as a script::

    python tests/tokenizers/image/measure_shapes.py --images /tmp/shapes_test TOKENIZER_DIR [TOKENIZER_DIR ...]
        [--grid out.png]

Prints one JSON line per tokenizer: PSNR and mean absolute error over all pixels, the same error over the
shape's pixels only (the background is the colour of the top-left pixel), and the per-image error of the shape's
mean colour, taken over its interior (the shape eroded by 2 px, so blurred edges do not count) as the largest
channel difference (0..255; median and 90th percentile). Whole-image PSNR is dominated by
the background, so the shape-only numbers are the ones that say whether shape and colour survive.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch


def shape_metrics(original: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    """uint8 ``[N, 3, H, W]`` originals and reconstructions -> whole-image and shape-only errors."""
    from aromni.tokenizers.image.metrics import color_error, psnr

    mask = (original != original[:, :, :1, :1]).any(1)  # [N, H, W]: pixels that differ from the background
    diff = (recon.double() - original.double()).abs().permute(0, 2, 3, 1)  # [N, H, W, 3]
    outside = (~mask).float()[:, None]
    core = torch.nn.functional.max_pool2d(outside, 5, stride=1, padding=2)[:, 0] == 0  # eroded by 2 px
    col = [(recon[i][:, core[i]].double().mean(1) - original[i][:, core[i]].double().mean(1)).abs().max().item()
           for i in range(len(original)) if core[i].any()]
    col.sort()
    return {"psnr": round(psnr(recon, original), 2), "color_error": round(color_error(recon, original), 2),
            "shape_pixel_error": round(diff[mask].mean().item(), 2),
            "shape_color_error_median": round(statistics.median(col), 1),
            "shape_color_error_p90": round(col[int(0.9 * (len(col) - 1))], 1)}


def reconstruct(tokenizer_dir: Path, images: torch.Tensor) -> torch.Tensor:
    from aromni.tokenizers.base import load_tokenizer
    from aromni.tokenizers.image.dataset import to_model_range
    from aromni.tokenizers.image.metrics import to_uint8

    tok = load_tokenizer(tokenizer_dir)
    return torch.cat([to_uint8(tok.decode(tok.encode(to_model_range(images[i:i + 50]))))
                      for i in range(0, len(images), 50)])


def save_grid(original: torch.Tensor, recon: torch.Tensor, path: Path, n: int = 16) -> None:
    """Pairs (original | reconstruction), 4 per row, scaled 2x."""
    from PIL import Image

    h, w = original.shape[2:]
    grid = Image.new("RGB", (8 * w, ((n + 3) // 4) * h))
    for i in range(min(n, len(original))):
        pair = torch.cat([original[i], recon[i]], 2).permute(1, 2, 0).numpy()
        grid.paste(Image.fromarray(pair, "RGB"), ((i % 4) * 2 * w, (i // 4) * h))
    grid.resize((grid.width * 2, grid.height * 2), Image.NEAREST).save(path)


def main() -> None:
    from aromni.tokenizers.image.dataset import find_images, load_images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tokenizers", nargs="+", type=Path)
    ap.add_argument("--images", required=True)
    ap.add_argument("--grid", type=Path, help="save original|reconstruction pairs of the last tokenizer")
    a = ap.parse_args()
    torch.set_num_threads(1)
    images = None
    for tok_dir in a.tokenizers:
        if images is None:
            from aromni.tokenizers.base import load_tokenizer

            images = load_images(find_images(a.images), load_tokenizer(tok_dir).image_size, disable_progress=True)
        with torch.no_grad():
            recon = reconstruct(tok_dir, images)
        print(json.dumps({"tokenizer": str(tok_dir), "images": len(images), **shape_metrics(images, recon)}))
    if a.grid is not None:
        save_grid(images, recon, a.grid)


if __name__ == "__main__":
    main()
