"""Parity with peft 0.21.2 (the test-time reference): our LoRA forward equals peft's with the same weights, our
row-scale batch equals peft's mixed-adapter batch, our export loads with ``PeftModel.from_pretrained`` and holds
exactly what peft's ``save_pretrained`` writes, peft's files import into ours; bad or foreign adapter files and
overwrites are refused with one clear line."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from aromni.errors import CheckpointError, InputError
from aromni.omnivivo.lora import (
    DEFAULT_TARGETS,
    LoRAConfig,
    inject_lora,
    lora_layers,
    lora_rows,
    lora_state_dict,
)
from aromni.omnivivo.lora_peft_format import CONFIG, WEIGHTS, export_peft_adapter, import_peft_adapter
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions

peft = pytest.importorskip("peft")

CFG = T2IConfig.preset("toy", n_layer=2)
L = CFG.cls_token_num
R, ALPHA = 4, 8


def _backbone(cfg: T2IConfig = CFG) -> T2IBackbone:
    torch.manual_seed(0)
    model = T2IBackbone(cfg).eval()
    model.init_weights(zero_output=False)
    return model


def _inputs(B: int = 4, N: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(B, L, CFG.caption_dim, generator=g)
    mask = torch.arange(L)[None, :] < torch.randint(3, L + 1, (B,), generator=g)[:, None]
    feats, mask = left_pad_captions(feats * mask[..., None], mask)
    return feats, mask, torch.randint(0, CFG.vocab_size, (B, N), generator=g)


def _ours(base: T2IBackbone, targets: tuple[str, ...] = DEFAULT_TARGETS) -> T2IBackbone:
    model = copy.deepcopy(base)
    inject_lora(model, LoRAConfig(r=R, alpha=ALPHA, target_modules=targets))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * 0.05)
    return model


def _peft(base: T2IBackbone, targets: tuple[str, ...] | str = DEFAULT_TARGETS) -> peft.PeftModel:
    targets = targets if isinstance(targets, str) else list(targets)
    cfg = peft.LoraConfig(r=R, lora_alpha=ALPHA, target_modules=targets, lora_dropout=0.0)
    return peft.get_peft_model(copy.deepcopy(base), cfg).eval()


@torch.no_grad()
def test_forward_and_mixed_batch_equal_peft_with_the_same_weights():
    base = _backbone()
    ours, theirs = _ours(base), _peft(base)
    for name, layer in lora_layers(ours):
        wrapped = theirs.base_model.model.get_submodule(name)
        wrapped.lora_A["default"].weight.copy_(layer.lora_A.weight)
        wrapped.lora_B["default"].weight.copy_(layer.lora_B.weight)
    feats, mask, codes = _inputs()
    assert torch.equal(ours(feats, codes, mask), theirs(feats, codes, mask))  # scale 1: peft's exact op order
    rows = ["__base__", "default", "default", "__base__"]
    mixed_peft = theirs(feats, codes, mask, adapter_names=rows)
    with lora_rows(ours, torch.tensor([0.0, 1.0, 1.0, 0.0])):
        mixed = ours(feats, codes, mask)
    off = torch.tensor([True, False, False, True])
    assert torch.equal(mixed[off], mixed_peft[off]) and torch.equal(mixed[off], base(feats, codes, mask)[off])
    torch.testing.assert_close(mixed[~off], mixed_peft[~off], rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_export_loads_in_peft_and_matches_what_peft_saves(tmp_path):
    base = _backbone()
    ours = _ours(base)
    export_peft_adapter(ours, tmp_path / "ours", base_model_name_or_path="llamagen-toy")
    loaded = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "ours").eval()
    feats, mask, codes = _inputs()
    assert torch.equal(loaded(feats, codes, mask), ours(feats, codes, mask))
    cfg = loaded.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, cfg.bias) == (R, ALPHA, 0.0, "none")
    assert set(cfg.target_modules) == set(DEFAULT_TARGETS)
    assert cfg.base_model_name_or_path == "llamagen-toy" and cfg.task_type is None

    # What peft itself writes for the same adapter (save_embedding_layers=False: with a base model name, "auto"
    # would look the name up on the Hub).
    loaded.save_pretrained(tmp_path / "theirs", save_embedding_layers=False)
    mine, theirs = load_file(tmp_path / "ours" / WEIGHTS), load_file(tmp_path / "theirs" / WEIGHTS)
    assert set(mine) == set(theirs) and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert "base_model.model.layers.0.attention.wqkv.lora_A.weight" in mine
    written = json.loads((tmp_path / "ours" / CONFIG).read_text())
    peft_written = json.loads((tmp_path / "theirs" / CONFIG).read_text())
    assert {k: v for k, v in peft_written.items() if k in written and k != "target_modules"} == \
        {k: v for k, v in written.items() if k != "target_modules"}  # every value we write is peft's


@pytest.mark.parametrize("targets", [("wqkv", "w2"), r"layers\.1\..*\.(wo|w3)"])
@torch.no_grad()
def test_peft_save_pretrained_imports_into_ours(tmp_path, targets):
    base = _backbone()
    theirs = _peft(base, targets)
    g = torch.Generator().manual_seed(3)
    for name, p in theirs.named_parameters():
        if "lora_B" in name:
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    theirs.save_pretrained(tmp_path / "adapter")
    ours = copy.deepcopy(base)
    cfg = import_peft_adapter(ours, tmp_path / "adapter")
    wrapped = sorted(n for n, _ in lora_layers(ours))
    expected = sorted(n for n, m in theirs.base_model.model.named_modules() if hasattr(m, "lora_A"))
    assert wrapped == expected and (cfg.r, cfg.alpha) == (R, ALPHA)
    feats, mask, codes = _inputs()
    assert torch.equal(ours(feats, codes, mask), theirs(feats, codes, mask))
    assert (ours(feats, codes, mask) - base(feats, codes, mask)).abs().max() > 1e-3


def test_export_refuses_to_overwrite(tmp_path):
    ours = _ours(_backbone())
    export_peft_adapter(ours, tmp_path / "a")
    with pytest.raises(InputError, match="already exists"):
        export_peft_adapter(ours, tmp_path / "a")
    with torch.no_grad():
        lora_layers(ours)[0][1].lora_B.weight.zero_()
    export_peft_adapter(ours, tmp_path / "a", overwrite=True)
    assert not load_file(tmp_path / "a" / WEIGHTS)["base_model.model.layers.0.attention.wqkv.lora_B.weight"].any()
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        export_peft_adapter(ours, tmp_path / "file", overwrite=True)


def _edit_config(**changes: object) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        raw = json.loads((d / CONFIG).read_text())
        (d / CONFIG).write_text(json.dumps(raw | changes))
    return edit


def _edit_weights(fn: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Callable[[Path], None]:
    def edit(d: Path) -> None:
        save_file(fn(load_file(d / WEIGHTS)), d / WEIGHTS)
    return edit


_A0 = "base_model.model.layers.0.attention.wqkv.lora_A.weight"
_B0 = "base_model.model.layers.0.attention.wqkv.lora_B.weight"
BAD = {
    "wrong rank": (_edit_config(r=8), "not rank r=8"),
    "missing lora_B": (_edit_weights(lambda s: {k: v for k, v in s.items() if k != _B0}), "has lora_A but no lora_B"),
    "missing module": (_edit_weights(lambda s: {k: v for k, v in s.items() if k not in (_A0, _B0)}),
                       "no weights for the targeted module 'layers.0.attention.wqkv'"),
    "untargeted weights": (_edit_config(target_modules=["wo"]), "which target_modules does not select"),
    "unknown target": (_edit_config(target_modules=["q_proj", "v_proj"]), "'q_proj' matches no module"),
    "frozen target": (_edit_config(target_modules=["output"]), "frozen image path"),
    "dora": (_edit_config(use_dora=True), "use_dora = True is not supported"),
    "rslora": (_edit_config(use_rslora=True), "use_rslora"),
    "rank pattern": (_edit_config(rank_pattern={"wo": 2}), "rank_pattern"),
    "pissa": (_edit_config(init_lora_weights="pissa"), "rewrites the base"),
    "not lora": (_edit_config(peft_type="IA3"), "peft_type is 'IA3'"),
    "newer option": (_edit_config(some_new_switch=2), "unknown option some_new_switch"),
    "adapter-named keys": (_edit_weights(lambda s: {k.replace(".weight", ".default.weight"): v for k, v in s.items()}),
                           "keys without the adapter name"),
    "garbage weights": (lambda d: (d / WEIGHTS).write_bytes(b"\x00garbage"), "unreadable safetensors"),
    "no weights": (lambda d: (d / WEIGHTS).unlink(), "no adapter_model.safetensors"),
    "no config": (lambda d: (d / CONFIG).unlink(), "adapter_config.json"),
    "bad json": (lambda d: (d / CONFIG).write_text("{"), "not valid JSON"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_adapter_files_are_refused_in_one_line(tmp_path, case):
    edit, match = BAD[case]
    export_peft_adapter(_ours(_backbone()), tmp_path / "a")
    edit(tmp_path / "a")
    model = _backbone()
    with pytest.raises(CheckpointError, match=match) as err:
        import_peft_adapter(model, tmp_path / "a")
    assert "\n" not in str(err.value) and err.value.hint
    assert not lora_layers(model)  # checked before anything changed


def test_adapter_for_another_model_or_path_is_refused(tmp_path):
    export_peft_adapter(_ours(_backbone()), tmp_path / "a")
    wider = _backbone(CFG.replace(dim=64, n_head=2, n_kv_head=2))
    with pytest.raises(CheckpointError, match="another model size"):
        import_peft_adapter(wider, tmp_path / "a")
    with pytest.raises(InputError, match="no such adapter directory"):
        import_peft_adapter(_backbone(), tmp_path / "missing")
    ours = _ours(_backbone(), targets=("wo",))
    with pytest.raises(CheckpointError, match="already carries adapters"):
        import_peft_adapter(ours, tmp_path / "a")


def test_import_into_an_injected_model_replaces_its_weights(tmp_path):
    src = _ours(_backbone())
    export_peft_adapter(src, tmp_path / "a")
    dst = copy.deepcopy(_backbone())
    inject_lora(dst, LoRAConfig(r=R, alpha=ALPHA))
    import_peft_adapter(dst, tmp_path / "a")
    assert all(torch.equal(v, lora_state_dict(src)[k]) for k, v in lora_state_dict(dst).items())
