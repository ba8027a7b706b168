"""Measure a toy OmniVIVO export on a toy world's test split (``aromni omnivivo eval``; issue 12, item 9).

Everything is scored on the world's ``test`` split, whose captions, sentences and attribute combinations the
training never saw (``docs/toyworld.md``), by the world's judges:

* **Images** (caption prompts of ``caption``/``t2i`` test records): the joint loop draws each image with its speech
  beside it; the frozen backbone alone (:func:`~aromni.training.recipes.omnivivo.load_export_backbone`, no
  adapters) draws the same prompts with the same seeds. Reported: how many code rows are bit-identical, the image
  judge's accuracy on both (per attribute and all five), and an Inception-Score analogue per attribute,
  ``exp(mean_x KL(p(y|x) || p(y)))`` over the judge's class posteriors (1 = one class for every image or no
  confidence; the class count = confident and evenly spread), beside the same score on the ground-truth images.
* **Coherence**: the speech judge transcribes each narration; per attribute, does the transcript name the value the
  image judge reads in the image drawn beside it (:func:`~aromni.toyworld.evaluation.metrics.attributes_correct`)?
  Also against the caption's own attributes.
* **Speech** (held-out sentences: the TTS test records): speech only; the speech judge's WER on the generated
  speech, on the ground-truth recordings and on their codec resynthesis (the ceiling the speech tokens allow).
* **DNSMOS** (:mod:`aromni.toyworld.judges.dnsmos`) on the first clips of the generated TTS, the ground truth and
  an AR-Omni bundle's TTS of the same sentences.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from aromni import load as load_bundle
from aromni.errors import ConfigError, InputError
from aromni.omnivivo.api import VivoPipeline, VivoResult
from aromni.omnivivo.t2i_generate import T2ISampling, generate_images
from aromni.omnivivo.vivo_generate import collect, generate
from aromni.tokenizers.image.metrics import to_uint8
from aromni.tokenizers.speech.audio_io import load_audio, save_wav
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.evaluation.metrics import attribute_accuracy, attributes_correct, corpus_wer
from aromni.toyworld.judges.dnsmos import dnsmos, mean_scores
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.toyworld.speech_manifest import tts_speech
from aromni.training.recipes.llamagen_t2i_data import CaptionedImage, world_pairs
from aromni.training.recipes.omnivivo import load_export_backbone
from aromni.utils.io import JSONValue, atomic_write_json, atomic_write_text

Attrs = dict[str, str]


@dataclass
class VivoEvalSettings:
    """What :func:`evaluate_vivo` measures, and how much.

    Attributes:
        images: caption prompts drawn with image and speech (evenly spaced over the attributed test pairs).
        sentences: held-out sentences spoken (evenly spaced over the test split's TTS records).
        dnsmos: clips per source scored by DNSMOS (0: skip DNSMOS).
        batch_size: prompts per decoding loop.
        cfg_scale, top_k: the image rows' sampling (the toy t2i recipe's evaluation: cfg 4, all codes).
        seed: prompt ``i`` draws its image with seed ``seed + i`` (speech: the loop's default offset).
        aromni_bundle: an AR-Omni bundle whose TTS of the same sentences DNSMOS scores beside ours (``None``: skip).
    """

    images: int = 96
    sentences: int = 100
    dnsmos: int = 40
    batch_size: int = 8
    cfg_scale: float = 4.0
    top_k: int = 0
    seed: int = 0
    aromni_bundle: str | None = "toy"

    def __post_init__(self) -> None:
        for name in ("images", "sentences", "dnsmos", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "batch_size" else 0):
                raise ConfigError(f"vivo eval: {name} must be a non-negative integer, got {v!r}")


def spread(items: Sequence[object], n: int) -> list[int]:
    """``n`` indices evenly spaced over ``items`` (all of them when ``n >= len(items)``), deterministic."""
    if n >= len(items):
        return list(range(len(items)))
    return [int(i * len(items) / n) for i in range(n)]


def inception_analogue(p: torch.Tensor) -> float | None:
    """``exp(mean_x KL(p(y|x) || mean_x p(y|x)))`` of class posteriors ``p [N, C]`` (``None`` for no rows)."""
    if p.shape[0] == 0:
        return None
    p = p.double().clamp_min(1e-12)
    marginal = p.mean(0, keepdim=True)
    return float(torch.exp((p * (p.log() - marginal.log())).sum(-1).mean()))


def inception_scores(judge: ImageJudge, images: torch.Tensor) -> dict[str, float | None]:
    """The analogue per attribute, for images ``[B, 3, H, W]`` in [0, 1]."""
    post = judge.posteriors(images)
    return {k: _round(inception_analogue(post[k])) for k in ATTRIBUTE_NAMES}


def heldout_sentences(world: Path) -> list[tuple[str, Path]]:
    """(transcript, recording) of the assistant speech in the test split's TTS records."""
    out = tts_speech(world, "test")
    if not out:
        raise InputError(f"{world}: no TTS records in the test split", "build the world with `aromni toyworld build`")
    return out


def _round(x: float | None, n: int = 4) -> float | None:
    return None if x is None or not math.isfinite(x) else round(x, n)


def _as_float(images: Sequence[object]) -> torch.Tensor:
    """PIL images -> ``[B, 3, H, W]`` float in [0, 1]."""
    arrays = [torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
              for im in images]
    return torch.stack(arrays)


# ---------------------------------------------------------------------------------------------- the parts
@dataclass
class _Drawn:
    pairs: list[CaptionedImage]
    results: list[VivoResult]
    alone_codes: torch.Tensor


def _draw(pipeline: VivoPipeline, pairs: list[CaptionedImage], s: VivoEvalSettings, export: Path) -> _Drawn:
    sampling = T2ISampling(cfg_scale=s.cfg_scale, top_k=s.top_k)
    backbone = load_export_backbone(export, device=pipeline.device)
    results: list[VivoResult] = []
    alone = []
    for i in range(0, len(pairs), s.batch_size):
        texts = [p.text for p in pairs[i : i + s.batch_size]]
        seeds = [s.seed + i + j for j in range(len(texts))]
        out = pipeline.generate(texts, seed=seeds, image=sampling)
        results += out if isinstance(out, list) else [out]
        with torch.inference_mode():
            feats, mask = pipeline.conditioner.encode(texts)
        alone.append(generate_images(backbone, feats, mask, cfg_scale=s.cfg_scale, top_k=s.top_k, seed=seeds,
                                     progress=False).cpu())
    return _Drawn(pairs, results, torch.cat(alone))


def _image_part(drawn: _Drawn, pipeline: VivoPipeline, judge: ImageJudge) -> tuple[dict[str, JSONValue],
                                                                                     list[Attrs]]:
    truths = [p.attrs for p in drawn.pairs if p.attrs is not None]
    joint = _as_float([r.image for r in drawn.results])
    joint_codes = torch.stack([r.image_codes for r in drawn.results])
    with torch.inference_mode():
        alone = to_uint8(pipeline.vq.decode(drawn.alone_codes.to(pipeline.device))).float().cpu() / 255
    truth_images = _as_float([_open(p.image) for p in drawn.pairs])
    reads = judge.read(joint)
    identical = [bool(torch.equal(a, b)) for a, b in zip(joint_codes, drawn.alone_codes)]
    part: dict[str, JSONValue] = {
        "n": len(truths),
        "codes_identical_rows": sum(identical),
        "joint_accuracy": _rounded(attribute_accuracy(reads, truths)),
        "backbone_alone_accuracy": _rounded(attribute_accuracy(judge.read(alone), truths)),
        "ground_truth_accuracy": _rounded(attribute_accuracy(judge.read(truth_images), truths)),
        "inception_analogue": {"joint": inception_scores(judge, joint),
                               "ground_truth": inception_scores(judge, truth_images),
                               "classes": {k: len(v) for k, v in judge.cfg.classes.items()}},
    }
    return part, reads


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def _rounded(d: dict[str, float | None]) -> dict[str, float | None]:
    return {k: _round(v) for k, v in d.items()}


def _coherence(drawn: _Drawn, reads: list[Attrs], speech_judge: SpeechJudge, sample_rate: int
               ) -> dict[str, JSONValue]:
    heard = speech_judge.transcribe([r.audio for r in drawn.results], sample_rate=sample_rate)
    vs_image = [attributes_correct(h, r) for h, r in zip(heard, reads)]
    vs_caption = [attributes_correct(h, p.attrs) for h, p in zip(heard, drawn.pairs) if p.attrs is not None]

    def rates(rows: list[dict[str, bool]]) -> dict[str, float | None]:
        if not rows:
            return {"all": None, **{k: None for k in ATTRIBUTE_NAMES}}
        return {"all": _round(sum(all(r.values()) for r in rows) / len(rows)),
                **{k: _round(sum(r[k] for r in rows) / len(rows)) for k in ATTRIBUTE_NAMES}}

    return {"n": len(heard), "speech_names_what_the_image_shows": rates(vs_image),
            "speech_names_the_caption": rates(vs_caption),
            "caption_wer": _round(corpus_wer([p.text for p in drawn.pairs], heard)),
            "stop_reasons": dict(Counter(str(r.stop_reason) for r in drawn.results)),
            "mean_speech_seconds": _round(float(np.mean([r.seconds for r in drawn.results])), 3),
            "examples": [{"prompt": p.text, "heard": h} for p, h in list(zip(drawn.pairs, heard))[:8]]}


def speak(pipeline: VivoPipeline, texts: list[str], s: VivoEvalSettings) -> list[torch.Tensor]:
    """Speech only (plain TTS through the speech rows), decoded offline."""
    audio = []
    tok = pipeline.speech_tokenizer
    for i in range(0, len(texts), s.batch_size):
        batch = texts[i : i + s.batch_size]
        with torch.inference_mode():
            feats, mask = pipeline.conditioner.encode(batch)
            out = collect(generate(pipeline.model, feats, mask, image=False, seed=s.seed + i, progress=False),
                          len(batch))
            for codes in out.speech_codes:
                wav = tok.decode(codes[None].to(pipeline.device))[0] if codes.numel() else torch.zeros(0)
                audio.append(wav.float().cpu())
    return audio


def _resynthesise(pipeline: VivoPipeline, wavs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The recordings through the speech tokenizer and back: what the speech codes can say at best."""
    tok = pipeline.speech_tokenizer
    out = []
    with torch.inference_mode():
        for w in wavs:
            x = w.float()[None].to(pipeline.device)
            out.append(tok.decode(tok.encode(x))[0, : x.shape[1]].float().cpu())
    return out


def _speech_part(pipeline: VivoPipeline, world: Path, s: VivoEvalSettings, judge: SpeechJudge, out: Path
              ) -> dict[str, JSONValue]:
    sentences = heldout_sentences(world)
    chosen = [sentences[i] for i in spread(sentences, s.sentences)]
    texts = [t for t, _ in chosen]
    sr = pipeline.sample_rate
    generated = speak(pipeline, texts, s)
    truth = [load_audio(p, sr) for _, p in chosen]
    resynth = _resynthesise(pipeline, truth)
    heard = {name: judge.transcribe(wavs, sample_rate=sr)
             for name, wavs in (("generated", generated), ("ground_truth", truth), ("codec_resynthesised", resynth))}
    part: dict[str, JSONValue] = {"n": len(texts),
                                  "judge_wer": {k: _round(corpus_wer(texts, v)) for k, v in heard.items()},
                                  "examples": [{"text": t, "heard": h} for t, h in
                                               list(zip(texts, heard["generated"]))[:8]]}
    for i, wav in enumerate(generated[:4]):
        save_wav(out / "audio" / f"tts_{i}.wav", wav.numpy(), sr)
    if s.dnsmos:
        n = min(s.dnsmos, len(texts))
        clips = {"omnivivo": ([w for w in generated[:n] if w.numel()], sr), "ground_truth": (truth[:n], sr)}
        if s.aromni_bundle:
            clips["aromni_" + Path(s.aromni_bundle).name] = _aromni_tts(s.aromni_bundle, texts[:n])
        part["dnsmos"] = {name: {"n": len(w), **mean_scores(dnsmos(w, rate))} for name, (w, rate) in clips.items()}
    return part


def _aromni_tts(bundle: str, texts: list[str]) -> tuple[list[torch.Tensor], int]:
    model = load_bundle(bundle)
    speech = [model.tts(t, seed=0, force_speech=True) for t in texts]
    return [o.audio for o in speech if o.audio.numel()], int(speech[0].sample_rate) if speech else 16000


def _grid(results: list[VivoResult], truths: list[CaptionedImage], path: Path, n: int = 16) -> None:
    """Row pairs: the ground-truth image above the one drawn from its caption (the first ``n`` prompts)."""
    from PIL import Image

    shown = list(zip(results, truths))[:n]
    if not shown:
        return
    size = shown[0][0].image.size[0]
    grid = Image.new("RGB", (size * len(shown), size * 2), "white")
    for i, (r, p) in enumerate(shown):
        grid.paste(_open(p.image).resize((size, size)), (i * size, 0))
        grid.paste(r.image, (i * size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


# ---------------------------------------------------------------------------------------------- entry
def evaluate_vivo(export: str | Path, vq: str | Path, world: str | Path, out: str | Path,
                  settings: VivoEvalSettings | None = None) -> dict[str, JSONValue]:
    """Measure the export on the world's test split; writes ``out/report.json``, ``out/report.md``,
    ``out/grid.png`` (ground truth above generated) and a few wavs, and returns the report."""
    s = settings or VivoEvalSettings()
    export, world, out = Path(export), Path(world), Path(out)
    t0 = time.perf_counter()
    pipeline = VivoPipeline.load(export, vq)
    image_judge, speech_judge = ImageJudge.load(), SpeechJudge.load()
    attributed = [p for p in world_pairs(world, "test") if p.attrs is not None]
    pairs = [attributed[i] for i in spread(attributed, s.images)]
    report: dict[str, JSONValue] = {"export": str(export), "world": str(world), "settings": asdict(s)}
    if pairs:
        drawn = _draw(pipeline, pairs, s, export)
        report["images"], reads = _image_part(drawn, pipeline, image_judge)
        report["coherence"] = _coherence(drawn, reads, speech_judge, pipeline.sample_rate)
        _grid(drawn.results, pairs, out / "grid.png")
        for i, r in enumerate(drawn.results[:4]):
            save_wav(out / "audio" / f"vivo_{i}.wav", r.audio.numpy(), pipeline.sample_rate)
    if s.sentences:
        report["speech"] = _speech_part(pipeline, world, s, speech_judge, out)
    report["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    atomic_write_json(out / "report.json", report)
    atomic_write_text(out / "report.md", render_report(report))
    return report


def render_report(r: dict[str, JSONValue]) -> str:
    """The report as Markdown tables."""
    lines = [f"# OmniVIVO toy evaluation: `{r['export']}` on `{r['world']}` (test split)", ""]
    img = r.get("images")
    if isinstance(img, dict):
        lines += [f"## Images (n {img['n']}; code rows bit-identical to the frozen backbone alone: "
                  f"{img['codes_identical_rows']}/{img['n']})", "",
                  "| source | all five | " + " | ".join(ATTRIBUTE_NAMES) + " |", "|---" * 7 + "|"]
        for name in ("joint_accuracy", "backbone_alone_accuracy", "ground_truth_accuracy"):
            acc = img[name]
            lines.append(f"| {name} | {_pct(acc['all'])} | " + " | ".join(_pct(acc[k]) for k in ATTRIBUTE_NAMES)
                         + " |")
        ia = img["inception_analogue"]
        lines += ["", "Inception-Score analogue (image judge posteriors; the class count is the most):", "",
                  "| images | " + " | ".join(ATTRIBUTE_NAMES) + " |", "|---" * 6 + "|"]
        for name in ("joint", "ground_truth", "classes"):
            lines.append(f"| {name} | " + " | ".join(str(ia[name][k]) for k in ATTRIBUTE_NAMES) + " |")
    coh = r.get("coherence")
    if isinstance(coh, dict):
        lines += ["", f"## Coherence (n {coh['n']}): the judge's transcript of the narration names the attribute",
                  "", "| against | all five | " + " | ".join(ATTRIBUTE_NAMES) + " |", "|---" * 7 + "|"]
        for name in ("speech_names_what_the_image_shows", "speech_names_the_caption"):
            c = coh[name]
            lines.append(f"| {name} | {_pct(c['all'])} | " + " | ".join(_pct(c[k]) for k in ATTRIBUTE_NAMES) + " |")
        lines += ["", f"Caption WER of the narration: {_pct(coh['caption_wer'])}; stop reasons {coh['stop_reasons']};"
                  f" mean {coh['mean_speech_seconds']} s."]
    tts = r.get("speech")
    if isinstance(tts, dict):
        w = tts["judge_wer"]
        lines += ["", f"## TTS, held-out sentences (n {tts['n']})", "",
                  "| speech | judge WER |", "|---|---|"]
        lines += [f"| {k} | {_pct(v)} |" for k, v in w.items()]
        if isinstance(tts.get("dnsmos"), dict):
            lines += ["", "DNSMOS (1-5):", "", "| clips | n | ovrl | sig | bak | p808 |", "|---|---|---|---|---|---|"]
            lines += [f"| {k} | {v['n']} | {v['ovrl']} | {v['sig']} | {v['bak']} | {v['p808']} |"
                      for k, v in tts["dnsmos"].items()]
    lines += ["", f"Evaluation time: {r.get('minutes')} min.", ""]
    return "\n".join(lines)


def _pct(x: object) -> str:
    return "-" if not isinstance(x, (int, float)) else f"{100 * x:.1f}%"
