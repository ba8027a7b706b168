"""The modality state machine that constrains decoding, held as tensors on the device.

Every row of a batch has a state (:class:`State`); every token id has a class (:class:`TokClass`). A transition
table ``[n_states, n_classes]`` gives the next state, a boolean table ``[n_states, V]`` the tokens each state
allows. One decoding step is a few gathers and ``torch.where`` s for the whole batch, with no Python work per
row or per prefix.

States and what they allow:

* ``TEXT``: text ids, ``<eos>`` and the extra stop tokens, ``<eoh>``, ``<eom>``, ``<ins>``, ``<res>``, ``<boi>``
  (when images are enabled *and* the row's remaining budget holds ``<boi>`` + N codes + ``<eoi>``), ``<boa>``
  (when speech is enabled), and speech codes only with ``bare_speech`` (the official decoder allows them; see
  :class:`~aromni.inference.options.DecodeOptions`). Image codes are never allowed here. Unlike the official
  allow-list (every ``<...>`` name), ``<pad>``, ``<s>``, a stray ``<eoi>``/``<eoa>`` and unnamed reserved ids
  are not allowed: they carry no meaning outside a span.
* ``IMAGE``: image codes only; a per-row counter forces exactly ``N`` of them (``N`` = codes per image of the
  image tokenizer), then ``IMAGE_END``.
* ``IMAGE_END``: ``<eoi>`` only; then ``TEXT`` (or ``DONE`` when text is disabled, the official T2I mode).
* ``SPEECH`` (after ``<boa>``): speech codes or ``<eoa>``; ``<eoa>`` returns to ``TEXT``.
* ``DONE``: after a stop token or at the length limit.

The official greedy/sampling switch (``FiniteTransTokenSelector``) is a per-row flag: greedy after ``<ins>`` or
``<boa>``, sampling after ``<res>`` or ``<eoa>``, back to the task default after ``<eoi>`` (the official code
builds a fresh text decoder after each image). Image codes use the image options' own greedy flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import torch

from aromni.errors import InputError
from aromni.inference.options import DecodeOptions
from aromni.inference.processors import PerState
from aromni.vocab.layout import VocabLayout


class State(IntEnum):
    TEXT = 0
    IMAGE = 1
    IMAGE_END = 2
    SPEECH = 3
    DONE = 4


class TokClass(IntEnum):
    OTHER = 0
    BOI = 1
    EOI = 2
    BOA = 3
    EOA = 4
    STOP = 5
    IMAGE = 6
    SPEECH = 7


N_STATES, N_CLASSES = len(State), len(TokClass)


def stop_ids(layout: VocabLayout, extra_eos: Sequence[str | int]) -> list[int]:
    """``<eos>`` plus the extra stop tokens (layout roles or ids)."""
    ids = [layout.eos]
    for e in extra_eos:
        i = layout.special_id(e) if isinstance(e, str) else int(e)
        if not 0 <= i < layout.vocab_size:
            raise InputError(f"extra stop token {e!r} is outside the vocabulary")
        ids.append(i)
    return sorted(set(ids))


@dataclass
class RowState:
    """Per-row decoding state, all ``[B]`` tensors on the device.

    Attributes:
        state: :class:`State` of each row.
        image_left: image codes still to come in the current image span.
        greedy: the text greedy/sampling flag.
    """

    state: torch.Tensor
    image_left: torch.Tensor
    greedy: torch.Tensor

    def index(self, rows: torch.Tensor) -> RowState:
        return RowState(self.state[rows], self.image_left[rows], self.greedy[rows])


class ModalityFSM:
    """Tables of the state machine for one layout, option set and image size.

    Args:
        layout: vocabulary layout.
        options: which modalities are enabled, stop tokens, sampling settings.
        image_tokens: codes per image ``N``.
        device: where the tables live.
    """

    def __init__(self, layout: VocabLayout, options: DecodeOptions, image_tokens: int, device: torch.device | str):
        self.layout, self.options, self.n_image = layout, options, int(image_tokens)
        self.device = torch.device(device)
        V = layout.vocab_size
        self.stop_ids = stop_ids(layout, options.extra_eos)
        cls = torch.zeros(V, dtype=torch.long)
        cls[layout.mask("image")] = TokClass.IMAGE
        cls[layout.mask("speech")] = TokClass.SPEECH
        cls[layout.boi], cls[layout.eoi] = TokClass.BOI, TokClass.EOI
        cls[layout.boa], cls[layout.eoa] = TokClass.BOA, TokClass.EOA
        cls[self.stop_ids] = TokClass.STOP
        self.token_class = cls.to(self.device)
        self.table = self._transitions().to(self.device)
        self.masks = self._masks().to(self.device)
        self._greedy_on = torch.tensor([layout.ins, layout.boa], device=self.device)
        self._greedy_off = torch.tensor([layout.res, layout.eoa], device=self.device)
        self._image_greedy = torch.tensor(options.image.greedy, device=self.device)
        self._text_greedy = torch.tensor(options.text.greedy, device=self.device)

    # -------------------------------------------------------------------------------------------- tables
    def _transitions(self) -> torch.Tensor:
        t = torch.empty(N_STATES, N_CLASSES, dtype=torch.long)
        for s in State:
            t[s] = s  # tokens a state does not allow never arrive; staying put is the safe default
        t[State.TEXT, TokClass.BOI] = State.IMAGE
        t[State.TEXT, TokClass.BOA] = State.SPEECH
        t[State.TEXT, TokClass.STOP] = State.DONE
        t[State.IMAGE_END, TokClass.EOI] = State.TEXT if self.options.allow_text else State.DONE
        t[State.SPEECH, TokClass.EOA] = State.TEXT
        return t

    def _masks(self) -> torch.Tensor:
        L, o = self.layout, self.options
        m = torch.zeros(N_STATES, L.vocab_size, dtype=torch.bool)
        text = m[State.TEXT]
        text |= L.mask("text")
        text[self.stop_ids] = True
        text[[L.eoh, L.eom, L.ins, L.res]] = True
        if o.allow_image:
            text[L.boi] = True
        if o.allow_speech:
            text[L.boa] = True
            if o.bare_speech:
                text |= L.mask("speech")
        m[State.IMAGE] = L.mask("image")
        m[State.IMAGE_END, L.eoi] = True
        m[State.SPEECH] = L.mask("speech")
        m[State.SPEECH, L.eoa] = True
        m[State.DONE, L.pad] = True
        return m

    def per_state(self, text: float, image: float, neutral: float) -> PerState:
        """A parameter table: ``text`` for TEXT/SPEECH, ``image`` for IMAGE/IMAGE_END, ``neutral`` for DONE."""
        return PerState.of([text, image, image, text, neutral], device=self.device)

    # -------------------------------------------------------------------------------------------- rows
    def initial(self, prompts: Sequence[Sequence[int]]) -> RowState:
        """The state of each row after reading its prompt (a prompt may end inside an image or speech span)."""
        states, left, greedy = [], [], []
        for ids in prompts:
            s, n = self._scan(ids)
            states.append(s)
            left.append(n)
            g = self.options.text.greedy
            last = ids[-1] if len(ids) else None
            if last in (self.layout.ins, self.layout.boa):
                g = True
            elif last in (self.layout.res, self.layout.eoa):
                g = False
            greedy.append(g)
        dev = self.device
        return RowState(torch.tensor(states, dtype=torch.long, device=dev),
                        torch.tensor(left, dtype=torch.long, device=dev),
                        torch.tensor(greedy, dtype=torch.bool, device=dev))

    def _scan(self, ids: Sequence[int]) -> tuple[int, int]:
        L = self.layout
        for j in range(len(ids) - 1, -1, -1):
            tok = ids[j]
            if tok in (L.eoi, L.eoa):
                return State.TEXT, 0
            if tok == L.boa:
                return State.SPEECH, 0
            if tok == L.boi:
                codes = len(ids) - 1 - j
                if codes > self.n_image or not all(L.image.contains(ids[j + 1:])):
                    raise InputError(f"the prompt ends in an image span with {codes} tokens that are not "
                                     f"{self.n_image} image codes", "close the image with <eoi>")
                return (State.IMAGE_END if codes == self.n_image else State.IMAGE), self.n_image - codes
        return State.TEXT, 0

    def allowed(self, rows: RowState, budget_left: torch.Tensor) -> torch.Tensor:
        """``[B, V]`` allowed tokens; ``<boi>`` only where ``<boi>`` + N codes + ``<eoi>`` fit in the budget."""
        allowed = self.masks[rows.state]
        fits = budget_left >= self.n_image + 2
        allowed[:, self.layout.boi] &= fits
        return allowed

    def greedy_rows(self, rows: RowState) -> torch.Tensor:
        """``[B]`` bool: rows that take the argmax at this step."""
        in_image = (rows.state == State.IMAGE) | (rows.state == State.IMAGE_END)
        return torch.where(in_image, self._image_greedy, rows.greedy)

    def advance(self, rows: RowState, tokens: torch.Tensor, active: torch.Tensor) -> RowState:
        """Next state after each active row emitted ``tokens [B]`` (inactive rows are left as they are)."""
        cls = self.token_class[tokens]
        nxt = self.table[rows.state, cls]
        opened = (rows.state == State.TEXT) & (nxt == State.IMAGE)
        left = torch.where(opened, torch.full_like(rows.image_left, self.n_image),
                           rows.image_left - ((rows.state == State.IMAGE) & (cls == TokClass.IMAGE)).long())
        nxt = torch.where((nxt == State.IMAGE) & (left <= 0), torch.full_like(nxt, State.IMAGE_END), nxt)
        g = rows.greedy
        g = g | torch.isin(tokens, self._greedy_on)
        g = g & ~torch.isin(tokens, self._greedy_off)
        g = torch.where(tokens == self.layout.eoi, self._text_greedy, g)
        return RowState(torch.where(active, nxt, rows.state), torch.where(active, left, rows.image_left),
                        torch.where(active, g, rows.greedy))
