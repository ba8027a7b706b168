"""The official pretrain JSONL / SFT parquet readers: task mapping, response masks, spans, bad records."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aromni.tokenizers.text import TextTokenizer
from aromni.training.data.build import BuildConfig, build
from aromni.training.data.official_jsonl import (
    OFFICIAL_TASKS,
    derive_spans,
    pretrain_sample,
    response_mask,
    sft_sample,
)
from aromni.training.data.shards import ShardDataset
from aromni.training.data.records import BadRecord
from aromni.vocab.conversation import Conversation, Span, TextSegment, Turn, encode_conversation
from aromni.vocab.layout import VocabLayout
from aromni.vocab.templates import task_conversation

CORPUS = [
    "a red circle on white",
    "USER: GPT: ASSISTANT:",
    "Describe this image.",
    "Convert this text into speech.",
    "This is input: ",
    "Can you please convert this speech into written text?",
    "the blue square",
    "Create a picture that matches the essence of this text.",
    "Reply in text.",
]
OURS = {"tts": "text_to_speech", "asr": "speech_to_text", "caption": "image_caption", "t2i": "text_to_image"}


@pytest.fixture(scope="module")
def kit():
    probe = VocabLayout.compact(0, 16, 32)
    tk = TextTokenizer.train(CORPUS * 8, 360, probe.special_token_strings(), min_frequency=1)
    layout = VocabLayout.compact(tk.vocab_size - len(probe.special_token_strings()), 16, 32)
    return tk, layout


def _merged(spans: list[Span]) -> list[Span]:
    """Adjacent spans of the same kind/role/turn joined (official ids keep no text-piece boundaries)."""
    out: list[Span] = []
    for s in spans:
        if out and (out[-1].kind, out[-1].role, out[-1].turn, out[-1].stop) == (
            s.kind,
            s.role,
            s.turn,
            s.start,
        ):
            out[-1] = Span(s.kind, out[-1].start, s.stop, s.role, s.turn)
        else:
            out.append(s)
    return out


def _task_kwargs(task: str, rng: np.random.Generator, layout: VocabLayout) -> dict:
    img = rng.integers(0, layout.image.size, 12)
    sp = rng.integers(0, layout.speech.size, 9)
    return {
        "tts": {"text": "the blue square", "response_speech": sp},
        "asr": {"speech": sp, "response_text": "the blue square"},
        "caption": {"image": img, "response_text": "a red circle"},
        "t2i": {"text": "a red circle", "response_image": img},
    }[task]


def test_task_names_map_to_ours():
    assert OFFICIAL_TASKS == {
        "image_caption": "caption",
        "speech_to_text": "asr",
        "text_to_image": "t2i",
        "text_to_speech": "tts",
        "image_to_text": "caption",
        "speech_to_image": "s2i",
        "text_to_text": "text",
    }


@pytest.mark.parametrize("style", ["official", "paper"])
@pytest.mark.parametrize("task", sorted(OURS))
def test_pretrain_record_recovers_masks_and_spans(kit, task, style):
    tk, layout = kit
    rng = np.random.default_rng(0)
    enc = encode_conversation(
        task_conversation(task, style=style, **_task_kwargs(task, rng, layout)), layout, tk, style
    )
    # The official record: the whole sequence, and the response without its <eos> (only its length matters).
    response = enc.ids[enc.is_response][:-1].tolist()
    obj = {"discrete_code": enc.ids.tolist(), "task": OURS[task], "response": response, "id": 7}
    s = pretrain_sample(json.loads(json.dumps(obj)), layout, tokenizer=tk, style=style, where="f.jsonl:3")
    assert s.task == task and s.source == f"f.jsonl:3 id=7 task={OURS[task]}"
    assert np.array_equal(s.ids, enc.ids)
    assert np.array_equal(s.response, enc.is_response)
    assert s.spans == _merged(enc.spans)
    assert s.group == ("speech" if task in ("asr", "tts") else "image")
    # without a tokenizer the prefixes stay in the text spans, but the response spans are the same
    bare = pretrain_sample(obj, layout, style=style)
    assert [x for x in bare.spans if x.role == "assistant"] == [x for x in s.spans if x.role == "assistant"]


def test_sft_row_multi_turn_masks_and_turns(kit):
    tk, layout = kit
    rng = np.random.default_rng(1)
    img = rng.integers(0, layout.image.size, 12)
    conv = Conversation(
        [
            Turn(
                "user",
                [
                    TextSegment("Describe this image."),
                    *task_conversation("caption", image=img).turns[0].segments,
                ],
            ),
            Turn("assistant", [TextSegment("a red circle")]),
            Turn("user", [TextSegment("Reply in text.")]),
            Turn("assistant", [TextSegment("the blue square")]),
        ]
    )
    enc = encode_conversation(conv, layout, tk, "official")
    labels = np.where(enc.is_response, enc.ids, -100)
    s = sft_sample(enc.ids.tolist(), labels.tolist(), layout, tokenizer=tk, where="sft.parquet#g0r0")
    assert np.array_equal(s.response, enc.is_response) and s.spans == _merged(enc.spans)
    assert [x.turn for x in s.spans if x.role == "assistant"] == [1, 3]
    assert (s.task, s.group) == ("sft", "image")
    bad = labels.copy()
    bad[np.nonzero(enc.is_response)[0][0]] += 1
    with pytest.raises(BadRecord) as e:
        sft_sample(enc.ids.tolist(), bad.tolist(), layout)
    assert e.value.reason == "labels_mismatch"


def test_response_mask_follows_the_official_rule():
    layout = VocabLayout.aromni_7b()
    t = layout.text_ids[500:506].tolist()
    ids = np.asarray([layout.bos, t[0], t[1], layout.eos, t[2], t[3], layout.eos])
    # the last k targets that are not <eos> (position 0 is never a target), plus the closing <eos>
    assert response_mask(ids, 3, layout).tolist() == [False, False, True, False, True, True, True]
    assert response_mask(ids, 0, layout).tolist() == [False] * 7
    assert response_mask(ids, 99, layout).tolist() == [False, True, True, False, True, True, True]


def test_official_layout_spans_from_markers():
    layout = VocabLayout.aromni_7b()
    t = layout.text_ids[1000:1010].tolist()
    img = layout.image.to_ids(np.arange(4)).tolist()
    sp = layout.speech.to_ids(np.arange(5)).tolist()
    ids = np.asarray(
        [
            layout.bos,
            *t[:3],
            layout.boi,
            *img,
            layout.eoi,
            layout.boa,
            *sp,
            layout.eoa,
            layout.eoh,
            *t[3:5],
            layout.boi,
            *img,
            layout.eoi,
            layout.eos,
        ]
    )
    mask = response_mask(ids, 2 + 6, layout)
    spans = derive_spans(ids, mask, layout)
    assert [(s.kind, s.start, s.stop, s.role, s.turn) for s in spans] == [
        ("text", 1, 4, "user", 0),
        ("image", 5, 9, "user", 0),
        ("speech", 11, 16, "user", 0),
        ("text", 18, 20, "assistant", 1),
        ("image", 21, 25, "assistant", 1),
    ]
    s = pretrain_sample(
        {"discrete_code": ids.tolist(), "task": "speech_to_image", "response": [0] * 8}, layout
    )
    assert (s.task, s.group) == ("s2i", "image")


@pytest.mark.parametrize(
    "obj,reason",
    [
        ({"task": "text_to_text", "response": []}, "bad_record"),
        ({"discrete_code": [], "task": "text_to_text"}, "bad_record"),
        ({"discrete_code": [0, 1.5, 2], "task": "text_to_text"}, "bad_record"),
        ({"discrete_code": [0, 65536, 2], "task": "text_to_text"}, "bad_ids"),
        ({"discrete_code": [0, -3, 2], "task": "text_to_text"}, "bad_ids"),
        ({"discrete_code": [0, 5, 2], "task": "video_to_text"}, "unknown_task"),
        ({"discrete_code": [0, 5, 2], "task": "text_to_text", "response": [1, 2, 3, 4]}, "bad_record"),
        (
            {"discrete_code": [0, 8197, 5, 6, 2], "task": "text_to_image"},
            "bad_structure",
        ),  # <boi> without <eoi>
        (
            {"discrete_code": [0, 5, 6, 2], "task": "text_to_image"},
            "bad_structure",
        ),  # image codes outside <boi>
    ],
)
def test_bad_records_raise_with_a_reason(obj, reason):
    layout = VocabLayout.aromni_7b()
    # ids above are official ids; check the layout agrees with the ones the cases rely on
    assert layout.boi == 8197 and layout.image.contains([5, 6]).all() and layout.vocab_size == 65536
    with pytest.raises(BadRecord) as e:
        pretrain_sample(obj, layout, where="x.jsonl:1")
    assert e.value.reason == reason and "x.jsonl:1" in str(e.value)


def test_official_source_in_a_build(kit, tmp_path):
    tk, layout = kit
    rng = np.random.default_rng(2)
    tk.save_pretrained(tmp_path / "text")
    (tmp_path / "layout.json").write_text(json.dumps(layout.to_dict()))
    encs = {
        t: encode_conversation(task_conversation(t, **_task_kwargs(t, rng, layout)), layout, tk, "official")
        for t in sorted(OURS)
    }
    lines = [
        json.dumps(
            {"discrete_code": e.ids.tolist(), "task": OURS[t], "response": e.ids[e.is_response][:-1].tolist()}
        )
        for t, e in encs.items()
    ]
    lines += [
        "{broken",
        json.dumps({"discrete_code": [0, 10**6], "task": "text_to_text"}),
        json.dumps({"discrete_code": encs["asr"].ids.tolist(), "task": "nope"}),
    ]
    (tmp_path / "pretrain.jsonl").write_text("\n".join(lines) + "\n")
    rows = [
        {"input_ids": e.ids.tolist(), "labels": np.where(e.is_response, e.ids, -100).tolist()}
        for e in encs.values()
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "sft.parquet", row_group_size=3)
    pq.write_table(pa.Table.from_pylist([{"input_ids": [1, 2]}]), tmp_path / "nolabels.parquet")
    cfg = BuildConfig.from_dict(
        {
            "tokenizers": {"text": "text"},
            "layout": "layout.json",
            "chunk_size": 3,
            "sources": [
                {"type": "official_jsonl", "paths": "pretrain.jsonl"},
                {
                    "type": "official_jsonl",
                    "paths": ["sft.parquet", "nolabels.parquet"],
                    "task": "chat",
                    "split": "sft",
                },
            ],
        },
        config_dir=tmp_path,
    )
    m = build(cfg, out=tmp_path / "out", progress=False)
    assert m["report"]["skipped"] == {"bad_ids": 1, "bad_json": 1, "bad_record": 1, "unknown_task": 1}
    train = ShardDataset(tmp_path / "out", "train", vocab_size=layout.vocab_size)
    assert [s.task for s in train] == sorted(OURS)
    for s, e in zip(train, encs.values()):
        assert np.array_equal(s.ids, e.ids) and np.array_equal(s.response, e.is_response)
    sft = ShardDataset(tmp_path / "out", "sft")
    assert len(sft) == 4 and set(sft.column("task")) == {"chat"}
    assert all(np.array_equal(s.response, e.is_response) for s, e in zip(sft, encs.values()))
    assert m["splits"]["sft"]["groups"] == {
        "image": {"rows": 2, "tokens": int(sum(len(encs[t]) for t in ("caption", "t2i")))},
        "speech": {"rows": 2, "tokens": int(sum(len(encs[t]) for t in ("asr", "tts")))},
    }
