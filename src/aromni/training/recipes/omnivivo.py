"""The OmniVIVO speech stage (``aromni omnivivo train``) on :class:`~aromni.training.loop.TrainLoop`, its averaged
export and the loader that rebuilds the model from it (omnivivo.md §4.1 stage 5, §4.2, §5.4).

A frozen t2i backbone gets LoRA and the speech branch (:class:`~aromni.omnivivo.vivo_model.VivoModel`); only the
LoRA factors, the speech embedding, the branch and its head train, with cross-entropy on the speech codes plus EOS
(``VivoModel.speech_loss``). The backbone, image head and conditioner stay frozen in eval mode. Data and frozen
components: :mod:`.omnivivo_data`; settings: :mod:`.omnivivo_config`.

Output directory::

    checkpoints/step-N/     the loop's checkpoints: model.safetensors holds ONLY the trainable tensors (module
                            "vivo", keys as in VivoModel: vivo.backbone.layers.0.attention.wqkv.lora_A.weight,
                            vivo.branch.head.weight, ...), trainer_state.pt, trainer.json
    speech_codes/           the cached speech codes of the manifests
    metrics.jsonl           training loss / gradient norm per log step, validation loss per evaluation
    train_config.json       the settings (input paths made absolute)
    averaged.safetensors    the mean of the last ``average_last`` scheduled checkpoints (same keys)
    omnivivo/               the export (below), from the averaged weights
    summary.json

Export (:func:`export_vivo`, read by :func:`load_vivo`), written atomically, never over an existing one::

    config.json             {"type": "omnivivo", "format_version": 1, "vivo": VivoConfig,
                             "backbone" / "conditioner" / "speech_tokenizer": {"path", "copied", "fingerprint", ...},
                             "training": {...}}
    adapter/                the LoRA adapter in peft's format (PeftModel.from_pretrained(T2IBackbone, dir) loads it);
                            absent for a model without LoRA (``vivo.lora: null``)
    speech.safetensors      the speech modules: SpeechBranch state dict (embedding, blocks, norm, head)
    backbone/ conditioner/ speech_tokenizer/   copies of the components no larger than ``export_copy_max_mb``

Components larger than that (a GPT-XL backbone, Flan-T5) are referenced by absolute path, as peft's
``base_model_name_or_path`` references a base model; every component carries a fingerprint (file names and
sizes) that the loader checks, so a swapped component is refused rather than silently used.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from aromni.errors import CheckpointError, ConfigError, InputError
from aromni.omnivivo.lora import load_lora_state_dict
from aromni.omnivivo.lora_peft_format import export_peft_adapter, read_peft_adapter
from aromni.omnivivo.t2i_checkpoint import load_backbone
from aromni.omnivivo.t2i_model import T2IBackbone
from aromni.omnivivo.text_conditioner import TextConditioner
from aromni.omnivivo.vivo_config import VivoConfig
from aromni.omnivivo.vivo_model import VivoModel
from aromni.tokenizers.base import SpeechTokenizer
from aromni.training.checkpoint import CHECKPOINTS, load_model_state, read_safetensors
from aromni.training.checkpoint_average import average_last, prefix_filter, save_average
from aromni.training.guard import check_weights
from aromni.training.loop import LoopConfig, TrainLoop, Update, checkpoint_meta, find_checkpoint
from aromni.training.recipes.omnivivo_config import VivoTrainConfig
from aromni.training.recipes.omnivivo_data import (
    CODES_DIR,
    EpochSampler,
    SpeechTextSet,
    VivoComponents,
    cached_codes,
    fingerprint,
    load_components,
    read_manifest,
)
from aromni.training.run_dir import prepare_run_dir
from aromni.utils.device import resolve_device
from aromni.utils.io import JSONValue, atomic_dir, atomic_path, atomic_write_json, path_kind, read_json

MODULE = "vivo"  # the recipe's module name: the prefix of every checkpoint key
EXPORT_DIR, AVERAGE_FILE, SUMMARY = "omnivivo", "averaged.safetensors", "summary.json"
EXPORT_TYPE, FORMAT_VERSION = "omnivivo", 1
ADAPTER_DIR, SPEECH_FILE, CONFIG = "adapter", "speech.safetensors", "config.json"
COMPONENTS = ("backbone", "conditioner", "speech_tokenizer")
Summary = dict[str, JSONValue]


# ---------------------------------------------------------------------------------------------- recipe
def trainable_view(model: nn.Module) -> nn.Module:
    """A module whose state dict is exactly ``model``'s trainable parameters under their own names (it shares
    the modules): the largest sub-modules whose parameters all train, placed at their paths in empty
    containers. The loop checkpoints it, so a checkpoint holds no frozen weight.

    Raises:
        ConfigError: a module holding trainable and frozen parameters of its own (it could not be placed).
    """
    view = nn.Module()
    for path, module in _trainable_subtrees(model, ""):
        if not path:
            return model  # everything trains
        node = view
        *parents, leaf = path.split(".")
        for name in parents:
            child = dict(node.named_children()).get(name)
            if child is None:  # paths of trainable subtrees are disjoint: these containers are always fresh
                child = nn.Module()
                node.add_module(name, child)
            node = child
        node.add_module(leaf, module)
    return view


def _trainable_subtrees(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    params = list(module.parameters())
    if params and all(p.requires_grad for p in params):
        yield prefix, module
        return
    if any(p.requires_grad for p in module.parameters(recurse=False)):
        raise ConfigError(f"module {prefix or '<root>'!r} holds trainable and frozen parameters of its own",
                          "a trainable tensor must live in a module whose parameters all train")
    for name, child in module.named_children():
        yield from _trainable_subtrees(child, f"{prefix}.{name}" if prefix else name)


class VivoRecipe:
    """One step: a batch of captions (features from the frozen conditioner) and speech codes, the speech loss,
    one AdamW update clipped at ``grad_clip``. The sampler's position is the data state."""

    def __init__(self, cfg: VivoTrainConfig, model: VivoModel, conditioner: TextConditioner, train: SpeechTextSet,
                 val: SpeechTextSet | None, device: torch.device):
        self.cfg, self.model, self.conditioner, self.train_set, self.val_set = cfg, model, conditioner, train, val
        self.device = device
        self.view = trainable_view(model)
        self.opt = torch.optim.AdamW(model.trainable_parameters(), lr=cfg.lr, betas=cfg.betas,
                                     weight_decay=cfg.weight_decay)
        self.sampler = EpochSampler(len(train), cfg.batch_size, cfg.seed)

    def modules(self) -> dict[str, nn.Module]:
        return {MODULE: self.view}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    def loss(self, texts: list[str], codes: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Mean cross-entropy over the ``lengths.sum() + B`` targets of ``codes [B, N]``, and that count."""
        with torch.no_grad():  # the conditioner is frozen
            feats, mask = self.conditioner.encode(texts)
        loss, n = self.model.speech_loss(feats.to(self.device), mask.to(self.device), codes.to(self.device),
                                         lengths.to(self.device))
        return loss, int(n)

    def train_step(self, step: int, logs: dict[str, float]) -> Iterator[Update]:
        loss, n = self.loss(*self.train_set.batch(self.sampler.next_batch()))
        logs.update(loss=loss.item(), tokens=float(n))
        yield Update(loss, self.opt, clip=self.cfg.grad_clip, grad_norm_key="grad_norm")

    def evaluate(self, step: int) -> dict[str, float | int | str | None]:
        """Token-weighted validation loss over the whole validation set (eval mode: no dropout)."""
        if self.val_set is None:
            return {}
        self.model.eval()
        total, count, B = 0.0, 0, self.cfg.batch_size
        for i in range(0, len(self.val_set), B):
            loss, n = self.loss(*self.val_set.batch(range(i, min(i + B, len(self.val_set)))))
            total, count = total + float(loss) * n, count + n
        self.model.train()
        return {"kind": "eval", "val_loss": total / count, "val_tokens": count}

    def log_fields(self) -> dict[str, float]:
        return {"epoch": self.sampler.epoch + self.sampler.pos / len(self.train_set)}

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Mapping[str, int]]) -> None:
        self.sampler.load_state_dict(dict(state["sampler"]))


# ---------------------------------------------------------------------------------------------- the run
class VivoTrainer:
    """One run in ``out``: the frozen components, the cached data, :class:`VivoRecipe` on a :class:`TrainLoop`
    (which resumes from the newest checkpoint in ``out``), then the average and the export."""

    def __init__(self, cfg: VivoTrainConfig, out: str | Path, *, progress: bool = True):
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.components = load_components(Path(cfg.backbone), Path(cfg.conditioner), Path(cfg.speech_tokenizer),
                                          block_size=cfg.backbone_block_size, device=self.device)
        self.vivo_cfg = cfg.vivo_config(self.components.speech_tokenizer.codebook_size)
        self.train_set = self._data(cfg.train_manifest, "train")
        self.val_set = self._data(cfg.val_manifest, "val") if cfg.val_manifest else None
        torch.manual_seed(cfg.seed)  # LoRA A and the branch are drawn from it (the loop restores it on resume)
        self.model = VivoModel(self.components.backbone, self.vivo_cfg).train()
        self.recipe = VivoRecipe(cfg, self.model, self.components.conditioner, self.train_set, self.val_set,
                                 self.device)
        self.loop = TrainLoop(self.recipe, LoopConfig(
            out=self.out, steps=cfg.steps, checkpoint_every=cfg.save_every, log_every=cfg.log_every,
            eval_every=cfg.eval_every if self.val_set is not None else 0, precision=cfg.precision,
            max_seconds=cfg.max_minutes * 60, progress=progress, desc="omnivivo", lr=cfg.lr,
            keep_last=cfg.keep_last, autocast_device=self.device.type, config=cfg.to_dict()))

    def _data(self, manifest: str, split: str) -> SpeechTextSet:
        items = read_manifest(manifest)
        codes = cached_codes(items, self.components.speech_tokenizer, Path(self.cfg.speech_tokenizer),
                             self.out / CODES_DIR / f"{split}.safetensors", progress=self.progress)
        return SpeechTextSet(items, codes, self.vivo_cfg.max_speech_len)

    @property
    def step(self) -> int:
        return self.loop.step

    def run(self, *, until: int | None = None) -> Summary:
        """Train to ``cfg.steps`` (or stop at ``until`` / the time limit with a checkpoint, as an interrupted run);
        a finished run is averaged and exported."""
        last_eval = self.loop.run(until=until)
        done = self.step >= self.cfg.steps
        summary: Summary = {
            "step": self.step, "done": done, "train_minutes": round(self.loop.train_seconds / 60, 3),
            "trainable_parameters": sum(p.numel() for p in self.model.trainable_parameters()),
            "frozen_parameters": sum(p.numel() for p in self.model.parameters() if not p.requires_grad),
            "train_utterances": len(self.train_set), "train_codes": self.train_set.n_codes,
            "val_utterances": len(self.val_set) if self.val_set is not None else 0,
            "last_eval": last_eval or None, "averaged": [], "export": None}
        if done:
            summary.update(self.finish())
            atomic_write_json(self.out / SUMMARY, summary)
        return summary

    def average(self) -> list[str]:
        """Load the mean of the last ``average_last`` scheduled checkpoints into the model (also written to
        ``averaged.safetensors``); returns the averaged step directories' names."""
        cfg = self.cfg
        if cfg.average_last <= 1:
            return []
        state, dirs = average_last(self.out, cfg.average_last, keys=prefix_filter(f"{MODULE}."),
                                   select=lambda s: s % cfg.save_every == 0 or s == cfg.steps)
        save_average(self.out / AVERAGE_FILE, state, dirs, overwrite=True)
        self.recipe.view.load_state_dict({k.removeprefix(f"{MODULE}."): v for k, v in state.items()}, strict=True)
        return [d.name for d in dirs]

    def finish(self) -> Summary:
        """Average and export (once: an existing export of the finished run is kept)."""
        export = self.out / EXPORT_DIR
        if export.exists():  # a finished run resumed again: nothing to redo
            done = _read_export_config(export).get("training")
            return {"averaged": done.get("averaged", []) if isinstance(done, dict) else [], "export": str(export)}
        check_weights(self.model.trainable_parameters(), self.step, find_checkpoint(self.out), lr=self.cfg.lr)
        averaged = self.average()
        training: dict[str, JSONValue] = {"steps": self.step, "averaged": averaged, "config": self.cfg.to_dict()}
        export_vivo(self.model, export, self.cfg, self.components, training=training)
        return {"averaged": averaged, "export": str(export)}


def train_omnivivo(cfg: VivoTrainConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
                   progress: bool = True, until: int | None = None) -> Summary:
    """Start (``cfg`` from :func:`~.omnivivo_config.load_train_config`) or resume (``cfg`` from
    :func:`~.omnivivo_config.resume_config`) the run in ``out``; returns its summary. ``until``: stop at that
    step with a checkpoint, as an interrupted run would."""
    out = Path(out)
    prepare_run_dir(out, resume=resume, overwrite=overwrite,
                    run_files=("metrics.jsonl", SUMMARY, "train_config.json", AVERAGE_FILE),
                    run_dirs=(CHECKPOINTS, EXPORT_DIR), keep=(CODES_DIR,))
    cfg = cfg if resume else cfg.resolved()
    meta = checkpoint_meta(out)
    at = int(meta["step"]) if meta is not None else 0
    if (out / EXPORT_DIR).exists() and at < cfg.steps:
        raise InputError(f"{out / EXPORT_DIR} holds the export of step {at}; training on to step {cfg.steps} "
                         "would leave it stale", "move it elsewhere, then resume")
    trainer = VivoTrainer(cfg, out, progress=progress)
    if not resume:
        atomic_write_json(out / "train_config.json", cfg.to_dict())
    return trainer.run(until=until)


# ---------------------------------------------------------------------------------------------- export
def _place(src: Path, tmp: Path, name: str, copy_max_mb: float) -> dict[str, JSONValue]:
    """Copy component ``src`` into ``tmp/name`` when it is small enough, else reference it by absolute path."""
    files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
    small = sum(f.stat().st_size for f in files) <= copy_max_mb * 2**20
    entry: dict[str, JSONValue] = {"path": str(src), "copied": small, "fingerprint": fingerprint(src)}
    if small and src.is_dir():
        shutil.copytree(src, tmp / name)
        entry["path"] = name
    elif small:
        (tmp / name).mkdir()
        shutil.copy2(src, tmp / name / src.name)
        entry["path"] = f"{name}/{src.name}"
    return entry


def export_vivo(model: VivoModel, path: str | Path, cfg: VivoTrainConfig, components: VivoComponents, *,
                training: dict[str, JSONValue], overwrite: bool = False) -> Path:
    """Write the export directory ``path`` (module docstring) atomically; an existing non-empty ``path`` is
    refused unless ``overwrite``."""
    path = Path(path)
    sources = {"backbone": Path(cfg.backbone), "conditioner": Path(cfg.conditioner),
               "speech_tokenizer": Path(cfg.speech_tokenizer)}
    branch = {k: v.detach().contiguous().cpu() for k, v in model.branch.state_dict().items()}
    with atomic_dir(path, overwrite=overwrite) as tmp:
        placed = {name: _place(src, tmp, name, cfg.export_copy_max_mb) for name, src in sources.items()}
        placed["backbone"].update(block_size=model.backbone.cfg.block_size, architecture=model.backbone.cfg.to_dict())
        placed["conditioner"]["kind"] = components.conditioner_kind
        placed["speech_tokenizer"]["codebook_size"] = components.speech_tokenizer.codebook_size
        if model.cfg.lora is not None:  # a model without LoRA (the Table 1 baseline) has no adapter
            export_peft_adapter(model.backbone, tmp / ADAPTER_DIR, base_model_name_or_path=str(sources["backbone"]))
        with atomic_path(tmp / SPEECH_FILE) as weights:
            save_file(branch, str(weights), metadata={"type": "omnivivo_speech_branch"})
        atomic_write_json(tmp / CONFIG, {"type": EXPORT_TYPE, "format_version": FORMAT_VERSION,
                                         "vivo": model.cfg.to_dict(), **placed,
                                         "adapter": None if model.cfg.lora is None else ADAPTER_DIR,
                                         "speech_modules": SPEECH_FILE, "training": training})
    return path


@dataclass
class LoadedVivo:
    """An exported OmniVIVO model, rebuilt: the model (eval mode) and its frozen conditioner and speech tokenizer."""

    model: VivoModel
    conditioner: TextConditioner
    speech_tokenizer: SpeechTokenizer
    config: dict[str, JSONValue]


def _read_export_config(path: Path) -> dict[str, JSONValue]:
    try:
        raw = read_json(path / CONFIG)
    except InputError as e:
        raise CheckpointError(e.problem, f"an {EXPORT_TYPE} export is a directory with {CONFIG}, {ADAPTER_DIR}/ "
                                         f"and {SPEECH_FILE}") from None
    if not isinstance(raw, dict) or raw.get("type") != EXPORT_TYPE:
        raise CheckpointError(f"{path / CONFIG}: not an {EXPORT_TYPE} export", f'expected "type": "{EXPORT_TYPE}"')
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path / CONFIG}: format_version {raw.get('format_version')!r} is not one this "
                              f"aromni reads", f"this version reads format {FORMAT_VERSION}")
    for name in COMPONENTS:
        entry = raw.get(name)
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise CheckpointError(f"{path / CONFIG}: no {name} entry with a path", "export the model again")
    return raw


