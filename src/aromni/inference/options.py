"""Decoding options, with the official AR-Omni defaults and the per-task policies.

The defaults are those of the official ``Options`` dataclass (``official-formats.md`` §C.3): text temperature 1.2,
top-p 0.96, repetition penalty 1.2, sampling; image temperature 1.0, top-p 0.96, classifier-free guidance 3.07
(text) / 1.15 (image); ``max_seq_len`` 4096 and ``max_gen_len`` 4096. :func:`task_options` applies the official
task settings on top (greedy for ASR/TTS/caption, sampling for T2I and chat, ``<eom>`` as extra stop token).

Stop tokens are named by layout role (``"eom"``) so no token id is written here; ints are accepted too.

Every field is type-checked when an options object is built, whichever way it is built (``DecodeOptions(...)``,
:meth:`DecodeOptions.from_dict`, :meth:`~DecodeOptions.with_overrides`): a ``bool`` field takes only ``True`` /
``False`` (not ``"yes"`` or ``1``), an ``int`` field an integer (not ``5.5`` or ``True``), a ``float`` field a
finite real number (not ``nan``, ``inf`` or a bool). Unknown keys are refused naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from aromni.errors import ConfigError
from aromni.utils.config import dataclass_from_dict
from aromni.utils.io import JSONValue
from aromni.vocab.tasks import Task, served_tasks


@dataclass(frozen=True)
class TextSampling:
    """How text (and speech, which the official code decodes with the text settings) is sampled.

    ``greedy`` is the *default* mode of each row; the official finite-state switch then turns greedy on after
    ``<ins>``/``<boa>`` and off after ``<res>``/``<eoa>`` (see :mod:`aromni.inference.fsm`).
    """

    temperature: float = 1.2
    top_p: float = 0.96
    top_k: int = 0  # 0 = off (the official decoder has no top-k)
    repetition_penalty: float = 1.2
    greedy: bool = False

    def __post_init__(self) -> None:
        _check_fields(self, "text", reals=("temperature", "top_p", "repetition_penalty"), ints=("top_k",),
                      bools=("greedy",))
        _check_sampling("text", self.temperature, self.top_p, self.top_k)
        if self.repetition_penalty <= 0:
            raise ConfigError(f"text repetition_penalty must be > 0, got {self.repetition_penalty}",
                              "1.0 turns it off")


@dataclass(frozen=True)
class ImageSampling:
    """How image codes are sampled, with the official three-row classifier-free guidance."""

    temperature: float = 1.0
    top_p: float = 0.96
    top_k: int = 0
    greedy: bool = False
    cfg: bool = True
    guidance_scale_text: float = 3.07
    guidance_scale_image: float = 1.15

    def __post_init__(self) -> None:
        _check_fields(self, "image", reals=("temperature", "top_p", "guidance_scale_text", "guidance_scale_image"),
                      ints=("top_k",), bools=("greedy", "cfg"))
        _check_sampling("image", self.temperature, self.top_p, self.top_k)

    @property
    def uses_cfg(self) -> bool:
        """CFG with both scales 1 equals the plain full-context logits, so it runs as one row."""
        return self.cfg and not (self.guidance_scale_text == 1.0 and self.guidance_scale_image == 1.0)


def _check_fields(obj: Any, what: str, *, reals: Sequence[str] = (), ints: Sequence[str] = (),
                  bools: Sequence[str] = ()) -> None:
    """Strict types: :class:`ConfigError` naming the field unless bools are bools, ints are integers (not bools)
    and reals are finite real numbers (not bools). Integral values of numpy types are accepted as ints."""
    for name in bools:
        v = getattr(obj, name)
        if not isinstance(v, (bool, _np_bool())):
            raise ConfigError(f"{what} option {name} must be True or False, got {v!r}",
                              f"e.g. {{{what!r}: {{{name!r}: True}}}}")
        object.__setattr__(obj, name, bool(v))  # normalising a frozen instance
    for name in ints:
        v = getattr(obj, name)
        if isinstance(v, (bool, _np_bool())) or not isinstance(v, numbers.Integral):
            raise ConfigError(f"{what} option {name} must be an integer, got {v!r}")
        object.__setattr__(obj, name, int(v))
    for name in reals:
        v = getattr(obj, name)
        if isinstance(v, (bool, _np_bool())) or not isinstance(v, numbers.Real):
            raise ConfigError(f"{what} option {name} must be a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise ConfigError(f"{what} option {name} must be finite, got {v!r}", "nan and inf are not settings")
        object.__setattr__(obj, name, float(v))


def _np_bool() -> type:
    import numpy as np

    return np.bool_


def _check_sampling(what: str, temperature: float, top_p: float, top_k: int) -> None:
    if not temperature > 0:
        raise ConfigError(f"{what} temperature must be > 0, got {temperature}", "use greedy decoding instead of 0")
    if not 0 < top_p <= 1:
        raise ConfigError(f"{what} top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ConfigError(f"{what} top_k must be >= 0 (0 = off), got {top_k}")


@dataclass(frozen=True)
class DecodeOptions:
    """Everything :meth:`aromni.inference.engine.Engine.generate` needs besides the prompts.

    Attributes:
        text, image: sampling settings per modality.
        max_new_tokens: tokens generated at most per row (official ``max_gen_len``).
        max_seq_len: prompt + generated tokens at most per row; ``None`` = the model's context length
            (official ``max_seq_len``, 4096 for the 7B model).
        extra_eos: further stop tokens besides ``<eos>``, as layout roles (``"eom"``) or ids.
        allow_text: generate text; ``False`` (official T2I ``txt=False``) stops the row after its first image.
        allow_image: let text state open an image with ``<boi>`` (official ``img``).
        allow_speech: let text state open a speech span with ``<boa>``.
        bare_speech: allow speech codes in text state outside a ``<boa>`` span. The official decoder allows them
            (every ``<reservedNNNNN>`` name passes its allow-list) and its splitter reads a bare run as speech;
            strict spans (``False``) are the default for our models, ``import-official`` bundles set ``True``.
        image_tokens: codes per image ``N``; ``None`` takes it from the bundle's image tokenizer.
        seed: seeds the per-row generators: an int (row ``b`` uses ``seed + b``), one seed per row, or ``None``
            (a random seed). A row's samples depend only on its own seed, prompt and options, never on the other
            rows of the batch.
    """

    text: TextSampling = field(default_factory=TextSampling)
    image: ImageSampling = field(default_factory=ImageSampling)
    max_new_tokens: int = 4096
    max_seq_len: int | None = None
    extra_eos: tuple[str | int, ...] = ()
    allow_text: bool = True
    allow_image: bool = True
    allow_speech: bool = True
    bare_speech: bool = False
    image_tokens: int | None = None
    seed: int | Sequence[int] | None = None

    def __post_init__(self) -> None:
        for name, cls in (("text", TextSampling), ("image", ImageSampling)):
            v = getattr(self, name)
            if isinstance(v, Mapping):
                object.__setattr__(self, name, dataclass_from_dict(cls, v, f"{name} options"))
            elif not isinstance(v, cls):
                raise ConfigError(f"{name} options must be a mapping such as {{'temperature': 0.7}}, got {v!r}")
        if isinstance(self.extra_eos, (str, bytes)) or not isinstance(self.extra_eos, Sequence):
            raise ConfigError(f"extra_eos must be a list of stop tokens (layout roles such as 'eom', or ids), "
                              f"got {self.extra_eos!r}", "e.g. extra_eos=['eom']")
        object.__setattr__(self, "extra_eos", tuple(self.extra_eos))
        for e in self.extra_eos:
            if isinstance(e, (bool, _np_bool())) or not isinstance(e, (str, numbers.Integral)):
                raise ConfigError(f"extra_eos entries are layout roles (str) or token ids (int), got {e!r}")
        object.__setattr__(self, "seed", _check_seed(self.seed))
        _check_fields(self, "generation", ints=("max_new_tokens",),
                      bools=("allow_text", "allow_image", "allow_speech", "bare_speech"))
        for name in ("max_seq_len", "image_tokens"):
            if getattr(self, name) is not None:
                _check_fields(self, "generation", ints=(name,))
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.max_seq_len is not None and self.max_seq_len < 2:
            raise ConfigError(f"max_seq_len must be >= 2, got {self.max_seq_len}")
        if self.image_tokens is not None and self.image_tokens < 1:
            raise ConfigError(f"image_tokens must be >= 1, got {self.image_tokens}")

    def replace(self, **changes: object) -> DecodeOptions:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown generation options {unknown}",
                              f"known: {', '.join(f.name for f in dataclasses.fields(self))}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, JSONValue]:
        d = dataclasses.asdict(self)
        d["extra_eos"] = list(self.extra_eos)
        if isinstance(self.seed, tuple):
            d["seed"] = list(self.seed)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> DecodeOptions:
        return dataclass_from_dict(cls, d, "generation options")

    def updated(self, *, text: Mapping[str, object] | None = None, image: Mapping[str, object] | None = None,
                **changes: object) -> DecodeOptions:
        """A copy with sampling fields (``text=``, ``image=``) and top-level fields changed, checked as on
        construction; no dict round trip. Unknown field names raise :class:`ConfigError`."""
        if text:
            changes["text"] = _replace_sampling(self.text, text, "text")
        if image:
            changes["image"] = _replace_sampling(self.image, image, "image")
        return self.replace(**changes) if changes else self

    def with_overrides(self, overrides: Mapping[str, object] | None) -> DecodeOptions:
        """Apply a flat or nested dict of overrides (``{"text": {"temperature": 0.7}, "seed": 1}``)."""
        if overrides is None:
            return self
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"options must be a mapping such as {{'text': {{'temperature': 0.7}}}}, got "
                              f"{type(overrides).__name__} {overrides!r:.80}")
        if not overrides:
            return self
        d = self.to_dict()
        for k, v in overrides.items():
            if k in ("text", "image") and isinstance(v, Mapping):
                d[k] = {**d[k], **v}
            else:
                d[k] = v
        return DecodeOptions.from_dict(d)


#: Official per-task settings (``inference_pretrain.py`` make_opts_*, ``inference_chat.py``), as overrides: the
#: decode policies of the task registry (:mod:`aromni.vocab.tasks`), by task name.
TASK_OVERRIDES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {t.name: t.decode for t in served_tasks() if t.decode is not None})


def _replace_sampling(sampling: TextSampling | ImageSampling, changes: Mapping[str, object], what: str
                      ) -> TextSampling | ImageSampling:
    known = {f.name for f in dataclasses.fields(sampling)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ConfigError(f"unknown {what} options {unknown}", f"known: {', '.join(sorted(known))}")
    return dataclasses.replace(sampling, **changes)


def _check_seed(seed: Any) -> int | tuple[int, ...] | None:
    """``None``, an int, or a sequence of ints (one per prompt), each in ``[-2**63, 2**63)``; else
    :class:`ConfigError`."""
    def one(s: Any) -> int:
        if isinstance(s, (bool, _np_bool())) or not isinstance(s, numbers.Integral):
            raise ConfigError(f"seed must be an integer (or one integer per prompt), got {s!r}", "e.g. seed=0")
        if not -(2**63) <= int(s) < 2**63:
            raise ConfigError(f"seed must fit in 64 bits ([-2**63, 2**63)), got {s}")
        return int(s)

    if seed is None:
        return None
    if isinstance(seed, Sequence) and not isinstance(seed, (str, bytes)):
        return tuple(one(s) for s in seed)
    return one(seed)


def task_options(task: str | Task, base: DecodeOptions | None = None,
                 overrides: Mapping[str, object] | None = None) -> DecodeOptions:
    """Options for ``task`` (a served task of :mod:`aromni.vocab.tasks` or its name): ``base`` (bundle defaults)
    + the task's official decode policy + the caller's ``overrides``."""
    name = task.name if isinstance(task, Task) else task
    if not isinstance(name, str) or name not in TASK_OVERRIDES:
        raise ConfigError(f"unknown task {task!r}", f"one of {', '.join(TASK_OVERRIDES)}")
    return (base or DecodeOptions()).with_overrides(TASK_OVERRIDES[name]).with_overrides(overrides)
