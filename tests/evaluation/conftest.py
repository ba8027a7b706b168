"""Tiny random-weight judge models, written offline once per session (shared with the suites' tests).

Fixtures (session-scoped, each returns the directory's ``Path``):

- ``tiny_whisper_dir``: a Whisper checkpoint (d_model 16, one encoder and one decoder layer, 80 mel bins) with a
  byte-level tokenizer (256 byte tokens + Whisper's special tokens, ``<|en|>`` and ``<|fr|>`` only), a feature
  extractor and a multilingual generation config; ``WhisperTranscriber`` loads it. Transcripts are garbage.
- ``tiny_clip_dir``: a CLIP checkpoint (width 16, one layer per tower, 32 px images in 8 px patches, 77 text
  positions, projection 8) with a byte-level CLIP tokenizer and image processor; ``ClipScorer`` loads it.
- ``tiny_inception_weights``: a ``.pth`` state dict in the layout of torch-fidelity's FID Inception
  (pt_inception-2015-12-05), random weights; ``InceptionJudge`` loads it.

Builders are plain functions (``write_tiny_whisper(dir)`` ...) for tests that need a fresh or altered copy.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from unittest import mock

import pytest
import torch
from test_public_layouts import write_coco, write_librispeech, write_libritts, write_vctk

from aromni.evaluation.judges.inception import fidelity_inception_module

WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|fr|>", "<|translate|>",
                    "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def _byte_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def write_tiny_whisper(directory: Path) -> Path:
    """Save a tiny random Whisper model + processor + generation config to ``directory``."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    torch.manual_seed(0)
    tok = WhisperTokenizer(vocab={c: i for i, c in enumerate(_byte_alphabet())}, merges=[])
    tok.add_special_tokens({"additional_special_tokens": WHISPER_SPECIALS})
    ids = {s: tok.convert_tokens_to_ids(s) for s in WHISPER_SPECIALS}
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok).save_pretrained(
        directory)
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, max_source_positions=1500, max_target_positions=32,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=24,
        is_multilingual=True, lang_to_id={"<|en|>": ids["<|en|>"], "<|fr|>": ids["<|fr|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"])
    model.save_pretrained(directory)
    return directory


def write_tiny_clip(directory: Path) -> Path:
    """Save a tiny random CLIP model + processor to ``directory``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(0)
    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    tok = CLIPTokenizer(vocab=vocab, merges=[])
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(directory)
    text = dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return write_tiny_whisper(tmp_path_factory.mktemp("judges") / "tiny-whisper")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    pytest.importorskip("transformers")
    return write_tiny_clip(tmp_path_factory.mktemp("judges") / "tiny-clip")


def write_tiny_inception_weights(path: Path) -> Path:
    """Save randomly initialised weights in the layout of torch-fidelity's FID Inception to ``path`` (.pth).

    The layout is read off torch-fidelity's own class, built with its weight loading switched off (nothing is
    downloaded). Its default initialisation shrinks activations through ~50 layers to uniform class probabilities,
    so convolutions get He-normal weights and the classifier a wide normal: the probabilities then differ per image.
    """
    module = fidelity_inception_module()
    cls = module.FeatureExtractorInceptionV3
    torch.manual_seed(0)
    with mock.patch.object(module, "load_state_dict_from_url", return_value={}), \
            mock.patch.object(cls, "load_state_dict", return_value=None):
        model = cls("inception-v3-compat", ["logits_unbiased"])
    state = model.state_dict()
    for key, value in state.items():
        if key.endswith("conv.weight"):
            value.normal_(0.0, (2.0 / value[0].numel()) ** 0.5)
    state["fc.weight"].normal_(0.0, 0.5)
    torch.save(state, path)
    return path


@pytest.fixture(scope="session")
def tiny_inception_weights(tmp_path_factory) -> Path:
    if importlib.util.find_spec("torch_fidelity") is None:
        pytest.skip("torch-fidelity is not installed")
    return write_tiny_inception_weights(tmp_path_factory.mktemp("judges") / "pt_inception-random.pth")


@pytest.fixture(scope="session")
def public_data(tmp_path_factory) -> dict[str, Path]:
    """Tiny COCO, LibriSpeech, VCTK and LibriTTS trees in their published layouts (read-only for the tests)."""
    root = tmp_path_factory.mktemp("public-data")
    return {"coco": write_coco(root / "coco"), "librispeech": write_librispeech(root / "ls"),
            "vctk": write_vctk(root / "vctk"), "libritts": write_libritts(root / "ltts")}
