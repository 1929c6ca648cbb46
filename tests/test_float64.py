"""float64 runs, the regression guard's machine-independent precision (harness/regress.py): the
supervised loss, generation and the RL update keep float64 end to end (a float32 cast anywhere
would put a machine's rounding back), and the float32 path computes exactly what it did before."""

import copy
import os
import pickle
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import trainers.grpo as grpo
from harness.checkpoint import CheckpointError, float64_throughout
from harness.config import ConfigError, load_config
from harness.jobs.base_model import _supervised_loss
from harness.regress import MACHINE_INDEPENDENT
from harness.rollout import SamplingParams
from harness.rollout.hf import HFRolloutEngine
from tests.conftest import corpus
from tests.test_precision import groups, trainer_for


def batch(tokenizer):
    texts = ["What is 3 + 4?\n<answer>7</answer>", "What is 12 + 9?\n<answer>21</answer>"]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    labels = torch.full_like(input_ids, -100)
    for r, row in enumerate(ids):
        input_ids[r, : len(row)] = torch.tensor(row)
        attention[r, : len(row)] = 1
        labels[r, 4: len(row)] = torch.tensor(row[4:])  # the prompt's first tokens are not trained on
    return input_ids, attention, labels


def test_the_supervised_loss_is_transformers_own_in_float32_bit_for_bit(model, tokenizer):
    input_ids, attention, labels = batch(tokenizer)
    ours, theirs = copy.deepcopy(model).train(), copy.deepcopy(model).train()
    loss_ours = _supervised_loss(ours, input_ids, attention, labels)
    loss_theirs = theirs(input_ids=input_ids, attention_mask=attention, labels=labels).loss
    assert torch.equal(loss_ours, loss_theirs)
    loss_ours.backward()
    loss_theirs.backward()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        assert torch.equal(a.grad, b.grad), name


def test_the_supervised_loss_of_a_float64_model_is_float64(model, tokenizer):
    input_ids, attention, labels = batch(tokenizer)
    wide = copy.deepcopy(model).double().train()
    loss = _supervised_loss(wide, input_ids, attention, labels)
    assert loss.dtype == torch.float64
    # transformers' own loss casts the logits to float32: not what a float64 base trains with
    assert wide(input_ids=input_ids, attention_mask=attention, labels=labels).loss.dtype == torch.float32


def test_float64_throughout_angles_are_transformers_own_computed_in_float64(model):
    wide = copy.deepcopy(model).double()
    x = torch.zeros(1, dtype=torch.float64)
    positions = torch.arange(200)[None, :]
    cos32, sin32 = wide.model.rotary_emb(x, positions)  # transformers: float32 angles, cast up
    float64_throughout(wide)
    cos64, sin64 = wide.model.rotary_emb(x, position_ids=positions)  # as Qwen2Model calls it
    assert cos64.dtype == sin64.dtype == torch.float64
    assert torch.allclose(cos64, cos32, atol=1e-4) and torch.allclose(sin64, sin32, atol=1e-4)
    assert not torch.equal(cos64, cos32)  # the float32 rounding is gone
    reference = copy.deepcopy(wide)  # the trainer's reference policy is a deep copy: it keeps the float64 angles
    assert torch.equal(reference.model.rotary_emb(x, positions)[0], cos64)
    revived = pickle.loads(pickle.dumps(wide))
    assert torch.equal(revived.model.rotary_emb(x, positions)[1], sin64)


def test_float64_rms_norm_is_transformers_formula_in_float64(model):
    wide = copy.deepcopy(model).double()
    norm = wide.model.norm
    hidden = torch.randn(3, 5, norm.weight.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    in_float32 = norm(hidden)  # transformers: the statistics in float32
    float64_throughout(wide)
    ours = norm(hidden)
    expected = norm.weight * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))
    assert ours.dtype == torch.float64 and torch.equal(ours, expected)
    assert torch.allclose(ours, in_float32, atol=1e-5) and not torch.equal(ours, in_float32)


def test_the_hooks_change_nothing_below_float64(model, tokenizer):
    """A float32 copy of a float64 model (or a float32 model given the hooks) computes exactly as
    transformers does: the hooks act on float64 inputs only."""
    ids = torch.tensor([tokenizer("What is 3 + 4?", add_special_tokens=False)["input_ids"]])
    hooked = copy.deepcopy(model)
    float64_throughout(hooked)
    with torch.no_grad():
        assert torch.equal(hooked(input_ids=ids).logits, model(input_ids=ids).logits)


