"""The teacher-forced training forward: finite loss on the right targets (codes then EOS, padding ignored), gradients
only in LoRA and the speech modules, the frozen backbone stays in eval mode (its dropouts never fire) after
``model.train()``, and an optimiser step leaves every backbone weight as it was."""

from __future__ import annotations

import pytest
import torch

from aromni.omnivivo.lora import LoRAConfig, backbone_state_dict, lora_layers, lora_parameters
from aromni.omnivivo.t2i_config import T2IConfig
from aromni.omnivivo.t2i_model import T2IBackbone, left_pad_captions
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_model import VivoModel

# The toy preset keeps LlamaGen's dropouts (0.1): a backbone in train mode would make forwards random.
CFG = T2IConfig.preset("toy", n_layer=2, block_size=16)
L, K = CFG.cls_token_num, 16


def _vivo(lora_dropout: float = 0.0, speech_rope: str = "real_prefix") -> VivoModel:
    torch.manual_seed(0)
    backbone = T2IBackbone(CFG).eval()
    backbone.init_weights(zero_output=False)
    cfg = VivoConfig(speech_vocab=K, branch_layers=2, speech_rope=speech_rope, max_speech_len=24,
                     lora=LoRAConfig(r=4, alpha=4.0, dropout=lora_dropout))
    model = VivoModel(backbone, cfg, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in lora_parameters(model.backbone)[1::2]:  # B is zero after init: then A would get no gradient
            p.normal_(0.0, 0.05, generator=g)
    return model


def _batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(3, L, CFG.caption_dim, generator=g)
    mask = torch.arange(L)[None, :] < torch.tensor([4, 16, 9])[:, None]
    feats, mask = left_pad_captions(feats * mask[..., None], mask)
    lengths = torch.tensor([6, 0, 3])
    codes = torch.randint(0, K, (3, 6), generator=g)
    codes[torch.arange(6)[None, :] >= lengths[:, None]] = -7  # padding the loss must never read
    return feats, mask, codes, lengths


@pytest.mark.parametrize("speech_rope", ["zero_prefix", "real_prefix"])
def test_loss_targets_are_the_codes_then_eos_with_padding_ignored(speech_rope):
    model = _vivo(speech_rope=speech_rope).train()
    feats, mask, codes, lengths = _batch()
    loss, n = model.speech_loss(feats, mask, codes, lengths)
    assert torch.isfinite(loss) and int(n) == 6 + 0 + 3 + 3  # codes plus one EOS per row
    logp = model.speech_logits(feats, mask, codes.clamp(min=0)).log_softmax(-1)
    terms = []
    for b, length in enumerate(lengths.tolist()):
        terms += [logp[b, j, int(codes[b, j])] for j in range(length)] + [logp[b, length, K]]
    torch.testing.assert_close(loss, -torch.stack(terms).mean())
    other = codes.masked_fill(codes < 0, 11)  # other padding values: the same loss
    assert torch.equal(model.speech_loss(feats, mask, other, lengths)[0], loss)


def test_gradients_reach_only_lora_and_the_speech_modules():
    model = _vivo()
    model.train()
    feats, mask, codes, lengths = _batch()
    loss, _ = model.speech_loss(feats, mask, codes, lengths)
    loss.backward()
    trainable = {id(p) for p in model.trainable_parameters()}
    n_lora = len(lora_layers(model.backbone))
    assert n_lora == 5 * CFG.n_layer
    assert len(trainable) == 2 * n_lora + len(list(model.branch.parameters()))
    for name, p in model.named_parameters():
        if id(p) in trainable:
            assert p.requires_grad and p.grad is not None and p.grad.abs().max() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name
    assert {n for n, p in model.named_parameters() if p.requires_grad} == {
        n for n, p in model.named_parameters() if id(p) in trainable}


def test_backbone_stays_in_eval_mode_and_its_dropouts_never_fire():
    model = _vivo(lora_dropout=0.1)
    model.train()
    assert model.training and model.branch.training and not model.backbone.training
    for name, module in model.backbone.named_modules():
        expected = name.endswith("lora_dropout")  # LoRA's own dropout follows the model's mode
        assert module.training == expected, name
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    for _, layer in lora_layers(model.backbone):
        layer.lora_dropout.p = 0.0  # keep the LoRA path deterministic for the comparison below
    feats, mask, codes, lengths = _batch()
    a, _ = model.speech_loss(feats, mask, codes, lengths)
    b, _ = model.speech_loss(feats, mask, codes, lengths)
    assert torch.equal(a, b)  # no backbone dropout in train mode
    model.backbone.train()  # what model.train() must prevent: LlamaGen's 0.1 dropouts make it random
    c, _ = model.speech_loss(feats, mask, codes, lengths)
    assert not torch.equal(a, c)
    model.train()
    assert not model.backbone.training


def test_an_optimiser_step_changes_only_the_trainable_weights():
    model = _vivo()
    model.train()
    before = {k: v.clone() for k, v in backbone_state_dict(model.backbone).items()}
    lora_before = [p.detach().clone() for p in lora_parameters(model.backbone)]
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2, weight_decay=0.01)
    feats, mask, codes, lengths = _batch()
    first, _ = model.speech_loss(feats, mask, codes, lengths)
    for _ in range(3):
        opt.zero_grad()
        loss, _ = model.speech_loss(feats, mask, codes, lengths)
        loss.backward()
        opt.step()
    after = backbone_state_dict(model.backbone)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not torch.equal(a, p) for a, p in zip(lora_before, lora_parameters(model.backbone)))
    assert model.speech_loss(feats, mask, codes, lengths)[0] < first  # it learns
