"""Numerical parity with transformers' Chameleon: the measured logit differences and greedy-decode agreement.

The parity tests (tests/models/test_checkpoint_hf.py) assert fp32 logits equal to <= 1e-5; this script prints
the figures they bound. For each random config (swin-norm off/on, multi-head and grouped-query attention, the
tests' tiny size and a larger one) and each direction

* ``ours->hf``: our ``Decoder`` with random weights, written by our HF writer (``save_checkpoint(..., "hf")``),
  loaded by ``ChameleonForConditionalGeneration.from_pretrained``;
* ``hf->ours``: a random ``ChameleonForConditionalGeneration``, written by its ``save_pretrained``, loaded by
  our ``load_decoder``;

it reports the max and mean absolute difference of the full-sequence fp32 logits (transformers' body +
``lm_head``, before its image-token masking; with both ``eager`` and ``sdpa`` attention) and the agreement of
greedy decoding: our prefill + one-token steps on the static KV cache against transformers'
``generate(do_sample=False)`` (an empty ``vocabulary_map`` and no end token, so ``generate()`` masks no logits).

Every parameter is random (norm gains around 1, random per-head QK-norm affines), so a layout error could not
hide behind an initialisation. ``transformers`` is a benchmark/test-only dependency.

    .venv/bin/python benchmarks/parity.py                  # every config (about 20 s on one CPU thread)
    .venv/bin/python benchmarks/parity.py --sizes tiny --json parity.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name

from aromni.models import Decoder, DecoderConfig, load_decoder, save_checkpoint

#: A minimal VQ config so transformers builds a small (unused) image tokenizer inside the model.
TINY_VQ = {"embed_dim": 8, "num_embeddings": 16, "latent_channels": 32, "resolution": 32, "in_channels": 3,
           "base_channels": 32, "channel_multiplier": [1], "num_res_blocks": 1, "attn_resolutions": []}

SIZES = {
    # The parity tests' config (tests/models/chameleon_refs.py::tiny_config).
    "tiny": {"vocab_size": 96, "dim": 32, "n_layers": 2, "n_heads": 4, "ffn_dim": 96, "max_seq_len": 64},
    # Wider and deeper, a realistic head_dim of 64 and a larger vocabulary.
    "small": {"vocab_size": 2048, "dim": 512, "n_layers": 6, "n_heads": 8, "ffn_dim": 1376, "max_seq_len": 128},
}


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter (except transformers' VQ model) random: N(0, 0.2), norm gains 1 + N(0, 0.3)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "vqmodel" in name:
                continue
            gain = name.endswith("weight") and "norm" in name
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.3 * noise if gain else 0.2 * noise)
    return module.eval()


def hf_random(cfg: DecoderConfig, seed: int, dest: Path) -> None:
    """A random transformers Chameleon of ``cfg``'s shape, written with its ``save_pretrained``."""
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration

    hf_cfg = ChameleonConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_dim,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads,
        max_position_embeddings=cfg.max_seq_len, rms_norm_eps=cfg.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta}, swin_norm=cfg.swin_norm,
        vq_config=TINY_VQ, vocabulary_map={}, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    randomize(ChameleonForConditionalGeneration(hf_cfg), seed).save_pretrained(dest)


def pair(cfg: DecoderConfig, direction: str, seed: int, tmp: Path) -> tuple[Decoder, Path]:
    """(our decoder, the HF directory transformers loads) holding the same weights."""
    if direction == "ours->hf":
        ours = randomize(Decoder(cfg), seed)
        save_checkpoint(ours, tmp, "hf", extra_config={"vocabulary_map": {}, "vq_config": TINY_VQ})
        return ours, tmp
    hf_random(cfg, seed, tmp)
    return load_decoder(tmp).eval(), tmp


def hf_load(path: Path, attn: str):
    from transformers import ChameleonForConditionalGeneration

    return ChameleonForConditionalGeneration.from_pretrained(path, attn_implementation=attn,
                                                             dtype=torch.float32).eval()


@torch.no_grad()
def hf_logits(model, tokens: torch.Tensor) -> torch.Tensor:
    """Body + lm_head: the logits before ForConditionalGeneration masks image tokens."""
    return model.lm_head(model.model(input_ids=tokens).last_hidden_state).float()


@torch.no_grad()
def fp64_diff(ours: Decoder, theirs, tokens: torch.Tensor) -> float:
    """Max |logit difference| with both models in float64: what is left is not float32 rounding."""
    try:
        ours.double()
        theirs.double()
        mine = ours.lm_head(ours(tokens, return_hidden=True))  # the decoder's logits are cast to float32
        ref = theirs.lm_head(theirs.model(input_ids=tokens).last_hidden_state)
        return (mine - ref).abs().max().item()
    finally:
        ours.float()
        theirs.float()


