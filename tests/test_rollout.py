import math

import numpy as np
import pytest
import torch

from harness.checkpoint import render_prompt
from harness.config import RolloutConfig
from harness.rollout import SamplingParams, make_engine

PROMPTS = ["What is 3 + 4?", "What is 12 + 29? Give your final answer inside <answer></answer> tags.", "Hi"]


def rendered(tokenizer):
    return [render_prompt(tokenizer, p) for p in PROMPTS]


def test_greedy_equals_plain_generate_token_for_token(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    prompts = rendered(tokenizer)
    result = engine.generate(prompts, n=2, sampling=SamplingParams(temperature=0.0, max_new_tokens=20))
    for prompt, group in zip(prompts, result.groups):
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
        reference = model.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=20,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )[0, ids.shape[1]:].tolist()
        for sample in group.samples:
            assert sample.token_ids == reference
            assert sample.finish_reason == ("stop" if reference[-1] == tokenizer.eos_token_id else "length")


def test_seeded_sampling_is_reproducible_and_seed_sensitive(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=123)
    a = engine.generate(rendered(tokenizer), n=8, sampling=sampling)
    b = engine.generate(rendered(tokenizer), n=8, sampling=sampling)
    c = engine.generate(rendered(tokenizer), n=8, sampling=SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=12, seed=124))
    tokens = lambda r: [s.token_ids for g in r.groups for s in g.samples]
    assert tokens(a) == tokens(b)
    assert tokens(a) != tokens(c)
    assert [s.logprobs for g in a.groups for s in g.samples] == [s.logprobs for g in b.groups for s in g.samples]


def test_logprobs_match_a_teacher_forced_recomputation(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    temperature = 0.7
    result = engine.generate(rendered(tokenizer), n=3, sampling=SamplingParams(temperature=temperature, max_new_tokens=10, seed=5))
    for group in result.groups:
        for sample in group.samples:
            full = torch.tensor([group.prompt_ids + sample.token_ids])
            with torch.no_grad():
                logits = model(full).logits[0, len(group.prompt_ids) - 1: -1] / temperature
            expected = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(sample.token_ids)[:, None])[:, 0]
            assert torch.allclose(torch.tensor(sample.logprobs), expected, atol=1e-4)
            assert all(lp <= 0 and math.isfinite(lp) for lp in sample.logprobs)


@pytest.mark.parametrize("n, max_batch", [(1, 1024), (512, 1024), (512, 200)])
def test_n_samples_per_prompt(model, tokenizer, n, max_batch):
    engine = make_engine(RolloutConfig(max_batch_sequences=max_batch), model, tokenizer)
    result = engine.generate(rendered(tokenizer)[:2], n=n, sampling=SamplingParams(temperature=1.0, max_new_tokens=6, seed=0))
    assert [len(g.samples) for g in result.groups] == [n, n]
    for g in result.groups:
        assert g.prompt_ids
        for s in g.samples:
            assert 1 <= s.num_tokens <= 6 and len(s.logprobs) == s.num_tokens
            assert s.finish_reason in ("stop", "length")
            assert isinstance(s.text, str)
    assert result.num_samples == 2 * n
    assert result.generation_s > 0 and result.samples_per_s > 0 and result.tokens_per_s > 0
    if n == 512:  # 512 samples of a prompt are not all the same
        assert len({tuple(s.token_ids) for s in result.groups[0].samples}) > 50


class ForwardRecorder:
    """Records (batch, sequence length) of every forward call of a model."""

    def __init__(self, model):
        self.shapes: list[tuple[int, int]] = []
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(tuple(ids.shape))

    def close(self):
        self.handle.remove()


def test_prompt_is_prefilled_once_for_all_its_samples(model, tokenizer):
    engine = make_engine(RolloutConfig(max_batch_sequences=64), model, tokenizer)
    prompts = rendered(tokenizer)
    recorder = ForwardRecorder(model)
    try:
        engine.generate(prompts, n=100, sampling=SamplingParams(temperature=1.0, max_new_tokens=4, seed=0))
    finally:
        recorder.close()
    prefills = [s for s in recorder.shapes if s[1] > 1]
    decodes = [s for s in recorder.shapes if s[1] == 1]
    # n > max_batch_sequences: one prefill per prompt (a chunk each), never one per sample
    assert len(prefills) == len(prompts)
    assert all(batch == 1 for batch, _ in prefills)
    # many sequences per decode forward pass
    assert max(batch for batch, _ in decodes) == 64


