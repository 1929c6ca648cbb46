"""verl's file-logger lines -> the harness's metrics.jsonl rows.

verl's `file` logger writes one JSON line per step, `{"step": k, "data": {metric: value}}`
(`VERL_FILE_LOGGER_PATH`; verl 0.9.1's `verl/utils/tracking.py` `FileLogger`, which opens the file
with "wb": each verl invocation starts its file anew). A run chained in segments
(harness/backends/verl/compile.py, `train.ref_reset_every`) has one file per segment, read in step
order by `read_segment_logs`; a segment run again after a failure keeps its earlier attempts' files
(segment<k>.attempt<j>.jsonl), and a later attempt's steps replace the earlier ones from its first
step on (verl resumed at its last save and ran those steps again).

The keys are read, not assumed: `REQUIRED` are the keys the rows need, and a step that lacks one is
an error naming the key, the file and the step (a missing step time would make the wall clock 0 and
no budget point would ever be reached). `OPTIONAL` are the keys verl writes only sometimes, each
with what its absence means. The rows the harness's report reads (harness/runs.py,
report/summary.py) are built from them:

- step: `step`;
- reward_mean: `critic/score/mean` (the kept samples; verl does not log the evicted groups' rewards);
- ds_pass_rate: kept / generated groups, kept = `data.train_batch_size` prompts plus
  `training/filter_groups/discarded_surplus_samples`, generated = kept + `training/filter_groups/evicted_samples`.
  verl 0.9.1's replay buffer counts both in GROUPS (prompt uids: `len(dapo_uids)`, surplus prompt
  uids), whatever the names say, and writes them only when it evicted or discarded one;
- samples_generated: running sum of generated groups x n (the refills counted as verl counts them);
- gen_s, gen_samples_per_s: `timing_s/gen` (verl's v1 timer around waiting for the step's groups:
  generation, with the reward computed as responses stream in); samples/s = generated samples /
  gen_s. Not `perf/throughput` (all tokens of the step per GPU-second);
- mean_response_tokens: `response_length/mean` (kept samples);
- train_s: `timing_s/update_actor` + `timing_s/old_log_prob` + `timing_s/ref` (those present);
- step_s, wall_s: `timing_s/step` and its running sum;
- tokens_generated: running sum of kept samples x mean response length (the evicted samples'
  tokens are not logged: a lower bound);
- loss, clip_frac, kl, entropy, lr: `actor/pg_loss`, `actor/pg_clipfrac`, `actor/kl_loss`,
  `actor/entropy`, `actor/lr` (None when absent);
- score_failures: (`timeout` + `scorer_error` means) x kept samples, the reward module's extra keys.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from harness.config import ConfigError


def read_verl_log(path: Path, torn_ok: bool = False) -> list[tuple[int, dict]]:
    """(step, metrics) per line of a verl file-logger file; a malformed line is one clear error.
    `torn_ok`: a malformed LAST line is left out (the file is being written: the watcher)."""
    out = []
    lines = Path(path).read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            out.append((int(record["step"]), dict(record["data"])))
        except (ValueError, KeyError, TypeError) as exc:
            if torn_ok and number == len(lines):
                break
            raise ConfigError(f"'{path}' line {number} is not a verl file-logger record "
                              f"({{\"step\": k, \"data\": {{...}}}}): {exc}") from exc
    return out


def attempt_files(path: Path) -> list[Path]:
    """A segment's file-logger files in the order they were written: its earlier attempts'
    (segment<k>.attempt<j>.jsonl, j = 1, 2, ...) then the current one, those that exist."""
    path = Path(path)
    earlier = sorted(path.parent.glob(f"{path.stem}.attempt*.jsonl"),
                     key=lambda p: int(p.name[len(path.stem) + len(".attempt"):-len(".jsonl")] or 0))
    return [*earlier, *([path] if path.is_file() else [])]


def next_attempt(path: Path) -> Path | None:
    """Keep a segment's file-logger file before verl runs the segment again (verl opens it with
    "wb"): renamed to the next free segment<k>.attempt<j>.jsonl, which is returned; None when there
    is no file (or an empty one, removed)."""
    path = Path(path)
    if not path.is_file():
        return None
    if not path.read_text().strip():
        path.unlink()
        return None
    j = len(attempt_files(path))  # the earlier ones and this one
    target = path.parent / f"{path.stem}.attempt{j}.jsonl"
    path.rename(target)
    return target


def read_segment_logs(segments: list[tuple[int, int, Path]], torn_ok: bool = False) -> list[tuple[int, dict]]:
    """(step, metrics) of a run chained in segments, in step order: `segments` is (first step, last
    step, file-logger file) per segment in chain order. A segment that has not run yet has no file;
    one that ran after it has no place (the chain runs in order) and is an error, as is a record
    outside its segment's steps (a file from another chain), a step logged twice in one file, or a
    step without a `REQUIRED` key. A segment's later attempt replaces its earlier ones' steps from
    its own first step on (`attempt_files`)."""
    records: list[tuple[int, dict]] = []
    missing = None
    for first, last, path in segments:
        files = attempt_files(path)
        if not files:
            missing = missing or path
            continue
        if missing is not None:
            raise ConfigError(f"'{path}' exists but '{missing}', of an earlier segment, does not: the segments run "
                              "in order, so these files are not one chain's")
        kept: dict[int, dict] = {}
        for file in files:
            got = read_verl_log(file, torn_ok=torn_ok and file == files[-1])
            twice = sorted(step for step, count in Counter(step for step, _ in got).items() if count > 1)
            if twice:
                raise ConfigError(f"verl logged step(s) {twice} twice in '{file}'")
            for step, _ in got:
                if not first <= step <= last:
                    raise ConfigError(f"'{file}' logs step {step}, outside its segment's steps {first}-{last}: "
                                      "it is not this chain's file")
            check_required(got, str(file))
            if got:
                resumed_at = min(step for step, _ in got)
                kept = {step: data for step, data in kept.items() if step < resumed_at}
                kept.update(dict(got))
        records += sorted(kept.items())
    return sorted(records, key=lambda record: record[0])


REQUIRED = {
    "timing_s/step": "step time (the wall clock of a wall_s budget)",
    "timing_s/gen": "generation time (gen_s, generation throughput)",
    "response_length/mean": "tokens (mean response length of the kept samples)",
    "critic/score/mean": "pass rate (mean reward of the kept samples)",
}
"""The keys every step of a verl run must log, with what the harness makes of them."""

OPTIONAL = {
    "training/filter_groups/evicted_samples": "absent: no group evicted that step (verl writes it only then): 0",
    "training/filter_groups/discarded_surplus_samples": "absent: no surplus group discarded that step: 0",
    "timing_s/update_actor": "absent: not counted in train_s",
    "timing_s/old_log_prob": "absent: not counted in train_s (rollout log-probs reused)",
    "timing_s/ref": "absent: not counted in train_s (no reference pass: kl_coef 0)",
    "actor/pg_loss": "absent: loss None",
    "actor/pg_clipfrac": "absent: clip_frac None",
    "actor/kl_loss": "absent: kl None (no KL loss)",
    "actor/entropy": "absent: entropy None",
    "actor/lr": "absent: lr None",
    "reward_extra_info/timeout/mean": "absent: no scorer timeout counted (also read as timeout/mean)",
    "reward_extra_info/scorer_error/mean": "absent: no scorer error counted (also read as scorer_error/mean)",
}
"""Keys read when present, with what their absence means."""


def check_required(records: list[tuple[int, dict]], source: str) -> None:
    """A `MetricsError` for the first step of `records` that lacks a `REQUIRED` key."""
    for step, data in records:
        for key, what in REQUIRED.items():
            if key not in data:
                raise MetricsError(f"verl did not log '{key}' ({what}) at step {step} of '{source}': the harness cannot "
                                   "read this run's spend without it (is trainer.logger's file logger verl 0.9's?)")


class MetricsError(ConfigError):
    """verl's metrics lack a key the harness needs (named with the file and the step)."""


