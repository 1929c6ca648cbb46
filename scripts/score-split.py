"""Scoring time per suite for one tiny prorl step's worth of responses (512 = 16 prompts x 16 x ...):
each suite's items' reference targets as responses, through the same ScorerPool as training."""
import statistics
import time

from harness.config import load_config
from harness.execution.bounded import ScorerPool
from suites import build_suite

cfg = load_config("tiny")
per = 512 // 3
with ScorerPool(cfg.scoring.workers, cfg.scoring.timeout_s) as pool:
    for name in cfg.suites.enabled:
        suite = build_suite(name, cfg.suites, cfg.seed)
        items = suite.items("train", per, unique=True)
        calls = [(it.target, it.reference) for it in items]
        pool.map(suite.scorer, calls[:8], suite.scorer_timeout_s)
        times = []
        for _ in range(3):
            t = time.monotonic()
            pool.map(suite.scorer, calls, suite.scorer_timeout_s)
            times.append(time.monotonic() - t)
        m = statistics.median(times)
        print(f"{name}: {len(calls)} responses in {m:.3f} s ({len(calls)/m:.0f}/s), {cfg.scoring.workers} workers")
