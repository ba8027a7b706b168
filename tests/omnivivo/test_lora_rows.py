"""LoRA with a per-row switch on the t2i backbone: one batched forward with LoRA-off and LoRA-on rows equals the
separate forwards (train and eval, cache-free and cached), off rows are bit-identical to the un-injected
backbone, a fresh adapter is a no-op, only A and B learn, merging equals the scale-1 forward, the state-dict keys
stay LlamaGen's, and bad configs / scales are refused."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.omnivivo.lora import (
    LoRAConfig,
    LoRALinear,
    backbone_state_dict,
    inject_lora,
    load_backbone_state_dict,
    load_lora_state_dict,
    lora_config_of,
    lora_layers,
    lora_parameters,
    lora_rows,
    lora_state_dict,
    merge_lora,
    set_lora_rows,
)
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions

# The toy preset, 2 blocks, backbone dropouts off so train-mode forwards are deterministic.
CFG = T2IConfig.preset("toy", n_layer=2, token_dropout_p=0.0, resid_dropout_p=0.0, ffn_dropout_p=0.0)
L = CFG.cls_token_num


def _backbone(seed: int = 0) -> T2IBackbone:
    torch.manual_seed(seed)
    model = T2IBackbone(CFG).eval()
    model.init_weights(zero_output=False)  # a zero image head would hide every difference
    return model


def _inputs(B: int = 4, N: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded captions ``feats [B, L, C]``, ``mask [B, L]`` and image codes ``[B, N]``."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, L, CFG.caption_dim, generator=g)
    lengths = torch.randint(3, L + 1, (B,), generator=g)
    mask = torch.arange(L)[None, :] < lengths[:, None]
    feats, mask = left_pad_captions(feats * mask[..., None], mask)
    return feats, mask, torch.randint(0, CFG.vocab_size, (B, N), generator=g)


def _randomise_b(model: nn.Module, seed: int = 2, std: float = 0.05) -> None:
    """A trained-looking adapter: B is zero after init, which would make every LoRA-on check vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            layer.lora_B.weight.copy_(torch.randn(layer.lora_B.weight.shape, generator=g) * std)


def _injected(lora: LoRAConfig | None = None) -> tuple[T2IBackbone, T2IBackbone]:
    """(reference backbone, injected copy with a random adapter)."""
    ref = _backbone()
    model = copy.deepcopy(ref)
    inject_lora(model, lora or LoRAConfig(r=4, alpha=8))
    _randomise_b(model)
    return ref, model


ROWS = torch.tensor([0.0, 1.0, 1.0, 0.0])  # image rows (LoRA off) and speech rows (LoRA on), interleaved
OFF, ON = ROWS == 0, ROWS == 1


def test_fresh_adapter_is_an_exact_noop_with_peft_default_init():
    ref = _backbone()
    model = copy.deepcopy(ref)
    names = inject_lora(model, LoRAConfig())
    assert len(names) == 5 * CFG.n_layer and all(isinstance(model.get_submodule(n), LoRALinear) for n in names)
    feats, mask, codes = _inputs()
    assert torch.equal(model(feats, codes, mask), ref(feats, codes, mask))
    for _, layer in lora_layers(model):
        bound = 1 / math.sqrt(layer.in_features)  # kaiming_uniform(a=sqrt(5)) = nn.Linear's U(-1/sqrt(in), ..)
        a = layer.lora_A.weight
        assert a.abs().max() <= bound and a.abs().max() > 0.5 * bound and a.std() > 0.3 * bound
        assert not layer.lora_B.weight.any()


@pytest.mark.parametrize("train", [False, True])
def test_per_row_batch_equals_separate_forwards(train):
    ref, model = _injected()
    ref.train(train)
    model.train(train)
    feats, mask, codes = _inputs()
    with torch.set_grad_enabled(train):
        base = ref(feats, codes, mask)
        with lora_rows(model, ROWS):
            mixed = model(feats, codes, mask)
        with lora_rows(model, 0.0):
            off = model(feats, codes, mask)
        on = model(feats, codes, mask)  # default scale 1.0: LoRA on for every row
        alone = model(feats[ON], codes[ON], mask[ON])
    assert torch.equal(off, base)  # LoRA off everywhere: the un-injected backbone, bit for bit
    assert torch.equal(mixed[OFF], base[OFF])  # image rows untouched by their LoRA-on batch mates
    assert torch.equal(mixed[ON], on[ON])
    torch.testing.assert_close(mixed[ON], alone, rtol=1e-5, atol=1e-5)  # batch of the speech rows alone
    assert (on[ON] - base[ON]).abs().max() > 1e-3  # the adapter does change the speech rows


def test_lora_dropout_in_train_mode_never_touches_off_rows():
    ref, model = _injected(LoRAConfig(r=4, alpha=8, dropout=0.5))
    ref.train()
    model.train()
    feats, mask, codes = _inputs()
    with lora_rows(model, ROWS):
        first, second = model(feats, codes, mask), model(feats, codes, mask)
    base = ref(feats, codes, mask)
    assert torch.equal(first[OFF], base[OFF]) and torch.equal(second[OFF], base[OFF])
    assert not torch.equal(first[ON], second[ON])  # dropout is active on the LoRA-on rows


