"""The task registry: names, official aliases, decode policies and tail weighting, each written once."""

import pytest

from aromni.errors import InputError
from aromni.inference.options import TASK_OVERRIDES, task_options
from aromni.training.config import LossConfig
from aromni.training.data.official_jsonl import OFFICIAL_TASKS
from aromni.vocab.tasks import ASR, CAPTION, T2I, TASKS, TTS, canonical_task, get_task, served_tasks

# The official per-task settings as they were written in inference/options.py before the registry held them.
OFFICIAL_DECODE = {
    "tts": {"text": {"greedy": True}, "allow_image": False, "extra_eos": ["eom"], "max_new_tokens": 1024},
    "asr": {"text": {"greedy": True}, "allow_image": False, "extra_eos": ["eom"], "max_seq_len": 1024},
    "caption": {"text": {"greedy": True}, "allow_image": False, "extra_eos": ["eom"], "max_new_tokens": 128},
    "t2i": {"allow_text": False, "extra_eos": ["eom"], "image": {"guidance_scale_image": 1.32, "temperature": 1.0}},
    "chat": {"extra_eos": ["eom"]},
}
# The official training code's task names (official-formats.md; --response_weighted_tasks etc.).
OFFICIAL_ALIASES = {"image_caption": "caption", "speech_to_text": "asr", "text_to_image": "t2i",
                    "text_to_speech": "tts", "image_to_text": "caption", "speech_to_image": "s2i",
                    "text_to_text": "text"}


def test_decode_policies_are_the_official_settings():
    assert {k: dict(v) for k, v in TASK_OVERRIDES.items()} == OFFICIAL_DECODE
    assert [t.name for t in served_tasks()] == list(OFFICIAL_DECODE)


def test_official_aliases_map_to_our_names_everywhere():
    assert dict(OFFICIAL_TASKS) == OFFICIAL_ALIASES
    for alias, ours in OFFICIAL_ALIASES.items():
        assert canonical_task(alias) == ours == get_task(alias.upper()).name
    assert canonical_task("my_own_task") == "my_own_task"  # a user's own shard task trains like any other


def test_unknown_task_is_one_clear_error():
    with pytest.raises(InputError, match="unknown task 'tss'.*one of tts, asr"):
        get_task("tss")
    with pytest.raises(Exception, match="unknown task"):
        task_options("tss")


def test_tail_weighting_default_is_captioning_and_asr():
    assert set(LossConfig().tail_tasks) == {CAPTION.name, ASR.name}
    assert [t.name for t in TASKS.values() if t.tail_weighted] == [ASR.name, CAPTION.name]


def test_decode_policy_is_read_only():
    with pytest.raises(TypeError):
        TTS.decode["max_new_tokens"] = 1  # type: ignore[index]
    assert task_options(T2I).allow_text is False and task_options(T2I.name).image.guidance_scale_image == 1.32
