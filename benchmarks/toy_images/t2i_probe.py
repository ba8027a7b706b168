"""Experiment B (issue 11): T2I-only tiny decoder for a fixed wall-clock budget, judged on generated images.

python benchmarks/toy_images/t2i_probe.py OUT MINUTES [--steps N] [--init TOKENIZER_OR_BUNDLE] [--vqgan TOKENIZER_DIR] [--eval-only-bundle]

Data: 6,000 jittered renders of random attribute combinations (64 combinations held out), each with a v1 draw
request (grammar.draw_request) as the user turn and its VQGAN codes as the assistant turn, in the shipped bundle's
prompt style; loss on the assistant's response only (image codes + end). Model: configs/toyworld/full.yaml's shape,
built by aromni.training.model_init.build_decoder (so model.image_embed_init is the project's code path).
Eval: 128 prompts of held-out combinations + 128 of training combinations, 64 image codes sampled with top-k 8
(seeded) and greedily, decoded by the same VQGAN, read by the image judge.
"""
import argparse
import itertools
import json
import random
import time
from pathlib import Path

import torch

from aromni.bundle import Bundle
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.image.dataset import to_model_range
from aromni.tokenizers.image.metrics import to_uint8
from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES, ImageAttrs
from aromni.toyworld.demo import find_bundle
from aromni.toyworld.grammar import draw_request
from aromni.toyworld.images import random_spec, render
from aromni.toyworld.judges.image import ImageJudge
from aromni.training.config import ModelConfig
from aromni.training.model_init import build_decoder
from aromni.vocab.conversation import Conversation, Turn, encode_conversation
from aromni.vocab.segments import ImageSegment, TextSegment

import numpy as np

torch.set_num_threads(1)
ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("minutes", type=float, help="wall-clock cap")
ap.add_argument("--steps", type=int, default=450)
ap.add_argument("--init", default="")
ap.add_argument("--vqgan", default="")
ap.add_argument("--eval-only-bundle", action="store_true")
ap.add_argument("--n-train", type=int, default=6000)
args = ap.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

bundle = Bundle.load(find_bundle())
layout, text, style = bundle.layout, bundle.text, bundle.style
vq = (load_tokenizer(args.vqgan) if args.vqgan else bundle.image).float().eval()
judge = ImageJudge.load()

combos = [ImageAttrs(shape=s, color=c, size=z, position=p, background=b)
          for s, c, z, p, b in itertools.product(SHAPES, COLORS, SIZES, POSITIONS, BACKGROUNDS)]
rng = random.Random("i11-t2i")
rng.shuffle(combos)
held, train_combos = combos[:64], combos[64:]


def conv_ids(request: str, codes: list[int] | None) -> tuple[list[int], list[bool]]:
    turns = [Turn("user", [TextSegment(request)])]
    if codes is not None:
        turns.append(Turn("assistant", [ImageSegment(codes)]))
    enc = encode_conversation(Conversation(turns), layout, text, style)
    return enc.ids.tolist(), enc.is_response.tolist()


def encode_images(attrs: list[ImageAttrs], r: random.Random) -> list[list[int]]:
    imgs = torch.stack([torch.from_numpy(np.array(render(random_spec(a, r)))).permute(2, 0, 1) for a in attrs])
    with torch.no_grad():
        return torch.cat([vq.encode(to_model_range(imgs[i:i + 200])) for i in range(0, len(imgs), 200)]).tolist()


# test prompts (fixed): 128 held-out-combination + 128 training-combination requests
trng = random.Random("i11-t2i-test")
test = [(held[i % 64], "heldout") for i in range(128)] + [(trng.choice(train_combos), "train") for _ in range(128)]
test_prompts = [conv_ids(draw_request(a, trng, spoken=False), None)[0] for a, _ in test]


@torch.no_grad()
def generate(decoder: torch.nn.Module, prompts: list[list[int]], topk: int, seed: int) -> torch.Tensor:
    """Left-padded batch decode with the KV cache, logits restricted to image ids -> codes [B, 64]."""
    decoder.eval()
    B, P = len(prompts), max(map(len, prompts))
    toks = torch.full((B, P), layout.special_id("pad"), dtype=torch.long)
    pad = torch.tensor([P - len(p) for p in prompts])
    for i, p in enumerate(prompts):
        toks[i, P - len(p):] = torch.tensor(p)
    # the assistant turn starts with <boi>, which the prompt style does not include: append it
    toks = torch.cat([toks, torch.full((B, 1), layout.special_id("boi"))], 1)
    decoder.setup_caches(B, P + 1 + 64)
    g = torch.Generator().manual_seed(seed)
    img_lo, img_hi = layout.image.start, layout.image.start + layout.image.size
    logits = decoder(toks, torch.arange(P + 1), left_pad=pad, logits_to_keep=1)[:, -1]
    codes = []
    for t in range(64):
        lg = logits[:, img_lo:img_hi]
        if topk > 0:
            v, ix = lg.topk(topk, -1)
            pick = ix.gather(1, torch.multinomial(torch.softmax(v, -1), 1, generator=g))
        else:
            pick = lg.argmax(-1, keepdim=True)
        codes.append(pick)
        logits = decoder(pick + img_lo, torch.tensor([P + 1 + t]))[:, -1]
    decoder.clear_caches()
    return torch.cat(codes, 1)


