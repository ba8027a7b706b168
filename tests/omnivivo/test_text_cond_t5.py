"""The Flan-T5 conditioner on a tiny random T5 the test writes (no download): shapes, LlamaGen's left padding,
parity with calling ``T5EncoderModel`` directly and rotating as ``sample_t2i.py`` does, truncation by the
shared rule, dtypes, and one clear error per kind of bad directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from aromni.errors import CheckpointError, InputError, MissingExtraError
from aromni.omnivivo.t5_conditioner import T5Conditioner
from aromni.omnivivo.text_conditioner import TextConditioner, pad_token_ids

transformers = pytest.importorskip("transformers")

WORDS = ["a", "red", "blue", "green", "circle", "square", "triangle", "on", "the", "left", "right", "top",
         "bottom", "of", "background"]
TEXTS = ["A red circle on the left", "blue square", "", "a green triangle at the top of a blue background"]
L = 12


def _write_tokenizer(path: Path) -> None:
    """A T5-like tokenizer (Unigram over ``▁word`` pieces and letters, ``</s>`` appended, ``<pad>`` id 0)."""
    pieces = ["<pad>", "</s>", "<unk>", *(f"▁{w}" for w in WORDS), "▁", *"abcdefghijklmnopqrstuvwxyz"]
    tk = Tokenizer(models.Unigram([(p, -1.0 if p.startswith("▁") else -5.0) for p in pieces], unk_id=2))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", pad_token="<pad>",
                                                unk_token="<unk>")
    fast.save_pretrained(str(path))


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full ``T5ForConditionalGeneration`` directory, as google/flan-t5-xl ships (the decoder is ignored)."""
    path = tmp_path_factory.mktemp("tiny-t5")
    _write_tokenizer(path)
    vocab = len(transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True))
    cfg = transformers.T5Config(vocab_size=vocab + 4, d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=32,
                                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    torch.manual_seed(0)
    transformers.T5ForConditionalGeneration(cfg).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def cond(t5_dir: Path) -> T5Conditioner:
    return T5Conditioner.from_pretrained(t5_dir, max_length=L)


def test_shapes_and_left_padding(cond: T5Conditioner):
    assert isinstance(cond, TextConditioner) and cond.dim == 16 and cond.max_length == L
    feats, mask = cond.encode(TEXTS)
    assert feats.shape == (4, L, 16) and feats.dtype == torch.float32
    assert mask.shape == (4, L) and mask.dtype == torch.bool
    ids, right_mask = cond.tokenize(TEXTS)
    for b in range(4):
        n = int(right_mask[b].sum())
        assert ids[b, n - 1] == cond.tokenizer.eos_token_id  # every caption ends in EOS, even ""
        assert mask[b].tolist() == [False] * (L - n) + [True] * n
        assert (feats[b, : L - n] == 0).all()
        assert not (feats[b, L - n:] == 0).all(dim=-1).any()


def test_parity_with_t5_encoder_and_llamagen_rotation(t5_dir: Path):
    # clean_captions=False is LlamaGen's other preprocessing path (lower-case and strip), easy to repeat here.
    feats, mask = T5Conditioner.from_pretrained(t5_dir, max_length=L, clean_captions=False).encode(TEXTS)
    tok = transformers.AutoTokenizer.from_pretrained(str(t5_dir), local_files_only=True)
    model = transformers.T5EncoderModel.from_pretrained(str(t5_dir), local_files_only=True).eval()
    batch = tok([t.lower().strip() for t in TEXTS], max_length=L, padding="max_length", truncation=True,
                add_special_tokens=True, return_tensors="pt")
    with torch.no_grad():
        emb = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    # sample_t2i.py: rotate the valid rows to the end, flip the mask, multiply.
    valid = batch["attention_mask"].sum(dim=1).tolist()
    rotated = torch.stack([torch.cat([e[n:], e[:n]]) for e, n in zip(emb, valid)])
    ref_mask = torch.flip(batch["attention_mask"], dims=[-1])
    assert torch.equal(mask, ref_mask.bool())
    assert torch.equal(feats, rotated * ref_mask[:, :, None])


def test_truncation_follows_the_shared_rule(cond: T5Conditioner):
    long = " ".join(WORDS * 3)
    texts = [long, "red circle"]
    ids, mask = cond.tokenize(texts)
    assert mask[0].all() and ids[0, -1] == cond.tokenizer.eos_token_id
    raw = cond.tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert len(raw[0]) > L
    ours = pad_token_ids(raw, L, cond.tokenizer.pad_token_id, cond.tokenizer.eos_token_id)
    assert torch.equal(ours[0], ids) and torch.equal(ours[1], mask)
    feats, out_mask = cond.encode(texts)
    assert out_mask[0].all() and feats.shape == (2, L, 16)


def test_cleaning_is_applied(cond: T5Conditioner):
    a, _ = cond.encode(["<b>Red</b> circle https://example.com"])
    b, _ = cond.encode(["red circle"])
    assert torch.equal(a, b)


def test_bfloat16(t5_dir: Path, cond: T5Conditioner):
    bf16 = T5Conditioner.from_pretrained(t5_dir, max_length=L, dtype="bf16")
    feats, mask = bf16.encode(TEXTS)
    ref, ref_mask = cond.encode(TEXTS)
    assert feats.dtype == torch.bfloat16 and torch.equal(mask, ref_mask)
    torch.testing.assert_close(feats.float(), ref, atol=0.1, rtol=0.05)
    with pytest.raises(InputError, match="float16"):
        T5Conditioner.from_pretrained(t5_dir, dtype=torch.float16)


def test_bad_captions(cond: T5Conditioner):
    for bad in ([], "a caption", ["ok", 3]):
        with pytest.raises(InputError):
            cond.encode(bad)


def _copy(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.name not in skip:
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_bad_directories(t5_dir: Path, tmp_path: Path):
    with pytest.raises(InputError, match="no such directory"):
        T5Conditioner.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        T5Conditioner.from_pretrained(tmp_path / "file")
    with pytest.raises(CheckpointError, match="config.json"):
        T5Conditioner.from_pretrained(_copy(t5_dir, tmp_path / "no-config", skip=("config.json",)))
    bert = _copy(t5_dir, tmp_path / "bert")
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="model_type 'bert'"):
        T5Conditioner.from_pretrained(bert)
    with pytest.raises(CheckpointError, match="no weights"):
        T5Conditioner.from_pretrained(_copy(t5_dir, tmp_path / "no-weights", skip=("model.safetensors",)))
    with pytest.raises(CheckpointError, match="no tokenizer"):
        T5Conditioner.from_pretrained(_copy(t5_dir, tmp_path / "no-tok", skip=("tokenizer.json",)))
    corrupt = _copy(t5_dir, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot load it as a T5 encoder"):
        T5Conditioner.from_pretrained(corrupt)


def test_weights_that_do_not_fill_the_encoder(t5_dir: Path, tmp_path: Path):
    renamed = _copy(t5_dir, tmp_path / "renamed")
    state = load_file(str(t5_dir / "model.safetensors"))
    save_file({f"other.{k}": v for k, v in state.items()}, str(renamed / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="lack"):
        T5Conditioner.from_pretrained(renamed)


def test_missing_transformers_names_the_extra(t5_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MissingExtraError, match=r"aromni\[vivo\]"):
        T5Conditioner.from_pretrained(t5_dir)
