"""Items built once (suites/item_cache.py): cached items equal freshly built ones, references and
their Python types included; a second build is a cache hit that makes nothing; a truncated,
bit-flipped or stale entry is rebuilt with a log line, never used; the key holds what makes the
items and leaves out what does not. Real suites (the tiny tasks, a few Reasoning Gym datasets,
training data from a file), a cache in tmp_path."""

from __future__ import annotations

import json
import logging
from fractions import Fraction

import pytest

import suites.procedural
from harness.config import load_config
from suites import build_suite
from suites.base import Item
from suites.item_cache import ItemCache, read_entry
from tests.test_train_data import AIME, math_rows, write_jsonl

LOGGER = "suites.item_cache"


def lines(caplog) -> list[str]:
    out = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    caplog.clear()
    return out


def strict(items) -> list[str]:
    """What == does not see: the types inside references (Fraction(1, 2) == 0.5, (1, 2) != [1, 2] but
    both print), by their reprs."""
    return [repr(it) for it in items]


def tiny(overrides=()):
    return load_config("tiny", list(overrides))


def test_tiny_suites_cached_items_equal_fresh_ones_and_a_second_build_makes_none(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cfg = tiny()
    fresh = {(name, split): build_suite(name, cfg.suites, cfg.seed).items(split, 40)
             for name in ("math", "code") for split in ("train", "eval")}
    first = {(name, split): build_suite(name, cfg.suites, cfg.seed, tmp_path).items(split, 40) for name, split in fresh}
    assert first == fresh
    assert sum("built 40 items" in line for line in lines(caplog)) == 4
    monkeypatch.setattr(suites.procedural, "generate_items", lambda *a, **k: pytest.fail("generated on a cache hit"))
    second = {(name, split): build_suite(name, cfg.suites, cfg.seed, tmp_path).items(split, 40) for name, split in fresh}
    assert second == fresh and strict(second[("code", "eval")]) == strict(fresh[("code", "eval")])
    log = lines(caplog)
    assert len(log) == 4 and all("cache hit, 40 items" in line for line in log), log


def walk(x):
    """Every value inside a reference, containers included."""
    yield x
    for v in (x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else ()):
        yield from walk(v)


def test_reasoning_gym_references_come_back_with_their_types(tmp_path, caplog):
    """gsm_symbolic's entries hold Fractions (train item 5 here), graph_color's int-keyed dicts, difficulties tuples."""
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cfg = tiny(["suites.reasoning_gym.tasks=[{name: chain_sum}, {name: gsm_symbolic}, {name: graph_color}]"])
    fresh = build_suite("reasoning_gym", cfg.suites, cfg.seed).items("train", 18)
    built = build_suite("reasoning_gym", cfg.suites, cfg.seed, tmp_path).items("train", 18)
    cached = build_suite("reasoning_gym", cfg.suites, cfg.seed, tmp_path).items("train", 18)
    assert cached == built == fresh and strict(cached) == strict(fresh)
    values = [v for it in cached for v in walk(it.reference)]
    assert any(isinstance(v, Fraction) for v in values), "the test must hold a Fraction"
    assert any(isinstance(v, tuple) for v in values) and any(isinstance(v, dict) and 0 in v for v in values)
    assert [line.split(":")[1].split(" in ")[0].strip() for line in lines(caplog)] == ["built 18 items", "cache hit, 18 items"]


def only_entry(tmp_path):
    (path,) = (tmp_path / "items").iterdir()
    return path


def flip_byte(data: bytes) -> bytes:
    middle = len(data) - 20
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]


def edit_key(data: bytes) -> bytes:
    line, _, body = data.partition(b"\n")
    header = json.loads(line)
    header["key"]["seed"] += 1  # as if written for another key (a hand edit, a hash collision)
    return json.dumps(header).encode() + b"\n" + body


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[: len(data) // 2], "truncated"),
    (flip_byte, "corrupt: the body's sha256"),
    (edit_key, "stale: its key differs in seed"),
    (lambda data: b"", "no header"),
])
def test_a_damaged_entry_is_rebuilt_never_used(tmp_path, caplog, damage, reason):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cfg = tiny()
    fresh = build_suite("math", cfg.suites, cfg.seed).items("eval", 30)
    build_suite("math", cfg.suites, cfg.seed, tmp_path).items("eval", 30)
    entry = only_entry(tmp_path)
    entry.write_bytes(damage(entry.read_bytes()))
    lines(caplog)
    again = build_suite("math", cfg.suites, cfg.seed, tmp_path).items("eval", 30)
    assert again == fresh
    log = lines(caplog)
    assert len(log) == 2 and reason in log[0] and "rebuilding" in log[0], log
    assert log[1].startswith("math eval 30: built 30 items") and "replaced the unusable entry" in log[1]
    assert build_suite("math", cfg.suites, cfg.seed, tmp_path).items("eval", 30) == fresh  # the rewritten entry is sound
    assert "cache hit" in lines(caplog)[0]


