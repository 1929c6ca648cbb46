"""Helpers of the evaluation-folder tests (test_eval_resume.py, test_eval_replicas.py): a small smoke
evaluation through the CLI, and two folders' results and kept responses compared item for item."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from harness.jobs.eval_store import done_batches

SMALL = ["eval.k=4", "eval.prompts_per_call=4", "suites.math.eval_items=16", "suites.code.eval_items=8",
         "suites.reasoning_gym.eval_items=16"]
"""A smoke evaluation of 10 engine calls (math 4, code 2, reasoning_gym 4) of 4 items x 4 samples."""


def eval_args(checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", str(checkpoint), "--profile", "smoke", "--out", str(out), *SMALL, *extra]


def result(folder: Path) -> dict:
    """eval.json's suites without the one field that is a timing (samples_per_s)."""
    suites = json.loads((folder / "eval.json").read_text())["suites"]
    return {name: {k: v for k, v in score.items() if k != "samples_per_s"} for name, score in suites.items()}


def responses(folder: Path) -> dict:
    """Every kept sample's (text, tokens, finish, reward, status), by (suite, call) and item."""
    return {key: [(r["id"], [(s["text"], s["tokens"], s["finish"], s["reward"], s["status"]) for s in r["samples"]]) for r in recs]
            for key, recs in done_batches(folder, keep_text=True).items()}


def assert_same_evaluation(a: Path, b: Path) -> None:
    ra, rb = result(a), result(b)
    assert ra == rb
    assert sum(len(s["item_scores"]) for s in ra.values()) == 40
    assert responses(a) == responses(b)


class Command:
    """A `harness` command running in the background, its stderr lines read by a thread as they come."""

    def __init__(self, args: list[str], cache: Path):
        env = {**os.environ, "HARNESS_CACHE": str(cache)}
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, wanted, timeout_s: float) -> str:
        """The first stderr line satisfying `wanted`; fails after timeout_s or when the command ends first."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no awaited line within {timeout_s} s; stderr:\n" + "\n".join(self.seen[-30:])) from None
            if line is None:
                self.proc.wait(timeout=30)
                raise AssertionError(f"exited {self.proc.returncode} before the awaited line; stderr:\n" + "\n".join(self.seen[-30:]))
            self.seen.append(line)
            if wanted(line):
                return line

    def finish(self, timeout_s: float) -> int:
        """Wait for the command to end (its remaining lines into `seen`); its exit code."""
        code = self.proc.wait(timeout=timeout_s)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return code


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc), so what a killed command started can be ended by pid."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def end_processes(pids: list[int], timeout_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after timeout_s, to each of `pids` still alive (the test's own processes)."""
    for sig, wait in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        alive = [p for p in pids if _alive(p)]
        for p in alive:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) for p in alive):
            time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def one_process_evaluation(smoke_base, tmp_path_factory):
    """An uninterrupted one-process evaluation of the smoke base: (its folder, the checkpoint, the
    cache); the reference the replica and resume tests compare against."""
    from tests.conftest import run_cli

    path, cache = smoke_base
    out = tmp_path_factory.mktemp("eval") / "F"
    done = run_cli(eval_args(path, out, "--quiet"), cache, timeout=600)
    assert done.returncode == 0, done.stderr
    return out, path, cache


@contextmanager
def ray_cluster(num_cpus: int = 2):
    """A Ray cluster started in this process (CPUs only), its GCS address yielded for a command's
    --address / --eval-address; its workers see this process's environment (HARNESS_CACHE). Its
    temp folder is short: Ray's socket paths must fit in 107 bytes, pytest's tmp_path does not."""
    import ray  # lazy: only the Ray tiers have it

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(num_cpus=num_cpus, num_gpus=0, include_dashboard=False, _temp_dir=temp, configure_logging=False,
             log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