def test_finished_sequences_leave_the_batch(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    stop = tuple(range(0, len(tokenizer), 2))  # half the vocabulary stops a sample
    recorder = ForwardRecorder(model)
    try:
        sampling = SamplingParams(temperature=1.0, max_new_tokens=12, seed=1, stop_token_ids=stop)
        result = engine.generate(rendered(tokenizer)[:1], n=64, sampling=sampling)
    finally:
        recorder.close()
    batches = [b for b, length in recorder.shapes if length == 1]
    assert batches == sorted(batches, reverse=True) and batches[-1] < 64
    reasons = {s.finish_reason for s in result.groups[0].samples}
    assert "stop" in reasons
    for s in result.groups[0].samples:
        if s.finish_reason == "stop":
            assert s.token_ids[-1] in stop
            assert s.text == tokenizer.decode(s.token_ids[:-1], skip_special_tokens=True)


def test_top_p_keeps_only_the_nucleus(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    prompt = rendered(tokenizer)[:1]
    greedy = engine.generate(prompt, n=1, sampling=SamplingParams(temperature=0.0, max_new_tokens=1))
    tiny_p = engine.generate(prompt, n=32, sampling=SamplingParams(temperature=1.0, top_p=1e-6, max_new_tokens=1, seed=3))
    first = greedy.groups[0].samples[0].token_ids[0]
    assert {s.token_ids[0] for s in tiny_p.groups[0].samples} == {first}


def test_bad_sampling_params_are_rejected():
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)


def all_samples(result):
    return [s for g in result.groups for s in g.samples]


def assert_same_samples(a, b):
    """Identical token ids; logprobs equal up to float reductions that depend on the batch shape."""
    assert [s.token_ids for s in all_samples(a)] == [s.token_ids for s in all_samples(b)]
    for x, y in zip(all_samples(a), all_samples(b)):
        assert x.finish_reason == y.finish_reason
        assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-5)


@pytest.mark.parametrize("top_p", [1.0, 0.9])
def test_samples_do_not_depend_on_max_batch_sequences(model, tokenizer, top_p):
    prompts = rendered(tokenizer) + [render_prompt(tokenizer, "What is 7 + 21? Answer inside <answer></answer> tags, please.")]
    sampling = SamplingParams(temperature=1.0, top_p=top_p, max_new_tokens=10, seed=42)
    results = [make_engine(RolloutConfig(max_batch_sequences=m), model, tokenizer).generate(prompts, n=8, sampling=sampling)
               for m in (1024, 16, 3)]
    assert len({tuple(s.token_ids) for s in all_samples(results[0])}) > 16
    for other in results[1:]:
        assert_same_samples(results[0], other)


def test_a_list_split_into_calls_with_offsets_gives_the_same_samples(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    prompts = rendered(tokenizer)
    sampling = SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=9)
    whole = engine.generate(prompts, n=4, sampling=sampling)
    head = engine.generate(prompts[:1], n=4, sampling=sampling)
    tail = engine.generate(prompts[1:], n=4, sampling=SamplingParams(temperature=1.0, top_p=0.95, max_new_tokens=10, seed=9,
                                                                     first_prompt_index=1))
    head.groups += tail.groups
    assert_same_samples(whole, head)
    with pytest.raises(ValueError, match="first_prompt_index"):
        SamplingParams(first_prompt_index=-1)


def test_every_prompt_and_sample_index_has_its_own_stream(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    prompt = rendered(tokenizer)[0]
    result = engine.generate([prompt, prompt], n=16, sampling=SamplingParams(temperature=1.0, max_new_tokens=8, seed=4))
    first, second = ([tuple(s.token_ids) for s in g.samples] for g in result.groups)
    assert len(set(first)) > 8  # the samples of a prompt differ
    assert sum(a == b for a, b in zip(first, second)) < 4  # the same prompt at another index draws afresh


def test_unseeded_calls_vary_and_follow_torch_manual_seed(model, tokenizer):
    engine = make_engine(RolloutConfig(), model, tokenizer)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=8)
    tokens = lambda: [s.token_ids for s in all_samples(engine.generate(rendered(tokenizer), n=4, sampling=sampling))]
    torch.manual_seed(11)
    a, b = tokens(), tokens()
    torch.manual_seed(11)
    assert a != b and tokens() == a


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_counter_based_sampler_draws_the_softmax(top_p):
    from harness.rollout.hf import _sample, row_keys, row_uniforms

    temperature = 0.7
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, 1.5, -0.5])
    draws = 40_000
    keys = row_keys(2024, np.arange(draws) // 100, np.arange(draws) % 100)
    uniforms = torch.from_numpy(row_uniforms(keys, 3))
    sampling = SamplingParams(temperature=temperature, top_p=top_p)
    tok, logp = _sample(logits.expand(draws, -1), sampling, uniforms)
    expected = torch.softmax(logits.double() / temperature, -1)
    assert torch.allclose(logp.double(), expected[tok].log(), atol=1e-5)  # logprobs before truncation
    if top_p < 1.0:
        order = expected.argsort(descending=True)
        keep = order[: int((expected[order].cumsum(0) < top_p).sum()) + 1]
        nucleus = torch.zeros_like(expected)
        nucleus[keep] = expected[keep]
        expected = nucleus / nucleus.sum()
        assert set(tok.tolist()) == set(keep.tolist())
    counts = torch.bincount(tok, minlength=len(logits)).double()
    support = expected > 0
    chi2 = float(((counts[support] - draws * expected[support]) ** 2 / (draws * expected[support])).sum())
    assert chi2 < 30  # chi-square with <= 7 degrees of freedom: p < 1e-4 above 30


def test_every_engine_satisfies_the_engine_seam(model, tokenizer):
    from harness.rollout import ENGINES, RolloutEngine
    from harness.rollout.vllm import vllm_installed

    for name in ENGINES:
        if name == "vllm" and not vllm_installed():
            continue  # tests/test_vllm.py, in `tox -e vllm`
        assert isinstance(make_engine(RolloutConfig(engine=name), model, tokenizer), RolloutEngine), name
