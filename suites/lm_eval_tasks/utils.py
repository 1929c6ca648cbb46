r"""lm-eval tasks scored by the harness's own scorers (the functions that give training rewards).

Each task gives the model the prompt the harness gives it (the suite's `format_prompt`, as the
only user turn of the model's chat template), samples k responses per problem (the paper's
protocol: k=16, temperature 0.6, top_p 0.95, up to 32k tokens, stop at the model's EOS) and scores
EVERY response with the suite's scorer (`suites.math.score`, `suites.code.score`,
`suites.reasoning_gym.score`, as `suites.build_suite` configures it) in the harness's bounded
worker pool (harness/execution/bounded.py). `pass@1` is the mean reward over a problem's k responses, then
over problems. lm-eval's default filter, `take_first`, would score only the first response; these
tasks use the filter `all_samples`, which keeps them all, so results read `pass@1,all_samples`.

Tasks: rsh_aime24 rsh_aime25 rsh_amc rsh_math500 rsh_minerva rsh_olympiadbench (group rsh_math),
rsh_apps rsh_codecontests rsh_codeforces rsh_taco (group rsh_code), rsh_reasoning_gym. A group is
the unweighted mean of its benchmarks.

    TASKS=$(python -m suites.lm_eval_tasks.utils)     # prints this folder
    lm_eval --model hf --model_args pretrained=CKPT,dtype=bfloat16 --device cuda:0 \
        --include_path "$TASKS" --tasks rsh_math --apply_chat_template \
        --batch_size auto --log_samples --output_path results/lm_eval

    # benchmarks from local files instead of the hub (a folder with math/ and code/, as
    # ../shared/data, or one holding <benchmark>.jsonl); or export RSH_DATA_DIR=...
    lm_eval ... --tasks rsh_math --metadata '{"data_dir": "../shared/data"}'

    # code runs model-written programs in the harness's sandbox: lm-eval wants a confirmation.
    # apps and taco have no local copy: with data_dir, run rsh_codeforces,rsh_codecontests.
    lm_eval ... --tasks rsh_code --confirm_run_unsafe_code

    # reasoning gym: the held-out items `harness eval --profile PROFILE` scores (default tiny);
    # a tiny checkpoint also needs the profile's response length (eval.max_new_tokens)
    lm_eval ... --tasks rsh_reasoning_gym --metadata '{"profile": "tiny"}' \
        --gen_kwargs max_gen_toks=64

--apply_chat_template is what makes the prompt the harness's. `--metadata` keys: data_dir
(benchmarks), profile (the harness profile: reasoning-gym items, scoring bounds), split (eval) and
items (reasoning gym; default: the profile's eval_items). `--gen_kwargs` overrides the sampling
settings of _rsh_common.yaml. lm-eval has no flag for k (`repeats: 16`): for another k, write a
small task YAML anywhere, e.g. `include: <TASKS>/rsh_aime24.yaml`, `task: my_aime24_k4`,
`repeats: 4`, and pass its path to --tasks.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import datasets

from harness.config import load_config
from harness.execution.bounded import shared_pool
from suites import build_suite

TASKS_DIR = Path(__file__).resolve().parent
"""This folder: what `lm_eval --include_path` needs."""

DATA_DIR_ENV = "RSH_DATA_DIR"
"""Environment variable naming a local data folder (like `--metadata '{"data_dir": ...}'`)."""

_PICKLED = "pickle:"

_POOL_TIMEOUT_S = 10.0
"""Default bound of the one scorer pool; unused, since every call passes its document's bound."""


# ----------------------------------------------------------------------------------------------
# Documents: one row per problem, with what the scorer needs packed into `reference`
# ----------------------------------------------------------------------------------------------


def _pack(reference: Any) -> str:
    """`reference` as a string column: JSON when that round-trips exactly, else pickled.

    Arrow would otherwise merge the differently shaped metadata dicts of reasoning-gym entries
    into one struct (adding None fields) and turn tuples into lists, so a scorer would not see
    what the harness gives it.
    """
    try:
        text = json.dumps(reference, ensure_ascii=False)
        if json.loads(text) == reference:
            return text
    except (TypeError, ValueError):
        pass
    return _PICKLED + base64.b64encode(pickle.dumps(reference, protocol=4)).decode("ascii")


def unpack_reference(text: str) -> Any:
    """What `_pack` stored: the exact reference the suite's scorer takes."""
    if text.startswith(_PICKLED):
        return pickle.loads(base64.b64decode(text[len(_PICKLED):]))
    return json.loads(text)


def _scorer_spec(fn) -> str:
    """A suite's scorer as JSON: the module-level function, plus the keyword arguments when the
    suite binds some with functools.partial (the code suite binds its per-test time limit)."""
    kwargs = {}
    if isinstance(fn, functools.partial):
        if fn.args:
            raise ValueError(f"cannot describe scorer {fn!r}: positional arguments are bound")
        fn, kwargs = fn.func, dict(fn.keywords)
    return json.dumps({"fn": f"{fn.__module__}:{fn.__qualname__}", "kwargs": kwargs}, sort_keys=True)


