"""Where the hf engine's generation time goes: tiny base, 1,024 fixed-length samples of 32 tokens,
2 threads, torch profiler, ops by self CPU time. Arguments: N (default 512) and the prompt length
in tokens (default: as the prompts are, ~40; 220 lengthens them as `bench rollout --prompt-tokens`)."""
import sys

from torch.profiler import ProfilerActivity, profile

from harness.checkpoint import render_prompt
from harness.config import load_config
from harness.jobs.bench import lengthen, load_base
from harness.rollout import SamplingParams, make_engine
from suites import build_suite

cfg = load_config("tiny")
model, tok = load_base(cfg)
engine = make_engine(cfg.rollout, model, tok)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 512
length = int(sys.argv[2]) if len(sys.argv) > 2 else 0
items = build_suite("math", cfg.suites, cfg.seed).items("eval", 1024 // n)
prompts = [render_prompt(tok, lengthen(tok, it.prompt, length) if length else it.prompt) for it in items]
sp = SamplingParams(temperature=1.0, max_new_tokens=32, seed=0, stop_token_ids=())
engine.generate(prompts, n, sp)
with profile(activities=[ProfilerActivity.CPU]) as prof:
    r = engine.generate(prompts, n, sp)
print(f"N={n}, {len(prompts)} prompts, prompt length {length or 'as is'}: {r.samples_per_s:.0f} samples/s under the profiler")
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=40))
