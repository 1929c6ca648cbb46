"""Evaluation scores do not depend on how many prompts go into one generate call."""

from __future__ import annotations

import zlib

from harness.config import RolloutConfig, load_config
from harness.execution.bounded import ScorerPool
from harness.jobs.evaluate import evaluate_suite
from harness.rollout import SamplingParams, make_engine
from suites import build_suite
from suites.base import ScoreResult
from suites.tiny_math import TinyMathSuite


def response_digest(response: str, reference) -> ScoreResult:
    """A reward that changes with almost any change of the response (a random model rarely scores
    on the real scorer, which would make every batching look equal)."""
    reward = zlib.crc32(response.encode()) % 5 / 4
    return ScoreResult(reward, "partial")


class DigestMathSuite(TinyMathSuite):
    scorer = staticmethod(response_digest)


def test_eval_scores_do_not_depend_on_prompts_per_call(model, tokenizer):
    cfg = load_config("tiny")
    math = build_suite("math", cfg.suites, cfg.seed)
    suite = DigestMathSuite(math.tasks, math.seed, math.heldout_fraction, math.scorer_timeout_s, math.task_heldout)
    items = suite.items("eval", 12)
    engine = make_engine(RolloutConfig(), model, tokenizer)
    sampling = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=12, seed=7)
    with ScorerPool(workers=1, timeout_s=10.0) as pool:
        scores = [evaluate_suite(engine, tokenizer, suite, items, 4, sampling, pool, prompts_per_call=per_call, progress=False)
                  for per_call in (64, 5)]
    whole, split = (s.to_json() for s in scores)
    whole.pop("samples_per_s"), split.pop("samples_per_s")
    assert len(set(whole["item_scores"].values())) > 1
    assert whole == split
