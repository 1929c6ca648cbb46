import pytest

from harness.config import ConfigError, load_config
from suites import build_suite
from suites.reasoning_gym import ReasoningGymSuite, score

TASKS = [
    ("chain_sum", {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2}),
    ("count_bits", {"min_n": 1, "max_n": 1023}),
]


@pytest.fixture(scope="module")
def suite():
    return ReasoningGymSuite(TASKS, seed=0)


def test_right_answer_in_tags_scores_one(suite):
    item = suite.items("eval", 4)[0]
    answer = item.reference["answer"]
    result = score(f"Let me think. <answer>{answer}</answer>", item.reference)
    assert result.reward == 1.0 and result.status == "correct" and result.extracted == answer
    assert suite.score(f"<answer> {answer} </answer>", item).reward == 1.0


def test_wrong_answer_scores_zero(suite):
    item = suite.items("eval", 4)[0]
    wrong = str(int(item.reference["answer"]) + 1)
    result = score(f"<answer>{wrong}</answer>", item.reference)
    assert result.reward == 0.0 and result.status == "wrong"


def test_right_answer_in_prose_outside_the_tags_scores_zero(suite):
    item = suite.items("eval", 4)[0]
    answer = item.reference["answer"]
    # reasoning-gym's own score_answer on this raw text gives partial credit: the trap we avoid
    prose = f"The answer is {answer}, I am sure the result equals {answer}."
    result = score(prose, item.reference)
    assert result.reward == 0.0 and result.status == "no_answer"
    assert score(prose + " <answer>nothing</answer>", item.reference).reward == 0.0


def test_last_answer_tag_counts(suite):
    item = suite.items("eval", 4)[0]
    answer = item.reference["answer"]
    assert score(f"<answer>0x</answer> no wait <answer>{answer}</answer>", item.reference).reward == 1.0


def test_prompts_ask_for_answer_tags_and_targets_score_one(suite):
    for item in suite.items("train", 20):
        assert "<answer></answer>" in item.prompt
        assert score(item.target, item.reference).reward == 1.0


def test_splits_never_share_a_question_and_are_deterministic(suite):
    train = {i.reference["question"] for i in suite.items("train", 4000)}
    val = {i.reference["question"] for i in suite.items("validation", 40)}
    held = suite.items("eval", 200)
    eval_q = {i.reference["question"] for i in held}
    assert len(eval_q) == 200  # unique
    assert not train & eval_q and not train & val and not val & eval_q
    again = ReasoningGymSuite(TASKS, seed=0).items("eval", 200)
    assert [i.prompt for i in again] == [i.prompt for i in held]
    other_seed = ReasoningGymSuite(TASKS, seed=1).items("eval", 200)
    assert [i.prompt for i in other_seed] != [i.prompt for i in held]
    assert {i.task for i in held} == {"chain_sum", "count_bits"}


@pytest.mark.parametrize("workers", [1, 2])
def test_too_small_question_space_is_a_clear_error(workers):
    small = ReasoningGymSuite([("count_bits", {"min_n": 1, "max_n": 8}), TASKS[0]], seed=0, workers=workers)
    with pytest.raises(ConfigError, match="count_bits' yields only"):
        small.items("eval", 100)


def test_profile_builds_the_suite():
    cfg = load_config("smoke")
    suite = build_suite("reasoning_gym", cfg.suites, cfg.seed)
    items = suite.items("eval", 10)
    assert len(items) == 10 and all(i.id.startswith("reasoning_gym/") for i in items)


