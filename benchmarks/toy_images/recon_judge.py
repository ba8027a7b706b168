"""Judge accuracy on VQGAN reconstructions of fresh renders: python benchmarks/toy_images/recon_judge.py TOKENIZER_DIR|bundle [n]."""
import json
import sys

import torch

from aromni.bundle import Bundle
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.image.dataset import to_model_range
from aromni.tokenizers.image.metrics import psnr, to_uint8
from aromni.toyworld.demo import find_bundle
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.image_data import accuracy, render_set

torch.set_num_threads(1)
src = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
tok = Bundle.load(find_bundle()).image if src == "bundle" else load_tokenizer(src)
tok = tok.float().eval()
images, labels = render_set(n, "i11-recon-eval")
judge = ImageJudge.load()
recon = []
with torch.no_grad():
    for i in range(0, n, 100):
        codes = tok.encode(to_model_range(images[i:i + 100]))
        recon.append(to_uint8(tok.decode(codes)))
recon = torch.cat(recon)
res = {"tokenizer": src, "n": n, "psnr": round(psnr(recon, images), 2),
       "gt": accuracy(judge.model, images, labels), "recon": accuracy(judge.model, recon, labels)}
print(json.dumps(res))
