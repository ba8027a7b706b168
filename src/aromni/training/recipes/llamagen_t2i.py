"""Training a LlamaGen-architecture text-to-image backbone (``aromni llamagen t2i-train``) on
:class:`~aromni.training.loop.TrainLoop`: OmniVIVO's stage 2 at toy scale (``../shared/reference/omnivivo.md``
§1.5, §4.1).

LlamaGen's recipe: captions -> text conditioner features, left-padded to ``cls_token_num`` with a mask -> the
caption prefix; the image's VQ codes (encoded once, :mod:`.llamagen_t2i_data`) are predicted by teacher forcing
(no BOS: the last prefix position predicts the first code); cross-entropy on every code; each caption replaced by
the null caption with probability ``class_dropout_prob`` (``train=True``, training steps only, drawn from the
recipe's generator so a resumed run draws the same drops). Output directory::

    cache/codes.safetensors  the VQ codes of every image (with the VQ's digest and the image list)
    cache/text_init/         a new text conditioner as initialised (its BPE tokenizer lives here)
    checkpoints/step-N/      the loop's checkpoints: model.safetensors (backbone, and the text conditioner when
                             it trains), trainer_state.pt (optimizer, data generator, step, RNG), trainer.json
    metrics.jsonl            losses per log step; validation loss (+ image-judge accuracy) per evaluation
    backbone/                the backbone (``save_t2i``; ``load_t2i`` opens it)
    text/                    the text conditioner (``ToyTextConditioner.save_pretrained``), to be frozen later
    summary.json             step, sizes, the last evaluation, and where the exports and the VQ are
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from aromni.errors import ConfigError
from aromni.omnivivo.caption_clean import preprocess_caption
from aromni.omnivivo.t2i_checkpoint import save_t2i
from aromni.omnivivo.t2i_generate import generate_images
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.toy_conditioner import ToyTextConditioner, ToyTextConfig
from aromni.tokenizers.image.llamagen_vq import LlamaGenVQ
from aromni.tokenizers.image.metrics import to_uint8
from aromni.tokenizers.text import TextTokenizer
from aromni.toyworld.attributes import ATTRIBUTE_NAMES
from aromni.toyworld.judges.image import ImageJudge
from aromni.training.guard import check_weights
from aromni.training.loop import TrainLoop, Update, find_checkpoint
from aromni.training.optim import param_groups
from aromni.training.recipes import llamagen_t2i_data as data
from aromni.training.recipes.llamagen_t2i_config import LlamaGenT2ITrainConfig
from aromni.utils.io import JSONValue, atomic_write_json

CACHE, CODES, TEXT_INIT = "cache", "codes.safetensors", "text_init"
BACKBONE_EXPORT, TEXT_EXPORT = "backbone", "text"
Record = dict[str, JSONValue]


@dataclass
class CaptionCodes:
    """Pairs ready for the model: right-padded caption token ``ids``/``mask [N, L]`` (the conditioner's
    :meth:`~ToyTextConditioner.tokenize`), image ``codes [N, h*w]``, and each pair's attributes (or ``None``)."""

    ids: torch.Tensor
    mask: torch.Tensor
    codes: torch.Tensor
    attrs: list[data.Attrs | None]

    def __len__(self) -> int:
        return len(self.codes)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ids, mask, codes)`` of the rows ``idx [B]``."""
        return self.ids[idx], self.mask[idx], self.codes[idx]


def judge_scores(reads: Sequence[data.Attrs], attrs: Sequence[data.Attrs]) -> dict[str, float]:
    """Share of images whose attribute the judge read as the caption asked, per attribute and ``all`` five."""
    n = max(1, len(attrs))
    scores = {k: sum(r[k] == a[k] for r, a in zip(reads, attrs)) / n for k in ATTRIBUTE_NAMES}
    scores["all"] = sum(all(r[k] == a[k] for k in ATTRIBUTE_NAMES) for r, a in zip(reads, attrs)) / n
    return {k: round(v, 4) for k, v in scores.items()}


class LlamaGenT2IRecipe:
    """The backbone's step (module docstring). ``gen`` draws the batches and the caption drops: it is the data
    position in the checkpoint.

    Args:
        cfg: the run's settings.
        backbone: the freshly initialised backbone (train mode is set here).
        text: the caption encoder; trained by the same loss when ``cfg.train_text``, else frozen (eval mode).
        vq: decodes generated codes for the judge (frozen).
        train, val: the pairs (``val`` may be empty: evaluation then uses the first training pairs).
        judge: the toy world's image judge (``None``: no generation at evaluation).
    """

    def __init__(self, cfg: LlamaGenT2ITrainConfig, backbone: T2IBackbone, text: ToyTextConditioner,
                 vq: LlamaGenVQ, train: CaptionCodes, val: CaptionCodes, judge: ImageJudge | None = None):
        self.cfg, self.model, self.text, self.vq, self.judge = cfg, backbone.train(), text, vq.eval(), judge
        self.train_set, self.val_set = train, val
        self.text.train(cfg.train_text).requires_grad_(cfg.train_text)
        named = list(self.model.named_parameters()) + (list(text.named_parameters()) if cfg.train_text else [])
        # LlamaGen's creat_optimizer: weight decay on tensors of >= 2 dims only (not norms).
        self.opt = torch.optim.AdamW(param_groups(named, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model} | ({"text": self.text} if self.cfg.train_text else {})

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, codes: torch.Tensor, *, train: bool) -> torch.Tensor:
        """Mean cross-entropy of ``codes [B, n]`` given captions ``ids, mask [B, L]``; ``train`` applies the
        caption CFG drop (drawn from :attr:`gen`)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.cfg.train_text):
            feats, cmask = self.text(ids, mask)  # [B, L, C] left-padded, [B, L]
        logits = self.model(feats, codes, cmask, train=train, generator=self.gen if train else None)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), codes.reshape(-1))

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        idx = torch.randint(0, len(self.train_set), (self.cfg.batch_size,), generator=self.gen)
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr_at(step)
        loss = self.loss(*self.train_set.take(idx), train=True)
        logs.update(loss=loss.item(), lr=self.cfg.lr_at(step))
        yield Update(loss, self.opt, clip=self.cfg.grad_clip, grad_norm_key="grad_norm")

    def log_fields(self) -> Record:
        return {}

    @torch.no_grad()
    def evaluate(self, step: int, batch_size: int = 64) -> Record:
        """Validation cross-entropy (eval mode, no caption drop) and, with a judge, the judge's accuracy on
        images drawn for the first ``judge_images`` attributed validation captions."""
        if len(self.val_set):
            split, pairs, n = "val", self.val_set, min(len(self.val_set), self.cfg.max_val_pairs or len(self.val_set))
        else:  # no validation data: the first training pairs, as the VQ recipes do
            split, pairs, n = "train", self.train_set, min(len(self.train_set), 32)
        self.model.eval()
        self.text.eval()
        try:
            total = 0.0
            for i in range(0, n, batch_size):
                rows = torch.arange(i, min(i + batch_size, n))
                total += float(self.loss(*pairs.take(rows), train=False)) * len(rows)
            record: Record = {"kind": "eval", "split": split, "pairs": n, "val_loss": round(total / max(1, n), 5)}
            if self.judge is not None and self.cfg.judge_images > 0:
                record.update({f"judge_{k}": v for k, v in self.judge_generated().items()})
        finally:
            self.model.train()
            self.text.train(self.cfg.train_text)
        return record

    @torch.no_grad()
    def judge_generated(self) -> dict[str, float]:
        """Draw one image per attributed validation caption (up to ``judge_images``; guided, seeded), decode it
        with the VQ and score the judge's reading against the caption's attributes."""
        rows = [i for i, a in enumerate(self.val_set.attrs) if a is not None][: self.cfg.judge_images]
        idx = torch.tensor(rows, dtype=torch.long)
        feats, cmask = self.text(self.val_set.ids[idx], self.val_set.mask[idx])
        codes = generate_images(self.model, feats, cmask, cfg_scale=self.cfg.cfg_scale, top_k=self.cfg.top_k,
                                temperature=self.cfg.temperature, seed=self.cfg.seed, progress=False)
        reads = self.judge.read(to_uint8(self.vq.decode(codes)).float() / 255)
        return judge_scores(reads, [self.val_set.attrs[i] for i in rows])

    def state_dict(self) -> dict[str, torch.Tensor | int]:
        return {"gen": self.gen.get_state(), "n_pairs": len(self.train_set)}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | int]) -> None:
        if int(state["n_pairs"]) != len(self.train_set):
            raise ConfigError(f"the run was trained on {int(state['n_pairs'])} pairs, {len(self.train_set)} given",
                              "resume with the same data")
        self.gen.set_state(state["gen"])


