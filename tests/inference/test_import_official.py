"""``aromni import-official`` on tiny files written in the official release formats: a Meta-native decoder under
models/7b, a Chameleon-style text_tokenizer.json (65,536 names), Meta's vqgan.yaml/ckpt and an official
WavTokenizer yaml + ckpt. The bundle must load and run the tasks with the official ids and defaults."""

import json

import pytest
import torch
import yaml

from aromni.cli.main import main
from aromni.errors import InputError
from aromni.inference.official_import import import_official
from aromni.inference.omni import OmniModel
from aromni.models import Decoder, DecoderConfig
from aromni.models.checkpoint.meta_format import save_meta
from aromni.tokenizers.image.config import VQGANConfig
from aromni.tokenizers.image.formats import save_chameleon
from aromni.tokenizers.image.vqgan import VQGAN
from aromni.tokenizers.speech.wavtokenizer import WavTokenizer, WavTokenizerConfig
from aromni.tokenizers.speech.wavtokenizer.official import official_name
from aromni.vocab.layout import VocabLayout


def chameleon_text_tokenizer(path):
    """A byte-level BPE spanning 65,536 ids with Chameleon's names: specials, IMGIMG codes, reserved ids, text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for code in range(8192):
        vocab["IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"] = 4 + code
    vocab["<eoss>"], vocab["<racm3:break>"] = 8196, 8197
    for i in range(8198, 16384):
        vocab[f"<reserved{i - 4:05d}>"] = i
    i = 16384
    for ch in pre_tokenizers.ByteLevel.alphabet():
        vocab[ch] = i
        i += 1
    while i < 65536:
        vocab[f"tok{i}"] = i
        i += 1
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.save(str(path))


def official_wavtokenizer(dir_):
    cfg = WavTokenizerConfig(sample_rate=24000, strides=(2, 4), dimension=8, codebook_size=4096, backbone_dim=32,
                             intermediate_dim=24, num_layers=1, n_fft=32)
    torch.manual_seed(3)
    model = WavTokenizer(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    state = {}
    for k, v in model.state_dict().items():
        name = official_name(k)
        if name.endswith("weight_v"):  # weight norm: v = W, g = ||W|| per output channel
            state[name] = v.clone()
            state[name[:-1] + "g"] = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
        else:
            state[name] = v.clone()
    torch.save({"state_dict": state}, dir_ / "wt.ckpt")
    init = {"sample_rate": 24000,
            "feature_extractor": {"class_path": "decoder.feature_extractors.EncodecFeatures",
                                  "init_args": {"dowmsamples": list(reversed(cfg.strides)), "vq_bins": 4096,
                                                "num_quantizers": 1}},
            "backbone": {"class_path": "decoder.models.VocosBackbone",
                         "init_args": {"input_channels": 8, "dim": 32, "intermediate_dim": 24, "num_layers": 1,
                                       "adanorm_num_embeddings": 4}},
            "head": {"class_path": "decoder.heads.ISTFTHead",
                     "init_args": {"dim": 32, "n_fft": 32, "hop_length": 8, "padding": "same"}}}
    (dir_ / "wt.yaml").write_text(yaml.safe_dump({"model": {"init_args": init}}))
    return dir_ / "wt.yaml", dir_ / "wt.ckpt", model


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    (root / "tokenizer").mkdir()
    chameleon_text_tokenizer(root / "tokenizer" / "text_tokenizer.json")
    torch.manual_seed(0)
    # Meta's yaml has no norm_groups field (taming fixes 32 groups), so the widths are multiples of 32
    vq = VQGAN(VQGANConfig.preset("tiny", n_embed=8192, ch=32, norm_groups=32)).eval()
    save_chameleon(vq, root / "tokenizer")
    dec = Decoder(DecoderConfig(vocab_size=65536, dim=16, n_layers=1, n_heads=2, ffn_dim=32))
    dec.init_weights(std=0.5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the Meta layout stores one QK-norm vector shared by all heads
        for name, p in dec.named_parameters():
            if "_norm." in name and p.dim() == 2:
                p.copy_(p[:1].expand_as(p))
    save_meta(dec, root / "models" / "7b")
    wt_yaml, wt_ckpt, wt = official_wavtokenizer(root)
    return root, wt_yaml, wt_ckpt, dec, vq, wt


def test_import_builds_a_working_bundle(release, tmp_path, capsys):
    root, wt_yaml, wt_ckpt, dec, vq, wt = release
    out = tmp_path / "bundle"
    assert main(["import-official", "--aromni", str(root), "--wavtokenizer-config", str(wt_yaml),
                 "--wavtokenizer-ckpt", str(wt_ckpt), "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bundle"] == str(out)
    m = OmniModel.load(out)
    official = VocabLayout.aromni_7b(root / "tokenizer" / "text_tokenizer.json")
    assert m.layout == official and m.style.name == "official"
    assert (m.layout.boa, m.layout.eoa, m.layout.eoh, m.layout.eom) == (12821, 12820, 12830, 12831)
    d = m.defaults
    assert (d.text.temperature, d.text.top_p, d.text.repetition_penalty) == (1.2, 0.96, 1.2)
    assert (d.image.temperature, d.image.guidance_scale_text, d.image.guidance_scale_image) == (1.0, 3.07, 1.15)
    assert d.bare_speech and d.max_new_tokens == 4096 and m.engine.max_seq_len == 4096
    assert m.options("t2i").image.guidance_scale_image == 1.32
    # weights survive the conversion
    for (k, a), b in zip(dec.state_dict().items(), m.bundle.decoder.state_dict().values()):
        assert torch.equal(a, b), k
    codes = torch.randint(0, 8192, (1, vq.codes_per_image))
    assert torch.allclose(m.image.decode(codes), vq.decode(codes), atol=1e-6)
    sc = torch.randint(0, 4096, (1, 10))
    assert torch.allclose(m.speech.decode(sc), wt.decode(sc), atol=1e-5)
    # the official prompts come out of the official templates with the official ids
    prompt = m._task_prompt("tts", text="hi")
    tk = m.text
    assert prompt == [0] + tk.encode("USER:") + tk.encode("Convert this text into speech.") + \
        tk.encode("This is input: ") + tk.encode("hi") + [12830] + tk.encode("GPT:")
    img = m.t2i("a cat", seed=0, options={"image": {"cfg": False}})
    assert len(img.codes) == vq.codes_per_image


def test_import_refuses_incomplete_releases_and_overwrites(release, tmp_path):
    root, wt_yaml, wt_ckpt, *_ = release
    with pytest.raises(InputError, match="text_tokenizer.json"):
        import_official(tmp_path, wt_yaml, wt_ckpt, tmp_path / "b", log=lambda s: None)
    with pytest.raises(InputError, match="no such file"):
        import_official(root, tmp_path / "nope.yaml", wt_ckpt, tmp_path / "b", log=lambda s: None)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with pytest.raises(InputError, match="already exists"):
        import_official(root, wt_yaml, wt_ckpt, tmp_path / "full", log=lambda s: None)
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_import_takes_a_hugging_face_decoder(release, tmp_path):
    from aromni.models.checkpoint import save_checkpoint

    root, wt_yaml, wt_ckpt, dec, *_ = release
    save_checkpoint(dec, tmp_path / "hf", "hf-anole", extra_config={"vocabulary_map": {}})
    out = import_official(root, wt_yaml, wt_ckpt, tmp_path / "b", decoder=tmp_path / "hf", log=lambda s: None)
    m = OmniModel.load(out)
    for (k, a), b in zip(dec.state_dict().items(), m.bundle.decoder.state_dict().values()):
        assert torch.equal(a, b), k
