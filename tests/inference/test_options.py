"""DecodeOptions built once: ``updated`` (no dict round trip) agrees with ``with_overrides``, and the CLI's
``decode_options`` equals the mapping path that API users take."""

import types

import pytest

from aromni.cli.common import decode_options
from aromni.cli.main import build_parser
from aromni.errors import ConfigError
from aromni.inference.options import DecodeOptions, task_options
from aromni.vocab.tasks import CHAT, T2I, TTS


def test_updated_equals_with_overrides():
    base = task_options(T2I, DecodeOptions(max_new_tokens=64))
    changes = {"text": {"temperature": 0.7, "top_k": 5}, "image": {"cfg": False, "top_p": 0.5}, "seed": 3}
    assert base.updated(text=changes["text"], image=changes["image"], seed=3) == base.with_overrides(changes)
    assert base.updated() is base


@pytest.mark.parametrize("kwargs", [{"text": {"temprature": 0.7}}, {"image": {"bogus": 1}}, {"max_new": 3}])
def test_updated_refuses_unknown_fields(kwargs):
    with pytest.raises(ConfigError):
        DecodeOptions().updated(**kwargs)


@pytest.mark.parametrize("kwargs", [{"text": {"temperature": float("nan")}}, {"image": {"greedy": "yes"}},
                                    {"max_new_tokens": 0}, {"seed": True}])
def test_updated_checks_values_as_construction_does(kwargs):
    with pytest.raises(ConfigError):
        DecodeOptions().updated(**kwargs)


@pytest.mark.parametrize(("task", "argv", "overrides"), [
    (TTS, ["--temperature", "0.5", "--no-greedy", "--seed", "7"],
     {"text": {"temperature": 0.5, "greedy": False}, "seed": 7}),
    (T2I, ["--image-top-p", "0.8", "--no-cfg", "--guidance-scale-text", "2.5", "--max-new-tokens", "40"],
     {"image": {"top_p": 0.8, "cfg": False, "guidance_scale_text": 2.5}, "max_new_tokens": 40}),
    (CHAT, [], {}),
])
def test_cli_options_equal_the_api_mapping_path(task, argv, overrides):
    required = {TTS.name: ["--text", "hi", "--out", "x.wav"], T2I.name: ["--text", "hi", "--out", "x.png"],
                CHAT.name: []}
    args = build_parser().parse_args([task.name, *required[task.name], *argv])
    defaults = DecodeOptions().with_overrides({"max_new_tokens": 99, "text": {"top_p": 0.9}})
    model = types.SimpleNamespace(defaults=defaults)
    opts = decode_options(args, task, model)
    assert isinstance(opts, DecodeOptions)
    assert opts == task_options(task, defaults, overrides)