def harness_rows(records: list[tuple[int, dict]], n: int, prompts_per_step: int, source: str = "verl's metrics") -> list[dict]:
    """The harness's metrics rows of a verl run of an arm with `n` samples x `prompts_per_step` prompts;
    `source` names the file(s) in the error for a missing `REQUIRED` key."""
    check_required(records, source)
    rows = []
    wall = 0.0
    samples_total = 0
    tokens_total = 0.0
    for step, d in sorted(records, key=lambda record: record[0]):
        kept = n * prompts_per_step
        surplus = float(d.get("training/filter_groups/discarded_surplus_samples", 0.0))  # groups
        evicted = float(d.get("training/filter_groups/evicted_samples", 0.0))  # groups
        groups = prompts_per_step + surplus + evicted
        generated = groups * n
        gen_s = float(d["timing_s/gen"])
        step_s = float(d["timing_s/step"])
        mean_tokens = float(d["response_length/mean"])
        wall += step_s
        samples_total += int(round(generated))
        tokens_total += kept * mean_tokens
        failures = (float(d.get("reward_extra_info/timeout/mean", d.get("timeout/mean", 0.0)))
                    + float(d.get("reward_extra_info/scorer_error/mean", d.get("scorer_error/mean", 0.0)))) * kept
        rows.append({
            "step": step,
            "reward_mean": float(d["critic/score/mean"]),
            "ds_pass_rate": (prompts_per_step + surplus) / groups,
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
