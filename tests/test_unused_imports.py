"""Commands that build no suite run without the suites' packages (issue: the GPU image lacks them).

`plan`, `bench memory --shape`, `bench step --shape`, `bench update --shape` and `bench rollout --shape`
are run as a user runs them, in fresh interpreters, with reasoning-gym, datasets, lm-eval and
math-verify made unimportable: a `sitecustomize` put first on PYTHONPATH installs a finder that
refuses them, and the processes the benchmarks start inherit it. Tiny shapes keep each run to seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

BLOCKED = ("reasoning_gym", "datasets", "lm_eval", "math_verify")
"""What the GPU image lacks and these commands must not import (../shared/REFERENCE.md)."""

BLOCKER = f'''
import sys

class _Refuse:
    """Refuses the modules the GPU image lacks, as if they were not installed."""
    names = {BLOCKED!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by tests/test_unused_imports.py)", name=name)
        return None

sys.meta_path.insert(0, _Refuse())
'''

TINY = ["bootstrap.model.hidden_size=64", "bootstrap.model.intermediate_size=128", "bootstrap.model.num_hidden_layers=1",
        "bootstrap.model.num_attention_heads=4", "bootstrap.model.num_key_value_heads=2", "bootstrap.model.vocab_size=1000",
        "rollout.device=cpu"]


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory):
    site = tmp_path_factory.mktemp("blocker")
    (site / "sitecustomize.py").write_text(BLOCKER)
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


DRIVER = """
import contextlib, io, json, sys
from harness.cli import main
codes = []
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        codes.append(main(args))
    print(out.getvalue()[-1500:], file=sys.stderr)
print(json.dumps(codes))
"""
"""Runs each command's `main` in one interpreter (one start-up, not six); the benchmarks' own child
processes start from the same environment, blocker included."""

COMMANDS = {
    "plan": ["plan", "--profile", "prorlv2-1.5b"],
    "bench memory --shape": ["bench", "memory", "--shape", "--profile", "shape-1.5b", "--lengths", "8", *TINY],
    "bench step --shape": ["bench", "step", "--shape", "--profile", "shape-1.5b", "--n", "2", "--prompts-per-step", "1",
                           "--prompt-tokens", "4", "--max-new-tokens", "2", "--repeats", "1", *TINY],
    "bench update --shape": ["bench", "update", "--shape", "--profile", "shape-1.5b", "--n", "2", "--prompts-per-step", "1",
                             "--prompt-tokens", "4", "--max-new-tokens", "2", "--repeats", "1", *TINY],
    "bench rollout --shape": ["bench", "rollout", "--shape", "--profile", "shape-1.5b", "--n", "2", "--samples", "2",
                              "--prompt-tokens", "4", "--max-new-tokens", "2", "--repeats", "1", *TINY],
    "bench matmul": ["bench", "matmul", "--profile", "shape-1.5b", "--size", "64", "rollout.device=cpu"],
}


def test_the_blocker_refuses_each_package(blocked_env):
    for name in BLOCKED:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, env=blocked_env)
        assert done.returncode != 0 and "blocked by tests/test_unused_imports.py" in done.stderr, name


def test_commands_that_build_no_suite_run_without_the_suites_packages(blocked_env):
    done = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(list(COMMANDS.values()))], capture_output=True, text=True,
                          env=blocked_env, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    codes = dict(zip(COMMANDS, json.loads(done.stdout.strip().splitlines()[-1])))
    assert codes == dict.fromkeys(COMMANDS, 0), done.stderr[-4000:]
    assert "blocked by" not in done.stderr
