"""`harness bench rollout`'s measurement on the session's small model: both prompt lengths, the
ratios the goals are stated in, and the share of the matrix-product peak (no timing asserted)."""

from harness.config import RolloutConfig
from harness.jobs.bench import bench_rollout, decode_flops_per_token, lengthen


def test_prompts_are_lengthened_and_every_ratio_is_printed(model, tokenizer):
    lines = []
    rows = bench_rollout(model, tokenizer, ["1 + 2 =", "3 + 4 ="], [2, 8], samples=16, max_new_tokens=4,
                         rollout=RolloutConfig(engine="hf", device="cpu"), repeats=1, log=lines.append,
                         prompt_tokens=[5, 60])
    assert {(r["engine"], r["n"], r["length"]) for r in rows} == {
        (e, n, L) for e in ("hf (prefix-shared)", "transformers generate") for n in (2, 8) for L in (5, 60)}
    assert all(r["prompt_tokens"] >= r["length"] for r in rows)
    assert all(r["samples_per_s"] > 0 and r["matmul_fraction"] > 0 for r in rows)
    ratio_lines = [line for line in lines if line.startswith("prompt ~")]
    assert sum("hf N=8 / N=2" in line for line in ratio_lines) == 2
    assert sum("hf / transformers generate" in line for line in ratio_lines) == 2
    assert sum("matrix-product peak" in line for line in ratio_lines) == 2


def test_lengthen_keeps_a_long_prompt_and_pads_a_short_one(tokenizer):
    assert lengthen(tokenizer, "1 + 2 =", 1) == "1 + 2 ="
    longer = lengthen(tokenizer, "1 + 2 =", 40)
    assert longer.endswith("1 + 2 =") and len(tokenizer(longer)["input_ids"]) >= 30


def test_decode_flops_count_the_tied_output_layer(model):
    weights = sum(p.numel() for p in model.parameters())
    assert decode_flops_per_token(model) == 2.0 * weights  # tied: embedding counted once, as the output product
