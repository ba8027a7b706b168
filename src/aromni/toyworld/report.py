"""The eval report: ``report.md`` + figures + ``metrics.json`` + ``samples.jsonl`` (+ a few wav files).

::

    from aromni.toyworld.report import write_report
    write_report(result, "reports/toy", runs=find_runs(bundle, "runs/toy"), ablation=[("no-perc", other)])

Sections: what was evaluated; the metrics table with targets and pass/fail; per-attribute accuracy; judge sanity
rows; streaming latency; an ablation table (one row per bundle) when given several; loss curves; generated
images next to their prompts; spectrograms of generated vs reference speech; ground truth vs VQGAN; a few
samples per task.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from aromni.errors import InputError
from aromni.tokenizers.speech.audio_io import save_wav
from aromni.toyworld import report_figures as F
from aromni.toyworld.evaluation.context import JUDGES_STEP
from aromni.toyworld.evaluation.result import rounded
from aromni.toyworld.evaluation.suite import SuiteResult
from aromni.toyworld.evaluation.targets import attribute_table, format_value, lookup
from aromni.utils.io import JSONValue, atomic_dir, atomic_write_json, atomic_write_text, read_json
from aromni.vocab.tasks import CHAT_IMAGE, S2I, T2I, TTS

#: Ablation table columns: (header, dotted key, unit).
ABLATION_COLUMNS = (
    ("ASR WER", "asr.wer_heldout_voices", "pct"),
    ("TTS gap", "tts.gap_points", "points"),
    ("caption all", "caption.all_correct", "pct"),
    ("CIDEr", "caption.cider", "score"),
    ("T2I CFG", "t2i.cfg.all_correct", "pct"),
    ("T2I no CFG", "t2i.no_cfg.all_correct", "pct"),
    ("S→I", "s2i.all_correct", "pct"),
    ("I+S→S", "vqa_speech.accuracy", "pct"),
    ("I+S→T", "vqa_text.accuracy", "pct"),
    ("S→S", "s2s.accuracy", "pct"),
    ("chat 2nd turn", "chat_image.answer_vs_generated_image", "pct"),
    ("RTF", "streaming.median_rtf", "x"),
)


def find_runs(bundle: str | Path | None, runs: str | Path | None = None) -> dict[str, Path]:
    """Training runs of the decoder whose ``metrics.jsonl`` go into the loss figure (runs that log ``ntp``:
    tokenizer trainings in the same folder are left out).

    ``runs`` is a run directory or a directory of runs (searched two levels deep). Without it: the bundle's
    ``config.json`` key ``"runs"`` (``{name: dir}``, relative to the bundle); else the bundle's parent when it
    holds ``metrics.jsonl`` (``aromni train`` exports to ``OUT/bundle``) or runs one level below it (the toy
    recipe's ``OUT/{pretrain,sft}`` next to ``OUT/bundle``)."""
    if runs is not None:
        root = Path(runs)
        if not root.is_dir():
            raise InputError(f"{root}: no such directory", "pass the run directory of `aromni train` (--runs)")
        return _decoder_runs(root, [root / "metrics.jsonl", *root.glob("*/metrics.jsonl"),
                                    *root.glob("*/*/metrics.jsonl")])
    if bundle is None:
        return {}
    bundle = Path(bundle)
    try:
        config = read_json(bundle / "config.json")
    except InputError:  # no readable config: no recorded runs
        config = {}
    listed = config.get("runs") or {} if isinstance(config, dict) else {}
    found = {}
    for name, d in (listed.items() if isinstance(listed, dict) else []):
        p = bundle / d / "metrics.jsonl"  # an absolute d stays absolute
        if p.is_file() and _logs_ntp(p):
            found[str(name)] = p
    if found:
        return found
    parent = bundle.parent
    return _decoder_runs(parent, [parent / "metrics.jsonl", *parent.glob("*/metrics.jsonl")])


def _logs_ntp(path: Path, lines: int = 50) -> bool:
    with open(path, encoding="utf-8") as f:
        for _, line in zip(range(lines), f):
            if '"ntp"' in line:
                return True
    return False


def _decoder_runs(root: Path, paths: list[Path]) -> dict[str, Path]:
    found = {}
    for p in sorted(paths):
        if p.is_file() and _logs_ntp(p):
            found[root.name if p.parent == root else str(p.parent.relative_to(root))] = p
    return found


def write_report(result: SuiteResult, out: str | Path, *, runs: dict[str, Path] | None = None,
                 ablation: Sequence[tuple[str, SuiteResult]] = (), overwrite: bool = False,
                 samples_per_task: int = 5) -> Path:
    """Write the report directory ``out`` (atomically; an existing non-empty one needs ``overwrite``)."""
    out = Path(out)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        runs = {k: Path(p) for k, p in (runs or {}).items() if Path(p).is_file()}  # missing runs: no curve
        figures = _figures(result, tmp, runs)
        audio = _audio(result, tmp)
        data = result.to_dict()
        if ablation:
            data["ablation"] = ablation_rows(ablation)
        atomic_write_json(tmp / "metrics.json", data)
        lines = [json.dumps(rounded({"task": t, **s})) for t, rows in result.samples.items() for s in rows]
        atomic_write_text(tmp / "samples.jsonl", "".join(line + "\n" for line in lines))
        atomic_write_text(tmp / "report.md", _markdown(result, data, figures, audio, runs, samples_per_task))
    return out / "report.md"


def _figures(result: SuiteResult, out: Path, runs: dict[str, Path]) -> dict[str, str]:
    ex, made = result.examples, {}
    if runs:
        made["loss"] = F.loss_curves(runs, out / "loss.png").name
    if ex.get(T2I.name):
        made[T2I.name] = F.image_grid(ex[T2I.name], [("cfg", "read_cfg"), ("no_cfg", "read_no_cfg"),
                                                     ("ground_truth", None)], out / f"{T2I.name}.png",
                                   "T2I: generated (with / without CFG) and a ground-truth image of the prompt").name
    if ex.get(S2I.name):
        made[S2I.name] = F.image_grid(ex[S2I.name], [("image", "read")], out / f"{S2I.name}.png",
                                      "S→I: spoken description → image").name
    if ex.get(CHAT_IMAGE.name):
        rows = [{**e, "prompt": f"{e['prompt']}\n\nQ: {e['question']}\nA: {_short(e['reply'])}"}
                for e in ex[CHAT_IMAGE.name]]
        made[CHAT_IMAGE.name] = F.image_grid(rows, [("image", "read")], out / "chat.png",
                                    "Chat: turn-1 drawing, turn-2 question and reply").name
    if ex.get(JUDGES_STEP):
        rows = [{**e, "prompt": F.describe(e["attributes"])} for e in ex[JUDGES_STEP]]
        made["vqgan"] = F.image_grid(rows, [("ground_truth", None), ("vqgan", None)], out / "vqgan.png",
                                     "Ground truth and its VQGAN reconstruction").name
    if ex.get(TTS.name):
        made["speech"] = F.spectrograms(ex[TTS.name], out / "speech.png",
                                        [("ground_truth", None), ("resynthesized", "judge_resynthesized"),
                                         ("generated", "judge_generated")],
                                        "TTS: reference, reference through the codec, generated (log-mel)").name
    return made


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _audio(result: SuiteResult, out: Path, n: int = 3) -> list[str]:
    names = []
    for i, e in enumerate(result.examples.get(TTS.name, [])[:n]):
        for key in ("generated", "resynthesized", "ground_truth"):
            if e.get(key) is not None and len(e[key]):
                p = out / "audio" / f"{TTS.name}{i}_{key}.wav"
                p.parent.mkdir(exist_ok=True)
                save_wav(p, e[key], e["sample_rate"])
                names.append(f"audio/{p.name}")
    return names


def ablation_rows(ablation: Sequence[tuple[str, SuiteResult]]) -> list[dict[str, JSONValue]]:
    rows = []
    for name, res in ablation:
        row = {"name": name, "bundle": res.info.get("bundle")}
        row.update({key: lookup(res.tasks, key) for _, key, _ in ABLATION_COLUMNS})
        rows.append(row)
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _verdict(p: bool | None) -> str:
    return {True: "pass", False: "**FAIL**", None: ""}[p]


def _markdown(result: SuiteResult, data: dict[str, JSONValue], figs: dict[str, str], audio: list[str],
              runs: dict[str, Path], samples_per_task: int) -> str:
    lines = _md_header(result.info, data) + _md_tables(result, data) + _md_figures(figs, audio, runs)
    lines += ["## Samples", "", "Every sample is in `samples.jsonl`; the first few of each task:", ""]
    for task, rows in result.samples.items():
        if rows:
            lines += [f"**{task}**", "", "```", *[json.dumps(rounded(r))[:400] for r in rows[:samples_per_task]],
                      "```", ""]
    return "\n".join(lines)


def _md_header(info: dict[str, JSONValue], data: dict[str, JSONValue]) -> list[str]:
    cfg = info["config"]
    return ["# Toy-world evaluation", "",
            (f"- bundle: `{info['bundle']}` ({info['decoder_params'] / 1e6:.2f} M decoder parameters, prompt style "
            f"`{info['prompt_style']}`)"),
            f"- world: `{info['world']}`, split `{cfg['split']}`; seed {cfg['seed']}; batch {cfg['batch_size']}",
            "- samples per task: " + ", ".join(f"{k} {v}" for k, v in cfg["limits"].items() if k in cfg["tasks"]),
            f"- device: {info['device']}, {info['threads']} torch thread(s), {info['machine']}",
            f"- time: {info['seconds']['total']:.0f} s in all ("
            + ", ".join(f"{k} {v:.0f} s" for k, v in info["seconds"].items() if k != "total") + ")",
            f"- targets met: **{data['targets_met']} of {data['targets_checked']}**", ""]


def _md_tables(result: SuiteResult, data: dict[str, JSONValue]) -> list[str]:
    L = ["## Metrics and targets", ""]
    main = [r for r in data["summary"] if r["section"] == "main"]
    L += _table(["task", "metric", "value", "target", "verdict", "n", "note"],
                [[r["task"], r["metric"], r["shown"], r["target"], _verdict(r["pass"]), r["n"] or "", r["note"]]
                 for r in main])
    L += ["", ("Percentages are of samples (WER: of reference words). The speech and image judges read the "
          "generated media; their own error rates are in the sanity table below."), ""]
    attrs = attribute_table(result.tasks)
    if attrs:
        cols = ["shape", "color", "size", "position", "background", "all", "all_heldout_pairs"]
        L += ["## Accuracy per attribute", ""]
        L += _table(["output", *cols[:-1], "all, held-out shape×colour pairs"],
                    [[a["label"], *[format_value(a[c], "pct") for c in cols]] for a in attrs])
        L += ["", ("Half of the test images use the 6 shape×colour pairs that never occur in training "
              "(`docs/toyworld.md`)."), ""]
    for section, title in (("streaming", "Streaming TTS latency"), ("judges", "Judge sanity")):
        rows = [r for r in data["summary"] if r["section"] == section]
        L += [f"## {title}", ""]
        L += _table(["", "metric", "value", "n", "note"],
                    [[r["task"], r["metric"], r["shown"], r["n"] or "", r["note"]] for r in rows])
        L += [""]
    if "ablation" in data:
        L += ["## Ablation", ""]
        L += _table(["name", *[h for h, _, _ in ABLATION_COLUMNS]],
                    [[a["name"], *[format_value(a[k], u) for _, k, u in ABLATION_COLUMNS]] for a in data["ablation"]])
        L += ["", *[f"- {a['name']}: `{a['bundle']}`" for a in data["ablation"]], ""]
    return L


def _md_figures(figs: dict[str, str], audio: list[str], runs: dict[str, Path]) -> list[str]:
    L = ["## Training curves", ""]
    if "loss" in figs:
        L += ["Runs: " + ", ".join(f"{k} (`{v}`)" for k, v in runs.items()), "", f"![loss curves]({figs['loss']})", ""]
    else:
        L += ["No `metrics.jsonl` found (pass `--runs DIR`, or record `\"runs\"` in the bundle's config.json).", ""]
    captions = {T2I.name: "Text to image", S2I.name: "Speech to image",
                CHAT_IMAGE.name: "Two-turn chat about the drawn image",
                "speech": "Speech (log-mel spectrograms)", "vqgan": "VQGAN reconstructions (image judge sanity)"}
    for key, caption in captions.items():
        if key in figs:
            L += [f"## {caption}", "", f"![{caption}]({figs[key]})", ""]
            if key == "speech" and audio:
                L += ["Audio: " + ", ".join(f"[{Path(a).stem}]({a})" for a in audio), ""]
    return L
