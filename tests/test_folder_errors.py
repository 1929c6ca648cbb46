"""Every command that takes a folder (`report DIR`, `train --out DIR --resume`, `compare --out DIR
--resume`, `eval DIR`), given another command's folder, an empty one or a half-written one, answers
with one line on stderr naming the folder and what it expected, exit code 2, and writes nothing
there: the folder's files and mtimes are the same after, and no base model was built. The folders
are built by hand (the layout of harness/runs.py); no model is trained or loaded. The whole matrix
runs in this process through `harness.cli.main` (building the base or loading a model raises there),
and one case per command as `python -m harness.cli` with its own empty cache."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from harness.runs import CHECKPOINTS, METRICS_FILE, SPEND_RULE, STATE_FILE, checkpoint_name

COMMANDS = {
    "report": lambda d: ["report", d, "--quiet"],
    "train": lambda d: ["train", "prorl", "--profile", "tiny", "--out", d, "--resume", "--quiet"],
    "compare": lambda d: ["compare", "prorl", "brorl", "--profile", "tiny", "--out", d, "--resume", "--quiet"],
    "eval": lambda d: ["eval", d, "--profile", "tiny", "--quiet"],
    "train-new": lambda d: ["train", "prorl", "--profile", "tiny", "--out", d, "--quiet"],
    "compare-new": lambda d: ["compare", "prorl", "brorl", "--profile", "tiny", "--out", d, "--quiet"],
}
"""The commands, each given the folder DIR (without --resume: a new run into a folder that holds something else)."""


def _json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def _checkpoint(folder: Path, weights: bool = True, state: bool = True) -> Path:
    """A save_pretrained-like folder; the weights are bytes, never loaded."""
    _json(folder / "config.json", {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]})
    _json(folder / "tokenizer_config.json", {})
    if weights:
        (folder / "model.safetensors").write_bytes(b"\0" * 64)
    if state:
        (folder / STATE_FILE).write_bytes(b"\0" * 16)
    return folder


def _train_run(folder: Path, steps: int = 2) -> Path:
    """A finished `harness train` folder: config.json, metrics.jsonl, checkpoints/step_NNNNNN/."""
    _json(folder / "config.json", {"recipe": "prorl", "base_checkpoint": "base",
                                   "arm": {"trainer": "step_scaling", "n": 16, "prompts_per_step": 4},
                                   "budget": {"kind": "steps", "amount": steps}, "config": {}, "provenance": {}})
    rows = [{"step": s, "reward_mean": 0.5, "ds_pass_rate": 0.5, "samples_generated": 64 * s, "wall_s": 1.0 * s,
             "gen_s": 0.5} for s in range(1, steps + 1)]
    (folder / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    _checkpoint(folder / CHECKPOINTS / checkpoint_name(steps))
    return folder


def _comparison(folder: Path) -> Path:
    """A `harness compare` folder: config.json, evals/, arms/<arm>/seed0/ (train runs)."""
    _json(folder / "config.json", {
        "profile": "tiny", "arms": ["prorl", "brorl"], "seeds": [0], "n_seeds": 1, "spend_rule": SPEND_RULE,
        "budget": {"kind": "steps", "amount": 2, "eval_points": [0.5]}, "base_key": "tiny-0",
        "base_checkpoint": "base", "base": {"checkpoint": "base", "rl_steps": 0, "early_rl_step": None},
        "suites": ["math"], "configs": {"prorl": {"train": {"n": 16}}, "brorl": {"train": {"n": 512}}}, "provenance": {},
    })
    _json(folder / "evals" / "baseline-rl0.json", {"method": "baseline", "step": 0, "rl_step": 0, "suites": {}})
    for arm in ("prorl", "brorl"):
        _train_run(folder / "arms" / arm / "seed0")
        _json(folder / "evals" / f"{arm}-seed0-step_000002.json", {"method": arm, "seed": 0, "step": 2, "suites": {}})
    return folder


def _train_without(folder: Path, part: str) -> Path:
    _train_run(folder)
    last = folder / CHECKPOINTS / checkpoint_name(2)
    if part == "checkpoints":
        for f in last.iterdir():
            f.unlink()
        last.rmdir()
        (folder / CHECKPOINTS).rmdir()
    else:
        (last / "model.safetensors").unlink()
    return folder


KINDS = {
    "empty": lambda d: d.mkdir(),
    "train_run": _train_run,
    "comparison": _comparison,
    "checkpoint": _checkpoint,
    "train_bad_config": lambda d: _truncate(_train_run(d) / "config.json"),
    "comparison_bad_config": lambda d: _truncate(_comparison(d) / "config.json"),
    "train_no_checkpoints": lambda d: _train_without(d, "checkpoints"),
    "train_no_weights": lambda d: _train_without(d, "weights"),
    "checkpoint_no_weights": lambda d: _checkpoint(d, weights=False),
    "checkpoint_bad_config": lambda d: _truncate(_checkpoint(d) / "config.json"),
    "comparison_torn_eval": lambda d: _truncate(_comparison(d) / "evals" / "prorl-seed0-step_000002.json"),
    "comparison_no_weights": lambda d: (_comparison(d) / "arms" / "brorl" / "seed0" / CHECKPOINTS / checkpoint_name(2)
                                        / "model.safetensors").unlink(),
}
"""Each folder kind, built in the (new) folder given."""

CASES = [
    # (command, folder kind, fragments the one line holds besides the folder's path)
    ("report", "empty", ["not a comparison folder", "no config.json"]),
    ("report", "train_run", ["not a comparison folder", "`harness train` run"]),
    ("report", "checkpoint", ["not a comparison folder", "checkpoint"]),
    ("report", "train_bad_config", ["config.json", "not valid JSON"]),
    ("report", "comparison_bad_config", ["config.json", "not valid JSON"]),
    ("report", "train_no_checkpoints", ["not a comparison folder", "`harness train` run"]),
    ("report", "train_no_weights", ["not a comparison folder", "`harness train` run"]),
    ("report", "checkpoint_no_weights", ["not a comparison folder", "checkpoint"]),
    ("report", "comparison_torn_eval", ["prorl-seed0-step_000002.json", "not valid JSON"]),
    ("train", "empty", ["nothing to resume", "without --resume"]),
    ("train", "comparison", ["`harness compare` folder", "harness compare"]),
    ("train", "checkpoint", ["nothing to resume", "checkpoint"]),
    ("train", "train_bad_config", ["config.json", "not valid JSON"]),
    ("train", "comparison_bad_config", ["nothing to resume"]),
    ("train", "train_no_checkpoints", ["no complete checkpoint", "trainer_state.pt"]),
    ("train", "train_no_weights", ["step_000002", "no model weights"]),
    ("train", "checkpoint_no_weights", ["nothing to resume"]),
    ("compare", "empty", ["nothing to resume", "without --resume"]),
    ("compare", "train_run", ["`harness train` run", "harness train"]),
    ("compare", "checkpoint", ["not a comparison", "checkpoint"]),
    ("compare", "train_bad_config", ["config.json", "not valid JSON"]),
    ("compare", "comparison_bad_config", ["config.json", "not valid JSON"]),
    ("compare", "train_no_checkpoints", ["`harness train` run"]),
    ("compare", "train_no_weights", ["`harness train` run"]),
    ("compare", "checkpoint_no_weights", ["not a comparison", "checkpoint"]),
    ("compare", "comparison_torn_eval", ["prorl-seed0-step_000002.json", "not valid JSON"]),
    ("compare", "comparison_no_weights", ["arms/brorl/seed0", "no model weights"]),
    ("eval", "empty", ["no config.json"]),
    ("eval", "train_run", ["`harness train` run", "checkpoints/step_"]),
    ("eval", "comparison", ["`harness compare` folder", "checkpoints/step_"]),
    ("eval", "train_bad_config", ["config.json", "not valid JSON"]),
    ("eval", "comparison_bad_config", ["config.json", "not valid JSON"]),
    ("eval", "train_no_checkpoints", ["`harness train` run", "checkpoints/step_"]),
    ("eval", "train_no_weights", ["`harness train` run", "checkpoints/step_"]),
    ("eval", "checkpoint_no_weights", ["no model weights"]),
    ("eval", "checkpoint_bad_config", ["config.json", "not valid JSON"]),
    ("train-new", "comparison", ["`harness compare` folder", "another --out"]),
    ("train-new", "checkpoint", ["checkpoint", "another --out"]),
    ("compare-new", "train_run", ["`harness train` run", "another --out"]),
    ("compare-new", "checkpoint", ["checkpoint", "another --out"]),
]


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` (itself included): (size, mtime_ns)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in [".", *dirs, *files]:
            path = Path(root) / name
            st = path.stat()
            out[str(path.relative_to(folder))] = (st.st_size if path.is_file() else 0, st.st_mtime_ns)
    return out


class _Built(Exception):
    """Raised in place of building the base or loading a model: the folder was not refused first."""


def _refuse(*args, **kwargs):
    raise _Built("went on to build the base model or load a checkpoint")


def _main(args: list[str]) -> tuple[object, str]:
    """`harness ARGS` in this process: (exit code, or the exception that escaped; stderr)."""
    import harness.cli

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = harness.cli.main(args)
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # a traceback a user would see, or _Built
        code = f"{type(exc).__name__}: {exc}"
    return code, err.getvalue()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """For each case, run in this process (the commands' imports are paid once; building the base or
    loading a model raises instead): (folder, exit code, stderr, listing before, listing after)."""
    import harness.jobs.compare
    import harness.jobs.evaluate
    import harness.jobs.train

    root = tmp_path_factory.mktemp("folders")
    results = {}
    with pytest.MonkeyPatch.context() as mp:
        for module, name in ((harness.jobs.train, "base_checkpoint"), (harness.jobs.compare, "bootstrap"),
                             (harness.jobs.compare, "base_checkpoint"), (harness.jobs.train, "load_policy"),
                             (harness.jobs.evaluate, "load_policy")):
            mp.setattr(module, name, _refuse)
        mp.setenv("HARNESS_CACHE", str(root / "cache"))
        for command, kind, _ in CASES:
            folder = root / f"{command}-{kind}"
            KINDS[kind](folder)
            before = _listing(folder)
            code, stderr = _main(COMMANDS[command](str(folder)))
            results[command, kind] = (folder, code, stderr, before, _listing(folder))
    return results


def _check(folder: Path, code, stderr: str, fragments: list[str]) -> None:
    assert code == 2, f"{code}: {stderr[-2000:]}"
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("harness: error: ") and str(folder) in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.parametrize("command, kind, fragments", CASES, ids=[f"{c}-{k}" for c, k, _ in CASES])
def test_a_folder_of_the_wrong_kind_is_refused_in_one_line_and_left_alone(outcomes, command, kind, fragments):
    folder, code, stderr, before, after = outcomes[command, kind]
    _check(folder, code, stderr, fragments)
    assert after == before  # nothing written, removed or touched


def test_every_kind_is_refused_by_a_command_it_was_not_written_for():
    assert {k for _, k, _ in CASES} == set(KINDS)
    assert {c for c, _, _ in CASES} == set(COMMANDS)


END_TO_END = [("report", "train_run"), ("train", "train_no_weights"), ("compare", "empty"),
              ("compare", "comparison_no_weights"), ("eval", "comparison")]
"""One case per command as a user runs it: `python -m harness.cli`, its own empty cache."""


def _run(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    try:
        return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120)
    except subprocess.TimeoutExpired as exc:  # it went on to build a model or train: the refusal is missing
        return subprocess.CompletedProcess(args, -1, "", f"timed out after 120 s: {(exc.stderr or b'')[-300:]!r}")


def test_the_command_line_refuses_them_before_building_anything(tmp_path):
    jobs = {}
    for command, kind in END_TO_END:
        folder, cache = tmp_path / f"{command}-{kind}", tmp_path / "caches" / f"{command}-{kind}"
        KINDS[kind](folder)
        cache.mkdir(parents=True)
        jobs[command, kind] = (folder, cache, _listing(folder))
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        done = {key: pool.submit(_run, COMMANDS[key[0]](str(folder)), cache) for key, (folder, cache, _) in jobs.items()}
    fragments = {(c, k): f for c, k, f in CASES}
    for key, (folder, cache, before) in jobs.items():
        result = done[key].result()
        _check(folder, result.returncode, result.stderr, fragments[key])
        assert _listing(folder) == before
        assert not any(cache.iterdir()), key  # no base model was built
