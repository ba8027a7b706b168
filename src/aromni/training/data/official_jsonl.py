"""Readers for the official AR-Omni training data (already tokenized; ``official-formats.md`` §C.4).

**Pretrain JSONL** (``training/pretrain/pretrain.py``): one object per line with

* ``discrete_code``: the whole token sequence (ids of the 65,536-id AR-Omni vocabulary),
* ``task``: one of :data:`OFFICIAL_TASKS` (mapped to ours: ``image_caption`` -> ``caption`` ...),
* ``response``: a list whose *length* ``k`` is all the official trainer uses: its response weighting applies
  to the last ``k`` target positions that are not ``<eos>``.

:func:`pretrain_sample` turns such an object into a :class:`~aromni.training.data.shards.Sample`: the response
mask is those last ``k`` non-``<eos>`` positions plus a final ``<eos>`` (our masks include the turn
terminator, as :func:`~aromni.vocab.conversation.encode_conversation` does), and the spans are derived from
the layout's markers (:func:`derive_spans`).

**SFT parquet** (AR-Omni-Instruct, ``training/instruction-tuning/sft.py``): columns ``input_ids`` and
``labels`` (same length; ``-100`` where no loss). :func:`sft_sample` makes the response mask
``labels != -100`` and requires ``labels == input_ids`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from aromni.training.data.records import BadRecord, group_of
from aromni.training.data.shards import Sample
from aromni.vocab.conversation import OFFICIAL, PromptStyle, Span, get_style
from aromni.vocab.layout import VocabLayout
from aromni.vocab.segments import TextCodec
from aromni.vocab.tasks import ALIASES

#: Official task name -> ours (the aliases of the task registry; ``image_to_text`` documents train like captioning).
OFFICIAL_TASKS: Mapping[str, str] = MappingProxyType({alias: task.name for alias, task in ALIASES.items()})

IGNORE_INDEX = -100


def check_ids(value: object, layout: VocabLayout, where: str, key: str) -> np.ndarray:
    """A non-empty list of ints inside ``[0, vocab_size)`` as ``[T]`` int64, else :class:`BadRecord`."""
    if not isinstance(value, (list, tuple, np.ndarray)) or len(value) == 0:
        raise BadRecord("bad_record", f"{where}: {key!r} must be a non-empty list of token ids")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray([], dtype=object)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise BadRecord("bad_record", f"{where}: {key!r} must be a flat list of integers")
    ids = arr.astype(np.int64)
    bad = (ids < 0) | (ids >= layout.vocab_size)
    if bad.any():
        raise BadRecord(
            "bad_ids",
            f"{where}: token id {int(ids[bad][0])} is outside the {layout.name} vocabulary "
            f"[0, {layout.vocab_size})",
        )
    return ids


def response_mask(ids: np.ndarray, k: int, layout: VocabLayout) -> np.ndarray:
    """``[T]`` bool: the last ``k`` positions whose id is not ``<eos>``, and a final ``<eos>`` if ``k``."""
    mask = np.zeros(ids.size, dtype=bool)
    if k <= 0:
        return mask
    eligible = np.nonzero(ids != layout.eos)[0]
    eligible = eligible[eligible > 0]  # position 0 is never a target (the official labels start at 1)
    mask[eligible[-k:]] = True
    if ids[-1] == layout.eos:
        mask[-1] = True
    return mask


def _prefix_at(ids: np.ndarray, i: int, candidates: Sequence[list[int]]) -> int:
    for cand in candidates:
        if cand and ids[i : i + len(cand)].tolist() == cand:
            return len(cand)
    return 0


def derive_spans(
    ids: np.ndarray,
    response: np.ndarray,
    layout: VocabLayout,
    *,
    tokenizer: TextCodec | None = None,
    style: str | PromptStyle = OFFICIAL,
    where: str = "record",
) -> list[Span]:
    """Typed content spans of a token sequence, found from the layout's markers.

    Images are the codes between ``<boi>`` and ``<eoi>``, speech a run of speech codes (inside ``<boa>`` …
    ``<eoa>`` or bare), text a run of text ids. The turn index advances at ``<eoh>`` (user -> assistant) and
    at ``<eom>``/``<eos>`` ending an assistant turn. A span's role is ``assistant`` when it is part of the
    response mask; runs are split where the mask changes. With a ``tokenizer``, the style's ``USER:`` prefix
    at the start of a user turn and the ``GPT:`` prefix (also `` GPT:``) after ``<eoh>`` are not counted as
    content, so the spans match those of :func:`~aromni.vocab.conversation.encode_conversation` up to the
    merging of adjacent text segments. Raises :class:`BadRecord` (``bad_structure``) for an image without
    ``<eoi>`` or image codes outside ``<boi>`` … ``<eoi>``.
    """
    style = get_style(style)
    user_pre: list[list[int]] = []
    asst_pre: list[list[int]] = []
    if tokenizer is not None:
        user_pre = [tokenizer.encode(style.user_prefix)]
        asst_pre = [tokenizer.encode(style.assistant_prefix), tokenizer.encode(" " + style.assistant_prefix)]
    is_text = layout.mask("text").numpy()[ids]
    is_img = layout.image.contains(ids)
    is_sp = layout.speech.contains(ids)
    spans: list[Span] = []
    turn, n, i = 0, int(ids.size), 0
    turn_start = True  # next content begins a turn (strip its prefix)

    def add(kind: str, a: int, b: int) -> None:
        # Split [a, b) where the response mask changes; each piece gets its role.
        while a < b:
            r = bool(response[a])
            c = a + 1
            while c < b and bool(response[c]) == r:
                c += 1
            spans.append(Span(kind, a, c, "assistant" if r else "user", turn))
            a = c

    while i < n:
        tok = int(ids[i])
        if tok == layout.boi or tok == layout.boa or is_sp[i]:
            image = tok == layout.boi
            codes = is_img if image else is_sp
            j = i + 1 if tok in (layout.boi, layout.boa) else i
            start = j
            while j < n and codes[j]:
                j += 1
            if image and (j >= n or int(ids[j]) != layout.eoi):
                raise BadRecord(
                    "bad_structure", f"{where}: <boi> at position {i} has no <eoi> after its codes"
                )
            add("image" if image else "speech", start, j)
            i = j + 1 if j < n and int(ids[j]) in (layout.eoi, layout.eoa) else j
            turn_start = False
            continue
        if is_img[i]:
            raise BadRecord("bad_structure", f"{where}: image code at position {i} outside <boi> … <eoi>")
        if is_text[i]:
            j = i
            while j < n and is_text[j]:
                j += 1
            if turn_start:
                pre = asst_pre if turn % 2 else user_pre
                i += min(_prefix_at(ids, i, pre), j - i)
            add("text", i, j)
            i = j
            turn_start = False
            continue
        if tok == layout.eoh or (tok in (layout.eom, layout.eos) and turn % 2):
            turn += 1
            turn_start = True
        elif tok == layout.bos:
            turn_start = True
        i += 1
    return spans


def pretrain_sample(
    obj: Mapping[str, object],
    layout: VocabLayout,
    *,
    tokenizer: TextCodec | None = None,
    style: str | PromptStyle = OFFICIAL,
    where: str = "record",
    group: str | None = None,
) -> Sample:
    """One official pretrain JSONL object -> :class:`Sample` (raises :class:`BadRecord` to skip it)."""
    if "discrete_code" not in obj:
        raise BadRecord("bad_record", f"{where}: no 'discrete_code' field")
    ids = check_ids(obj["discrete_code"], layout, where, "discrete_code")
    official = obj.get("task")
    if official not in OFFICIAL_TASKS:
        raise BadRecord("unknown_task", f"{where}: task {official!r} is not one of {sorted(OFFICIAL_TASKS)}")
    resp = obj.get("response") or []
    if not isinstance(resp, (list, tuple, str)):
        raise BadRecord("bad_record", f"{where}: 'response' must be a list")
    if len(resp) > ids.size:
        raise BadRecord(
            "bad_record", f"{where}: 'response' ({len(resp)}) is longer than 'discrete_code' ({ids.size})"
        )
    mask = response_mask(ids, len(resp), layout)
    spans = derive_spans(ids, mask, layout, tokenizer=tokenizer, style=style, where=where)
    rid = obj.get("id")
    source = f"{where} id={rid} task={official}" if rid is not None else f"{where} task={official}"
    return Sample(ids, mask, spans, OFFICIAL_TASKS[official], group or group_of(ids, layout), source)


def sft_sample(
    input_ids: object,
    labels: object,
    layout: VocabLayout,
    *,
    task: str = "sft",
    tokenizer: TextCodec | None = None,
    style: str | PromptStyle = OFFICIAL,
    where: str = "row",
    group: str | None = None,
) -> Sample:
    """One official SFT row (``input_ids``, ``labels`` with ``-100``) -> :class:`Sample`."""
    ids = check_ids(input_ids, layout, where, "input_ids")
    if not isinstance(labels, (list, tuple, np.ndarray)) or len(labels) != ids.size:
        raise BadRecord("bad_record", f"{where}: 'labels' must be a list as long as 'input_ids' ({ids.size})")
    lab = np.asarray(labels, dtype=np.int64)
    mask = lab != IGNORE_INDEX
    if not np.array_equal(lab[mask], ids[mask]):
        k = int(np.nonzero(mask & (lab != ids))[0][0])
        raise BadRecord(
            "labels_mismatch",
            f"{where}: label {int(lab[k])} at position {k} is neither -100 nor the input id {int(ids[k])}",
        )
    spans = derive_spans(ids, mask, layout, tokenizer=tokenizer, style=style, where=where)
    return Sample(ids, mask, spans, task, group or group_of(ids, layout), where)