def test_the_key_holds_what_makes_the_items_and_only_that(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    base = tiny()
    build_suite("math", base.suites, base.seed, tmp_path).items("eval", 20)
    lines(caplog)
    for overrides, seed, n in [(["suites.math.tasks=[{name: arithmetic, config: {max_value: 30}}]"], 0, 20),
                               ([f"suites.{s}.heldout_fraction=0.4" for s in ("math", "code", "reasoning_gym")], 0, 20), ([], 1, 20), ([], 0, 21)]:
        cfg = tiny(overrides)
        made = build_suite("math", cfg.suites, seed, tmp_path).items("eval", n)
        assert made == build_suite("math", cfg.suites, seed).items("eval", n)
        assert "built" in lines(caplog)[0], (overrides, seed, n)
    # how many items the profile evaluates and how scoring runs make no item: the same entry serves
    for overrides in (["suites.math.eval_items=7"], ["suites.code.test_timeout_s=9"]):
        cfg = tiny(overrides)
        build_suite("math", cfg.suites, cfg.seed, tmp_path).items("eval", 20)
        assert "cache hit" in lines(caplog)[0], overrides


def test_reasoning_gym_key_names_the_generating_libraries_and_leaves_out_workers(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cfg = tiny()
    build_suite("reasoning_gym", cfg.suites, cfg.seed, tmp_path).items("validation", 4)
    key = json.loads(only_entry(tmp_path).read_bytes().partition(b"\n")[0])["key"]
    assert set(key["versions"]) == {"reasoning-gym", "sympy", "numpy"} and all(key["versions"].values())
    assert "workers" not in key["section"] and key["items_version"] >= 1 and key["split"] == "validation"
    lines(caplog)
    two = tiny(["suites.reasoning_gym.workers=2"])
    build_suite("reasoning_gym", two.suites, two.seed, tmp_path).items("validation", 4)
    assert "cache hit" in lines(caplog)[0]


def test_training_data_is_cached_and_rebuilt_when_its_file_changes(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    evals = tmp_path / "eval"
    evals.mkdir()
    write_jsonl(evals / "aime24.jsonl", AIME)
    train = write_jsonl(tmp_path / "train.jsonl", math_rows(30) + [AIME[0]])  # one copy of an eval problem
    cache = tmp_path / "cache"

    def suite(cached=True):
        cfg = load_config("tiny", ["suites.math.source=benchmarks", "suites.math.benchmarks=[aime24]", f"suites.math.data_dir={evals}",
                                   f"suites.math.train_data={train}", "suites.math.validation_items=4"])
        return build_suite("math", cfg.suites, cfg.seed, cache if cached else None)

    fresh = suite(cached=False)
    splits = {s: fresh.items(s, 0) for s in ("train", "validation")}
    caplog.clear()
    built, hit = suite(), suite()
    assert {s: built.items(s, 0) for s in splits} == splits
    assert {s: hit.items(s, 0) for s in splits} == splits
    assert hit.training.dedup_by_benchmark == fresh.training.dedup_by_benchmark == {"aime24": 1}
    log = [r.getMessage() for r in caplog.records if r.name in (LOGGER, "suites.train_data")]
    caplog.clear()
    assert "math training data: built 30 items" in log[1] and log[2] == f"{log[0]} (from the item cache)", log
    assert "math training data: cache hit, 30 items" in log[3] and "dropped 1 as copies of eval problems (aime24 1)" in log[0]
    write_jsonl(train, math_rows(31))  # same name, new content
    changed = suite()
    assert len(changed.items("train", 0)) + len(changed.items("validation", 0)) == 31
    assert "built 31 items" in lines(caplog)[0]


def test_an_entry_that_cannot_be_written_leaves_the_items_in_use(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    cfg = tiny()
    items = build_suite("math", cfg.suites, cfg.seed, blocked).items("eval", 10)
    assert items == build_suite("math", cfg.suites, cfg.seed).items("eval", 10)
    assert "NOT cached" in lines(caplog)[0]
    cache = ItemCache(tmp_path / "c")
    made = cache.items("odd", {"k": 1}, lambda: [Item(id="x", task="t", prompt="p", reference=object(), target="")])
    assert made[0].id == "x" and "NOT cached: a value of type builtins.object" in lines(caplog)[0]
    assert not (tmp_path / "c" / "items").exists() or not any((tmp_path / "c" / "items").iterdir())


def test_read_entry_checks_the_key_before_the_body(tmp_path):
    cache = ItemCache(tmp_path)
    cfg = tiny()
    build_suite("math", cfg.suites, cfg.seed, tmp_path).items("eval", 3)
    entry = only_entry(tmp_path)
    key = json.loads(entry.read_bytes().partition(b"\n")[0])["key"]
    assert len(read_entry(entry, key)) == 3
    assert cache.path("math eval 3", key) == entry
