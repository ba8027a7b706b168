import pytest
import torch

from aromni.errors import ConfigError
from aromni.models import Decoder, DecoderConfig, save_decoder
from aromni.training.config import ModelConfig
from aromni.training.model_init import build_decoder
from aromni.training.vocab_extension import assigned_ids, extend_vocabulary
from aromni.vocab.layout import VocabLayout


def _decoder(layout, tie=False):
    cfg = DecoderConfig(vocab_size=layout.vocab_size, dim=16, n_layers=1, n_heads=2, ffn_dim=32, max_seq_len=32,
                        tie_embeddings=tie)
    d = Decoder(cfg)
    d.init_weights(0.2, generator=torch.Generator().manual_seed(0))
    return d.eval()


@pytest.mark.parametrize("tie", [False, True])
def test_adding_speech_codes_keeps_old_logits_bit_identical(tie):
    old = VocabLayout.compact(n_text=30, n_image=16, n_speech=0)  # an image-text model (vocab 64)
    new = VocabLayout.compact(n_text=30, n_image=16, n_speech=40)  # + speech codes (vocab 128)
    dec = _decoder(old, tie)
    tokens = torch.tensor([[old.bos, old.boi, *old.image.to_ids([1, 2, 3]), old.eoi, 20, 21]])
    before = dec(tokens)
    extend_vocabulary(dec, old, new, generator=torch.Generator().manual_seed(1))
    after = dec(tokens)
    assert dec.cfg.vocab_size == new.vocab_size and after.shape[-1] == new.vocab_size
    kept = torch.from_numpy(assigned_ids(old))
    assert torch.equal(after[..., kept], before[..., kept])
    # Ids 62, 63 were padding rows of the old matrix and are speech codes now: they were re-initialised.
    assert new.speech.start == 62 and not torch.equal(after[..., 62], before[..., 62])
    # New rows start at the mean of the assigned old rows (plus small noise), not at zero.
    new_rows = dec.embed.weight[torch.from_numpy(new.speech.code_to_id)]
    mean = dec.embed.weight[torch.from_numpy(assigned_ids(old))].mean(0)
    assert (new_rows.mean(0) - mean).abs().max() < 0.05 and new_rows.std(0).min() > 0
    if tie:
        assert dec.lm_head.weight is dec.embed.weight


def test_incompatible_layouts_are_refused():
    old = VocabLayout.compact(n_text=30, n_image=16, n_speech=8)
    with pytest.raises(ConfigError, match="image"):
        extend_vocabulary(_decoder(old), old, VocabLayout.compact(n_text=30, n_image=8, n_speech=8))
    a, b = old.text_runs[0]
    with pytest.raises(ConfigError, match="text"):
        extend_vocabulary(_decoder(old), old, old.replace(text_runs=((a, b - 1),)))
    with pytest.raises(ConfigError, match="eos"):
        extend_vocabulary(_decoder(old), old, old.replace(special={**old.special, "eos": old.special["eom"],
                                                                   "eom": old.special["eos"]}))


def test_build_decoder_extends_a_checkpoint_to_the_data_layout(tmp_path):
    old = VocabLayout.compact(n_text=30, n_image=16, n_speech=0)
    new = VocabLayout.compact(n_text=30, n_image=16, n_speech=40)
    save_decoder(_decoder(old), tmp_path / "ckpt", layout=old)
    dec, layout, notes = build_decoder(ModelConfig(init_from=str(tmp_path / "ckpt"), swin_norm=True), new)
    assert layout == new and notes["extended_vocab"] == f"{old.vocab_size} -> {new.vocab_size}"
    assert dec.training and dec.cfg.swin_norm and all(b.swin_norm for b in dec.layers)
    cfg = ModelConfig(init_from=str(tmp_path / "ckpt"))
    cfg.extend_vocab.enabled = False
    with pytest.raises(ConfigError, match="differs"):
        build_decoder(cfg, new)


def test_build_decoder_from_an_hf_checkpoint_uses_the_data_layout(tmp_path):
    from aromni.models import save_checkpoint

    layout = VocabLayout.compact(n_text=30, n_image=16, n_speech=8)
    src = _decoder(layout)
    save_checkpoint(src, tmp_path / "hf", "hf")  # Hugging Face layout: carries no aromni layout
    dec, got, notes = build_decoder(ModelConfig(init_from=str(tmp_path / "hf")), layout)
    assert got == layout and "extended_vocab" not in notes
    tokens = torch.tensor([[layout.bos, 20, 21, 22]])
    torch.testing.assert_close(dec.eval()(tokens), src(tokens), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="no vocabulary layout"):
        build_decoder(ModelConfig(init_from=str(tmp_path / "hf")), VocabLayout.compact(30, 16, 80))