def judge_codes(codes: torch.Tensor) -> dict[str, dict[str, float]]:
    with torch.no_grad():
        imgs = torch.cat([to_uint8(vq.decode(codes[i:i + 64])) for i in range(0, len(codes), 64)])
    reads = judge.read(imgs.float() / 255)
    res = {}
    for part in ("heldout", "train"):
        idx = [i for i, (_, k) in enumerate(test) if k == part]
        acc = {k: round(sum(reads[i][k] == getattr(test[i][0], k) for i in idx) / len(idx), 3)
               for k in ("shape", "color", "size", "position", "background")}
        acc["all"] = round(sum(all(reads[i][k] == getattr(test[i][0], k) for k in acc) for i in idx) / len(idx), 3)
        res[part] = acc
    return res, imgs


def evaluate(decoder: torch.nn.Module, tag: str) -> dict:
    t0 = time.time()
    res = {}
    for name, k in (("topk8", 8), ("greedy", 0)):
        r, imgs = judge_codes(generate(decoder, test_prompts, k, seed=0))
        res[name] = r
        if name == "topk8":
            from PIL import Image
            grid = imgs[:16].permute(0, 2, 3, 1).reshape(2, 8, 64, 64, 3).permute(0, 2, 1, 3, 4).reshape(128, 512, 3)
            Image.fromarray(grid.numpy()).save(out / f"samples_{tag}.png")
    res["eval_s"] = round(time.time() - t0, 1)
    return res


if args.eval_only_bundle:
    dec = bundle.decoder.float()
    print(json.dumps({"model": "shipped bundle", **evaluate(dec, "bundle")}))
    raise SystemExit

t0 = time.time()
drng = random.Random("i11-t2i-train")
attrs = [drng.choice(train_combos) for _ in range(args.n_train)]
codes = encode_images(attrs, drng)
seqs = [conv_ids(draw_request(a, drng, spoken=False), c) for a, c in zip(attrs, codes)]
T = max(len(s) for s, _ in seqs)
ids = torch.full((len(seqs), T), layout.special_id("pad"), dtype=torch.long)
resp = torch.zeros((len(seqs), T), dtype=torch.bool)
for i, (s, m) in enumerate(seqs):
    ids[i, :len(s)], resp[i, :len(m)] = torch.tensor(s), torch.tensor(m)
data_s = time.time() - t0

mcfg = ModelConfig(decoder={"preset": "tiny", "dim": 256, "n_layers": 6, "n_heads": 8, "n_kv_heads": 4,
                            "ffn_dim": 768, "max_seq_len": 512, "swin_norm": True},
                   image_embed_init=args.init)
decoder, _, notes = build_decoder(mcfg, layout, seed=0)
opt = torch.optim.AdamW(decoder.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
gen = torch.Generator().manual_seed(0)
log, step, t_train = [], 0, time.time()
while step < args.steps and time.time() - t_train < args.minutes * 60:
    for gparam in opt.param_groups:
        gparam["lr"] = 1e-3 * min(1.0, (step + 1) / 100)
    b = torch.randint(0, len(ids), (32,), generator=gen)
    x, m = ids[b], resp[b]
    logits = decoder(x[:, :-1])
    tgt = x[:, 1:].masked_fill(~m[:, 1:], -100)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), ignore_index=-100)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
    opt.step()
    decoder.train()
    if step % 50 == 0:
        log.append((step, round(time.time() - t_train, 1), round(loss.item(), 4)))
        print(log[-1], flush=True)
    step += 1
train_min = (time.time() - t_train) / 60
res = {"init": args.init or "random", "vqgan": args.vqgan or "bundle", "notes": notes, "steps": step,
       "train_min": round(train_min, 2), "data_s": round(data_s, 1), "final_loss": round(loss.item(), 4),
       "loss_log": log, **evaluate(decoder, "final")}
(out / "result.json").write_text(json.dumps(res, indent=1))
print(json.dumps({k: v for k, v in res.items() if k != "loss_log"}))
