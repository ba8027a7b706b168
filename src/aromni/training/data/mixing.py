"""Modality mixing: one deterministic global order of sample indices, drawn group by group with ratios.

The paper samples text-only, text-image and text-speech data 0.5 : 1 : 2 and stops once any subset is exhausted
(§3.3). :class:`MixingSampler` reproduces that:

* each group's samples are shuffled once per pass with a generator seeded by ``(seed, epoch, group, pass)``;
* each draw picks a group with probability proportional to its ratio (a seeded ``numpy`` PCG64 generator), then
  that group's next sample;
* ``exhaust="stop"``: the epoch ends at the first draw after a group ran out (every sample of that group was
  used once); :meth:`next` returns ``None`` and :meth:`start_epoch` begins the next epoch with new shuffles.
  ``exhaust="cycle"``: an exhausted group starts a new pass (reshuffled) and the stream never ends.

The whole position is a small state dict (epoch, cursor and pass per group, generator state, draws), so a run
resumed from it continues the order exactly. Every data-parallel rank runs the same sampler (it costs a few
microseconds per draw and reads no data); :mod:`aromni.training.data.batching` slices rows per rank.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np

from aromni.errors import ConfigError, InputError
from aromni.training.data.shards import GROUPS
from aromni.utils.io import JSONValue


def group_indices(groups: Sequence[str]) -> dict[str, np.ndarray]:
    """Dataset indices per group value, e.g. from ``ShardDataset.column("group")``."""
    arr = np.asarray(list(groups))
    return {g: np.nonzero(arr == g)[0].astype(np.int64) for g in sorted(set(arr.tolist()))}


class MixingSampler:
    """Deterministic ratio-mixed order over groups of dataset indices.

    Args:
        groups: group name -> dataset indices (any order; the sampler shuffles).
        ratios: group name -> relative share of draws. Groups with a zero ratio, or absent from ``ratios``,
            are not drawn; ratios naming groups that have no data are ignored. Empty ("natural"): a group is
            drawn in proportion to its *remaining* samples, i.e. a uniform shuffle of all samples, and a
            ``"stop"`` epoch is exactly one pass over everything (with ``"cycle"``: in proportion to sizes).
        exhaust: ``"stop"`` or ``"cycle"`` (see the module docstring).
        seed: order seed.
    """

    def __init__(self, groups: Mapping[str, np.ndarray], ratios: Mapping[str, float], exhaust: str = "stop",
                 seed: int = 0):
        if exhaust not in ("stop", "cycle"):
            raise ConfigError(f"exhaust must be 'stop' or 'cycle', got {exhaust!r}")
        self.natural = not ratios
        if self.natural:
            ratios = {g: float(len(v)) for g, v in groups.items()}
        order = [g for g in GROUPS if g in groups] + sorted(g for g in groups if g not in GROUPS)
        self.names = [g for g in order if float(ratios.get(g, 0.0)) > 0 and len(groups[g]) > 0]
        if not self.names:
            raise InputError(f"no data for any group with a positive mixing ratio (data has {sorted(groups)}, "
                             f"ratios {dict(ratios)})", "set data.mixing.ratios for the groups in your shards")
        self.groups = {g: np.asarray(groups[g], dtype=np.int64) for g in self.names}
        weights = np.asarray([float(ratios[g]) for g in self.names])
        self.probs = weights / weights.sum()
        self._cum = np.cumsum(self.probs)
        self.exhaust = exhaust
        self.seed = int(seed)
        self._perm_cache: dict[tuple[str, int, int], np.ndarray] = {}
        self.start_epoch(0)

    # ----------------------------------------------------------------- order
    def start_epoch(self, epoch: int) -> None:
        """Reset every cursor and reseed the group draws for ``epoch``."""
        self.epoch = int(epoch)
        self.cursor = {g: 0 for g in self.names}
        self.passes = {g: 0 for g in self.names}
        self.draws = 0
        self._rng = np.random.Generator(np.random.PCG64([self.seed, self.epoch]))

    def _perm(self, g: str) -> np.ndarray:
        key = (g, self.epoch, self.passes[g])
        perm = self._perm_cache.get(key)
        if perm is None:
            gi = self.names.index(g)
            rng = np.random.Generator(np.random.PCG64([self.seed, self.epoch, gi, self.passes[g], 7919]))
            perm = self.groups[g][rng.permutation(len(self.groups[g]))]
            self._perm_cache = {k: v for k, v in self._perm_cache.items() if k[1] == self.epoch and k[0] != g}
            self._perm_cache[key] = perm
        return perm

    def _choose(self) -> str:
        u = self._rng.random()
        names, cum = self.names, self._cum
        if self.natural and self.exhaust == "stop":
            names = [g for g in self.names if self.cursor[g] < len(self.groups[g])]
            left = np.asarray([len(self.groups[g]) - self.cursor[g] for g in names], dtype=np.float64)
            cum = np.cumsum(left / left.sum())
        return names[min(int(np.searchsorted(cum, u, side="right")), len(names) - 1)]

    def _exhausted(self) -> bool:
        done = [self.cursor[g] >= len(self.groups[g]) for g in self.names]
        return all(done) if self.natural else any(done)

    def next(self) -> int | None:
        """The next dataset index, or ``None`` at the end of a ``"stop"`` epoch."""
        if self.exhaust == "stop" and self._exhausted():
            return None
        g = self._choose()
        if self.cursor[g] >= len(self.groups[g]):  # "cycle": start a new reshuffled pass over this group
            self.passes[g] += 1
            self.cursor[g] = 0
        idx = int(self._perm(g)[self.cursor[g]])
        self.cursor[g] += 1
        self.draws += 1
        return idx

    def peek(self) -> int | None:
        """What :meth:`next` would return, without consuming it."""
        if self.exhaust == "stop" and self._exhausted():
            return None
        state = self._rng.bit_generator.state
        g = self._choose()
        self._rng.bit_generator.state = state
        if self.cursor[g] >= len(self.groups[g]):
            self.passes[g] += 1
            try:
                return int(self._perm(g)[0])
            finally:
                self.passes[g] -= 1
        return int(self._perm(g)[self.cursor[g]])

    def epoch_size(self) -> int | None:
        """Draws in a ``"stop"`` epoch are random; this is the expected number (``None`` when cycling)."""
        if self.exhaust == "cycle":
            return None
        if self.natural:
            return int(sum(len(v) for v in self.groups.values()))
        return int(min(len(self.groups[g]) / p for g, p in zip(self.names, self.probs)))

    # ----------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, JSONValue]:
        return {"epoch": self.epoch, "cursor": dict(self.cursor), "passes": dict(self.passes), "draws": self.draws,
                "rng": copy.deepcopy(self._rng.bit_generator.state), "groups": list(self.names),
                "sizes": [len(self.groups[g]) for g in self.names], "seed": self.seed}

    def load_state_dict(self, state: Mapping[str, JSONValue]) -> None:
        sizes = [len(self.groups[g]) for g in self.names]
        if list(state["groups"]) != self.names or list(state["sizes"]) != sizes or int(state["seed"]) != self.seed:
            raise InputError(f"the data position in the checkpoint was saved for groups {state['groups']} of sizes "
                             f"{state['sizes']} (seed {state['seed']}), the data now has {self.names} of {sizes} "
                             f"(seed {self.seed})", "resume with the same shards and data.seed, or start afresh")
        self.start_epoch(int(state["epoch"]))
        self.cursor = {g: int(state["cursor"][g]) for g in self.names}
        self.passes = {g: int(state["passes"][g]) for g in self.names}
        self.draws = int(state["draws"])
        self._rng.bit_generator.state = copy.deepcopy(dict(state["rng"]))
