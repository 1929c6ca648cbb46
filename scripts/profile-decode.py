"""Where the hf engine's decode time goes at the short prompt (~40 tokens), N=512, 1,024 fixed-length
samples of 32 tokens, tiny base, 2 threads: torch profiler, ops by self CPU time."""
from torch.profiler import ProfilerActivity, profile

from harness.checkpoint import render_prompt
from harness.config import load_config
from harness.jobs.bench import load_base
from harness.rollout import SamplingParams, make_engine
from harness.suites import build_suite

cfg = load_config("tiny")
model, tok = load_base(cfg)
engine = make_engine(cfg.rollout, model, tok)
items = build_suite("math", cfg.suites, cfg.seed).items("eval", 2)
prompts = [render_prompt(tok, it.prompt) for it in items]
sp = SamplingParams(temperature=1.0, max_new_tokens=32, seed=0, stop_token_ids=())
engine.generate(prompts, 512, sp)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    r = engine.generate(prompts, 512, sp)
print(f"{r.samples_per_s:.0f} samples/s under the profiler")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40))