# ---------------------------------------------------------------------------------------------- building a run
def load_vq(path: str | Path) -> tuple[LlamaGenVQ, str]:
    """The frozen VQ in directory ``path`` and the digest of its weights."""
    vq = LlamaGenVQ.from_pretrained(path).eval().requires_grad_(False)
    return vq, data.file_digest(Path(path) / "model.safetensors")


def text_conditioner(cfg: LlamaGenT2ITrainConfig, captions: Sequence[str], caption_dim: int, length: int,
                     init_dir: Path) -> ToyTextConditioner:
    """``cfg.text_conditioner`` when set; else a new one (BPE trained on ``captions``, seeded init) saved to
    ``init_dir`` on first use and read back from there afterwards, so a resumed run has the same tokenizer."""
    if cfg.text_conditioner:
        text = ToyTextConditioner.from_pretrained(cfg.text_conditioner)
    elif (init_dir / "config.json").is_file():
        text = ToyTextConditioner.from_pretrained(init_dir)
    else:
        cleaned = [preprocess_caption(c, True) for c in captions]  # what the conditioner will tokenize
        tokenizer = TextTokenizer.train(cleaned, vocab_size=cfg.text_vocab_size, special_tokens=[], min_frequency=1)
        torch.manual_seed(cfg.seed)
        text = ToyTextConditioner(ToyTextConfig(vocab_size=tokenizer.vocab_size, dim=caption_dim, max_length=length,
                                                n_layer=cfg.text_layers, n_head=cfg.text_heads,
                                                ffn_dim=cfg.text_ffn), tokenizer)
        text.save_pretrained(init_dir, overwrite=True)
    if (text.dim, text.max_length) != (caption_dim, length):
        raise ConfigError(f"the text conditioner gives {text.max_length} x {text.dim} features, the backbone takes "
                          f"{length} x {caption_dim}",
                          f"set model.cls_token_num={text.max_length} model.caption_dim={text.dim}")
    return text


