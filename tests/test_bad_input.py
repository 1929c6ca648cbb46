"""Bad input gets one clear line and exit code 2, and nothing half-written."""


import pytest

from suites.jsonl import DatasetError, read_jsonl
from tests.conftest import SHARED_DATA, run_cli

SHARED = SHARED_DATA


def test_malformed_dataset_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "set.jsonl"
    path.write_text('{"problem": "1+1", "answer": "2"}\n\n{"problem": "2+2", "answer": \n')
    with pytest.raises(DatasetError, match=r"set.jsonl:3: not valid JSON"):
        read_jsonl(path, required=("problem", "answer"))
    path.write_text('{"problem": "1+1"}\n')
    with pytest.raises(DatasetError, match=r"set.jsonl:1: missing field\(s\) answer"):
        read_jsonl(path, required=("problem", "answer"))
    path.write_text('[1, 2]\n')
    with pytest.raises(DatasetError, match=r":1: expected a JSON object"):
        read_jsonl(path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_jsonl(tmp_path / "nope.jsonl")


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent (the project's shared data folder)")
def test_shared_data_files_read_cleanly():
    assert len(read_jsonl(SHARED / "math" / "aime24.jsonl", required=("problem", "answer"))) == 30
    code = read_jsonl(SHARED / "code" / "codeforces.jsonl", required=("problem", "tests"))
    assert len(code) == 200 and all(isinstance(r["tests"], list) for r in code)


def _one_line_exit_2(done, *fragments):
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_malformed_profile_yaml(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("eval:\n  k: [16,\n")
    _one_line_exit_2(run_cli(["bootstrap", "--profile", str(bad)], tmp_path), "broken.yaml", "not valid YAML")


def test_unknown_profile_trainer_and_suite(tmp_path):
    _one_line_exit_2(run_cli(["bootstrap", "--profile", "huge"], tmp_path), "unknown profile 'huge'", "smoke")
    _one_line_exit_2(run_cli(["train", "prorl", "--profile", "smoke", "--out", str(tmp_path / "r"), "train.trainer=ppo"], tmp_path),
                     "ppo", "step_scaling")
    _one_line_exit_2(run_cli(["eval", str(tmp_path), "--profile", "smoke", "--suites", "chess"], tmp_path), "chess")


@pytest.mark.slow
def test_corrupt_checkpoints(tmp_path, smoke_base):
    import shutil

    base, cache = smoke_base
    truncated = tmp_path / "truncated"
    shutil.copytree(base, truncated)
    with open(truncated / "model.safetensors", "r+b") as fh:
        fh.truncate(1000)
    _one_line_exit_2(run_cli(["eval", str(truncated), "--profile", "smoke"], cache), "truncated", "SafetensorError")
    no_weights = tmp_path / "no_weights"
    shutil.copytree(base, no_weights)
    (no_weights / "model.safetensors").unlink()
    _one_line_exit_2(run_cli(["eval", str(no_weights), "--profile", "smoke"], cache), "no model weights")
    _one_line_exit_2(run_cli(["train", "prorl", "--profile", "smoke", "--base", str(tmp_path), "--out", str(tmp_path / "r")], cache),
                     "no config.json")
    assert not (tmp_path / "r").exists()  # nothing half-written


def test_a_command_given_another_commands_folder_or_an_empty_one_answers_in_one_line(tmp_path):
    """`report` on a `harness train` folder, on a half-written comparison, on an empty folder;
    `train --resume` where no run is: one line, exit 2, nothing written."""
    train_run = tmp_path / "train_run"
    train_run.mkdir()
    (train_run / "config.json").write_text('{"recipe": "prorl", "arm": {}, "budget": {}, "config": {}}')
    (train_run / "metrics.jsonl").write_text("")
    _one_line_exit_2(run_cli(["report", str(train_run)], tmp_path), "not a comparison folder", "harness train")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text('{"arms": ["prorl", ')
    _one_line_exit_2(run_cli(["report", str(half)], tmp_path), "not valid JSON")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_exit_2(run_cli(["report", str(empty)], tmp_path), "no config.json")
    _one_line_exit_2(run_cli(["train", "prorl", "--profile", "smoke", "--out", str(empty), "--resume"], tmp_path),
                     "nothing to resume", "without --resume")
    assert not any(empty.iterdir())
