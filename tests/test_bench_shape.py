"""`harness bench matmul`, `bench rollout --shape`, `bench update --shape` (harness/jobs/bench_shape.py).

Figures are printed, never asserted: these tests check the rows' fields and the FLOP count on tiny
sizes, `--out`'s file, and the one-line errors."""

import json

import torch

from harness.cli import main
from harness.jobs.bench_shape import bench_update_shape, matmul_peak, random_groups, update_flops

TINY = ["bootstrap.model.hidden_size=32", "bootstrap.model.intermediate_size=64", "bootstrap.model.num_hidden_layers=1",
        "bootstrap.model.num_attention_heads=2", "bootstrap.model.num_key_value_heads=1", "bootstrap.model.vocab_size=300",
        "rollout.device=cpu"]


def test_update_flops_count_each_prompt_once_and_every_response_token():
    seqs = random_groups(300, prompts=2, n=3, prompt_tokens=5, response_tokens=4, seed=0)
    assert len(seqs) == 6 and all(len(s.ids) == 9 and s.prompt_len == 5 for s in seqs)
    assert {s.group for s in seqs} == {0, 1} and sorted(s.advantage for s in seqs) == [-1.0] * 3 + [1.0] * 3
    assert update_flops(1000, seqs) == 6 * 1000 * (2 * 5 + 6 * 4)


def test_matmul_peak_is_a_positive_rate():
    row = matmul_peak(torch.device("cpu"), torch.float32, size=64, repeats=2)
    assert row["flops"] > 0 and row["size"] == 64 and row["dtype"] == "float32"


def test_update_shape_times_both_layouts_for_both_arms():
    lines: list[str] = []
    found = bench_update_shape("shape-1.5b", TINY, n=[2, 4], prompts=[2, 1], prompt_tokens=6, max_new_tokens=3, repeats=1,
                               log=lines.append)
    assert [(r["recipe"], r["n"], r["prompts"], r["samples"]) for r in found["rows"]] == [("prorl", 2, 2, 4), ("brorl", 4, 1, 4)]
    for r in found["rows"]:
        assert r["per_sample_s"] > 0 and r["shared_prompt_s"] > 0 and r["mfu"] > 0
        assert r["speedup"] == r["per_sample_s"] / r["shared_prompt_s"]
    assert found["peak"]["flops"] > 0 and lines[1].startswith("prorl") and lines[2].startswith("brorl")


def test_matmul_writes_its_out_file(tmp_path, capsys):
    out = tmp_path / "matmul.json"
    assert main(["bench", "matmul", "--profile", "shape-1.5b", "--size", "32", "--repeats", "1", "rollout.device=cpu",
                 "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["bench"] == "matmul" and record["peak"]["flops"] > 0 and "git_commit" in record["provenance"]


def test_shape_and_out_are_refused_where_they_mean_nothing(capsys):
    assert main(["bench", "sandbox", "--shape", "--profile", "shape-1.5b"]) == 2
    assert "--shape is for bench rollout, memory, update, step; not for bench sandbox" in capsys.readouterr().err
    assert main(["bench", "memory", "--profile", "smoke", "--out", "x.json"]) == 2
    assert "--out is for bench --shape and bench matmul" in capsys.readouterr().err
