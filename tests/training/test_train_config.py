from pathlib import Path

import pytest

from aromni.errors import ConfigError
from aromni.training.config import TrainConfig
from aromni.training.optim import lr_factor, param_groups
from aromni.training.recipes import pretrain, sft

REPO = Path(__file__).resolve().parents[2]


def test_yaml_and_dotted_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("out: runs/x\ndata: {root: d, seq_len: 64}\noptim: {lr: 1.0e-3}\n")
    cfg = TrainConfig.from_yaml(f, ["optim.lr=5e-4", "loss.tail_tasks=[asr]", "perceptual.enabled=false",
                                    "data.mixing.ratios={speech: 1}", "model.swin_norm=null"])
    assert cfg.data.seq_len == 64 and cfg.optim.lr == 5e-4 and cfg.loss.tail_tasks == ["asr"]
    assert cfg.perceptual.enabled is False and cfg.data.mixing.ratios == {"speech": 1}
    assert cfg.model.swin_norm is None and cfg.out == "runs/x"
    with pytest.raises(ConfigError, match="unknown config keys"):
        TrainConfig.from_yaml(f, ["optim.learning_rate=1"])
    with pytest.raises(ConfigError, match="integer"):
        TrainConfig.from_yaml(f, ["optim.max_steps=1.5"])
    with pytest.raises(ConfigError, match="true/false"):
        TrainConfig.from_yaml(f, ["perceptual.enabled=maybe"])
    with pytest.raises(ConfigError, match="key=value"):
        TrainConfig.from_yaml(f, ["optim.lr"])
    with pytest.raises(ConfigError, match="exhaust"):
        TrainConfig.from_yaml(f, ["data.mixing.exhaust=never"])


def test_recipes_fix_the_stage_defaults():
    p = pretrain.config(None, ["data.root=x"])
    s = sft.config(None, ["data.root=x"])
    assert p.loss.mode == "pretrain" and sorted(p.loss.tail_tasks) == ["asr", "caption"] and p.optim.lr == 6e-5
    assert p.data.mixing.ratios == {"text": 0.5, "image": 1.0, "speech": 2.0} and p.data.seq_len == 1300
    assert s.loss.mode == "sft" and s.loss.tail_tasks == [] and s.data.mixing.ratios == {} and s.optim.lr == 2e-5
    with pytest.raises(ConfigError, match="aromni train sft"):
        pretrain.config(None, ["loss.mode=sft"])


@pytest.mark.parametrize("name", ["pretrain_tiny", "sft_tiny", "pretrain_7b", "sft_7b"])
def test_shipped_configs_parse(name):
    recipe = sft if name.startswith("sft") else pretrain
    cfg = recipe.config(REPO / "configs" / "train" / f"{name}.yaml")
    assert cfg.optim.grad_clip == 1.0


def test_schedule_is_linear_warmup_then_linear_decay():
    f = [lr_factor(s, warmup=5, max_steps=105) for s in range(105)]
    assert f[:5] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert f[5] == 1.0 and f[55] == pytest.approx(0.5) and f[104] == pytest.approx(0.01)
    assert lr_factor(200, 5, 105, min_ratio=0.1) == pytest.approx(0.1)


def test_weight_decay_only_on_matrices():
    import torch

    m = torch.nn.Sequential(torch.nn.Embedding(5, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 3))
    decay, no_decay = param_groups(m.named_parameters(), 0.1)
    assert {p.dim() for p in decay["params"]} == {2} and len(decay["params"]) == 2
    assert {p.dim() for p in no_decay["params"]} == {1} and no_decay["weight_decay"] == 0.0
