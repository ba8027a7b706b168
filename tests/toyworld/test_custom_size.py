"""Worlds of a custom size: a `WorldSize` of one's own, e.g. many T2I records and nothing else."""

import shutil

import pytest

from aromni.errors import InputError
from aromni.toyworld.build import build_world, is_complete
from aromni.toyworld.records import iter_records, read_jsonl
from aromni.toyworld.sizes import TASKS, WorldSize
from aromni.toyworld.splits import SPLITS, heldout_kinds


def _t2i_only(name: str, train: int) -> WorldSize:
    records = {t: dict.fromkeys(SPLITS, 0) for t in TASKS}
    records["t2i"] = {"train": train, "validation": 6, "test": 8}
    return WorldSize(name, {"train": train, "validation": 6, "test": 8}, records)


def test_t2i_only_world_holds_out_what_the_preset_world_does(tmp_path):
    from aromni.toyworld.attributes import ImageAttrs
    from aromni.toyworld.plan_v2 import plan_world_v2
    from aromni.toyworld.sizes import SIZES_V2

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")

    out = tmp_path / "t2i"
    manifest = build_world(out, size=_t2i_only("t2i-60", 60), seed=0, workers=1, progress=False)
    assert is_complete(out)
    assert manifest["records"] == {"t2i": {"train": 60, "validation": 6, "test": 8}}
    assert manifest["images"] == {"train": 60, "validation": 6, "test": 8}
    assert manifest["speech_clips"] == {} and manifest["speech_max_s"] == 0.0
    assert manifest["size_counts"]["records"]["t2i"]["train"] == 60
    # The held-out pairs, words and phrasings depend on the seed alone: the same as the preset world's.
    preset = plan_world_v2(SIZES_V2["smoke"], 0)
    assert manifest["heldout_combos"] == {k: [list(p) for p in v] for k, v in preset.pairs.items()}
    assert manifest["heldout_words"] == preset.heldout_words
    assert manifest["heldout_phrasings"] == preset.phrasebook.summary()
    pairs = {k: [tuple(p) for p in v] for k, v in manifest["heldout_combos"].items()}
    rows = list(iter_records(out, "train"))
    assert len(rows) == 60 and {r["task"] for r in rows} == {"t2i"}
    # One fresh image per record, none with a held-out pair, every phrasing a training one.
    assert len({r["turns"][1]["segments"][0]["path"] for r in rows}) == 60
    for r in rows:
        assert heldout_kinds(ImageAttrs(**r["meta"]["image"]), pairs) == []
        assert not r["meta"]["heldout_phrasing"]
    assert len(read_jsonl(out / "images.jsonl")) == 74
    # Asked again with the same counts: returned as is; same name, other counts: refused.
    assert build_world(out, size=_t2i_only("t2i-60", 60), seed=0, progress=False) == manifest
    with pytest.raises(InputError, match="not this world"):
        build_world(out, size=_t2i_only("t2i-60", 61), seed=0, progress=False)


@pytest.mark.parametrize("images, records, match", [
    ({"train": 4, "validation": 1}, {}, "images has splits"),
    ({"train": 4, "validation": 1, "test": -1}, {}, "bad counts"),
    ({"train": 4, "validation": 1, "test": 1}, {"paint": {"train": 1, "validation": 0, "test": 0}}, "unknown tasks"),
    ({"train": 0, "validation": 1, "test": 1}, {"caption": {"train": 2, "validation": 0, "test": 0}}, "without images"),
    ({"train": 4, "validation": 1, "test": 1}, {"asr": {"train": 2.5, "validation": 0, "test": 0}}, "bad counts"),
])
def test_bad_custom_sizes_get_clear_errors(tmp_path, images, records, match):
    with pytest.raises(InputError, match=match):
        build_world(tmp_path / "w", size=WorldSize("bad", images, records), progress=False)
    assert not (tmp_path / "w").exists() and not (tmp_path / "w.partial").exists()


def test_with_counts_replaces_only_what_it_names():
    from aromni.toyworld.sizes import SIZES_V2, with_counts

    full = SIZES_V2["full"]
    assert with_counts(full) is full
    big = with_counts(full, images={"train": 46000}, records={"t2i": {"train": 40000}})
    assert big.name == "full+"
    assert big.images == {**full.images, "train": 46000}
    assert big.records["t2i"] == {**full.records["t2i"], "train": 40000}
    assert {t: v for t, v in big.records.items() if t != "t2i"} == {t: v for t, v in full.records.items()
                                                                     if t != "t2i"}
    assert full.images["train"] == 6000 and full.records["t2i"]["train"] == 4000  # the preset is untouched


def test_recipe_world_counts(tmp_path):
    from aromni.toyworld.recipe import Recipe, RecipeConfig

    def size_of(world):
        return Recipe(RecipeConfig(world=world), tmp_path).world_size()

    assert size_of({"size": "full"}) == "full"
    big = size_of({"size": "small", "images": {"train": 900}, "records": {"t2i": {"train": 800}}})
    assert big.name == "small+" and big.images["train"] == 900 and big.records["t2i"]["train"] == 800
    assert size_of({"size": "small", "version": 1, "images": {"train": 500}}).records["t2i"]["train"] == 300
    with pytest.raises(InputError, match="world size"):
        size_of({"size": "huge", "images": {"train": 1}})
    with pytest.raises(InputError, match="world.images"):
        size_of({"size": "small", "records": {"t2i": 800}})
