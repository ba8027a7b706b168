"""``aromni demo`` with a trained toy bundle: every task on the shipped sample inputs, in about a minute on a CPU.

The inputs (``assets/demo_inputs/``, described in its ``inputs.json``) are a few files from the toy world's test
split: held-out voices and a held-out shape×colour pair. Prompts are built as the world's records are (the same
instructions, segment order and prompt style as the training data) and decoded with the eval suite's task
policies. The world's judges say what the outputs contain. Nothing here needs espeak-ng.

Outputs in ``out_dir``: ``tts.wav``, ``asr.txt``, ``caption.txt``, ``t2i.png``, ``s2i.png`` + ``s2i.txt``,
``vqa_speech.wav``, ``chat_turn1.png``, ``chat_turn2.txt``, and ``summary.json``. When the toy OmniVIVO bundle is
installed too (``assets/vivo/``), one prompt also gives ``vivo.png`` + ``vivo.wav``, drawn and spoken in one loop.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aromni
from aromni.errors import InputError
from aromni.inference.omni import OmniModel
from aromni.inference.options import DecodeOptions
from aromni.omnivivo.api import VivoPipeline
from aromni.omnivivo.t2i_generate import T2ISampling
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.toyworld.evaluation import metrics as M
from aromni.toyworld.evaluation.generation import (
    ANSWER_SPEECH,
    ANSWER_TEXT,
    Caps,
    Output,
    decode_image,
    decode_speech,
    generate,
    policy_options,
    stream_speech,
)
from aromni.toyworld.evaluation.prompts import MediaEncoder, encode_prompt, record_prompt, record_turns
from aromni.toyworld.grammar import INSTRUCTIONS as I
from aromni.toyworld.judges.image import ImageJudge
from aromni.toyworld.judges.speech import SpeechJudge
from aromni.toyworld.judges.store import speech_judge_dir
from aromni.toyworld.report_figures import clean, describe
from aromni.utils.io import atomic_write_json, atomic_write_text, read_json
from aromni.vocab.conversation import ImageSegment, Turn
from aromni.vocab.tasks import ASR, CAPTION, S2I, T2I, TTS

ASSETS = Path(__file__).resolve().parent / "assets"
INPUTS = ASSETS / "demo_inputs"
#: The world version the shipped bundle was trained on (its judge is the one that reads that world).
SHIPPED_WORLD_VERSION = 2
TTS_TEXT = "a big blue star at the top right on a white background"
T2I_TEXT = "a small orange diamond at the bottom left on a gray background"
CHAT_REQUEST = "draw a big green circle at the top left on a beige background"
#: OmniVIVO's prompt: (star, purple) is a held-out shape x colour pair of the version-2 world (``splits.py``), so
#: no training caption of the bundle's backbone describes it.
VIVO_TEXT = "a big purple star at the top left on a white background"
OUTPUTS = ("tts.wav", "asr.txt", "caption.txt", "t2i.png", "s2i.png", "s2i.txt", "vqa_speech.wav", "chat_turn1.png",
           "chat_turn2.txt", "vivo.png", "vivo.wav", "summary.json")
#: Where a run writes its outputs before they are moved into ``out_dir`` (a failed run leaves none behind).
STAGING = ".demo-partial"


def find_bundle() -> Path | None:
    """The shipped toy bundle (``assets/bundle/``) when it is installed, else ``None``."""
    path = ASSETS / "bundle"
    return path if (path / "config.json").is_file() else None


def find_vivo() -> tuple[Path, Path] | None:
    """The shipped toy OmniVIVO bundle (``assets/vivo/``: the export and its VQ) when installed, else ``None``."""
    path = ASSETS / "vivo"
    found = (path / "omnivivo", path / "vq")
    return found if all((p / "config.json").is_file() for p in found) else None


def _text(t: str) -> dict[str, str]:
    return {"type": "text", "text": t}


def _media(kind: str, file: str) -> dict[str, str]:
    return {"type": kind, "path": file}


def _user(*segments: dict[str, str]) -> dict[str, Any]:
    return {"id": "demo", "turns": [{"role": "user", "segments": list(segments)}]}


def _check_out(out: Path) -> None:
    # Rerunning the demo replaces its own files; anything else in the folder is the user's and stops the run.
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a directory", "choose an empty or new --out directory")
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS and p.name != STAGING)
        if foreign:
            raise InputError(f"{out} holds files the demo did not write ({', '.join(foreign[:3])})",
                             "choose an empty or new --out directory")
    out.mkdir(parents=True, exist_ok=True)


def _publish(stage: Path, out: Path) -> None:
    """Move a finished run's files from ``stage`` into ``out``; earlier demo outputs this run did not
    produce are removed so ``out`` holds one consistent run. ``summary.json`` goes last."""
    made = {p.name for p in stage.iterdir()}
    for name in OUTPUTS:
        if name not in made and (out / name).is_file():
            (out / name).unlink()
    for name in sorted(made, key=lambda n: n == "summary.json"):
        os.replace(stage / name, out / name)
    stage.rmdir()


def run_demo(bundle: str | Path, out_dir: str | Path, seed: int = 0) -> int:
    """Run every task of ``bundle`` on the shipped inputs, write the outputs to ``out_dir``, print a table.

    The outputs are written to ``out_dir/.demo-partial/`` and moved into ``out_dir`` only when every task has
    run, so a failed run leaves the folder as it was."""
    out = Path(out_dir)
    _check_out(out)
    stage = out / STAGING
    shutil.rmtree(stage, ignore_errors=True)  # left by a run that was killed
    stage.mkdir()
    try:
        rows, seconds = _run_tasks(bundle, stage, seed)
        summary = {"bundle": str(bundle), "seed": seed, "seconds": seconds, "tasks": rows}
        atomic_write_json(stage / "summary.json", summary)
        _publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _print(rows, summary["seconds"], out)
    return 0


def _run_tasks(bundle: str | Path, out: Path, seed: int) -> tuple[list[dict[str, Any]], float]:
    t_all = time.perf_counter()
    model = aromni.load(str(bundle))
    for need in ("text", "image", "speech"):
        if getattr(model, need) is None:
            raise InputError(f"{bundle}: the bundle has no {need} tokenizer", "the demo needs all three modalities")
    d = _Demo(model, MediaEncoder(model, INPUTS), read_json(INPUTS / "inputs.json"), out, seed,
              SpeechJudge.load(speech_judge_dir(SHIPPED_WORLD_VERSION)), ImageJudge.load(),
              lambda p: policy_options(model, p, Caps()))
    rows = [d.tts(), d.asr(), d.caption(), d.t2i(), d.s2i(), d.vqa_speech(), *d.chat()]
    vivo = find_vivo()
    if vivo is not None:
        rows.append(_vivo(*vivo, out, seed, d.ij))
    return rows, round(time.perf_counter() - t_all, 2)


def _vivo(export: Path, vq: Path, out: Path, seed: int, image_judge: ImageJudge) -> dict[str, Any]:
    """OmniVIVO: one prompt -> an image and its narration in one loop (the toy bundle's eval sampling)."""
    t0 = time.perf_counter()
    r = VivoPipeline.load(export, vq).generate(VIVO_TEXT, seed=seed, image=T2ISampling(cfg_scale=4.0, top_k=0))
    assert not isinstance(r, list)  # one prompt string: one result
    read = None
    if r.image is not None:
        r.image.save(out / "vivo.png")
        read = image_judge.read([r.image])[0]
    heard = "—"
    if r.audio.numel():
        save_wav(out / "vivo.wav", r.audio, r.sample_rate)
        heard = SpeechJudge.load().transcribe([r.audio], sample_rate=r.sample_rate)[0]
    t = r.timings
    print(f"OmniVIVO: image {_ms(t.image_seconds)}, speech FTL {_ms(t.ftl)}, first audio {_ms(t.first_audio)}")
    return _Demo._row("OmniVIVO (image + speech)", VIVO_TEXT, "vivo.png + vivo.wav",
                      f"{_read_as(read)}; heard: {heard}", t0, _verdict(read, VIVO_TEXT),
                      image_seconds=_r4(t.image_seconds), ftl=_r4(t.ftl), first_audio=_r4(t.first_audio))


def _r4(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


class _Demo:
    def __init__(self, model: OmniModel, media: MediaEncoder, inputs: dict[str, Any], out: Path, seed: int,
                 speech_judge: SpeechJudge, image_judge: ImageJudge, options: Callable[[str], DecodeOptions]):
        self.m, self.media, self.inputs, self.out, self.seed = model, media, inputs, out, seed
        self.sj, self.ij, self.options = speech_judge, image_judge, options

    # ------------------------------------------------------------------------------------------ helpers
    def _run(self, record: dict[str, Any], policy: str, prompt: list[int] | None = None) -> Output:
        prompt = prompt if prompt is not None else record_prompt(self.m, record, self.media)
        return generate(self.m, [prompt], self.options(policy), [self.seed])[0]

    def _hear(self, wav: Any) -> str:
        return self.sj.transcribe([wav], sample_rate=self.m.speech.sample_rate)[0] if len(wav) else ""

    def _image(self, codes: Any, name: str) -> tuple[str, dict[str, str] | None]:
        """Save a generated image; return its file name and the image judge's reading."""
        if codes is None:
            return "no image", None
        image = decode_image(self.m, codes)
        image.save(self.out / name)
        return name, self.ij.read([image])[0]

    def _speech_out(self, codes: Any, name: str) -> tuple[str, str, Any]:
        wav = decode_speech(self.m, codes)
        if not len(wav):
            return "no speech", "—", wav
        save_wav(self.out / name, wav, self.m.speech.sample_rate)
        return name, self._hear(wav), wav

    @staticmethod
    def _row(task: str, given: str, output: str, reading: str, t0: float, verdict: str = "", **extra: Any
             ) -> dict[str, Any]:
        return {"task": task, "input": given, "output": output, "judge": reading, "verdict": verdict,
                "seconds": round(time.perf_counter() - t0, 2), **extra}

    # ------------------------------------------------------------------------------------------ tasks
    def tts(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        rec = _user(_text(f"{I[TTS.name]} {TTS_TEXT}"))
        opts = self.options(TTS.name).replace(seed=self.seed)
        wav, m = stream_speech(self.m, lambda: record_prompt(self.m, rec, self.media), opts)
        fmt = {k: (round(m[k], 4) if m[k] is not None else None) for k in ("ftl", "first_audio", "rtf")}
        print(f"streaming TTS: FTL {_ms(m['ftl'])}, first audio {_ms(m['first_audio'])}, "
              f"RTF {m['rtf']:.2f}" if m["rtf"] is not None else "streaming TTS: the model produced no speech")
        if not len(wav):
            return self._row("TTS (streamed)", TTS_TEXT, "no speech", "—", t0, **fmt)
        save_wav(self.out / "tts.wav", wav, self.m.speech.sample_rate)
        return self._row("TTS (streamed)", TTS_TEXT, "tts.wav", f"heard: {self._hear(wav)}", t0, **fmt)

    def asr(self) -> dict[str, Any]:
        t0, s = time.perf_counter(), self.inputs["speech"][ASR.name]
        o = self._run(_user(_text(I[ASR.name]), _media("speech", s["file"])), ASR.name)
        atomic_write_text(self.out / "asr.txt", o.text + "\n")
        wer = M.corpus_wer([s["transcript"]], [o.text])
        return self._row("ASR", f"{s['file']} (says: {s['transcript']})", o.text, "", t0, f"WER {100 * wer:.0f}%")

    def caption(self) -> dict[str, Any]:
        t0, im = time.perf_counter(), self.inputs["image"]
        o = self._run(_user(_text(I[CAPTION.name]), _media("image", im["file"])), CAPTION.name)
        atomic_write_text(self.out / "caption.txt", o.text + "\n")
        ok = M.attributes_correct(o.text, im["attributes"])
        return self._row(CAPTION.name, f"{im['file']} ({describe(im['attributes'])})", o.text, "", t0,
                         f"{sum(ok.values())} of 5 attributes right")

    def t2i(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        o = self._run(_user(_text(f"{I[T2I.name]} {T2I_TEXT}")), T2I.name)
        name, read = self._image(o.image, "t2i.png")
        return self._row("T2I (CFG)", T2I_TEXT, name, _read_as(read), t0, _verdict(read, T2I_TEXT))

    def s2i(self) -> dict[str, Any]:
        t0, s = time.perf_counter(), self.inputs["speech"][S2I.name]
        o = self._run(_user(_media("speech", s["file"]), _text(I[S2I.name])), S2I.name)
        atomic_write_text(self.out / "s2i.txt", o.text + "\n")
        name, read = self._image(o.image, "s2i.png")
        return self._row("S→I", f"{s['file']} (says: {s['transcript']})", f"{o.text!r} + {name}",
                         _read_as(read), t0, _verdict(read, s["transcript"]))

    def vqa_speech(self) -> dict[str, Any]:
        t0, s, im = time.perf_counter(), self.inputs["speech"]["question"], self.inputs["image"]
        rec = _user(_media("image", im["file"]), _media("speech", s["file"]), _text(I["reply_speech"]))
        o = self._run(rec, ANSWER_SPEECH)
        name, heard, _ = self._speech_out(o.speech, "vqa_speech.wav")
        ok = M.answer_correct(s["question_attribute"], heard, im["attributes"])
        return self._row("I+S→S", f"{im['file']} + {s['file']} (says: {s['transcript']})", name,
                         f"heard: {heard}", t0, "correct" if ok else "wrong")

    def chat(self) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        first = _user(_text(CHAT_REQUEST))
        o1 = self._run(first, T2I.name)
        name, read = self._image(o1.image, "chat_turn1.png")
        row1 = self._row("chat turn 1", CHAT_REQUEST, name, _read_as(read), t0, _verdict(read, CHAT_REQUEST))
        t1, s = time.perf_counter(), self.inputs["speech"]["followup"]
        follow = _user(_media("speech", s["file"]), _text(I["reply_text"]))
        turns = (record_turns(first, self.media) + [Turn("assistant", [ImageSegment(o1.image or [])])]
                 + record_turns(follow, self.media))
        o2 = self._run(follow, ANSWER_TEXT, prompt=encode_prompt(self.m, turns, chat=True))
        atomic_write_text(self.out / "chat_turn2.txt", o2.text + "\n")
        ok = read is not None and M.answer_correct(s["question_attribute"], o2.text, read)
        return [row1, self._row("chat turn 2", f"{s['file']} (says: {s['transcript']})", o2.text, "", t1,
                                ("consistent" if ok else "inconsistent") + " with the drawn image")]


def _read_as(read: dict[str, str] | None) -> str:
    return f"read as: {describe(read)}" if read is not None else "—"


def _verdict(read: dict[str, str] | None, asked: str) -> str:
    """How many of the requested attributes the judge read in the image (the request parsed as a caption)."""
    if read is None:
        return "no image"
    want = M.read_attributes(asked)
    return f"{sum(want[k] is not None and want[k] == read[k] for k in want)} of 5 attributes as asked"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{1000 * x:.0f} ms"


def _short(text: str, n: int = 90) -> str:
    text = clean(text).replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _print(rows: list[dict[str, Any]], seconds: float, out: Path) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a core dependency; plain text if it is missing anyway
        print(json.dumps(rows, indent=2))
    else:
        table = Table(title=f"aromni demo ({seconds:.1f} s)")
        for col in ("task", "input", "output", "judge", "verdict", "s"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(*[_short(r[k]) for k in ("task", "input", "output", "judge", "verdict")],
                          f"{r['seconds']:.1f}")
        Console().print(table)
    print(f"outputs in {out}/ (summary.json lists them)")