def caption_codes(text: ToyTextConditioner, pairs: Sequence[data.CaptionedImage], codes: torch.Tensor) -> CaptionCodes:
    """Tokenize the pairs' captions once (the data never changes during a run)."""
    if not pairs:
        return CaptionCodes(torch.zeros(0, text.max_length, dtype=torch.long),
                            torch.zeros(0, text.max_length, dtype=torch.bool), codes[:0], [])
    ids, mask = text.tokenize([p.text for p in pairs])
    return CaptionCodes(ids, mask, codes, [p.attrs for p in pairs])


class LlamaGenT2ITrainer:
    """One run: :class:`LlamaGenT2IRecipe` on a :class:`TrainLoop` writing to ``out``. :meth:`run` trains to
    ``cfg.steps``, resuming from the newest ``out/checkpoints/step-N`` when there is one, then exports."""

    def __init__(self, cfg: LlamaGenT2ITrainConfig, out: str | Path, *, progress: bool = True):
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.out = cfg, Path(out)
        train_pairs, val_pairs = self._pairs()
        self.vq, digest = load_vq(cfg.vq)
        images = data.distinct_images(train_pairs, val_pairs)
        codes = data.cached_codes(self.vq, digest, images, self.out / CACHE / CODES, cfg.encode_batch, progress)
        model_cfg = cfg.model_config(self.vq.codebook_size, self.vq.codes_per_image)
        self.text = text_conditioner(cfg, [p.text for p in train_pairs], model_cfg.caption_dim,
                                     model_cfg.cls_token_num, self.out / CACHE / TEXT_INIT)
        train = caption_codes(self.text, train_pairs, data.pair_codes(train_pairs, images, codes))
        val = caption_codes(self.text, val_pairs, data.pair_codes(val_pairs, images, codes))
        judge = self._judge(val)
        torch.manual_seed(cfg.seed)
        self.recipe = LlamaGenT2IRecipe(cfg, T2IBackbone(model_cfg), self.text, self.vq, train, val, judge)
        self.model = self.recipe.model
        self.loop = TrainLoop(self.recipe, cfg.loop_config(self.out, progress=progress, desc="llamagen t2i"))

    def _pairs(self) -> tuple[list[data.CaptionedImage], list[data.CaptionedImage]]:
        cfg = self.cfg
        if cfg.world:
            return data.world_pairs(cfg.world, "train"), data.world_pairs(cfg.world, "validation")
        return data.manifest_pairs(cfg.manifest), data.manifest_pairs(cfg.val_manifest) if cfg.val_manifest else []

    def _judge(self, val: CaptionCodes) -> ImageJudge | None:
        if self.cfg.judge_images == 0:
            return None
        if not any(a is not None for a in val.attrs):
            raise ConfigError("judge_images needs validation pairs with image attributes",
                              "train on a toy world (world=DIR), give \"attrs\" in val_manifest, or set judge_images=0")
        if self.vq.image_size != 64:
            raise ConfigError(f"judge_images needs 64x64 images (the toy world's renders), the VQ makes "
                              f"{self.vq.image_size}x{self.vq.image_size}", "set judge_images=0")
        return ImageJudge.load()

    @property
    def step(self) -> int:
        return self.loop.step

    def export(self) -> tuple[Path, Path]:
        """Write the backbone (``out/backbone``) and the text conditioner (``out/text``), replacing earlier exports."""
        params = [*self.model.parameters(), *self.text.parameters()]
        check_weights(params, self.step, find_checkpoint(self.out), lr=self.cfg.lr)
        save_t2i(self.model, self.out / BACKBONE_EXPORT, overwrite=True)
        self.text.save_pretrained(self.out / TEXT_EXPORT, overwrite=True)
        return self.out / BACKBONE_EXPORT, self.out / TEXT_EXPORT

    def run(self, *, until: int | None = None) -> Record:
        """Train to ``cfg.steps`` (or stop at step ``until`` with a checkpoint, as an interrupted run would),
        export, and return a summary (also written to ``out/summary.json``)."""
        last_eval = self.loop.run(until=until)
        if self.loop.ckpt_step() != self.step:
            self.loop.save()
        backbone, text = self.export()
        summary: Record = {"step": self.step, "done": self.step >= self.cfg.steps,
                           "train_minutes": round(self.loop.train_seconds / 60, 2),
                           "parameters": sum(p.numel() for p in self.model.parameters()),
                           "text_parameters": sum(p.numel() for p in self.text.parameters()),
                           "train_pairs": len(self.recipe.train_set), "val_pairs": len(self.recipe.val_set),
                           "backbone": str(backbone), "text": str(text), "vq": str(self.cfg.vq),
                           "last_eval": last_eval or None}
        atomic_write_json(self.out / "summary.json", summary)
        return summary