def _cached(model: T2IBackbone, feats: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Prefill the caption, then decode three image codes on the KV cache: logits ``[B, 4, V]``."""
    model.setup_caches(feats.shape[0], L + 8)
    out = [model.forward_embeddings(model.caption_embeddings(feats), torch.arange(L), caption_mask=mask,
                                    logits_to_keep=1)]
    for t in range(3):
        out.append(model.forward_embeddings(model.tok_embeddings(codes[:, t: t + 1]), torch.tensor([L + t])))
    return torch.cat(out, dim=1)


@torch.inference_mode()
def test_per_row_switch_through_the_kv_cache():
    ref, model = _injected()
    feats, mask, codes = _inputs()
    base = _cached(ref, feats, mask, codes)
    with lora_rows(model, ROWS):
        mixed = _cached(model, feats, mask, codes)
    on = _cached(model, feats, mask, codes)
    assert torch.equal(mixed[OFF], base[OFF])
    assert torch.equal(mixed[ON], on[ON])
    assert (on[ON] - base[ON]).abs().max() > 1e-3


def test_layer_scale_semantics_and_overflow_safety():
    torch.manual_seed(3)
    base = nn.Linear(8, 6)
    layer = LoRALinear(copy.deepcopy(base), r=2, alpha=4)
    nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 5, 8)
    delta = 2.0 * layer.lora_B(layer.lora_A(x))  # alpha / r = 2
    layer.row_scale = torch.tensor([0.0, 0.5, 1.0])
    y = layer(x)
    assert torch.equal(y[0].view(torch.int32), base(x)[0].view(torch.int32))  # bitwise, signed zeros included
    torch.testing.assert_close(y[1:], base(x)[1:] + torch.tensor([0.5, 1.0])[:, None, None] * delta[1:])
    with torch.no_grad():
        layer.lora_B.weight.fill_(float("inf"))  # an overflowing adapter: 0 * inf would be nan
    y = layer(x)
    assert torch.equal(y[0], base(x)[0]) and not torch.isfinite(y[1:]).all()
    layer.row_scale = 0.0
    assert torch.equal(layer(x), base(x))


def test_gradients_reach_only_a_and_b_and_only_from_on_rows():
    _, model = _injected()
    model.train()
    feats, mask, codes = _inputs()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in lora_parameters(model)}

    def grads(rows: torch.Tensor, keep: torch.Tensor) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        with lora_rows(model, rows):
            logits = model(feats[keep], codes[keep], mask[keep])
        loss = F.cross_entropy(logits[rows.bool()].flatten(0, 1), codes[keep][rows.bool()].flatten(), reduction="sum")
        loss.backward()
        return [p.grad.clone() for p in lora_parameters(model)]

    mixed = grads(ROWS, torch.ones(4, dtype=torch.bool))
    alone = grads(torch.ones(int(ON.sum())), ON)
    for g_mixed, g_alone in zip(mixed, alone):
        torch.testing.assert_close(g_mixed, g_alone, rtol=1e-4, atol=1e-6)  # off rows add nothing
    assert all(g.abs().max() > 0 for g in mixed)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)


def test_merge_equals_the_scale_one_forward_and_restores_plain_linears():
    ref, model = _injected()
    feats, mask, codes = _inputs()
    with torch.no_grad():
        on = model(feats, codes, mask)
        with lora_rows(model, ROWS), pytest.raises(ConfigError, match="speech-only"):
            merge_lora(model)
        names = merge_lora(model)
        merged = model(feats, codes, mask)
    assert not lora_layers(model)
    assert all(type(model.get_submodule(n)) is nn.Linear for n in names)
    torch.testing.assert_close(merged, on, rtol=1e-5, atol=1e-5)
    assert set(model.state_dict()) == set(ref.state_dict())
    with pytest.raises(ConfigError, match="no LoRA"):
        merge_lora(model)


def test_state_dict_keeps_llamagen_keys_and_loads_official_weights():
    ref, model = _injected()
    keys, lora_keys = set(model.state_dict()), set(lora_state_dict(model))
    assert keys == set(ref.state_dict()) | lora_keys  # nothing renamed (peft would say ...wqkv.base_layer.weight)
    assert lora_keys == {f"{n}.lora_{ab}.weight" for n, _ in lora_layers(model) for ab in "AB"}
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in backbone_state_dict(model).items())
    assert set(backbone_state_dict(model)) == set(ref.state_dict())
    fresh = T2IBackbone(CFG)
    fresh.load_state_dict(backbone_state_dict(model), strict=True)

    other = T2IBackbone(CFG).eval()  # other base weights, same adapter: then load the "official" weights
    inject_lora(other, LoRAConfig(r=4, alpha=8))
    load_lora_state_dict(other, lora_state_dict(model))
    load_backbone_state_dict(other, ref.state_dict())
    feats, mask, codes = _inputs()
    with torch.no_grad():
        assert torch.equal(other(feats, codes, mask), model(feats, codes, mask))
    with pytest.raises(CheckpointError, match="missing"):
        load_backbone_state_dict(other, {k: v for k, v in ref.state_dict().items() if k != "norm.weight"})
    with pytest.raises(CheckpointError, match="shape"):
        load_backbone_state_dict(other, ref.state_dict() | {"norm.weight": torch.ones(3)})


def test_lora_state_dict_load_is_strict():
    _, model = _injected()
    other = copy.deepcopy(model)
    state = lora_state_dict(model)
    first = next(iter(state))
    with pytest.raises(CheckpointError, match="missing adapter key"):
        load_lora_state_dict(other, {k: v for k, v in state.items() if k != first})
    with pytest.raises(CheckpointError, match="unexpected"):
        load_lora_state_dict(other, state | {"layers.9.attention.wo.lora_A.weight": state[first]})
    _, rank8 = _injected(LoRAConfig(r=8, alpha=8))
    with pytest.raises(CheckpointError, match="another rank"):
        load_lora_state_dict(other, lora_state_dict(rank8))
    with pytest.raises(CheckpointError, match="int"):
        load_lora_state_dict(other, state | {first: state[first].to(torch.int32)})


def test_lora_config_of_reproduces_the_injection():
    _, model = _injected(LoRAConfig(r=4, alpha=8, target_modules=("wqkv", "w2")))
    cfg = lora_config_of(model)
    assert (cfg.r, cfg.alpha, cfg.dropout, cfg.target_modules) == (4, 8.0, 0.0, ("w2", "wqkv"))
    _, narrow = _injected(LoRAConfig(r=4, alpha=8, target_modules=("layers.1.attention.wqkv",)))
    assert lora_config_of(narrow).target_modules == ("layers.1.attention.wqkv",)  # "wqkv" would select layer 0 too


@pytest.mark.parametrize("kwargs, match", [
    ({"r": 0}, "r must be"), ({"r": -4}, "r must be"), ({"r": True}, "r must be"), ({"r": 2.0}, "r must be"),
    ({"alpha": 0}, "alpha"), ({"alpha": float("nan")}, "alpha"), ({"dropout": 1.0}, "dropout"),
    ({"target_modules": ("output",)}, "frozen image path"), ({"target_modules": ("tok_embeddings",)}, "frozen"),
    ({"target_modules": ("cls_embedding.cap_proj.fc1",)}, "frozen"), ({"target_modules": ()}, "non-empty"),
    ({"target_modules": ("wqkv", "wqkv")}, "repeats"), ({"target_modules": "wqkv"}, "list"),
    ({"target_modules": ("w q",)}, "not a module name"), ({"target_modules": ("",)}, "not a module name"),
])
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LoRAConfig(**kwargs)


@pytest.mark.parametrize("targets, match", [
    (("fc1",), "frozen image path"),  # matches cls_embedding.cap_proj.fc1
    (("wq",), "matches no module"), (("attention",), "not an nn.Linear"),
])
def test_bad_targets_are_refused_before_anything_changes(targets, match):
    model = _backbone()
    with pytest.raises(ConfigError, match=match):
        inject_lora(model, LoRAConfig(target_modules=targets))
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())


def test_row_scales_are_checked():
    _, model = _injected()
    feats, mask, codes = _inputs()
    with pytest.raises(ConfigError, match="inject_lora"):
        set_lora_rows(_backbone(), 1.0)
    with pytest.raises(ConfigError, match="already carries"):
        inject_lora(model, LoRAConfig())
    for bad in (float("nan"), True, torch.tensor(1.0), torch.ones(4, 2), torch.tensor([0.0, float("inf")])):
        with pytest.raises(InputError):
            set_lora_rows(model, bad)
    with lora_rows(model, torch.tensor([0.0, 1.0])), pytest.raises(InputError, match="2 rows"):
        model(feats, codes, mask)
    assert all(layer.row_scale == 1.0 for _, layer in lora_layers(model))  # restored after the error
    with lora_rows(model, torch.tensor([[0], [1], [1], [0]])):  # [B, 1] integers are fine
        assert torch.equal(lora_layers(model)[0][1].row_scale, ROWS)


def test_parameter_counts_on_the_meta_device():
    with torch.device("meta"):
        xl = T2IBackbone(T2IConfig.preset("GPT-XL"))
        names = inject_lora(xl, LoRAConfig(r=16, alpha=16))
        toy = T2IBackbone(T2IConfig.preset("toy"))
        inject_lora(toy, LoRAConfig(r=16, alpha=16))
    assert len(names) == 180
    assert sum(p.numel() for p in lora_parameters(xl)) == 12_828_672  # omnivivo.md §4.1 [run]
    assert sum(p.numel() for p in backbone_state_dict(xl).values()) == 777_678_080 + 245_760  # + uncond buffer
    assert sum(p.numel() for p in lora_parameters(toy)) == 172_032
