"""lm-eval integration (suites/lm_eval_tasks/): offline, end to end, on a tiny checkpoint.

lm-eval runs a math task (AIME24 from ../shared/data) and the reasoning-gym task with `repeats` k
through its `hf` model and the chat template, on a tiny Qwen2 checkpoint written by
save_pretrained. From the logged samples the test checks that each problem got the harness's
prompt and that every one of its k responses was scored by OUR scorer and averaged (lm-eval's
default filter, `take_first`, would score only the first).

So that this check can fail, the model's own text is kept for some repeats and replaced by a
correct answer for others (a random tiny model never answers right): "first response only" then
gives a different number than the mean over all k.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "suites" / "lm_eval_tasks"
DATA = SHARED_DATA
AIME24 = DATA / "math" / "aime24.jsonl"
CODEFORCES = DATA / "code" / "codeforces.jsonl"


def _no_data(path: Path) -> str:
    return f"no local benchmark data: {path} is absent (../shared/data is not checked out next to the repository)"


K = 4
LIMIT = 4
RG_PROFILE = "smoke"
RG_ITEMS = 3  # fewer reasoning-gym documents than math ones, so a size-weighted group mean would differ
MAX_GEN_TOKS = 12
METRIC = "pass@1,all_samples"
GROUP = "rsh_test_group"

# Repeats whose text is replaced by a correct answer, per suite (0 is always the model's own, so
# take_first would see only model text); the two suites differ so that their metrics differ.
CORRECT_REPEATS = {"math": {1, 3}, "reasoning_gym": {2}}
CORRECT_TEXT = {
    "math": lambda doc: f"Adding it up, the answer is \\boxed{{{doc['answer']}}}.",
    "reasoning_gym": lambda doc: f"<answer>{doc['answer']}</answer>",
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model, tokenizer):
    path = tmp_path_factory.mktemp("tiny_checkpoint")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def run(checkpoint, tmp_path_factory):
    """One lm-eval run of a test group: rsh_aime24 (when the data is there) and rsh_reasoning_gym,
    each with repeats=K, unweighted group mean. Returns (results, generated, checkpoint):
    `generated` maps (task, doc_id) to the model's own K texts, before any replacement."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_DATASETS_OFFLINE", "1")
        return _run_lm_eval(checkpoint, tmp_path_factory)


def _run_lm_eval(checkpoint, tmp_path_factory):
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    members = (["rsh_aime24"] if AIME24.is_file() else []) + ["rsh_reasoning_gym"]
    extra = tmp_path_factory.mktemp("lm_eval_tasks")
    (extra / f"{GROUP}.yaml").write_text(
        f"group: {GROUP}\ntask:\n"
        + "".join(f"  - task: {name}\n    repeats: {K}\n" for name in members)
        + "aggregate_metric_list:\n  - metric: pass@1\n    filter_list: all_samples\n"
        "    aggregation: mean\n    weight_by_size: false\n"
    )
    metadata = {"profile": RG_PROFILE, "items": RG_ITEMS}
    if AIME24.is_file():
        metadata["data_dir"] = str(DATA)
    # include_defaults=False: indexing lm-eval's thousands of own tasks takes ~20 s here.
    manager = TaskManager(include_path=[str(TASKS_DIR), str(extra)], include_defaults=False, metadata=metadata)

    lm = HFLM(pretrained=str(checkpoint), device="cpu", batch_size=32, max_length=2048)
    real_generate = lm.generate_until
    generated: dict[tuple[str, int], list[str]] = {}

    def generate_until(requests, disable_tqdm: bool = False):
        texts = real_generate(requests, disable_tqdm)
        repeat = Counter()
        for i, request in enumerate(requests):
            j = repeat[id(request)]
            repeat[id(request)] += 1
            task, doc_id, _ = request.metadata
            generated.setdefault((task, doc_id), []).append(texts[i])
            suite = request.doc["suite"]
            if j in CORRECT_REPEATS[suite]:
                texts[i] = CORRECT_TEXT[suite](request.doc)
        return texts

    lm.generate_until = generate_until
    results = simple_evaluate(
        model=lm,
        tasks=[GROUP],
        task_manager=manager,
        apply_chat_template=True,
        limit=LIMIT,
        gen_kwargs={"max_gen_toks": MAX_GEN_TOKS},
        log_samples=True,
        bootstrap_iters=0,
    )
    return results, generated, checkpoint


def _check_task(run, task: str, suite: str, expected: list[tuple[str, object]]) -> float:
    """`expected[doc_id]` = (the harness's prompt, our scorer of one response for that document).

    Every document got the harness's prompt in the checkpoint's chat template and K responses,
    all of them generated, all kept by the filter, and its metric is the mean of our scorer's
    rewards over all K; the task metric is the mean over documents. Returns the task metric."""
    from transformers import AutoTokenizer

    from harness.checkpoint import render_prompt

    results, generated, checkpoint = run
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    assert [s["doc_id"] for s in samples] == list(range(len(expected)))
    per_doc, first_only = [], []
    for sample, (prompt, score) in zip(samples, expected):
        (responses,) = sample["resps"]  # one request per document, answered K times
        assert len(responses) == K
        assert sample["filtered_resps"] == [responses], "the filter must keep all K responses"
        own = generated[(task, sample["doc_id"])]
        assert len(own) == K, "the model must have generated all K responses"
        assert [t for j, t in enumerate(responses) if j not in CORRECT_REPEATS[suite]] == \
            [t for j, t in enumerate(own) if j not in CORRECT_REPEATS[suite]]
        ((context, gen_kwargs),) = [tuple(args) for args in sample["arguments"]]
        assert context == render_prompt(tokenizer, prompt)
        assert gen_kwargs["until"] == [] and gen_kwargs["do_sample"] is True
        assert (gen_kwargs["temperature"], gen_kwargs["top_p"], gen_kwargs["max_gen_toks"]) == (0.6, 0.95, MAX_GEN_TOKS)
        rewards = [score(text).reward for text in responses]
        assert sample["pass@1"] == pytest.approx(sum(rewards) / K)
        per_doc.append(sum(rewards) / K)
        first_only.append(rewards[0])
    metric = results["results"][task][METRIC]
    assert metric == pytest.approx(sum(per_doc) / len(per_doc))
    assert metric > 0.0
    assert metric != pytest.approx(sum(first_only) / len(first_only)), "all K responses must count, not the first"
    return metric