def test_float64_throughout_refuses_what_it_cannot_make_float64():
    with pytest.raises(CheckpointError, match="Qwen2 family"):
        float64_throughout(torch.nn.Sequential(torch.nn.Linear(2, 2)))


@pytest.mark.parametrize("overrides, message", [
    (["bootstrap.dtype=float64"], "'train.dtype': 'float32'; with bootstrap.dtype=float64 set train.dtype and rollout.dtype"),
    (["train.dtype=float64"], "'rollout.dtype': 'float32'; with train.dtype=float64 set rollout.dtype"),
    (["train.dtype=float64", "rollout.dtype=float64", "rollout.engine=vllm"], "the vllm engine does not run float64"),
])
def test_float64_is_all_or_nothing_and_hf_only(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("smoke", overrides)
    assert load_config("smoke", list(MACHINE_INDEPENDENT)).bootstrap.dtype == "float64"


def test_float64_generation_returns_float64_logprobs(model, tokenizer):
    wide = copy.deepcopy(model).double().eval()
    float64_throughout(wide)
    engine = HFRolloutEngine(wide, tokenizer, dtype=torch.float64)
    prompt = "What is 3 + 4?"
    sample = engine.generate([prompt], n=2, sampling=SamplingParams(max_new_tokens=1, seed=0)).groups[0].samples[0]
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        expected = torch.log_softmax(wide(input_ids=ids).logits[0, -1], dim=-1)[sample.token_ids[0]]
    assert sample.logprobs[0] == pytest.approx(float(expected), abs=1e-12)  # float32 storage: ~1e-7 off


def test_a_float64_update_computes_in_float64(model, tokenizer, monkeypatch):
    wide = copy.deepcopy(model).double().train()
    float64_throughout(wide)
    trainer = trainer_for(wide, tokenizer, ["train.dtype=float64", "rollout.dtype=float64"])
    assert trainer.rollout_model is trainer.policy and trainer.reward_dtype == torch.float64
    seen = []

    def recording(logp, old, adv, *args, **kwargs):  # what the PPO objective is given
        seen.append((logp.dtype, old.dtype, adv.dtype))
        return grpo.ppo_clip_objective.__wrapped__(logp, old, adv, *args, **kwargs)

    recording.__wrapped__ = grpo.ppo_clip_objective
    monkeypatch.setattr(grpo, "ppo_clip_objective", recording)
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    wide_groups = [(prompt, samples, rewards.to(trainer.reward_dtype)) for prompt, samples, rewards in groups(tokenizer)]
    trainer._update(wide_groups)
    assert seen and set(seen) == {(torch.float64, torch.float64, torch.float64)}
    after = wide.state_dict()
    assert all(v.dtype == torch.float64 for v in after.values())
    assert any(not torch.equal(after[k], v) for k, v in before.items())


KERNEL_RUN = textwrap.dedent("""
    import torch
    from harness.checkpoint import float64_throughout
    from harness.config import TinyModelConfig
    from harness.jobs.tiny_model import build_model, train_tokenizer
    from harness.rollout import SamplingParams
    from harness.rollout.hf import HFRolloutEngine
    torch.set_num_threads(2)
    tok = train_tokenizer({corpus!r}, vocab_size=400)
    cfg = TinyModelConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          intermediate_size=128, max_position_embeddings=256)
    model = build_model(cfg, tok, seed=0, dtype="float64").eval()
    float64_throughout(model)
    engine = HFRolloutEngine(model, tok, dtype=torch.float64)
    result = engine.generate(["What is 3 + 4?", "What is 17 + 25?"], n=64, sampling=SamplingParams(max_new_tokens=24, seed=3))
    print(torch.backends.cpu.get_cpu_capability())
    print([s.token_ids for g in result.groups for s in g.samples])
    print(repr(sum(lp for g in result.groups for s in g.samples for lp in s.logprobs)))
""")


@pytest.mark.slow
def test_float64_generation_does_not_depend_on_the_kernels_torch_picks(tmp_path):
    """The machine's best kernels (AVX-512 where the CPU has it) against torch's plain ones and a
    BLAS without SIMD, as two different machines would run: the same tokens, log-probabilities
    equal to float64 rounding. (Where the CPU has no better kernels both runs take the same ones.)"""
    script = tmp_path / "float64_generation.py"
    script.write_text(KERNEL_RUN.format(corpus=corpus()))

    def run(**env):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    best = run()
    plain = run(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")
    assert plain[0] == "DEFAULT"
    assert best[1] == plain[1]
    assert float(best[2]) == pytest.approx(float(plain[2]), rel=1e-13)  # float32 rotary angles: ~5e-11
