"""References written for verl come back as they were, for every prorl96 task, and the reward verl
computes from them is the in-process scorer's (without verl: `tox -e py`)."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from harness.backends.verl import references
from harness.backends.verl.data import rows
from harness.backends.verl.reward import compute_score
from harness.config import ConfigError, load_config
from suites.reasoning_gym import ReasoningGymSuite
from suites.reasoning_gym_tasks import PRORL_TASKS


def test_python_values_come_back_with_their_types():
    value = {
        "difficulty": {"rows": (2, 5), "nested": [(1, (2, 3)), {"x": (None,)}]},
        "possible_answer": {0: "red", 1: "blue"},
        "edges": [(0, 1), (1, 2)],
        "by_pair": {(0, 1): 3},
        "seen": {1, 2}, "frozen": frozenset({"a"}),
        "serving_fraction": Fraction(3, 4),
        "count": np.int64(7), "ratio": np.float32(0.5), "flag": np.bool_(True),
        "__py__": "a plain key that looks like the tag",
        "text": "ünïcode", "n": 3, "f": 1.5, "b": False, "none": None,
    }
    back = references.decode(references.encode(value))
    assert back == value and repr(back) == repr(value)
    assert type(back["count"]) is np.int64 and type(back["ratio"]) is np.float32
    plain = {"question": "q", "answer": "4", "metadata": {"source_dataset": "chain_sum", "tags": ["x"]}}
    assert json.loads(references.encode(plain)) == plain  # plain JSON stays plain


def test_a_value_of_no_supported_type_is_refused_by_name():
    with pytest.raises(TypeError, match="builtins.object"):
        references.encode({"x": [object()]})


def test_a_reference_that_cannot_be_written_is_one_config_error():
    cfg = load_config("smoke")

    class Suite:
        name = "reasoning_gym"
        scorer = staticmethod(compute_score)
        scorer_timeout_s = None

        def items(self, split, n):
            from suites.base import Item
            return [Item(id="reasoning_gym/t/train/0", task="t", prompt="p", reference={"x": object()}, target="")]

    with pytest.raises(ConfigError, match="reasoning_gym/t/train/0's reference cannot be written for verl"):
        rows(cfg, [Suite()], "train", 1)


@pytest.fixture(scope="module")
def prorl96_rows():
    """Two training items of each of the 96 tasks and their verl rows."""
    suite = ReasoningGymSuite([(name, {}) for name in PRORL_TASKS], seed=0)
    cfg = load_config("smoke")
    return suite, suite.items("train", 2 * len(PRORL_TASKS)), rows(cfg, [suite], "train", 2 * len(PRORL_TASKS))


def test_every_prorl96_reference_comes_back_exactly(prorl96_rows):
    _, items, out = prorl96_rows
    assert len(out) == len(items) == 192
    for item, row in zip(items, out):
        back = references.decode(row["reward_model"]["ground_truth"])
        assert repr(back) == repr(item.reference), item.id


def test_verl_reward_is_the_scorer_reward_on_every_prorl96_task(prorl96_rows):
    """The reference response of each item (and a wrong one) scores the same through verl's reward
    function, reading the row as verl hands it over, as through the suite's scorer."""
    suite, items, out = prorl96_rows
    for item, row in list(zip(items, out))[::2]:
        for response in (item.target, "<answer>certainly not this</answer>"):
            got = compute_score(data_source=row["data_source"], solution_str=response,
                                ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
            assert got["score"] == suite.score(response, item).reward, (item.id, response)
            assert got["timeout"] == 0.0 and got["scorer_error"] == 0.0, item.id
