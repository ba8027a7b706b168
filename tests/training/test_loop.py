"""The shared training loop: gradient accumulation, the nan guard, autocast, and a bitwise resume of every
recipe after SIGKILL at a random step."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import torch
from sigkill import check_sigkill_resume

from aromni.errors import TrainingDivergedError
from aromni.training import checkpoint as ckpt
from aromni.training.loop import LoopConfig, TrainLoop, Update, find_checkpoint
from aromni.training.metrics import read_metrics


@pytest.mark.parametrize("recipe", ["vqgan", "codec", "image_judge"])
def test_sigkill_at_a_random_step_then_resume_is_bitwise_identical(recipe, tmp_path):
    check_sigkill_resume(recipe, tmp_path)


class _Linear:
    """A least-squares recipe: ``micro`` micro-batches per step (gradient accumulation), fixed data."""

    def __init__(self, micro: int, x_scale: float = 1.0):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1)) * x_scale
        self.y = self.x.sum(-1, keepdim=True)
        self.micro = micro

    def modules(self):
        return {"model": self.model}

    def optimizers(self):
        return {"opt": self.opt}

    def train_step(self, step, logs):
        for i, (x, y) in enumerate(zip(self.x.chunk(self.micro), self.y.chunk(self.micro))):
            loss = ((self.model(x) - y) ** 2).sum() / len(self.x)
            logs["loss"] = logs.get("loss", 0.0) + loss.item()
            yield Update(loss, self.opt, clip=1.0, grad_norm_key="grad_norm", apply=i == self.micro - 1)

    def evaluate(self, step):
        return {"mse": float(((self.model(self.x) - self.y) ** 2).mean())}

    def log_fields(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    runs = []
    for micro in (1, 4):
        recipe = _Linear(micro)
        loop = TrainLoop(recipe, LoopConfig(out=tmp_path / str(micro), steps=3, checkpoint_every=100,
                                            eval_every=3, progress=False))
        assert loop.run()["step"] == 3
        runs.append((recipe.model.weight.detach().clone(), read_metrics(tmp_path / str(micro) / "metrics.jsonl")))
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-6)
    assert [r["step"] for r in runs[1][1]] == [1, 2, 3, 3]  # three train records, then the final evaluation
    assert "mse" in runs[1][1][-1]


def test_a_nan_loss_stops_before_the_update_and_keeps_the_checkpoint(tmp_path):
    recipe = _Linear(1, x_scale=float("nan"))
    before = recipe.model.weight.detach().clone()
    loop = TrainLoop(recipe, LoopConfig(out=tmp_path, steps=3, checkpoint_every=1, progress=False))
    with pytest.raises(TrainingDivergedError, match="loss became nan at step 1; no checkpoint"):
        loop.run()
    assert torch.equal(recipe.model.weight, before) and not (tmp_path / "checkpoints").exists()


def test_bf16_autocast_runs_the_forward_in_bfloat16(tmp_path):
    seen = []

    class Probe(_Linear):
        def train_step(self, step, logs):
            out = self.model(self.x)
            seen.append(out.dtype)
            yield Update(((out.float() - self.y) ** 2).mean(), self.opt)

    loop = TrainLoop(Probe(1), LoopConfig(out=tmp_path, steps=1, checkpoint_every=1, precision="bf16",
                                          progress=False))
    loop.run()
    assert seen == [torch.bfloat16]


def test_a_reduced_loss_is_checked_after_the_backward_passes_and_contexts_span_forward_and_backward(tmp_path):
    """A data-parallel recipe: the micro-batch losses are rank-local parts (not checked before backward); the
    reduced loss is checked once all micro-batches are back-propagated, before the update; the update is
    back-propagated while the recipe's context (DDP ``no_sync``) is still open."""
    events: list[str] = []

    class Parallel(_Linear):
        def __init__(self, reduced: float):
            super().__init__(2)
            self.reduced = reduced

        def train_step(self, step, logs):
            def reduced():
                events.append("reduced")
                assert all(p.grad is not None for p in self.model.parameters())  # after every backward
                return {"loss": self.reduced}

            for i, (x, y) in enumerate(zip(self.x.chunk(2), self.y.chunk(2))):
                events.append(f"enter {i}")
                loss = ((self.model(x) - y) ** 2).sum() * (float("nan") if i == 0 else 1.0)  # a rank-local nan part
                loss.register_hook(lambda g, i=i: events.append(f"backward {i}"))
                yield Update(loss, self.opt, grad_norm_key="grad_norm", apply=i == 1, reduced_loss=reduced)
                events.append(f"exit {i}")

    recipe = Parallel(reduced=float("inf"))
    before = recipe.model.weight.detach().clone()
    loop = TrainLoop(recipe, LoopConfig(out=None, steps=1, checkpoint_every=1, progress=False, diverged_note="n"))
    with pytest.raises(TrainingDivergedError, match="loss became inf at step 1; no checkpoint was written; n"):
        loop.train_step()
    assert events == ["enter 0", "backward 0", "exit 0", "enter 1", "backward 1", "reduced"]
    assert torch.equal(recipe.model.weight, before)
    assert all(p.grad is None for p in recipe.model.parameters())  # the diverged gradients are dropped


