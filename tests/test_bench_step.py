"""`harness bench step`: one RL step per arm, phase by phase (harness/jobs/bench_step.py).

The figures themselves are printed, never asserted: these tests check the rows' shape (every phase
present, times positive, shares of the step summing to 1) on tiny sizes, and the CLI's table and
one-line errors."""

import pytest

from harness.cli import main
from harness.jobs.bench_step import SHAPE_PHASES, STEP_PHASES, bench_step, bench_step_shape, per_arm, word_tokenizer

SHAPE = ["bootstrap.model.hidden_size=64", "bootstrap.model.intermediate_size=128", "bootstrap.model.num_hidden_layers=1",
         "bootstrap.model.num_attention_heads=4", "bootstrap.model.num_key_value_heads=2", "bootstrap.model.vocab_size=1000"]
"""A tiny stand-in for shape-1.5b's model: the same code path in a second."""


@pytest.mark.slow
def test_step_times_every_phase_of_both_arms(smoke_base):
    base, _ = smoke_base
    lines: list[str] = []
    rows = bench_step("smoke", ["train.max_new_tokens=12"], repeats=1, n=[4, 8], prompts=[2, 1], base=str(base),
                      log=lines.append)
    assert [(r["recipe"], r["n"], r["prompts"]) for r in rows] == [("prorl", 4, 2), ("brorl", 8, 1)]
    for r in rows:
        assert set(r["seconds"]) == set(r["shares"]) == set(STEP_PHASES)
        assert all(r["seconds"][p] > 0 for p in STEP_PHASES if p != "other"), r["seconds"]
        assert sum(r["shares"].values()) == pytest.approx(1.0)
        assert r["samples"] >= r["n"] * r["prompts"] and r["samples"] % r["n"] == 0
        assert r["samples_per_s"] == pytest.approx(r["samples"] / r["seconds"]["generate"])
    assert lines[0].split()[:4] == ["arm", "N", "prompts", "samples"]
    assert lines[1].startswith("prorl") and lines[2].startswith("brorl")
    assert lines[-1].startswith("scoring share of a prorl step: ") and lines[-1].endswith("(goal <= 15%)")


def test_word_tokenizer_round_trips_ids():
    tok = word_tokenizer(1000)
    assert len(tok) == 1000
    assert tok("t17 t0 t998", add_special_tokens=False)["input_ids"] == [17, 0, 998]
    assert tok.pad_token_id == tok.eos_token_id == 999
    assert tok.decode([5, 6]) == "t5 t6"


def test_shape_step_times_and_measures_every_phase():
    lines: list[str] = []
    rows = bench_step_shape("shape-1.5b", SHAPE, n=[4], prompts=[2], prompt_tokens=16, max_new_tokens=8, isolate=False,
                            log=lines.append)
    assert [r["recipe"] for r in rows] == ["prorl", "brorl"]
    for r in rows:
        assert "error" not in r, r
        assert (r["n"], r["prompts"], r["samples"], r["prompt_tokens"], r["response_tokens"]) == (4, 2, 8, 16, 8)
        assert r["vocab_size"] == 1000 and r["layers"] == 1 and r["kl"]
        assert set(r["seconds"]) == set(r["peak_mb"]) == set(SHAPE_PHASES)
        assert all(r["seconds"][p] > 0 for p in SHAPE_PHASES), r["seconds"]
        assert all(r["peak_mb"][p] > 0 for p in SHAPE_PHASES), r["peak_mb"]
        assert r["peak_step_mb"] == max(r["peak_mb"].values())
        assert r["step_s"] >= sum(r["seconds"].values())
    assert any(line.startswith("prorl ") for line in lines) and any(line.startswith("brorl ") for line in lines)


def test_shape_step_from_the_cli_prints_the_sizes_and_the_table(capsys):
    """The CLI in this process; each arm still runs in its own (the path a real run takes)."""
    code = main(["bench", "step", "--shape", "--profile", "shape-1.5b", "--n", "4,2", "--prompts-per-step", "2,1",
                 "--prompt-tokens", "16", "--max-new-tokens", "8", "--repeats", "1", *SHAPE])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "prompts: 16 random tokens; responses: exactly 8 tokens" in out and "vocabulary 1,000" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("prorl ", "brorl "))}
    assert rows["prorl"][1:4] == ["4", "2", "8"] and rows["brorl"][1:4] == ["2", "1", "2"]  # N, prompts, samples
    assert out.count("peak RSS MB") == 2 or out.count("CUDA max allocated MB") == 2


@pytest.mark.parametrize("args, needle", [
    (["--n", "0"], "--n"),
    (["--n", "4,8,16"], "--n"),
    (["--prompts-per-step", "x"], "--prompts-per-step"),
    (["--repeats", "0"], "--repeats"),
    (["--prompt-tokens", "-1"], "--prompt-tokens"),
])
def test_bad_option_values_exit_2_with_one_line(capsys, args, needle):
    assert main(["bench", "step", "--shape", "--profile", "shape-1.5b", *args, *SHAPE]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_per_arm_values():
    assert per_arm(None, "--n") == (None, None)
    assert per_arm([4], "--n") == (4, 4)
    assert per_arm([16, 512], "--n") == (16, 512)