@torch.inference_mode()
def ours_greedy(model: Decoder, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    B, P = prompt.shape
    model.setup_caches(B, P + n_new)
    tok = model(prompt, input_pos=torch.arange(P), logits_to_keep=1)[:, -1].argmax(-1)
    out = [tok]
    for t in range(P, P + n_new - 1):
        tok = model(tok[:, None], input_pos=torch.tensor([t]))[:, -1].argmax(-1)
        out.append(tok)
    model.clear_caches()
    return torch.stack(out, 1)


def hf_greedy(model, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    from transformers import GenerationConfig

    # No end token at all (not min_new_tokens: that masks the eos id's logit, which changes the greedy choice
    # whenever eos is the argmax), so generate() runs exactly n_new steps on unmodified logits.
    model.generation_config.eos_token_id = None
    gc = GenerationConfig(max_new_tokens=n_new, do_sample=False, eos_token_id=None, pad_token_id=1,
                          bos_token_id=None)
    with torch.inference_mode():
        seq = model.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=gc)
    new = seq[:, prompt.shape[1]:]
    if new.shape[1] != n_new:
        raise RuntimeError(f"generate() produced {new.shape[1]} tokens, expected {n_new}")
    return new


def measure(size: str, swin: bool, group: int, direction: str, args: argparse.Namespace, seed: int) -> list[dict]:
    """One config (``group`` query heads per key/value head: 1 is multi-head, 2 grouped-query) and direction."""
    cfg = DecoderConfig(**{**SIZES[size], "swin_norm": swin, "n_kv_heads": SIZES[size]["n_heads"] // group})
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg.vocab_size, (args.batch, args.seq_len), generator=gen)
    prompt = torch.randint(0, cfg.vocab_size, (args.batch, args.prompt_len), generator=gen)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ours, path = pair(cfg, direction, seed, Path(tmp))
        with torch.no_grad():
            ref = ours(tokens)
        mine = ours_greedy(ours, prompt, args.new_tokens)
        for attn in args.attn:
            theirs = hf_load(path, attn)
            diff = (ref - hf_logits(theirs, tokens)).abs()
            greedy = hf_greedy(theirs, prompt, args.new_tokens)
            rows.append({"size": size, "swin_norm": swin, "heads": f"{cfg.n_heads}/{cfg.n_kv_heads}",
                         "direction": direction, "attn": attn, "max_abs_diff": diff.max().item(),
                         "mean_abs_diff": diff.mean().item(), "max_abs_logit": ref.abs().max().item(),
                         "fp64_max_abs_diff": fp64_diff(ours, theirs, tokens),
                         "greedy_equal": int((mine == greedy).sum()), "greedy_total": mine.numel()})
    return rows


def print_table(rows: list[dict]) -> None:
    cols = ["size", "swin", "H/Hkv", "direction", "attn", "max |diff|", "mean |diff|", "max |logit|",
            "fp64 max |diff|", "greedy equal"]
    cells = [[r["size"], "on" if r["swin_norm"] else "off", r["heads"], r["direction"], r["attn"],
              f"{r['max_abs_diff']:.2e}", f"{r['mean_abs_diff']:.2e}", f"{r['max_abs_logit']:.1f}",
              f"{r['fp64_max_abs_diff']:.1e}", f"{r['greedy_equal']}/{r['greedy_total']}"] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="tiny,small", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--attn", default="eager,sdpa", help="transformers attention implementations to compare")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=32, help="tokens per row of the full-sequence forward")
    p.add_argument("--prompt-len", type=int, default=9)
    p.add_argument("--new-tokens", type=int, default=24, help="greedy tokens generated per row")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the rows and the environment here")
    args = p.parse_args(argv)
    args.attn = args.attn.split(",")
    sizes = args.sizes.split(",")
    if unknown := [s for s in sizes if s not in SIZES]:
        p.error(f"unknown size(s) {unknown}; choose from {list(SIZES)}")
    torch.set_num_threads(args.threads)
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    env = {"device": f"cpu ({cpu_name()}), {args.threads} thread(s)", "torch": torch.__version__,
           "transformers": transformers.__version__, "python": platform.python_version()}
    rows = []
    cases = [(s, w, g, d) for s in sizes for w in (False, True) for g in (1, 2) for d in ("ours->hf", "hf->ours")]
    for i, case in enumerate(cases):
        rows += measure(*case, args, args.seed + 10 * i)
    print(f"device: {env['device']}; torch {env['torch']}, transformers {env['transformers']}; fp32; "
          f"logits of {args.batch}x{args.seq_len} random tokens; greedy: {args.batch} prompts of {args.prompt_len} "
          f"tokens, {args.new_tokens} new tokens each")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    bad = [r for r in rows if r["greedy_equal"] != r["greedy_total"]]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
