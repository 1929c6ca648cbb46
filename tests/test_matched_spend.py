"""Matched spend in `run_training`: the checkpoint kept for each budget point is the last step at or
under it, with that step's weights, whatever the step that passed the point did. A stand-in trainer
with a scripted spend per step makes the steps' sizes exact (no model is trained)."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

import harness.jobs.train
from harness.config import load_config
from harness.jobs.train import run_training
from harness.runs import CHECKPOINTS, METRICS_FILE, STATE_FILE, Budget, point_steps, read_metrics


class ScriptedTrainer:
    """Each step adds 1 to one weight and 'generates' the next number of samples in `per_step`."""

    name = "scripted"

    def __init__(self, model, per_step: list[int]):
        self.policy = model
        self.per_step = per_step
        self.step_count = 0
        self.samples = 0

    def settings(self):
        return {"trainer": self.name, "n": 1, "prompts_per_step": 1, "learning_rate": 0.0}

    def step(self):
        with torch.no_grad():
            self.policy.model.norm.weight.add_(1.0)
        self.samples += self.per_step[self.step_count]
        self.step_count += 1
        return {"step": self.step_count, "samples_generated": self.samples, "tokens_generated": self.samples,
                "reward_mean": 0.0, "ds_pass_rate": 1.0}

    def state_dict(self):
        return {"step": self.step_count, "samples": self.samples}

    def load_state_dict(self, state):
        self.step_count, self.samples = state["step"], state["samples"]


@pytest.fixture
def base(tmp_path, model, tokenizer):
    path = tmp_path / "base"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run(tmp_path, base, monkeypatch, per_step, budget, fractions=(0.5,), overrides=(), resume=False):
    seen = {}

    def builder(*, train, rollout, scoring, seed, model, tokenizer, suites):
        seen["dtype"] = model.dtype
        return ScriptedTrainer(model, per_step)

    monkeypatch.setattr(harness.jobs.train, "get_builder", lambda name: builder)
    cfg = load_config("smoke", ["suites.enabled=[math]", "rollout.device=cpu", "train.save_every=0", *overrides])
    out = tmp_path / "run"
    run_training(cfg, "scripted", out, resume=resume, base=str(base), progress=False, log=lambda _: None,
                 budget=Budget("samples", budget), checkpoint_fractions=fractions)
    return out, seen


def norm_of(checkpoint) -> torch.Tensor:
    return load_file(str(checkpoint / "model.safetensors"))["model.norm.weight"]


def test_each_point_keeps_the_last_step_at_or_under_it_with_its_weights(tmp_path, base, monkeypatch, model):
    # cumulative spend 300, 1200, 1500, 2400: step 2 passes 1000, step 4 passes 2000
    out, _ = run(tmp_path, base, monkeypatch, [300, 900, 300, 900], budget=2000)
    rows = read_metrics(out / METRICS_FILE)
    assert point_steps(rows, Budget("samples", 2000), [0.5]) == {0.5: 1, 1.0: 3}
    start = model.model.norm.weight.detach()
    for step in (1, 3):  # evaluation checkpoints: the weights after that step, no resume state
        folder = out / CHECKPOINTS / f"step_{step:06d}"
        assert folder.is_dir() and not (folder / STATE_FILE).exists()
        assert torch.equal(norm_of(folder), start + step)
    last = out / CHECKPOINTS / "step_000004"
    assert (last / STATE_FILE).is_file() and torch.equal(norm_of(last), start + 4)  # where a resume starts
    assert not (out / CHECKPOINTS / "step_000002").exists()


def test_a_step_landing_on_the_point_is_the_point(tmp_path, base, monkeypatch):
    out, _ = run(tmp_path, base, monkeypatch, [500, 500, 500, 500], budget=2000)
    assert point_steps(read_metrics(out / METRICS_FILE), Budget("samples", 2000), [0.5]) == {0.5: 2, 1.0: 4}
    assert (out / CHECKPOINTS / "step_000002").is_dir() and (out / CHECKPOINTS / "step_000004" / STATE_FILE).is_file()


def test_a_first_step_past_the_point_leaves_the_base_there(tmp_path, base, monkeypatch):
    out, _ = run(tmp_path, base, monkeypatch, [1500, 400, 400], budget=2000)
    assert point_steps(read_metrics(out / METRICS_FILE), Budget("samples", 2000), [0.5]) == {0.5: 0, 1.0: 2}


def test_training_keeps_fp32_master_weights_when_generation_is_bf16(tmp_path, base, monkeypatch):
    _, seen = run(tmp_path, base, monkeypatch, [3000], budget=2000, overrides=["rollout.dtype=bfloat16"])
    assert seen["dtype"] == torch.float32
    _, seen = run(tmp_path / "b", base, monkeypatch, [3000], budget=2000, overrides=["train.dtype=bfloat16"])
    assert seen["dtype"] == torch.bfloat16


def test_resume_writes_the_point_of_a_step_it_replays_with_that_steps_weights(tmp_path, base, monkeypatch, model):
    """Killed after step 3 with a full checkpoint at step 2 only: the resumed run passes 2000 at
    step 4 and must write step 3's evaluation checkpoint from its own step 3."""
    per_step = [300, 600, 600, 600]  # cumulative 300, 900, 1500, 2100: points at steps 2 and 3
    out, _ = run(tmp_path, base, monkeypatch, per_step, budget=2000, overrides=["train.save_every=2"])
    for step in (3, 4):
        shutil.rmtree(out / CHECKPOINTS / f"step_{step:06d}")  # as if killed before they were written
    out, _ = run(tmp_path, base, monkeypatch, per_step, budget=2000, overrides=["train.save_every=2"], resume=True)
    assert point_steps(read_metrics(out / METRICS_FILE), Budget("samples", 2000), [0.5]) == {0.5: 2, 1.0: 3}
    assert torch.equal(norm_of(out / CHECKPOINTS / "step_000003"), model.model.norm.weight.detach() + 3)


