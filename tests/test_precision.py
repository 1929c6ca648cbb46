"""Training precision is not generation precision: fp32 master weights move at the paper's learning
rate (1e-6) where bf16-stored weights would not, and the engine's bf16 copy follows them."""

import copy

import torch

from harness.config import load_config
from harness.rollout import Sample
from suites import build_suite
from trainers.grpo import ArmSettings, GRPOTrainer


def trainer_for(model, tokenizer, overrides):
    cfg = load_config("smoke", ["suites.enabled=[math]", "rollout.device=cpu", "train.tis=false",
                                "train.learning_rate=1e-6", "train.mini_batches=1", "train.prompt_pool=16", *overrides])
    arm = ArmSettings(n=4, prompts_per_step=2, learning_rate=1e-6, lr_rule="none")
    return GRPOTrainer("step_scaling", arm, train=cfg.train, rollout=cfg.rollout, scoring=cfg.scoring, seed=cfg.seed,
                       model=model, tokenizer=tokenizer, suites=[build_suite("math", cfg.suites, cfg.seed)])


def groups(tokenizer):
    """Two prompt groups of four made-up responses with reward spread (so the update is not empty)."""
    out = []
    for text in ("What is 3 + 4?", "What is 10 + 2?"):
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        answers = [tokenizer(f"<answer>{k}</answer>", add_special_tokens=False)["input_ids"] for k in range(4)]
        samples = [Sample(token_ids=ids, text="", logprobs=[0.0] * len(ids), finish_reason="stop") for ids in answers]
        out.append((prompt, samples, torch.tensor([1.0, 0.0, 1.0, 0.0])))
    return out


def changed_fraction(before: dict, model) -> float:
    after = model.state_dict()
    changed = sum(int((after[k].float() != v.float()).sum()) for k, v in before.items())
    return changed / sum(v.numel() for v in before.values())


def test_fp32_master_weights_move_at_lr_1e6_and_bf16_storage_would_not(model, tokenizer):
    master = copy.deepcopy(model).float().train()
    trainer = trainer_for(master, tokenizer, ["rollout.dtype=bfloat16"])
    assert trainer.rollout_model is not trainer.policy and trainer.rollout_model.dtype == torch.bfloat16
    before = {k: v.clone() for k, v in master.state_dict().items()}
    trainer._update(groups(tokenizer))
    assert changed_fraction(before, master) > 0.5  # AdamW moves (nearly) every weight by ~1e-6

    pure = copy.deepcopy(model).to(torch.bfloat16).train()
    control = trainer_for(pure, tokenizer, ["rollout.dtype=bfloat16", "train.dtype=bfloat16"])
    assert control.rollout_model is control.policy
    before = {k: v.clone() for k, v in pure.state_dict().items()}
    control._update(groups(tokenizer))
    assert changed_fraction(before, pure) < 0.05  # rounded away: what the project used to train with


def test_the_engine_copy_follows_the_master_weights(model, tokenizer):
    master = copy.deepcopy(model).float().train()
    trainer = trainer_for(master, tokenizer, ["rollout.dtype=bfloat16"])
    with torch.no_grad():
        master.model.norm.weight.add_(0.5)
    trainer._sync_rollout_weights()
    copy_ = trainer.rollout_model.state_dict()
    for name, value in master.state_dict().items():
        assert torch.equal(copy_[name], value.to(torch.bfloat16)), name


def test_bf16_autocast_keeps_fp32_master_weights_and_still_moves_them(model, tokenizer):
    master = copy.deepcopy(model).float().train()
    trainer = trainer_for(master, tokenizer, ["train.autocast_dtype=bfloat16"])
    before = {k: v.clone() for k, v in master.state_dict().items()}
    metrics = trainer._update(groups(tokenizer))
    assert all(v.dtype == torch.float32 for v in master.state_dict().values())
    assert changed_fraction(before, master) > 0.5 and metrics["loss"] == metrics["loss"]  # not NaN


def test_every_step_generates_with_the_current_master_weights(model, tokenizer):
    """The copy is refreshed inside `step()`, before generation: an update between steps (here a
    hand-made change of the master weights) is what the next step's samples come from."""
    master = copy.deepcopy(model).float().train()
    trainer = trainer_for(master, tokenizer, ["rollout.dtype=bfloat16"])
    seen = {}

    real = trainer.engine

    class Recorder:
        """The real engine's weight sync, and a generate that records the weights it would use."""

        name, model = "recorder", real.model

        def sync_weights(self, policy):
            real.sync_weights(policy)

        def release(self):
            pass

        def generate(self, prompts, n, sampling):
            seen["norm"] = real.model.model.norm.weight.detach().clone()
            raise StopIteration  # enough: the generation-time weights are what this test checks

    trainer.engine = Recorder()
    with torch.no_grad():
        master.model.norm.weight.add_(0.5)
    try:
        trainer.step()
    except StopIteration:
        pass
    assert torch.equal(seen["norm"], master.model.norm.weight.detach().to(torch.bfloat16))


def test_the_bf16_copy_keeps_ropes_frequencies_in_fp32_as_from_pretrained_does(model, tokenizer):
    master = copy.deepcopy(model).float()
    trainer = trainer_for(master, tokenizer, ["rollout.dtype=bfloat16"])
    ours = dict(trainer.rollout_model.named_buffers())
    for name, buffer in master.named_buffers():
        if name.endswith("inv_freq"):
            assert ours[name].dtype == torch.float32 and torch.equal(ours[name], buffer), name
