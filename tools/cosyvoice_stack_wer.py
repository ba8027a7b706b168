"""How intelligible a packed CosyVoice2 stack is on a toy world: held-out test sentences (the assistant speech of
the test split's TTS records) are encoded to FSQ tokens and resynthesised, and the world's speech judge reads
each version. Rows: the recordings; their own Matcha mel through Griffin-Lim (the mel/vocoder path's floor); the
stack (flow + HiFT, `tok.decode`); the stack's mel through Griffin-Lim instead of HiFT; the flow encoder's `mu`
through Griffin-Lim (what the tokens carry before flow matching).

    .venv/bin/python tools/cosyvoice_stack_wer.py --stack runs/cosyvoice/stack --world runs/toy2/world --n 24
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aromni.cosyvoice.hift.griffin_lim import griffin_lim_from_mel
from aromni.cosyvoice.mel import matcha_mel
from aromni.omnivivo.toy_eval import heldout_sentences, spread
from aromni.tokenizers.base import load_tokenizer
from aromni.tokenizers.speech.audio_io import load_audio
from aromni.toyworld.evaluation.metrics import corpus_wer
from aromni.toyworld.judges.speech import SpeechJudge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stack", required=True, help="packed stack (aromni cosyvoice pack)")
    ap.add_argument("--world", required=True, help="the toy world")
    ap.add_argument("--n", type=int, default=24, help="held-out sentences (spread over the test split)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sentences = heldout_sentences(Path(args.world))
    chosen = [sentences[i] for i in spread(sentences, args.n)]
    texts = [t for t, _ in chosen]
    tok, judge = load_tokenizer(args.stack), SpeechJudge.load()
    sr = tok.sample_rate
    truth = [load_audio(p, sr) for _, p in chosen]
    with torch.inference_mode():
        codes = [tok.encode(w[None]) for w in truth]
        lens = [torch.tensor([c.shape[1]]) for c in codes]
        mels = [tok.token2wav.mel(c) for c in codes]
        rows = {
            "ground_truth": truth,
            "ground_truth_mel_griffin_lim": [griffin_lim_from_mel(matcha_mel(w[None]))[0] for w in truth],
            "stack_flow_hift": [tok.decode(c)[0] for c in codes],
            "stack_flow_griffin_lim": [griffin_lim_from_mel(m)[0] for m in mels],
            "flow_mu_griffin_lim": [griffin_lim_from_mel(tok.token2wav.flow.encode(c, n)[0])[0]
                                    for c, n in zip(codes, lens)],
        }
    wer = {name: round(corpus_wer(texts, judge.transcribe([w.float() for w in wavs], sample_rate=sr)), 4)
           for name, wavs in rows.items()}
    print(json.dumps({"stack": args.stack, "n": len(texts), "judge_wer": wer}, indent=2))


if __name__ == "__main__":
    main()