def _component(path: Path, entry: Mapping[str, JSONValue], name: str) -> Path:
    """Where component ``name`` of the export at ``path`` lives, checked against its fingerprint."""
    src = Path(str(entry["path"]))
    src = src if src.is_absolute() else path / src
    if path_kind(src) not in ("file", "dir"):
        raise CheckpointError(f"{path}: the {name} it was trained with is missing ({src})",
                              "restore it at that path, or export again with the component copied")
    if fingerprint(src) != entry.get("fingerprint"):
        raise CheckpointError(f"{path}: the {name} at {src} is not the one it was trained with (other files or "
                              "sizes)", "restore the original component")
    return src


def load_export_backbone(path: str | Path, *, device: str | torch.device | None = None) -> T2IBackbone:
    """The frozen t2i backbone an export was trained on, as a plain backbone (no adapters): the reference that
    OmniVIVO's image stream must equal."""
    path = Path(path)
    raw = _read_export_config(path)
    src = _component(path, raw["backbone"], "backbone")
    return load_backbone(src, block_size=raw["backbone"].get("block_size"), device=resolve_device(device)).eval()


def load_vivo(path: str | Path, *, device: str | torch.device | None = None) -> LoadedVivo:
    """Rebuild the :class:`VivoModel` of an export (:func:`export_vivo`) with its components, on ``device``.

    Raises:
        CheckpointError: a missing or malformed file, a component missing or changed, or pieces that do not fit
            (another codebook size, backbone config, LoRA rank or branch shape).
    """
    path = Path(path)
    if path_kind(path) != "dir":
        raise InputError(f"{path}: no such {EXPORT_TYPE} export directory", "pass the directory export_vivo wrote")
    raw = _read_export_config(path)
    try:
        vivo_cfg = VivoConfig.from_dict(raw.get("vivo"))
    except ConfigError as e:
        raise CheckpointError(f"{path / CONFIG}: {e.problem}", e.hint) from None
    where = {name: _component(path, raw[name], name) for name in COMPONENTS}
    device = resolve_device(device)
    comps = load_components(where["backbone"], where["conditioner"], where["speech_tokenizer"],
                            block_size=raw["backbone"].get("block_size"), device=device)
    if comps.speech_tokenizer.codebook_size != vivo_cfg.speech_vocab:
        raise CheckpointError(f"{path}: the speech tokenizer has {comps.speech_tokenizer.codebook_size} codes, "
                              f"the model {vivo_cfg.speech_vocab}", "restore the original speech tokenizer")
    if comps.backbone.cfg.to_dict() != raw["backbone"].get("architecture"):
        raise CheckpointError(f"{path}: the backbone's config differs from the one trained with",
                              "restore the original backbone")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = VivoModel(comps.backbone, vivo_cfg)  # fresh LoRA / branch draws, overwritten below
    if vivo_cfg.lora is not None:
        lora_cfg, state = read_peft_adapter(path / ADAPTER_DIR)
        if (lora_cfg.r, lora_cfg.alpha) != (vivo_cfg.lora.r, vivo_cfg.lora.alpha):
            raise CheckpointError(f"{path / ADAPTER_DIR}: r={lora_cfg.r}, alpha={lora_cfg.alpha:g} but {CONFIG} "
                                  f"says r={vivo_cfg.lora.r}, alpha={vivo_cfg.lora.alpha:g}", "export the model again")
        load_lora_state_dict(model.backbone, state, source=str(path / ADAPTER_DIR))
    load_model_state(model.branch, read_safetensors(path / SPEECH_FILE), path / SPEECH_FILE)
    return LoadedVivo(model.eval(), comps.conditioner, comps.speech_tokenizer, raw)
