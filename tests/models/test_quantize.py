"""Weight-only int8: the layer against its float original, what gets replaced, and greedy agreement on the
trained toy bundle (teacher-forced top-1 agreement 1.000 and 1.0% relative logit error when measured)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from chameleon_refs import random_decoder, tiny_config
from torch import nn

import aromni
from aromni.errors import ConfigError
from aromni.inference.engine import compile_step, decode_rows
from aromni.models.quantize import Int8Linear, quantize_decoder_
from aromni.vocab.tasks import TTS
from aromni.vocab.templates import task_conversation


def test_int8_linear_is_close_to_the_float_layer_and_its_fallback():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(64, 48, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 64, generator=g) * torch.linspace(0.01, 1.0, 48)[:, None])
    q = Int8Linear.from_linear(lin)
    assert q.weight.dtype == torch.int8 and q.scale.shape == (48,)
    # Rounding moves each weight by at most half a step of its row's scale.
    step = q.scale[:, None]
    assert torch.all((q.weight.float() * step - lin.weight.detach()).abs() <= 0.5 * step + 1e-7)
    x = torch.randn(3, 5, 64, generator=g)
    with torch.no_grad():
        y, ref = q(x), lin(x)
    assert y.dtype == x.dtype and y.shape == ref.shape
    assert float((y - ref).norm() / ref.norm()) < 0.02  # int8 weights, bfloat16 activations in the CPU kernel
    # The CPU kernel computes the dequantized product of the bfloat16-rounded activations (to bfloat16 output).
    dequant = F.linear(x.bfloat16().float(), q.weight.float()) * q.scale
    torch.testing.assert_close(y, dequant, rtol=1e-2, atol=1e-2 * float(dequant.abs().max()))


@pytest.mark.parametrize("tied", [False, True])
def test_quantize_replaces_every_linear_layer_but_a_tied_head(tied):
    model = random_decoder(tiny_config(tie_embeddings=tied), seed=1)
    n = quantize_decoder_(model)
    assert n == 4 * model.cfg.n_layers + (0 if tied else 1)
    assert not any(isinstance(m, nn.Linear) for m in model.modules() if m is not model.lm_head)
    with pytest.raises(ConfigError, match="unknown quantization"):
        quantize_decoder_(model, "int3")


def test_int8_toy_bundle_agrees_with_float32():
    ref = aromni.load("toy", dtype="float32")
    q = aromni.load("toy", dtype="float32", quantize="int8")
    agree = total = 0
    worst = 0.0
    for text in ["the big red circle is on the left", "a small blue square at the top", "the green star is small"]:
        p = ref.encode(task_conversation(TTS, style=ref.style.name, text=text))
        reply = ref.engine.run([p], ref.options(TTS).updated(max_new_tokens=80))[0].tokens
        seq = torch.tensor([p + reply])
        with torch.no_grad():
            a = ref.bundle.decoder(seq)[0, len(p) - 1:-1]
            b = q.bundle.decoder(seq)[0, len(p) - 1:-1]
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
        worst = max(worst, float((a - b).norm() / a.norm()))
    assert agree / total >= 0.98
    assert worst <= 0.03


def test_compiled_int8_step_equals_eager_int8():
    model = random_decoder(tiny_config(), seed=2)
    quantize_decoder_(model)
    step = compile_step(True, torch.device("cpu"))
    prompt = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12]])
    out = []
    for fn in (decode_rows, step):
        model.setup_caches(2, 16)
        model(prompt, input_pos=torch.arange(4))
        out.append(torch.stack([fn(model, torch.tensor([20 + t, 30 + t]), torch.full((2,), 4 + t))
                                for t in range(3)]))
    torch.testing.assert_close(out[1], out[0], rtol=1e-5, atol=1e-5)
