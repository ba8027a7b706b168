"""``aromni text train``: train a byte-level BPE text tokenizer on text files.

The tokenizer's first ids are the special (and reserved) token strings of a vocabulary layout, in id order, so
``<s>`` gets ``layout.bos`` and the merges start where :meth:`VocabLayout.compact` puts the text range. The
default is the compact layout (11 specials + 5 reserved ids, ``<pad>`` = 0 ... ``<reserved4>`` = 15), which is
what ``aromni data build`` with ``layout: compact`` and the toy-world recipe derive from a text tokenizer.

Corpus files: ``*.jsonl`` hold one JSON object per line with a ``"text"`` string; every other file is plain
UTF-8 text, one sample per line. Blank lines are skipped. See docs/text_tokenizer.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from aromni.cli.common import positive_int
from aromni.errors import ConfigError, InputError
from aromni.tokenizers.text import TextTokenizer
from aromni.utils.io import atomic_dir, loads_json, read_json
from aromni.vocab.layout import VocabLayout


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("text", help="text BPE tokenizer: train")
    sub = p.add_subparsers(dest="text_command", metavar="SUBCOMMAND", required=True)
    t = sub.add_parser("train", help="train a byte-level BPE on text / .jsonl files",
                       description="Train a byte-level BPE whose first ids are the layout's special tokens; writes "
                                   "OUT/{tokenizer.json,config.json} and prints a JSON summary. Corpus: .jsonl "
                                   "files give the 'text' field of each line, other files one sample per line.")
    t.add_argument("--corpus", required=True, nargs="+", type=Path, metavar="FILE",
                   help="text files (one sample per line) and/or .jsonl files (a 'text' field per line)")
    t.add_argument("--out", required=True, type=Path, help="tokenizer directory to write")
    t.add_argument("--vocab-size", required=True, type=positive_int,
                   help="total ids: special + reserved tokens + 256 bytes + merges")
    t.add_argument("--layout", default="compact",
                   help="'compact' (default: 16 specials/reserved ids) or a layout JSON file (a VocabLayout dict, "
                        "or a file with a 'layout' key) whose specials and reserved ids are 0..k-1")
    t.add_argument("--min-frequency", type=positive_int, default=2, help="least count of a pair to merge (default 2)")
    t.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise InputError(f"{out} already exists and is not empty", "pass --overwrite to replace it, or another --out")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a directory", "pass a directory for --out")
    if args.min_frequency < 1:
        raise ConfigError(f"--min-frequency must be >= 1, got {args.min_frequency}")
    specials = special_tokens(args.layout, args.vocab_size)
    texts = read_corpus(args.corpus)
    if not texts:
        raise InputError("the corpus has no non-blank lines", "check the --corpus files")
    start = time.perf_counter()
    show = not args.quiet and sys.stderr.isatty()
    tk = TextTokenizer.train(texts, args.vocab_size, specials, min_frequency=args.min_frequency, show_progress=show)
    seconds = time.perf_counter() - start
    if tk.vocab_size < args.vocab_size:
        # BPE merges never cross pre-token (word/punctuation) boundaries: a small-vocabulary corpus runs out.
        print(f"note: the BPE stopped at {tk.vocab_size} ids (asked {args.vocab_size}): no pair occurs "
              f"{args.min_frequency}+ times inside a word any more; a more varied corpus gives more merges",
              file=sys.stderr)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(ids) for ids in tk.encode_batch(texts))
    with atomic_dir(out, overwrite=args.overwrite) as tmp:
        tk.save_pretrained(tmp)
    print(json.dumps({"out": str(out), "vocab_size": tk.vocab_size, "specials": len(specials),
                      "lines": len(texts), "bytes": n_bytes, "tokens": n_tokens,
                      "bytes_per_token": round(n_bytes / n_tokens, 3),
                      "tokens_per_line": round(n_tokens / len(texts), 3), "seconds": round(seconds, 2)}))
    return 0


def special_tokens(layout: str, vocab_size: int) -> list[str]:
    """The strings a BPE for ``layout`` (``"compact"`` or a JSON file) reserves as its first ids, in id order."""
    if layout == "compact":
        return VocabLayout.compact(0, 0, 0).special_token_strings()
    d = read_json(layout)
    lay = VocabLayout.from_dict(d["layout"] if isinstance(d, dict) and "layout" in d else d)
    strings = lay.special_token_strings()
    ids = sorted([*lay.special.values(), *lay.reserved.values()])
    if ids != list(range(len(strings))):
        raise ConfigError(f"layout {layout}: its special/reserved ids are not 0..{len(strings) - 1}",
                          "a trained BPE puts the special tokens first; use --layout compact (the official "
                          "layout comes with its own tokenizer)")
    runs = lay.text_runs or ()
    if len(runs) != 1 or runs[0][0] != len(strings):
        raise ConfigError(f"layout {layout}: text ids are not one range right after the special tokens",
                          "use --layout compact or a compact-style layout")
    if runs[0][1] != vocab_size:
        raise ConfigError(f"layout {layout}: its text ids end at {runs[0][1]}, not at --vocab-size {vocab_size}",
                          f"pass --vocab-size {runs[0][1]}")
    return strings


def read_corpus(paths: list[Path]) -> list[str]:
    """Every non-blank sample of the corpus files, in order (``.jsonl``: the ``"text"`` field of each line)."""
    texts: list[str] = []
    for path in paths:
        if not path.is_file():
            raise InputError(f"{path}: no such corpus file", "pass text or .jsonl files to --corpus")
        jsonl = path.suffix.lower() == ".jsonl"
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    texts.append(_jsonl_text(line, path, n) if jsonl else line.rstrip("\r\n"))
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", "convert it to UTF-8") from None
    return texts


def _jsonl_text(line: str, path: Path, n: int) -> str:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{n}: not valid JSON ({e.msg})", "each line of a .jsonl file is one object") from None
    except (RecursionError, ValueError):
        rec = loads_json(line, f"{path}:{n}")  # raises the clear error (nested too deeply, huge number, ...)
    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
        raise InputError(f"{path}:{n}: no string 'text' field",
                         "a .jsonl corpus line is {\"text\": ...}; use a plain .txt file for other text")
    return rec["text"]
