"""verl's file-logger lines -> the harness's metrics.jsonl rows.

verl's `file` logger writes one JSON line per step, `{"step": k, "data": {metric: value}}`
(`VERL_FILE_LOGGER_PATH`; verl 0.9.1's `verl/utils/tracking.py` `FileLogger`, which opens the file
with "wb": each verl invocation starts its file anew). A run chained in segments
(harness/backends/verl/compile.py, `train.ref_reset_every`) has one file per segment, read in step
order by `read_segment_logs`. The rows the harness's report reads (harness/runs.py,
report/summary.py) are built from them:

- step: `step`;
- reward_mean: `critic/score/mean` (the kept samples; verl does not log the evicted groups' rewards);
- ds_pass_rate: kept / (kept + evicted) samples, kept = `data.train_batch_size` x n plus
  `training/filter_groups/discarded_surplus_samples`, evicted = `training/filter_groups/evicted_samples`;
- gen_s, gen_samples_per_s: `timing_s/gen` (verl's v1 timer around waiting for the step's groups:
  generation, with the reward computed as responses stream in); samples/s = generated samples /
  gen_s. Not `perf/throughput` (all tokens of the step per GPU-second);
- mean_response_tokens: `response_length/mean` (kept samples);
- train_s: `timing_s/update_actor` + `timing_s/old_log_prob` + `timing_s/ref`;
- step_s, wall_s: `timing_s/step` and its running sum;
- samples_generated, tokens_generated: running sums of generated samples and of kept samples x mean
  response length (the evicted samples' tokens are not logged: a lower bound);
- loss, clip_frac, kl, entropy: `actor/pg_loss`, `actor/pg_clipfrac`, `actor/kl_loss`, `actor/entropy`;
- score_failures: (`timeout` + `scorer_error` means) x kept samples, the reward module's extra keys.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.config import ConfigError


def read_verl_log(path: Path) -> list[tuple[int, dict]]:
    """(step, metrics) per line of a verl file-logger file; a malformed line is one clear error."""
    out = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out.append((int(record["step"]), dict(record["data"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"'{path}' line {number} is not a verl file-logger record "
                              f"({{\"step\": k, \"data\": {{...}}}}): {exc}") from exc
    return out


def read_segment_logs(segments: list[tuple[int, int, Path]]) -> list[tuple[int, dict]]:
    """(step, metrics) of a run chained in segments, in step order: `segments` is (first step, last
    step, file-logger file) per segment in chain order. A segment that has not run yet has no file;
    one that ran after it has no place (the chain runs in order) and is an error, as is a record
    outside its segment's steps (a file from another chain) or a step logged twice."""
    records: list[tuple[int, dict]] = []
    missing = None
    for first, last, path in segments:
        if not Path(path).is_file():
            missing = missing or path
            continue
        if missing is not None:
            raise ConfigError(f"'{path}' exists but '{missing}', of an earlier segment, does not: the segments run "
                              "in order, so these files are not one chain's")
        for step, data in read_verl_log(path):
            if not first <= step <= last:
                raise ConfigError(f"'{path}' logs step {step}, outside its segment's steps {first}-{last}: "
                                  "it is not this chain's file")
            records.append((step, data))
    twice = sorted(step for step, count in Counter(step for step, _ in records).items() if count > 1)
    if twice:
        raise ConfigError(f"verl logged step(s) {twice} twice in {[str(p) for _, _, p in segments]}")
    return sorted(records, key=lambda record: record[0])


def harness_rows(records: list[tuple[int, dict]], n: int, prompts_per_step: int) -> list[dict]:
    """The harness's metrics rows of a verl run of an arm with `n` samples x `prompts_per_step` prompts."""
    rows = []
    wall = 0.0
    samples_total = 0
    tokens_total = 0.0
    for step, d in sorted(records):
        kept = n * prompts_per_step
        surplus = float(d.get("training/filter_groups/discarded_surplus_samples", 0.0))
        evicted = float(d.get("training/filter_groups/evicted_samples", 0.0))
        generated = kept + surplus + evicted
        gen_s = float(d.get("timing_s/gen", 0.0))
        step_s = float(d.get("timing_s/step", 0.0))
        mean_tokens = float(d.get("response_length/mean", 0.0))
        wall += step_s
        samples_total += int(round(generated))
        tokens_total += kept * mean_tokens
        failures = (float(d.get("reward_extra_info/timeout/mean", d.get("timeout/mean", 0.0)))
                    + float(d.get("reward_extra_info/scorer_error/mean", d.get("scorer_error/mean", 0.0)))) * kept
        rows.append({
            "step": step,
            "reward_mean": d.get("critic/score/mean"),
            "ds_pass_rate": (kept + surplus) / generated if generated else None,
            "kept_groups": prompts_per_step,
            "samples_generated": samples_total,
            "tokens_generated": int(tokens_total),
            "gen_s": gen_s,
            "gen_samples_per_s": generated / gen_s if gen_s > 0 else 0.0,
            "mean_response_tokens": mean_tokens,
            "score_failures": int(round(failures)),
            "train_s": sum(float(d.get(k, 0.0)) for k in ("timing_s/update_actor", "timing_s/old_log_prob", "timing_s/ref")),
            "step_s": step_s,
            "wall_s": wall,
            "loss": d.get("actor/pg_loss"),
            "clip_frac": d.get("actor/pg_clipfrac"),
            "kl": d.get("actor/kl_loss"),
            "entropy": d.get("actor/entropy"),
            "lr": d.get("actor/lr"),
            "backend": "verl",
        })
    return rows