def test_generators_that_write_files_leave_nothing_in_the_working_directory(tmp_path, monkeypatch):
    """Some prorl96 generators write files into the current directory; item generation runs them in a
    scratch directory and comes back to the caller's."""
    import os

    import suites.reasoning_gym as rg

    class Writing:
        def __init__(self, seed):
            self.seed = seed

        def __getitem__(self, idx):
            with open("simulation_data.txt", "w") as f:  # what the real generators do
                f.write("x")
            return {"question": f"q{self.seed}-{idx}", "answer": "1", "metadata": {}}

    monkeypatch.setattr(rg.reasoning_gym, "create_dataset", lambda name, seed, size, **kw: Writing(seed))
    monkeypatch.chdir(tmp_path)
    scratch_dirs = []
    real_mkdtemp = rg.tempfile.mkdtemp
    monkeypatch.setattr(rg.tempfile, "mkdtemp", lambda *a, **k: scratch_dirs.append(real_mkdtemp(*a, **k)) or scratch_dirs[-1])
    draws = rg.task_generator("chain_sum", {})(0)
    first = [next(draws) for _ in range(3)]
    assert [d.question for d in first] == ["q0-0", "q0-1", "q0-2"]
    assert os.getcwd() == str(tmp_path) and list(tmp_path.iterdir()) == []
    assert len(scratch_dirs) == 1 and os.listdir(scratch_dirs[0]) == ["simulation_data.txt"]
    draws.close()  # the stream's end removes its scratch directory
    assert not os.path.exists(scratch_dirs[0])


def test_a_small_task_gives_every_heldout_question_it_has():
    """Under prorl96 a task with fewer distinct held-out questions than its share (tower_of_hanoi: 90 in
    all, 16 of them eval at heldout 0.3) gives those, and the other tasks their full share."""
    chain_sum = TASKS[0]
    suite = ReasoningGymSuite([("tower_of_hanoi", {}), chain_sum], seed=0,
                              small_tasks=frozenset({"tower_of_hanoi"}))
    items = suite.items("eval", 200)
    by_task = {t: [i for i in items if i.task == t] for t in ("tower_of_hanoi", "chain_sum")}
    assert len(by_task["tower_of_hanoi"]) == 16 and len(by_task["chain_sum"]) == 100
    assert len({i.reference["question"] for i in by_task["tower_of_hanoi"]}) == 16
    with pytest.raises(ConfigError, match="tower_of_hanoi' yields only 16 distinct eval"):
        ReasoningGymSuite([("tower_of_hanoi", {}), chain_sum], seed=0).items("eval", 200)


def test_prorl96_marks_its_small_tasks_and_takes_its_workers():
    cfg = load_config("prorlv2-1.5b")
    suite = build_suite("reasoning_gym", cfg.suites, cfg.seed)
    assert len(suite.tasks) == 96 and suite.small_tasks == {"tower_of_hanoi"}
    assert cfg.suites.reasoning_gym.workers == 0 and suite.workers >= 1


def test_fewer_items_than_tasks_gives_that_many():
    """A split asked for fewer items than the suite has tasks gives exactly that many (the tasks with a
    share of 0 give none, and draw nothing)."""
    assert len(ReasoningGymSuite(TASKS, seed=0).items("eval", 1)) == 1
    assert len(ReasoningGymSuite(TASKS, seed=0).items("train", 3)) == 3


def test_items_made_in_worker_processes_are_the_same():
    one = ReasoningGymSuite(TASKS, seed=3)
    two = ReasoningGymSuite(TASKS, seed=3, workers=2)
    for split, n in (("train", 41), ("eval", 20)):
        a, b = one.items(split, n), two.items(split, n)
        assert [(i.id, i.prompt, i.reference, i.target) for i in a] == [(i.id, i.prompt, i.reference, i.target) for i in b]


def test_worker_processes_work_from_a_script_without_a_main_guard(tmp_path):
    """A user's script that builds items at module level (no `if __name__ == "__main__"`) still works:
    the workers do not re-run the caller's main module."""
    import subprocess
    import sys

    script = tmp_path / "build_items.py"
    script.write_text(
        "from suites.reasoning_gym import ReasoningGymSuite\n"
        f"items = ReasoningGymSuite({TASKS!r}, seed=0, workers=2).items('train', 10)\n"
        "print(len(items))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "10", done.stderr
