"""Fuzz: settings. Training configs (YAML files and ``key=value`` overrides) through ``aromni train pretrain`` and
the API (``pretrain.config`` + ``Trainer.fit``): unknown keys, negative sizes, nan/inf, non-numeric values, wrong
types, non-mapping and invalid YAML, missing sections, an empty ``out``, ``optim.lr=1e400``. Decoding options
through the API (``options=...``) and the task commands' flags (``--temperature inf``, ``--threads 0``,
``--device foo``, ``--max-new-tokens -5``, ...). Every run is a 2-step run of a tiny model on a tiny corpus."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from fuzzparts import MAX_NEW, png_bytes, rand_bytes, run_api, task_args, tiny_train_yaml, wav_bytes, tone

FAMILY = "configs"

OPTS = {"max_new_tokens": MAX_NEW, "seed": 0}
NAN, INF = float("nan"), float("inf")


# ------------------------------------------------------------------------------------------------ training
def _set(*path_value):
    *path, value = path_value

    def fn(raw):
        node = raw
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return fn


def _del(*path):
    def fn(raw):
        node = raw
        for k in path[:-1]:
            node = node[k]
        node.pop(path[-1], None)
    return fn


#: ``(id, edit of the tiny config mapping, expect)``
EDITS = [
    ("baseline_ok", lambda raw: None, "ok"),
    ("unknown_top_key", _set("wormhole", 1), "error"),
    ("unknown_nested_key", _set("optim", "warp", 9), "error"),
    ("typo_section", lambda raw: raw.__setitem__("optimizer", raw.pop("optim")), "error"),
    ("seq_len_negative", _set("data", "seq_len", -5), "error"),
    ("seq_len_one", _set("data", "seq_len", 1), "error"),
    ("micro_batch_zero", _set("data", "micro_batch", 0), "error"),
    ("max_steps_negative", _set("optim", "max_steps", -1), "error"),
    ("max_steps_zero", _set("optim", "max_steps", 0), "error"),
    ("max_steps_float", _set("optim", "max_steps", 2.5), "error"),
    ("lr_negative", _set("optim", "lr", -1e-3), "error"),
    ("lr_zero", _set("optim", "lr", 0.0), "error"),
    ("lr_nan", _set("optim", "lr", NAN), "error"),
    ("lr_inf", _set("optim", "lr", INF), "error"),
    ("lr_string", _set("optim", "lr", "hot"), "error"),
    ("lr_list", _set("optim", "lr", [1e-3]), "error"),
    ("lr_bool", _set("optim", "lr", True), "error"),
    ("lr_null", _set("optim", "lr", None), "error"),
    ("lr_mapping", _set("optim", "lr", {"a": 1}), "error"),
    ("lr_huge_finite", _set("optim", "lr", 1e30), "any"),
    ("warmup_ratio_too_big", _set("optim", "warmup_ratio", 1.5), "error"),
    ("betas_one_value", _set("optim", "betas", [0.9]), "error"),
    ("betas_string", _set("optim", "betas", "x"), "error"),
    ("betas_out_of_range", _set("optim", "betas", [2.0, -1.0]), "error"),
    ("eps_negative", _set("optim", "eps", -1.0), "error"),
    ("grad_clip_negative", _set("optim", "grad_clip", -1.0), "error"),
    ("grad_accum_zero", _set("optim", "grad_accum", 0), "error"),
    ("weight_decay_nan", _set("optim", "weight_decay", NAN), "error"),
    ("weight_decay_negative", _set("optim", "weight_decay", -0.1), "error"),
    ("seed_string", _set("seed", "abc"), "error"),
    ("seed_negative", _set("seed", -1), "any"),
    ("num_threads_negative", _set("num_threads", -1), "error"),
    ("device_foo", _set("device", "foo"), "error"),
    ("device_mps", _set("device", "mps"), "error"),
    ("device_cuda", _set("device", "cuda"), "error"),
    ("device_meta", _set("device", "meta"), "error"),
    ("precision_fp8", _set("precision", "fp8"), "error"),
    ("data_root_missing", _set("data", "root", "/nonexistent/synth"), "error"),
    ("data_root_empty", _set("data", "root", ""), "error"),
    ("data_root_is_file", _set("data", "root", "{INPUTS}/file.txt"), "error"),
    ("batching_unknown", _set("data", "batching", "zip"), "error"),
    ("mixing_negative", _set("data", "mixing", "ratios", {"text": -1.0}), "error"),
    ("mixing_nan", _set("data", "mixing", "ratios", {"text": NAN, "image": 1.0}), "error"),
    ("mixing_string", _set("data", "mixing", "ratios", "half"), "error"),
    ("mixing_value_list", _set("data", "mixing", "ratios", {"text": [1]}), "error"),
    ("tasks_unknown", _set("data", "tasks", ["juggling"]), "error"),
    ("decoder_dim_negative", _set("model", "decoder", {"preset": "tiny", "dim": -8}), "error"),
    ("decoder_heads_zero", _set("model", "decoder", {"preset": "tiny", "n_heads": 0}), "error"),
    ("decoder_dim_not_divisible", _set("model", "decoder", {"preset": "tiny", "dim": 30, "n_heads": 4}), "error"),
    ("decoder_preset_unknown", _set("model", "decoder", {"preset": "gigantic-9000"}), "error"),
    ("decoder_string", _set("model", "decoder", "tiny"), "error"),
    ("decoder_unknown_field", _set("model", "decoder", {"preset": "tiny", "wings": 2}), "error"),
    ("decoder_context_shorter_than_seq_len",
     _set("model", "decoder", {"preset": "tiny", "dim": 32, "n_layers": 1, "n_heads": 2, "n_kv_heads": 2,
                               "ffn_dim": 64, "max_seq_len": 16}), "error"),
    ("init_from_missing", _set("model", "init_from", "/nonexistent/bundle"), "error"),
    ("init_from_random_file", _set("model", "init_from", "{INPUTS}/random.bin"), "error"),
    ("loss_mode_unknown", _set("loss", "mode", "vibes"), "error"),
    ("loss_mode_sft_in_pretrain", _set("loss", "mode", "sft"), "error"),
    ("tail_weight_zero", _set("loss", "tail_weight", 0), "error"),
    ("chunk_size_negative", _set("loss", "chunk_size", -1), "error"),
    ("perceptual_table_missing", _set("perceptual", "table", "/nonexistent/table.safetensors"), "error"),
    ("perceptual_table_random", _set("perceptual", "table", "{INPUTS}/random.safetensors"), "error"),
    ("perceptual_weight_negative", _set("perceptual", "weight", -1.0), "error"),
    ("checkpoint_every_negative", _set("checkpoint", "every", -1), "error"),
    ("checkpoint_resume_missing_dir", _set("checkpoint", "resume", "/nonexistent/ckpt"), "error"),
    ("eval_every_negative", _set("eval", "every", -1), "error"),
    ("eval_max_rows_zero", _set("eval", "max_rows", 0), "error"),
    ("export_dtype_int8", _set("export", "dtype", "int8"), "error"),
    ("export_style_unknown", _set("export", "style", "klingon"), "error"),
    ("export_tokenizers_missing", _set("export", "tokenizers_from", "/nonexistent/bundle"), "error"),
    ("dist_strategy_unknown", _set("dist", "strategy", "zeppelin"), "error"),
    ("log_every_zero", _set("log", "every", 0), "any"),
    ("section_is_scalar", _set("optim", 5), "error"),
    ("section_is_list", _set("data", [1, 2]), "error"),
    ("missing_data_section", _del("data"), "error"),
    ("missing_model_section", _del("model"), "any"),
    ("missing_out", _del("out"), "any"),
    ("out_empty", _set("out", ""), "error"),
    ("out_null", _set("out", None), "error"),
    ("out_dot", _set("out", "."), "any"),
    ("out_is_file", _set("out", "{OUT}/run_file"), "error"),
]
EDIT_IDS = [e[0] for e in EDITS]
#: Cases that must also leave no exported bundle (export enabled for them).
NO_EXPORT = {"lr_inf", "lr_nan", "lr_huge_finite"}
#: Cases run from inside the output folder: the run goes to the cwd (the default out is relative to it).
IN_OUT_DIR = {"missing_out", "out_dot"}


def _prepare(case, fuzz_synth, edit, name: str):
    raw = tiny_train_yaml(fuzz_synth, case.out / "run")
    if name in NO_EXPORT or name.startswith("export_"):
        raw["export"]["enabled"] = True
    if name in IN_OUT_DIR:
        case.out.mkdir(parents=True, exist_ok=True)
        os.chdir(case.out)
    edit(raw)
    case.write("file.txt", "not a directory\n")
    case.write("random.bin", rand_bytes(300, 61))
    case.write("random.safetensors", rand_bytes(300, 62))
    if name == "out_is_file":
        case.protect(case.out / "run_file")
    text = yaml.safe_dump(raw, sort_keys=False)
    text = text.replace("{INPUTS}", str(case.inputs)).replace("{OUT}", str(case.out))
    return case.write("train.yaml", text)


def _no_export(case) -> None:
    assert not (case.out / "run" / "bundle").exists(), "a failed (diverged) run exported a bundle"


def _fit(config, overrides=()):
    from aromni.training.recipes import pretrain
    from aromni.training.trainer import Trainer

    return run_api(lambda: Trainer(pretrain.config(config, list(overrides))).fit())


@pytest.mark.parametrize("name, edit, expect", EDITS, ids=EDIT_IDS)
def test_cli_train_config(case, fuzz_synth, name, edit, expect):
    cfg = _prepare(case, fuzz_synth, edit, name)
    case.cli(["train", "pretrain", "--config", str(cfg)], expect=expect, progress=True)
    if name in NO_EXPORT and case.outcomes[-1] == "clean_error":
        _no_export(case)


@pytest.mark.parametrize("name, edit, expect", EDITS, ids=EDIT_IDS)
def test_api_train_config(case, fuzz_synth, name, edit, expect):
    cfg = _prepare(case, fuzz_synth, edit, name)
    case.api(lambda: _fit(cfg), expect=expect)
    if name in NO_EXPORT and case.outcomes[-1] == "clean_error":
        _no_export(case)


RAW_YAML = [
    ("yaml_list", "- a\n- b\n", "error"),
    ("yaml_scalar_number", "42\n", "error"),
    ("yaml_scalar_text", "just some text\n", "error"),
    ("yaml_null", "null\n", "error"),
    ("yaml_empty", "", "error"),
    ("yaml_unclosed_bracket", "optim: [\n", "error"),
    ("yaml_tab_indent", "optim:\n\tlr: 1\n", "error"),
    ("yaml_mapping_in_scalar", "optim: lr: 1\n", "error"),
    ("yaml_braces", "{{{{\n", "error"),
    ("yaml_python_tag", "out: !!python/object/apply:builtins.open ['{MARKER}', 'w']\n", "error"),
    ("yaml_python_name", "out: !!python/name:os.system\n", "error"),
    ("yaml_deep_nesting", "data: " + "[" * 3000 + "]" * 3000 + "\n", "error"),
    ("yaml_billion_laughs", "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
     "data: {mixing: {ratios: {text: *f}}}\n", "error"),
    ("yaml_non_utf8", b"out: caf\xe9\xff\n", "error"),
    ("yaml_nul_bytes", b"out: a\x00b\n", "error"),
    ("yaml_random_bytes", rand_bytes(500, 63), "error"),
    ("yaml_lr_1e400_text", "optim:\n  lr: 1e400\n  max_steps: 2\n", "error"),
]
RAW_IDS = [r[0] for r in RAW_YAML]


def _raw(case, fuzz_synth, text):
    if isinstance(text, str):
        text = text.replace("{MARKER}", str(case.marker))
    if isinstance(text, str) and text.startswith("optim:\n  lr: 1e400"):
        # a full tiny config with lr written as the YAML text 1e400 (a string to YAML, inf to float())
        raw = tiny_train_yaml(fuzz_synth, case.out / "run")
        raw["export"]["enabled"] = True
        raw["optim"]["lr"] = "LR_PLACEHOLDER"
        text = yaml.safe_dump(raw, sort_keys=False).replace("LR_PLACEHOLDER", "1e400")
    return case.write("train.yaml", text)


@pytest.mark.parametrize("name, text, expect", RAW_YAML, ids=RAW_IDS)
def test_cli_train_raw_yaml(case, fuzz_synth, name, text, expect):
    cfg = _raw(case, fuzz_synth, text)
    case.cli(["train", "pretrain", "--config", str(cfg)], expect=expect, progress=True)
    assert not case.marker.exists()
    _no_export(case)


@pytest.mark.parametrize("name, text, expect", RAW_YAML, ids=RAW_IDS)
def test_api_train_raw_yaml(case, fuzz_synth, name, text, expect):
    cfg = _raw(case, fuzz_synth, text)
    case.api(lambda: _fit(cfg), expect=expect)
    assert not case.marker.exists()
    _no_export(case)


OVERRIDES = [
    ("no_equals", ["optim.lr"], "error"),
    ("empty_key", ["=5"], "error"),
    ("empty_value", ["optim.lr="], "error"),
    ("section_replaced", ["optim=5"], "error"),
    ("through_a_scalar", ["optim.lr.x=1"], "error"),
    ("invalid_yaml_value", ["optim.lr=["], "error"),
    ("unknown_path", ["a.b.c=1"], "error"),
    ("lr_1e400", ["optim.lr=1e400", "export.enabled=true"], "error"),
    ("lr_dot_nan", ["optim.lr=.nan"], "error"),
    ("lr_minus_inf", ["optim.lr=-.inf"], "error"),
    ("steps_huge_int", ["optim.max_steps=99999999999999999999999"], "any"),
    ("out_empty", ["out="], "error"),
    ("double_dot", ["optim..lr=1"], "error"),
    ("unicode_key", ["optim.l\u0435=1"], "error"),
    ("surrogate_value", ["out=\udcff"], "any"),
]
OVERRIDE_IDS = [o[0] for o in OVERRIDES]


@pytest.mark.parametrize("name, items, expect", OVERRIDES, ids=OVERRIDE_IDS)
def test_cli_train_overrides(case, fuzz_synth, name, items, expect):
    cfg = case.write("train.yaml", yaml.safe_dump(tiny_train_yaml(fuzz_synth, case.out / "run")))
    if name == "steps_huge_int":  # stop after step 1 so a huge schedule still ends at once
        items = [*items, "checkpoint.stop_after=1"]
    case.cli(["train", "pretrain", "--config", str(cfg), *items], expect=expect, progress=True)
    _no_export(case)


@pytest.mark.parametrize("name, items, expect", OVERRIDES, ids=OVERRIDE_IDS)
def test_api_train_overrides(case, fuzz_synth, name, items, expect):
    cfg = case.write("train.yaml", yaml.safe_dump(tiny_train_yaml(fuzz_synth, case.out / "run")))
    if name == "steps_huge_int":
        items = [*items, "checkpoint.stop_after=1"]
    case.api(lambda: _fit(cfg, items), expect=expect)
    _no_export(case)


@pytest.mark.parametrize("what", ["missing", "directory", "dev_null"])
def test_cli_train_config_not_a_file(case, what):
    path = {"missing": case.inputs / "nope.yaml", "directory": case.inputs, "dev_null": "/dev/null"}[what]
    case.cli(["train", "pretrain", "--config", str(path)], expect="error")


def test_cli_train_defaults_write_nothing_in_cwd(case):
    """No config at all: the defaults (out=runs/train, no data) must fail before writing into the cwd."""
    case.cli(["train", "pretrain"], expect="error")


def test_cli_train_print_config_weird(case, fuzz_synth):
    cfg = case.write("train.yaml", yaml.safe_dump(tiny_train_yaml(fuzz_synth, case.out / "run")))
    case.cli(["train", "pretrain", "--config", str(cfg), "--print-config", "optim.lr=.nan"], expect="error")


def test_cli_train_rerun_same_out_keeps_checkpoints(case, fuzz_synth):
    cfg = case.write("train.yaml", yaml.safe_dump(tiny_train_yaml(fuzz_synth, case.out / "run")))
    case.cli(["train", "pretrain", "--config", str(cfg), "checkpoint.resume=none"], expect="ok", progress=True)
    case.protect_existing(case.out / "run")
    case.cli(["train", "pretrain", "--config", str(cfg), "checkpoint.resume=none"], expect="error", progress=True)


# ------------------------------------------------------------------------------------------------ decoding (API)
OPTIONS = [
    ("none_ok", None, "ok"),
    ("empty_ok", {}, "ok"),
    ("cfg_yes", {"image": {"cfg": "yes"}}, "error"),
    ("options_list", [1, 2], "error"),
    ("options_string", "fast", "error"),
    ("temperature_inf", {"text": {"temperature": INF}}, "error"),
    ("temperature_nan", {"text": {"temperature": NAN}}, "error"),
    ("temperature_negative", {"text": {"temperature": -1}}, "error"),
    ("temperature_zero", {"text": {"temperature": 0}}, "error"),
    ("temperature_string", {"text": {"temperature": "hot"}}, "error"),
    ("temperature_bool", {"text": {"temperature": True}}, "error"),
    ("image_temperature_nan", {"image": {"temperature": NAN}}, "error"),
    ("top_p_zero", {"text": {"top_p": 0}}, "error"),
    ("top_p_two", {"text": {"top_p": 2}}, "error"),
    ("top_p_nan", {"text": {"top_p": NAN}}, "error"),
    ("top_k_negative", {"text": {"top_k": -1}}, "error"),
    ("top_k_float", {"text": {"top_k": 1.5}}, "error"),
    ("top_k_huge", {"text": {"top_k": 10**12}}, "any"),
    ("repetition_penalty_zero", {"text": {"repetition_penalty": 0}}, "error"),
    ("repetition_penalty_nan", {"text": {"repetition_penalty": NAN}}, "error"),
    ("repetition_penalty_inf", {"text": {"repetition_penalty": INF}}, "error"),
    ("greedy_string", {"text": {"greedy": "no"}}, "error"),
    ("guidance_nan", {"image": {"guidance_scale_text": NAN}}, "error"),
    ("guidance_inf", {"image": {"guidance_scale_image": INF}}, "error"),
    ("unknown_key", {"warp_speed": 9}, "error"),
    ("unknown_nested_key", {"text": {"warp_speed": 9}}, "error"),
    ("text_not_mapping", {"text": "x"}, "error"),
    ("image_not_mapping", {"image": 5}, "error"),
    ("max_new_tokens_zero", {"max_new_tokens": 0}, "error"),
    ("max_new_tokens_negative", {"max_new_tokens": -5}, "error"),
    ("max_new_tokens_string", {"max_new_tokens": "5"}, "any"),
    ("max_new_tokens_float", {"max_new_tokens": 1.5}, "error"),
    ("max_new_tokens_huge", {"max_new_tokens": 10**12}, "any"),
    ("max_seq_len_one", {"max_seq_len": 1}, "error"),
    ("max_seq_len_huge", {"max_seq_len": 10**9}, "any"),
    ("seed_string", {"seed": "abc"}, "error"),
    ("seed_negative", {"seed": -1}, "any"),
    ("seed_two_for_one", {"seed": [1, 2]}, "error"),
    ("seed_huge", {"seed": 2**80}, "any"),
    ("extra_eos_unknown_role", {"extra_eos": ["nope"]}, "error"),
    ("extra_eos_out_of_range", {"extra_eos": [10**9]}, "error"),
    ("image_tokens_zero", {"image_tokens": 0}, "error"),
    ("allow_text_string", {"allow_text": "no"}, "error"),
]
OPTION_IDS = [o[0] for o in OPTIONS]


def _img():
    from PIL import Image

    return Image.new("RGB", (8, 8), (200, 30, 30))


def _with_budget(options):
    if isinstance(options, dict) and "max_new_tokens" not in options:
        return {**copy.deepcopy(options), "max_new_tokens": MAX_NEW}
    return options


@pytest.mark.parametrize("name, options, expect", OPTIONS, ids=OPTION_IDS)
def test_api_caption_options(case, fuzz_model, name, options, expect):
    case.api(lambda: fuzz_model.caption(_img(), options=_with_budget(options)), expect=expect)


CHAT_OPTIONS = ["cfg_yes", "options_list", "temperature_inf", "temperature_string", "top_p_two", "unknown_key",
                "text_not_mapping", "max_new_tokens_negative", "seed_string", "none_ok"]


@pytest.mark.parametrize("name", CHAT_OPTIONS)
def test_api_chat_options(case, fuzz_model, name):
    _, options, expect = OPTIONS[OPTION_IDS.index(name)]
    case.api(lambda: fuzz_model.chat(options=_with_budget(options)).send(text="hi"), expect=expect)


SHORTCUTS = [
    ("caption_max_new_tokens_negative", lambda m: m.caption(_img(), max_new_tokens=-1), "error"),
    ("caption_seed_string", lambda m: m.caption(_img(), seed="x", max_new_tokens=MAX_NEW), "error"),
    ("tts_max_new_tokens_zero", lambda m: m.tts("hi", max_new_tokens=0), "error"),
    ("tts_chunk_frames_zero", lambda m: m.tts("hi", stream=True, chunk_frames=0, force_speech=True,
                                              max_new_tokens=MAX_NEW), "error"),
    ("tts_first_chunk_negative", lambda m: list(m.tts("hi", stream=True, first_chunk_frames=-3, force_speech=True,
                                                      max_new_tokens=MAX_NEW)), "error"),
    ("t2i_cfg_string", lambda m: m.t2i("a", cfg="yes", options={"max_new_tokens": 70}), "error"),
    ("t2i_guidance_nan", lambda m: m.t2i("a", guidance_scale_text=NAN, options={"max_new_tokens": 70}), "error"),
    ("t2i_guidance_string", lambda m: m.t2i("a", guidance_scale_image="big", options={"max_new_tokens": 70}),
     "error"),
    ("t2i_too_few_tokens", lambda m: m.t2i("a", options={"max_new_tokens": 8}), "error"),
    ("chat_unknown_kwarg", lambda m: m.chat(temperature=2.0), "error"),
    ("chat_reserve_negative", lambda m: m.chat(reserve_tokens=-5, options=OPTS).send(text="hi"), "error"),
    ("chat_append_text_int", lambda m: m.chat(append_text=5, options=OPTS).send(text="hi"), "error"),
    ("options_task_unknown", lambda m: m.options("juggle"), "error"),
]


@pytest.mark.parametrize("name, fn, expect", SHORTCUTS, ids=[s[0] for s in SHORTCUTS])
def test_api_decoding_shortcuts(case, fuzz_model, name, fn, expect):
    case.api(lambda: fn(fuzz_model), expect=expect)


@pytest.mark.parametrize("device, expect", [("foo", "error"), ("mps", "error"), ("cuda", "error"),
                                            ("cuda:99", "error"), ("meta", "error"), ("", "error")],
                         ids=["foo", "mps", "cuda", "cuda99", "meta", "empty"])
def test_api_load_device(case, fuzz_bundle, device, expect):
    import aromni

    case.api(lambda: aromni.load(str(fuzz_bundle), device=device).caption(_img(), max_new_tokens=MAX_NEW),
             expect=expect)


@pytest.mark.parametrize("dtype, expect", [("int8", "error"), ("float64", "any"), ("bf16", "any"), (5, "error")],
                         ids=["int8", "float64", "bf16", "int"])
def test_api_load_dtype(case, fuzz_bundle, dtype, expect):
    import aromni

    case.api(lambda: aromni.load(str(fuzz_bundle), dtype=dtype).caption(_img(), max_new_tokens=MAX_NEW),
             expect=expect)


# ------------------------------------------------------------------------------------------------ CLI flags
def _inputs(case):
    return {"image": case.write("a.png", png_bytes("RGB", (8, 8))), "audio": case.write("a.wav", wav_bytes(tone(0.3),
                                                                                                           16000))}


def _cmd(case, bundle, command):
    files = _inputs(case)
    if command == "caption":
        return ["caption", "--image", str(files["image"]), "--model", str(bundle)]
    if command == "asr":
        return ["asr", "--audio", str(files["audio"]), "--model", str(bundle)]
    if command == "tts":
        return ["tts", "--text", "hi", "--force-speech", "--out", str(case.out / "x.wav"), "--model", str(bundle)]
    if command == "t2i":
        return ["t2i", "--text", "a", "--out", str(case.out / "x.png"), "--model", str(bundle)]
    raise AssertionError(command)


FLAGS = [
    ("caption", ["--temperature", "inf"], "error"),
    ("caption", ["--temperature", "nan"], "error"),
    ("caption", ["--temperature", "-1"], "error"),
    ("caption", ["--temperature", "hot"], "error"),
    ("caption", ["--top-p", "0"], "error"),
    ("caption", ["--top-p", "2"], "error"),
    ("caption", ["--top-k", "-1"], "error"),
    ("caption", ["--repetition-penalty", "nan"], "error"),
    ("caption", ["--threads", "0"], "error"),
    ("caption", ["--threads", "-1"], "error"),
    ("caption", ["--threads", "many"], "error"),
    ("caption", ["--device", "foo"], "error"),
    ("caption", ["--device", "mps"], "error"),
    ("caption", ["--device", "cuda"], "error"),
    ("caption", ["--device", "cuda:99"], "error"),
    ("caption", ["--device", "meta"], "error"),
    ("caption", ["--max-new-tokens", "0"], "error"),
    ("caption", ["--max-new-tokens", "-5"], "error"),
    ("caption", ["--max-new-tokens", "1e3"], "error"),
    ("caption", ["--seed", "-1"], "any"),
    ("caption", ["--seed", str(2**70)], "any"),
    ("caption", ["--dtype", "int8"], "error"),
    ("asr", ["--temperature", "inf"], "error"),
    ("asr", ["--max-new-tokens", "-5"], "error"),
    ("asr", ["--device", "mps"], "error"),
    ("tts", ["--temperature", "inf"], "error"),
    ("tts", ["--max-new-tokens", "0"], "error"),
    ("tts", ["--chunk-frames", "0", "--stream"], "error"),
    ("tts", ["--first-chunk-frames", "-1", "--stream"], "error"),
    ("tts", ["--threads", "0"], "error"),
    ("t2i", ["--image-top-p", "2"], "error"),
    ("t2i", ["--image-temperature", "0"], "error"),
    ("t2i", ["--guidance-scale-text", "nan"], "error"),
    ("t2i", ["--guidance-scale-image", "inf"], "error"),
    ("t2i", ["--max-new-tokens", "-5"], "error"),
    ("t2i", ["--device", "foo"], "error"),
]


@pytest.mark.parametrize("command, flags, expect", FLAGS,
                         ids=[f"{c}{'_'.join(f).replace('--', '_')}" for c, f, _ in FLAGS])
def test_cli_task_flags(case, fuzz_bundle, command, flags, expect):
    argv = _cmd(case, fuzz_bundle, command)
    if "--max-new-tokens" not in flags:
        argv += ["--max-new-tokens", "70" if command == "t2i" else str(MAX_NEW)]
    case.cli([*argv, *flags], expect=expect)


@pytest.mark.parametrize("model, expect", [("", "any"), ("/nonexistent", "error"), ("{INPUTS}", "error")],
                         ids=["empty", "missing", "not_a_bundle"])
def test_cli_model_flag(case, model, expect):
    img = case.write("a.png", png_bytes("RGB", (8, 8)))
    case.cli(["caption", "--image", str(img), "--model", model.replace("{INPUTS}", str(case.inputs)),
              "--max-new-tokens", str(MAX_NEW)], expect=expect)


def test_cli_no_model_at_all(case):
    """No --model and no $AROMNI_MODEL: the shipped toy bundle (when installed) or a clean error."""
    img = case.write("a.png", png_bytes("RGB", (8, 8)))
    case.cli(["caption", "--image", str(img), "--max-new-tokens", str(MAX_NEW)], expect="any")


def test_cli_task_args_ok(case, fuzz_bundle):
    img = case.write("a.png", png_bytes("RGB", (8, 8)))
    case.cli(["caption", "--image", str(img), *task_args(fuzz_bundle), "--json"], expect="ok")