def test_math_task_scores_every_repeat(run):
    if not AIME24.is_file():
        pytest.skip(_no_data(AIME24))
    from suites.math import format_prompt, score

    records = [json.loads(line) for line in AIME24.read_text(encoding="utf-8").splitlines() if line.strip()][:LIMIT]
    expected = [(format_prompt(r["problem"]), lambda text, answer=r["answer"]: score(text, answer)) for r in records]
    metric = _check_task(run, "rsh_aime24", "math", expected)
    assert metric >= len(CORRECT_REPEATS["math"]) / K


def test_reasoning_gym_task_scores_every_repeat(run):
    from harness.config import load_config
    from suites import build_suite
    from suites.reasoning_gym import score

    rg_cfg = load_config(RG_PROFILE)
    items = build_suite("reasoning_gym", rg_cfg.suites, rg_cfg.seed).items("eval", RG_ITEMS)
    expected = [(item.prompt, lambda text, entry=item.reference: score(text, entry)) for item in items]
    metric = _check_task(run, "rsh_reasoning_gym", "reasoning_gym", expected)
    assert metric >= len(CORRECT_REPEATS["reasoning_gym"]) / K


def test_group_is_the_unweighted_mean_of_its_tasks(run):
    if not AIME24.is_file():
        pytest.skip(_no_data(AIME24))
    results = run[0]["results"]
    math_metric, rg_metric = results["rsh_aime24"][METRIC], results["rsh_reasoning_gym"][METRIC]
    assert math_metric != pytest.approx(rg_metric)
    assert results[GROUP][METRIC] == pytest.approx((math_metric + rg_metric) / 2)
    weighted = (LIMIT * math_metric + RG_ITEMS * rg_metric) / (LIMIT + RG_ITEMS)
    assert results[GROUP][METRIC] != pytest.approx(weighted)


def test_shipped_tasks_and_groups():
    """All task names are indexed; rsh_math / rsh_code average their benchmarks unweighted, every
    task keeps all samples (filter all_samples) with the paper's sampling and stops only at EOS."""
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    benchmarks = {"rsh_math": ["aime24", "aime25", "amc", "math500", "minerva", "olympiadbench"],
                  "rsh_code": ["apps", "codecontests", "codeforces", "taco"]}
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
    tasks = [f"rsh_{b}" for names in benchmarks.values() for b in names] + ["rsh_reasoning_gym"]
    assert sorted(manager.all_subtasks) == sorted(tasks)
    assert sorted(manager.all_groups) == sorted(benchmarks)
    for group, names in benchmarks.items():
        cfg = load_yaml(TASKS_DIR / f"{group}.yaml", resolve_func=False)
        assert cfg["task"] == [f"rsh_{b}" for b in names]
        (agg,) = cfg["aggregate_metric_list"]
        assert (agg["metric"], agg["filter_list"], agg["weight_by_size"]) == ("pass@1", "all_samples", False)
    for name in tasks:
        cfg = load_yaml(TASKS_DIR / f"{name}.yaml")
        assert cfg["repeats"] == 16
        assert [f["name"] for f in cfg["filter_list"]] == ["all_samples"]
        gen = cfg["generation_kwargs"]
        assert (gen["until"], gen["do_sample"], gen["temperature"], gen["top_p"]) == ([], True, 0.6, 0.95)
        assert cfg.get("unsafe_code", False) == (name in {f"rsh_{b}" for b in benchmarks["rsh_code"]})


def test_code_task_scores_with_the_code_scorer():
    """A code benchmark read from the local files: a right program scores 1, a wrong one 0, and
    the document's metric is their mean (the sandbox runs them, as in training)."""
    if not CODEFORCES.is_file():
        pytest.skip(_no_data(CODEFORCES))
    from suites.code import format_prompt
    from suites.lm_eval_tasks import utils

    docs = utils.benchmark_dataset(suite="code", benchmark="codeforces", data_dir=str(DATA))["test"]
    first = json.loads(CODEFORCES.read_text(encoding="utf-8").splitlines()[0])
    doc = docs[0]
    assert doc["prompt"] == format_prompt(first["problem"])
    assert utils.unpack_reference(doc["reference"]) == first["tests"]
    right = ("```python\nt = int(input())\nfor _ in range(t):\n"
             "    x, y = map(int, input().split())\n    print(min(x, y), max(x, y))\n```")
    wrong = right.replace("min(x, y), max(x, y)", "x, y")
    assert utils.process_results(doc, [[right, wrong, right, "no code"]]) == {"pass@1": pytest.approx(0.5)}
