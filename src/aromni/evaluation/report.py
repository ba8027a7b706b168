"""Reports of the public suites in the format of the papers' tables: ``report.md`` and ``report.json``.

Each table has one row per evaluated model and, for comparison, the paper's own row (marked "paper"; a number
from another model and set-up, never a target). Below the tables every run lists its model, data, judges and
settings, so the numbers can be reproduced.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from aromni.evaluation.suites import SUITES, TABLE7
from aromni.utils.io import JSONValue, atomic_write_json, atomic_write_text

Result = dict[str, JSONValue]

#: The papers' own rows (AR-Omni 7B; OmniVIVO 1B at 8 layers), shown next to ours.
PAPER = {
    "coco-caption": {"cider_x100": 56.53},
    "coco-t2i": {"clip_cos": 0.24},
    "librispeech": {"wer": 9.4, "tok_s": 40},
    "vctk-tts": {"wer": 6.5, "tok_s": 40, "ftl_ms": 146, "rtf": 0.88, "gt_wer": 1.9},
    "libritts-tts": {"wer": 10.64, "cer": 6.06},
    "vivo": {"wer": 10.64, "cer": 6.06, "is": "7.15 ± 1.27"},
}
#: AR-Omni Table 7 (40k steps): I2T CIDEr, T2I CLIP score, ASR and TTS WER as fractions.
PAPER_TABLE7 = [("AR-Omni (paper)", "0.5022", "0.2406", "0.1535", "0.1105"),
                ("w/o PL (paper)", "0.4874", "0.2356", "0.1395", "0.1175"),
                ("w/o swin-norm (paper)", "0.5488", "0.2392", "0.1329", "0.1633"),
                ("Simple NTP (paper)", "0.5074", "0.2248", "0.2270", "0.1589")]


def _f(x: JSONValue, digits: int = 2, scale: float = 1.0) -> str:
    return "n/a" if x is None else f"{float(x) * scale:.{digits}f}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _m(r: Result) -> dict[str, JSONValue]:
    return r["metrics"]  # type: ignore[return-value]


def _caption(rs: list[Result]) -> list[str]:
    rows = [[r["model_name"], _f(_m(r)["cider_x100"]), _f(_m(r)["cider"], 4), _m(r)["n"]] for r in rs]
    rows.append(["AR-Omni 7B (paper)", "56.53", "", "5000"])
    return _table(["Method", "CIDEr ↑ (×100)", "CIDEr (raw, Table 7)", "n"], rows)


def _t2i(rs: list[Result]) -> list[str]:
    rows = [[r["model_name"], _f(_m(r)["clip_score"], 4, 0.01), _f(_m(r)["clip_score"]), _m(r)["missing_images"],
             _m(r)["n"]] for r in rs]
    rows.append(["AR-Omni 7B (paper)", "0.24", "", "", "30000"])
    return _table(["Method", "CLIP_score ↑ (cos)", "CLIPScore (100·max(cos,0))", "no image", "n"], rows)


def _asr(rs: list[Result]) -> list[str]:
    rows = [[r["model_name"], _f(_m(r)["wer"], 2, 100), _f(r["model"].get("speech_tokens_per_second"), 0),
             _m(r)["n"]] for r in rs]
    rows.append(["AR-Omni 7B (paper)", "9.4", "40", "2620"])
    return _table(["Method", "WER ↓ (%)", "Speech-in tok/s", "n"], rows)


def _dnsmos(m: dict[str, JSONValue]) -> str:
    d = m.get("dnsmos")
    return "n/a" if not isinstance(d, dict) or d.get("ovrl_mos", d.get("ovrl")) is None else \
        _f(d.get("ovrl_mos", d.get("ovrl")), 2)


def _tts(rs: list[Result], chars: bool) -> list[str]:
    head = ["Method", "WER ↓ (%)"] + (["CER ↓ (%)"] if chars else []) + \
        ["Speech-out tok/s", "FTL (ms) ↓", "RTF ↓", "Real-time (RTF < 1)", "DNSMOS OVRL ↑", "no speech", "n"]
    rows = []
    for r in rs:
        m = _m(r)
        t = m["timing"]
        rtf = t.get("median_rtf")
        row = [r["model_name"], _f(m["wer"], 2, 100)] + ([_f(m.get("cer"), 2, 100)] if chars else [])
        row += [_f(t.get("speech_tokens_per_second"), 0), _f(t.get("median_ftl"), 0, 1000), _f(rtf),
                "n/a" if rtf is None else ("✓" if rtf < 1 else "×"), _dnsmos(m), m["no_speech"], m["n"]]
        rows.append(row)
        gt = m.get("ground_truth")
        if isinstance(gt, dict):
            rows.append([f"*Ground truth* (Whisper on the recordings; {r['model_name']}'s samples)",
                         _f(gt["wer"], 2, 100)] + ([_f(gt.get("cer"), 2, 100)] if chars else [])
                        + ["", "", "", "", "", "", gt["n"]])
    p = PAPER["vctk-tts"]
    if not chars:
        rows.append(["AR-Omni 7B (paper)", "6.5", "40", "146", "0.88", "✓", "", "", ""])
        rows.append(["*Ground truth* (paper)", str(p["gt_wer"]), "", "", "", "", "", "", ""])
    else:
        rows.append(["OmniVIVO 8 layers (paper, its own TTS)", "10.64", "6.06", "", "", "", "", "", "", "1000"])
    return _table(head, rows)


def _vivo(rs: list[Result]) -> list[str]:
    lines = ["OmniVIVO Table 1 (speech) and Table 2 (images):", ""]
    rows = []
    for r in rs:
        m = _m(r)
        inc = m["inception_score"]
        is_ = "n/a" if inc["mean"] is None else f"{inc['mean']:.2f} ± {inc['std']:.2f} ({inc['splits']} splits)"
        rows.append([r["model_name"], _f(m["wer"], 2, 100), _f(m.get("cer"), 2, 100), is_, _dnsmos(m),
                     _f(m["timing"].get("median_ftl"), 0, 1000), _f(m["timing"].get("median_rtf")), m["n"]])
    rows.append(["OmniVIVO 1B (paper)", "10.64", "6.06", "7.15 ± 1.27 (250 ChatGPT prompts)", "", "", "", "1000"])
    return lines + _table(["Model", "WER ↓ (%)", "CER ↓ (%)", "IS ↑", "DNSMOS OVRL ↑", "FTL (ms)", "RTF", "n"], rows)


SECTIONS: dict[str, Callable[[list[Result]], list[str]]] = {
    "coco-caption": _caption, "coco-t2i": _t2i, "librispeech": _asr,
    "vctk-tts": lambda rs: _tts(rs, False), "libritts-tts": lambda rs: _tts(rs, True), "vivo": _vivo,
}


def table7(results: Sequence[Result]) -> list[list[str]]:
    """AR-Omni Table 7's rows (one per model) for the suites that were run: I2T CIDEr (raw), T2I CLIP score
    (cos), ASR and TTS WER as fractions."""
    models = list(dict.fromkeys(str(r["model_name"]) for r in results))
    by = {(r["model_name"], r["suite"]): _m(r) for r in results}
    rows = []
    for name in models:
        row = [name]
        for _, suite, key in TABLE7:
            m = by.get((name, suite))
            v = None if m is None else m[key]
            row.append(_f(v, 4, 0.01 if key == "clip_score" else 1.0))
        rows.append(row)
    return rows


def render(results: Sequence[Result], *, command: str | None = None) -> str:
    lines = ["# Public benchmarks", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    suites = [s for s in SUITES if any(r["suite"] == s for r in results)]
    for s in suites:
        rs = [r for r in results if r["suite"] == s]
        lines += [f"## {s}: {SUITES[s].table}", ""] + SECTIONS[s](rs) + [""]
    if len({r["model_name"] for r in results}) > 1 and any(r["suite"] in {t[1] for t in TABLE7} for r in results):
        lines += ["## Ablation (AR-Omni Table 7 format)", ""]
        lines += _table(["Method", *(f"{h} {'↑' if k != 'wer' else '↓'}" for h, _, k in TABLE7)],
                        table7(results) + [list(r) for r in PAPER_TABLE7]) + [""]
    lines += ["## What was evaluated", ""]
    for r in results:
        lines += [f"### {r['model_name']} / {r['suite']}", "", "```json",
                  json.dumps({k: r[k] for k in ("model", "data", "judges", "settings", "machine", "seconds_rank0",
                                                "records")}, indent=2, default=str), "```", ""]
    return "\n".join(lines) + "\n"


def write_report(results: Sequence[Result], out: str | Path, *, command: str | None = None) -> Path:
    """``out/report.md`` and ``out/report.json`` (every result, and Table 7's rows when several models ran)."""
    out = Path(out)
    md = out / "report.md"
    atomic_write_text(md, render(results, command=command))
    data: dict[str, JSONValue] = {"results": list(results)}
    if len({r["model_name"] for r in results}) > 1:
        data["table7"] = {"columns": ["Method", *(h for h, _, _ in TABLE7)], "rows": table7(results)}
    atomic_write_json(out / "report.json", data)
    return md
