import collections

import pytest

from aromni.toyworld import grammar
from aromni.toyworld.attributes import BACKGROUNDS, COLORS, POSITIONS, SHAPES, SIZES
from aromni.toyworld.plan import plan_world
from aromni.toyworld.records import validate
from aromni.toyworld.sizes import SIZES as WORLD_SIZES
from aromni.toyworld.sizes import TASKS
from aromni.toyworld.splits import SPLITS, heldout_combos
from aromni.toyworld.voices import ASSISTANT_VOICE


@pytest.fixture(scope="module")
def plan():
    return plan_world(WORLD_SIZES["small"], seed=0)


def test_same_seed_same_plan_other_seed_differs(plan):
    again = plan_world(WORLD_SIZES["small"], seed=0)
    assert again.records == plan.records
    assert [j.spec for j in again.images] == [j.spec for j in plan.images]
    assert [(j.text, j.voice, j.speed_jitter) for j in again.speech] == [(j.text, j.voice, j.speed_jitter) for j in plan.speech]
    other = plan_world(WORLD_SIZES["small"], seed=1)
    assert other.records != plan.records


def test_every_task_in_every_split_and_records_valid(plan):
    for split in SPLITS:
        counts = collections.Counter(r["task"] for r in plan.records[split])
        assert set(counts) == set(TASKS)
        assert all(counts[t] == WORLD_SIZES["small"].records[t][split] for t in TASKS)
        for r in plan.records[split]:
            validate(r)
            assert r["split"] == split
    ids = [r["id"] for rows in plan.records.values() for r in rows]
    assert len(ids) == len(set(ids))


def test_heldout_combos_only_in_test(plan):
    held = set(heldout_combos(0))
    assert len(held) == len(SHAPES) and len({c for _, c in held}) == len(SHAPES)
    for job in plan.images:
        pair = (job.spec.attrs.shape, job.spec.attrs.color)
        assert (pair in held) == job.heldout_combo
        if job.split != "test":
            assert pair not in held
    assert any(j.heldout_combo for j in plan.images if j.split == "test")
    # ...and no training text mentions a held-out pair either ("a big red circle").
    for split in ("train", "validation"):
        for r in plan.records[split]:
            for t in r["turns"]:
                for s in t["segments"]:
                    words = (s.get("text") or s.get("transcript") or "").split()
                    for shape, color in held:
                        for i, w in enumerate(words[:-1]):
                            assert not (w == color and shape in words[i + 1 : i + 3]), (r["id"], words)


def test_test_voices_are_held_out(plan):
    train_ids = {v.id for v in plan.train_voices}
    test_ids = {v.id for v in plan.test_voices}
    assert len(train_ids) >= 30 and len(test_ids) >= 4
    assert {v.variant for v in plan.test_voices}.isdisjoint({v.variant for v in plan.train_voices})
    for job in plan.speech:
        if job.voice.id == ASSISTANT_VOICE.id:
            continue
        assert job.voice.id in (test_ids if job.split == "test" else train_ids)


def test_attribute_ranges_and_transcripts(plan):
    seen = collections.defaultdict(set)
    for job in plan.images:
        for k, v in job.spec.attrs.to_dict().items():
            seen[k].add(v)
        assert abs(job.spec.dx) <= 2 and abs(job.spec.dy) <= 2 and abs(job.spec.dr) <= 1
    assert seen["shape"] == set(SHAPES) and seen["color"] == set(COLORS)
    assert seen["size"] == set(SIZES) and seen["position"] == set(POSITIONS) and seen["background"] == set(BACKGROUNDS)
    vocab = set(grammar.spoken_vocabulary())
    for job in plan.speech:
        assert job.text == grammar.normalize(job.text) and set(job.text.split()) <= vocab


def test_task_shapes(plan):
    by_task = {r["task"]: r for r in plan.records["train"]}
    kinds = {t: [[s["type"] for s in turn["segments"]] for turn in r["turns"]] for t, r in by_task.items()}
    assert kinds["asr"] == [["text", "speech"], ["text"]]
    assert kinds["tts"] == [["text"], ["speech"]]
    assert kinds["caption"] == [["text", "image"], ["text"]]
    assert kinds["t2i"] == [["text"], ["image"]]
    assert kinds["s2i"] == [["speech", "text"], ["text", "image"]]
    assert kinds["vqa_text"] == [["image", "speech", "text"], ["text"]]
    assert kinds["vqa_speech"] == [["image", "speech", "text"], ["speech"]]
    assert kinds["s2s"] == [["speech", "text"], ["speech"]]
    assert kinds["s2t"] == [["speech", "text"], ["text"]]
    assert kinds["text"] == [["text"]]
    chat = by_task["chat_image"]
    assert [t["role"] for t in chat["turns"]] == ["user", "assistant", "user", "assistant"]
    assert chat["turns"][1]["segments"] == [{"type": "image", "path": chat["turns"][1]["segments"][0]["path"]}]
    assert chat["turns"][2]["segments"][0]["type"] == "speech"
    # The chat's answer is about the drawn image.
    img = chat["meta"]["image"]
    last = chat["turns"][3]["segments"][0]
    answer = last.get("text") or last.get("transcript")
    assert any(v in answer for v in (img["shape"], img["color"], img["size"], img["background"], img["position"]))