def test_resume_without_a_full_checkpoint_drops_the_old_attempts_evaluation_checkpoints(tmp_path, base, monkeypatch):
    out, _ = run(tmp_path, base, monkeypatch, [300, 900, 300, 900], budget=2000)
    assert (out / CHECKPOINTS / "step_000001").is_dir()
    shutil.rmtree(out / CHECKPOINTS / "step_000004")  # killed before its one full checkpoint
    # the new attempt spends differently (as wall-clock time would): its first step passes 1000
    out, _ = run(tmp_path, base, monkeypatch, [1200, 300, 900], budget=2000, resume=True)
    assert point_steps(read_metrics(out / METRICS_FILE), Budget("samples", 2000), [0.5]) == {0.5: 0, 1.0: 2}
    assert not (out / CHECKPOINTS / "step_000001").exists()  # the old attempt's step 1 is not this run's
    assert (out / CHECKPOINTS / "step_000002").is_dir() and (out / CHECKPOINTS / "step_000003" / STATE_FILE).is_file()


def test_a_builder_that_returns_no_trainer_is_refused_in_one_line(tmp_path, base, monkeypatch):
    """The Trainer protocol is enforced at the seam: what a builder returns is checked before training."""
    from harness.config import ConfigError

    class Half:
        name, policy = "half", None

        def step(self):
            return {}

    monkeypatch.setattr(harness.jobs.train, "get_builder", lambda name: lambda **kw: Half())
    cfg = load_config("smoke", ["suites.enabled=[math]", "rollout.device=cpu"])
    with pytest.raises(ConfigError, match=r"built a Half without settings, state_dict, load_state_dict \(trainers.base.Trainer\)"):
        run_training(cfg, "half", tmp_path / "run", base=str(base), progress=False, log=lambda _: None)


def test_a_run_stopped_at_its_budget_reaches_its_last_point():
    """verl's watcher stops a run once its next step would pass the budget: no row passes the last
    point, yet the point is reached and the last step at or under it serves it (not 'unfinished')."""
    rows = [{"step": s, "wall_s": 10.0 * s} for s in range(1, 6)]  # 50 s spent, budget 55 s
    assert point_steps(rows, Budget("wall_s", 55), [0.5]) == {0.5: 2, 1.0: None}
    assert point_steps(rows, Budget("wall_s", 55), [0.5], kept={2, 4}, stopped_at_budget=True) == {0.5: 2, 1.0: 4}
