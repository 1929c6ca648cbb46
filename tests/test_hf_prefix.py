"""Shared-prefix decoding of the `hf` engine against its former decoding, on the same model.

The former path (`shared_prefix=False`: each prompt's cache copied to its rows, grown by
concatenation) is the reference: greedy decoding must agree token for token and seeded sampling in
tokens, with logprobs within 1e-4, at short and long prompts of different lengths in one chunk,
with grouped-query attention, with rows stopping (grid repacks) and with row batches smaller than n.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from harness.rollout import SamplingParams
from harness.rollout.hf import HFRolloutEngine, _SharedPrefixState, prefix_bias_of, shared_prefix_attention

SHORT = ["What is 3 + 4?", "What is 12 + 29? Give your final answer inside <answer></answer> tags.", "Hi"]
FILLER = "What is 12 + 29? Give your final answer inside <answer></answer> tags. "


def long_prompts(tokenizer, target: int = 220) -> list[str]:
    """Prompts of about `target` tokens (and a few shorter ones: left padding in the chunk)."""
    text = ""
    while len(tokenizer(text, add_special_tokens=False)["input_ids"]) < target - 10:
        text += FILLER
    return [text + "What is 3 + 4?", text[: len(text) // 2] + "What is 5 + 6?", text + "Hi"]


def random_model(tokenizer, arch: str = "qwen2", heads: int = 4, kv_heads: int = 2, **extra):
    """A small random model, its logits more peaked than the default initialisation gives (fewer
    near-ties for float noise to flip)."""
    common = dict(vocab_size=len(tokenizer), hidden_size=48 if heads % 3 == 0 else 64, intermediate_size=96,
                  num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  max_position_embeddings=512, initializer_range=0.1, tie_word_embeddings=True,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None, **extra)
    torch.manual_seed(0)
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**common)).eval()


def both(model, tokenizer, prompts, n, sampling, max_batch=1024):
    """(shared-prefix result, former-path result) of the same call on the same model."""
    shared = HFRolloutEngine(model, tokenizer, max_batch_sequences=max_batch)
    former = HFRolloutEngine(model, tokenizer, max_batch_sequences=max_batch, shared_prefix=False)
    a, b = shared.generate(prompts, n, sampling), former.generate(prompts, n, sampling)
    assert shared.shared_prefix  # it really decoded with the shared prefix
    return a, b


def assert_identical(a, b, atol=1e-4):
    xs = [s for g in a.groups for s in g.samples]
    ys = [s for g in b.groups for s in g.samples]
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        assert x.token_ids == y.token_ids
        assert x.finish_reason == y.finish_reason and x.text == y.text
        assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=atol, rtol=0)


@pytest.mark.parametrize("length", ["short", "long"])
def test_greedy_is_token_for_token_the_former_decoding(model, tokenizer, length):
    prompts = SHORT if length == "short" else long_prompts(tokenizer)
    widths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    assert (max(widths) < 60) if length == "short" else (200 <= max(widths) <= 240 and min(widths) < max(widths))
    a, b = both(model, tokenizer, prompts, 4, SamplingParams(temperature=0.0, max_new_tokens=24))
    assert_identical(a, b)


@pytest.mark.parametrize("length", ["short", "long"])
def test_seeded_sampling_is_the_former_decoding(model, tokenizer, length):
    # top_p = 1: this random model's next-token distribution is nearly uniform over 400 tokens, so
    # the nucleus edge often sits between two tokens whose probabilities differ by less than float
    # noise, and which one top_p keeps moves every later CDF boundary (top_p < 1 is checked on the
    # peaked models below)
    prompts = SHORT if length == "short" else long_prompts(tokenizer)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=20, seed=11)
    a, b = both(model, tokenizer, prompts, 16, sampling)
    assert len({tuple(s.token_ids) for g in a.groups for s in g.samples}) > 16
    assert_identical(a, b)


@pytest.mark.parametrize("arch, heads, kv_heads", [("qwen2", 6, 2), ("qwen2", 4, 4), ("qwen2", 4, 1), ("llama", 6, 3)])
def test_grouped_query_attention_and_llama(tokenizer, arch, heads, kv_heads):
    model = random_model(tokenizer, arch, heads, kv_heads)
    prompts = SHORT + long_prompts(tokenizer)[:1]
    for sampling in (SamplingParams(temperature=0.0, max_new_tokens=16),
                     SamplingParams(temperature=0.8, top_p=0.9, max_new_tokens=16, seed=3)):
        assert_identical(*both(model, tokenizer, prompts, 5, sampling))


def test_stopping_rows_and_row_batches_smaller_than_n(model, tokenizer):
    stop = tuple(range(0, len(tokenizer), 3))  # a third of the vocabulary stops a sample: many repacks
    sampling = SamplingParams(temperature=1.0, max_new_tokens=14, seed=5, stop_token_ids=stop)
    prompts = SHORT + long_prompts(tokenizer)[:2]
    for max_batch in (1024, 7):  # 7 < n: one prompt's rows in several row batches, each from the one prefix
        a, b = both(model, tokenizer, prompts, 24, sampling, max_batch=max_batch)
        reasons = {s.finish_reason for g in a.groups for s in g.samples}
        assert reasons == {"stop", "length"}
        assert_identical(a, b)


def test_suffix_buffer_grows_in_place_beyond_its_first_capacity(model, tokenizer, monkeypatch):
    monkeypatch.setattr(_SharedPrefixState, "INITIAL_CAPACITY", 3)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=20, seed=2, stop_token_ids=())
    assert_identical(*both(model, tokenizer, SHORT, 4, sampling))


def test_attention_implementation_is_restored(model, tokenizer):
    before = model.config._attn_implementation
    HFRolloutEngine(model, tokenizer).generate(SHORT, 2, SamplingParams(temperature=1.0, max_new_tokens=3, seed=0))
    assert model.config._attn_implementation == before


def test_a_model_it_cannot_serve_falls_back_with_a_warning(tokenizer):
    # sliding-window layers keep a cache of their own: decoded the former way, same samples
    model = random_model(tokenizer, use_sliding_window=True, sliding_window=16, max_window_layers=0)
    sampling = SamplingParams(temperature=1.0, max_new_tokens=12, seed=4)
    engine = HFRolloutEngine(model, tokenizer)
    with pytest.warns(UserWarning, match="without shared-prefix attention"):
        a = engine.generate(SHORT, 4, sampling)
    assert not engine.shared_prefix
    b = HFRolloutEngine(model, tokenizer, shared_prefix=False).generate(SHORT, 4, sampling)
    assert_identical(a, b, atol=0)


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_shared_prefix_attention_is_plain_attention_over_prefix_and_suffix(dtype, atol):
    torch.manual_seed(0)
    prompts, m, heads, kv_heads, dim, width, t = 3, 4, 6, 2, 8, 7, 5
    query = torch.randn(prompts * m, heads, 1, dim)
    prefix_k, prefix_v = torch.randn(prompts, kv_heads, width, dim), torch.randn(prompts, kv_heads, width, dim)
    suffix_k, suffix_v = torch.randn(prompts * m, kv_heads, t, dim), torch.randn(prompts * m, kv_heads, t, dim)
    lengths = torch.tensor([7, 3, 1])  # left padding: prompt i has its last lengths[i] positions
    valid = torch.arange(width)[None, :] >= width - lengths[:, None]
    bias = prefix_bias_of(valid, kv_heads, dtype)
    out = shared_prefix_attention(*(x.to(dtype) for x in (query, prefix_k, prefix_v)), bias,
                                  suffix_k.to(dtype), suffix_v.to(dtype), dim ** -0.5)

    rows = torch.arange(prompts).repeat_interleave(m)
    keys = torch.cat([prefix_k[rows], suffix_k], dim=2).repeat_interleave(heads // kv_heads, dim=1)
    values = torch.cat([prefix_v[rows], suffix_v], dim=2).repeat_interleave(heads // kv_heads, dim=1)
    mask = torch.cat([valid[rows], torch.ones(prompts * m, t, dtype=torch.bool)], dim=1)[:, None, None, :]
    expected = torch.nn.functional.scaled_dot_product_attention(query, keys, values, attn_mask=mask)
    assert out.shape == (prompts * m, 1, heads, dim) and out.dtype == dtype
    assert torch.allclose(out.float(), expected.transpose(1, 2), atol=atol)
