"""The profile's training and validation items in verl's parquet layout.

One row per item, the columns verl's `RLHFDataset` and reward loop read:
- `data_source`: the suite (`math`, `code`, `reasoning_gym`): the reward module picks the scorer by it;
- `prompt`: the chat messages, one user turn with the suite's prompt (verl applies the model's chat
  template, as the harness does with `render_prompt`);
- `ability`: the suite again (verl's convention);
- `reward_model`: `{"style": "rule", "ground_truth": <the item's reference as JSON, tuples, fractions
  and the like tagged so that they come back as they were: harness/backends/verl/references.py>}`;
- `extra_info`: the item id and task, and how to score it: the scorer function (`module:name`) and
  its keyword arguments (JSON), and the wall-clock bound of one call. A row carries everything its
  reward needs, so a reward worker on any node scores it without the profile.

The training rows are the suites' `train` split (`train.prompt_pool` items per suite, the same
items the in-process trainer draws from, deduplicated against the evaluation sets where the suite's
training data says so); validation rows are the `validation` split.
"""

from __future__ import annotations

import functools
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from harness.backends.verl import references
from harness.checkpoint import render_prompts
from harness.config import Config, ConfigError
from harness.runs import write_bytes_atomic
from suites import build_suite


def scorer_spec(scorer) -> tuple[str, dict]:
    """(`module:qualified name`, keyword arguments) of a suite's scorer: a module-level function,
    or a functools.partial of one with keyword arguments only."""
    kwargs: dict = {}
    if isinstance(scorer, functools.partial):
        if scorer.args:
            raise ValueError(f"scorer {scorer!r} binds positional arguments; the verl rows carry keywords only")
        kwargs = dict(scorer.keywords)
        scorer = scorer.func
    return f"{scorer.__module__}:{scorer.__qualname__}", kwargs


def rows(cfg: Config, suites: list, split: str, per_suite: int) -> list[dict]:
    """verl rows of the first `per_suite` items of `split` of each suite (built from `cfg`)."""
    out = []
    for suite in suites:
        name = suite.name
        scorer, kwargs = scorer_spec(suite.scorer)
        bound = suite.scorer_timeout_s or cfg.scoring.timeout_s
        for index, item in enumerate(suite.items(split, per_suite)):
            try:
                truth = references.encode(item.reference)
            except TypeError as exc:
                raise ConfigError(f"suite {name}: item {item.id}'s reference cannot be written for verl: {exc}") from exc
            out.append({
                "data_source": name,
                "prompt": [{"role": "user", "content": item.prompt}],
                "ability": name,
                "reward_model": {"style": "rule", "ground_truth": truth},
                "extra_info": {"index": index, "split": split, "item_id": item.id, "task": item.task,
                               "scorer": scorer, "scorer_kwargs": json.dumps(kwargs), "timeout_s": float(bound)},
            })
    return out


def write_parquet(records: list[dict], path: Path) -> Path:
    """`records` as one parquet file, written atomically."""
    import pyarrow as pa  # lazy: pyarrow (via datasets) loads only when a verl job is written
    import pyarrow.parquet as pq  # lazy: as above

    if not records:
        raise ConfigError(f"no rows for {path.name}: the profile's suites gave an empty split")
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(records), buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def overlong_prompts(records: list[dict], model: str, limit: int) -> str:
    """One line on the rows verl will drop: prompts longer than `limit` tokens under `model`'s chat
    template (verl's `filter_overlong_prompts` counts `apply_chat_template(..., tokenize=True)`), by
    domain and task. Counted only where the model's tokenizer can be read; the line says when not."""
    try:
        from transformers import AutoTokenizer  # lazy: only the dry run's count needs a tokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
    except Exception as exc:  # offline hub id, a folder without a tokenizer: many exception types
        return (f"prompt lengths NOT counted (the tokenizer of {model} cannot be read here: {type(exc).__name__}); "
                f"verl drops the rows whose prompt exceeds {limit} tokens")
    texts = render_prompts(tokenizer, [r["prompt"][0]["content"] for r in records])
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    over = Counter(f"{r['data_source']}/{r['extra_info']['task']}" for r, n in zip(records, lengths) if n > limit)
    if not over:
        return f"every prompt fits in {limit} tokens (longest {max(lengths)}, {model}'s chat template)"
    worst = ", ".join(f"{task} {count}" for task, count in over.most_common(8))
    return (f"{sum(over.values())} of {len(records)} prompts exceed {limit} tokens with {model}'s chat template and "
            f"will be dropped by verl (longest {max(lengths)}): {worst}{', ...' if len(over) > 8 else ''}")


@dataclass(frozen=True)
class DataFiles:
    """What `write_data` wrote."""

    train: Path
    """train.parquet."""
    validation: Path
    """val.parquet."""
    counts: dict[str, int]
    """Rows of each: {"train": ..., "validation": ...}."""
    prompt_note: str
    """`overlong_prompts` of the training rows ("" when no model was given)."""


def write_data(cfg: Config, folder: Path, prompt_limit: int, validation_items: int = 8,
               model: str | None = None) -> DataFiles:
    """train.parquet and val.parquet under `folder`; with `model`, how many training prompts exceed
    verl's `prompt_limit` under its tokenizer."""
    suites = [build_suite(name, cfg.suites, cfg.seed, cfg.resolved_cache_dir()) for name in cfg.suites.enabled]  # loaded once for both splits
    train = rows(cfg, suites, "train", cfg.train.prompt_pool)
    val = rows(cfg, suites, "validation", validation_items)
    return DataFiles(write_parquet(train, folder / "train.parquet"), write_parquet(val, folder / "val.parquet"),
                     {"train": len(train), "validation": len(val)},
                     overlong_prompts(train, model, prompt_limit) if model else "")