class _MemoryStore:
    """A :class:`~aromni.training.loop.CheckpointStore` keeping checkpoints in memory (the protocol only)."""

    def __init__(self, recipe):
        self.recipe, self.saved = recipe, {}

    def latest(self):
        return max(self.saved, default=None)

    def last_good(self):
        return self.latest()

    def save(self, step, state):
        path = Path(f"mem-{step:04d}")
        weights = {k: v.clone() for k, v in self.recipe.model.state_dict().items()}
        self.saved[path] = (weights, copy.deepcopy(self.recipe.opt.state_dict()), copy.deepcopy(state))
        return path

    def load(self, path):
        weights, opt, state = self.saved[path]
        self.recipe.model.load_state_dict(weights)
        self.recipe.opt.load_state_dict(opt)
        return copy.deepcopy(state)


def test_the_loop_saves_and_resumes_through_a_plugged_in_store(tmp_path):
    straight = _Linear(2)
    TrainLoop(straight, LoopConfig(out=tmp_path / "a", steps=4, checkpoint_every=100, progress=False)).run()
    recipe = _Linear(2)
    store = _MemoryStore(recipe)
    first = TrainLoop(recipe, LoopConfig(out=tmp_path / "b", steps=4, checkpoint_every=1, progress=False), store=store)
    first.run(until=2)
    assert sorted(p.name for p in store.saved) == ["mem-0001", "mem-0002"] and first.ckpt_step() == 2
    resumed = _Linear(2)
    store.recipe = resumed
    second = TrainLoop(resumed, LoopConfig(out=tmp_path / "b", steps=4, checkpoint_every=1, progress=False), store=store)
    second.run()
    assert second.step == 4 and torch.equal(resumed.model.weight, straight.model.weight)
    assert not (tmp_path / "b" / "checkpoints").exists()  # the store, not the loop's own format, holds them


def test_checkpoints_are_step_directories_of_the_one_format_newest_kept(tmp_path):
    recipe = _Linear(1)
    TrainLoop(recipe, LoopConfig(out=tmp_path, steps=5, checkpoint_every=1, keep_last=2, progress=False)).run()
    kept = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert kept == ["step-00000004", "step-00000005"]
    last = find_checkpoint(tmp_path)
    assert last == tmp_path / "checkpoints" / "step-00000005"
    assert sorted(p.name for p in last.iterdir()) == ["model.safetensors", "trainer.json", "trainer_state.pt"]
    assert ckpt.list_checkpoints(tmp_path / "checkpoints") == [tmp_path / "checkpoints" / n for n in kept]


def test_a_run_in_the_earlier_single_directory_layout_still_resumes(tmp_path):
    straight = _Linear(1)
    TrainLoop(straight, LoopConfig(out=tmp_path / "a", steps=4, checkpoint_every=100, progress=False)).run()
    TrainLoop(_Linear(1), LoopConfig(out=tmp_path / "b", steps=4, checkpoint_every=1, progress=False)).run(until=2)
    # rewrite b's checkpoint the way runs before the one-format change kept it: b/checkpoint/{..., state.pt}
    step2 = find_checkpoint(tmp_path / "b")
    (step2 / "trainer_state.pt").rename(step2 / "state.pt")
    step2.rename(tmp_path / "b" / "checkpoint")
    shutil.rmtree(tmp_path / "b" / "checkpoints")
    assert find_checkpoint(tmp_path / "b") == tmp_path / "b" / "checkpoint"
    resumed = _Linear(1)
    loop = TrainLoop(resumed, LoopConfig(out=tmp_path / "b", steps=4, checkpoint_every=1, progress=False))
    loop.run()
    assert loop.step == 4 and torch.equal(resumed.model.weight, straight.model.weight)
    assert find_checkpoint(tmp_path / "b").name == "step-00000004"  # new checkpoints go to the one format