def _row(suite, item, scorer_spec: str, timeout_s: float, workers: int) -> dict:
    ref = item.reference
    answer = ref if isinstance(ref, str) else ref.get("answer", "") if isinstance(ref, dict) else ""
    return {
        "id": item.id,
        "suite": suite,
        "task": item.task,
        "prompt": item.prompt,
        "answer": str(answer),
        "reference": _pack(ref),
        "scorer": scorer_spec,
        "score_timeout_s": float(timeout_s),
        "score_workers": int(workers),
    }


def _dataset(suite_name: str, built, items, cfg):
    if not items:
        raise ValueError(f"suite '{suite_name}' gave no items to evaluate")
    spec = _scorer_spec(built.scorer)
    timeout_s = built.scorer_timeout_s or cfg.scoring.timeout_s
    rows = [_row(suite_name, item, spec, timeout_s, cfg.scoring.workers) for item in items]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


# ----------------------------------------------------------------------------------------------
# custom_dataset functions: lm-eval calls them with --metadata (plus the model args, each task's
# metadata and its dataset_kwargs) as keyword arguments, hence the **_.
# ----------------------------------------------------------------------------------------------


def procedural_dataset(suite: str = "reasoning_gym", profile: str = "tiny", split: str = "eval",
                       items: int | None = None, **_):
    """The items `harness eval --profile PROFILE` evaluates for `suite`: its held-out `split`, the
    profile's `eval_items` of them (or `items`), built by `suites.build_suite`."""
    cfg = load_config(str(profile))
    built = build_suite(suite, cfg.suites, cfg.seed)
    n = int(items) if items else getattr(cfg.suites, suite).eval_items
    return _dataset(suite, built, built.items(split, n), cfg)


def benchmark_dataset(suite: str, benchmark: str, data_dir: str | None = None, profile: str = "tiny", **_):
    """Every item of one math or code benchmark, as `harness eval` loads it (`suites.build_suite`
    with the suite's source set to `benchmarks`): from `data_dir` (--metadata) or $RSH_DATA_DIR
    when given (a folder holding `<benchmark>.jsonl`, or its parent with math/ and code/ as in
    shared/data), else from the hub ids in suites/<suite>.py BENCHMARKS. The profile only sets
    scoring bounds (the code suite's per-test limit, the per-call timeout)."""
    cfg = load_config(str(profile))
    suite_cfg = getattr(cfg.suites, suite)
    suite_cfg.source = "benchmarks"
    suite_cfg.benchmarks = [benchmark]
    suite_cfg.data_dir = _local_folder(suite, data_dir or os.environ.get(DATA_DIR_ENV) or "")
    suite_cfg.eval_items = 0  # every item; lm-eval's --limit caps them
    built = build_suite(suite, cfg.suites, cfg.seed)
    return _dataset(suite, built, built.items("eval", 0), cfg)


def _local_folder(suite: str, data_dir: str) -> str:
    if not data_dir:
        return ""
    folder = Path(data_dir).expanduser().resolve()
    if (folder / suite).is_dir():  # the shared/data layout: math/, code/
        folder = folder / suite
    if not folder.is_dir():
        raise FileNotFoundError(f"data_dir '{data_dir}' is not a folder")
    return str(folder)


# ----------------------------------------------------------------------------------------------
# Filter and scoring
# ----------------------------------------------------------------------------------------------


def keep_all_samples(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Filter that keeps every one of the k responses of each document (lm-eval's default
    `take_first` keeps only the first)."""
    return resps


def _scorer(spec: str):
    """The scorer `_scorer_spec` described; only functions of the `suites` package."""
    described = json.loads(spec)
    module_name, _, attr = described["fn"].partition(":")
    if not module_name.startswith("suites.") or not attr:
        raise ValueError(f"scorer '{described['fn']}' is not a harness scorer (suites.<module>:<function>)")
    fn = getattr(importlib.import_module(module_name), attr)
    return functools.partial(fn, **described["kwargs"]) if described["kwargs"] else fn


def score_responses(doc: dict, responses: list[str]) -> list:
    """`ScoreResult` of each response to `doc`: the suite's scorer in the harness's bounded worker
    pool, with the profile's bounds (a timeout or a scorer error is reward 0 with its status)."""
    scorer = _scorer(doc["scorer"])
    reference = unpack_reference(doc["reference"])
    pool = shared_pool(int(doc["score_workers"]), _POOL_TIMEOUT_S)
    return pool.map(scorer, [(r, reference) for r in responses], timeout_s=float(doc["score_timeout_s"]))


def process_results(doc: dict, results: list) -> dict[str, float]:
    """pass@1 of one document: the mean reward over ALL of its k responses.

    `results` holds one entry per request (one request per document): the list of its k
    responses, as the `all_samples` filter leaves it. A bare string means a filter reduced the k
    responses to one (lm-eval's default `take_first`): that is refused, not scored as if k were 1.
    """
    if len(results) != 1 or not isinstance(results[0], (list, tuple)):
        raise ValueError(
            "rsh tasks score every one of the k responses: keep the filter `all_samples` "
            f"(utils.keep_all_samples); got {type(results[0]).__name__ if results else 'nothing'} per request"
        )
    responses = [str(r) for r in results[0]]
    if not responses:
        return {"pass@1": math.nan}
    rewards = [s.reward for s in score_responses(doc, responses)]
    return {"pass@1": sum(rewards) / len(rewards)}


if __name__ == "__main__":
    print(TASKS_DIR)
