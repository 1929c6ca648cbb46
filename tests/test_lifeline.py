"""Helpers die with the process that started them, SIGKILL included (harness/execution/lifeline.py):
the mechanism itself, the scorer pool's workers with the sandbox slot locks they inherited, and
the procedural suites' generation workers. Each test starts a small "harness" process, lets it
start its helpers, SIGKILLs it and watches the helpers go."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from harness.execution import lifeline, sandbox

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the lifeline is Linux's (F_SETSIG, /proc)")

REPO = Path(__file__).resolve().parents[1]


def identity(pid: int) -> tuple[int, str] | None:
    """(pid, start time) of a live process (not a zombie: this machine's pid 1 may never reap
    orphans), or None; the start time tells a reused pid from the one recorded."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else (pid, fields[19])


def wait_until(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def still_alive(recorded: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [p for p in recorded if identity(p[0]) == p]


def start_harness(script: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, list[int]]:
    """A Python process running `script`, which prints the pids of the helpers it started on one
    line once they are running; (the process, those pids)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    child = subprocess.Popen([sys.executable, "-W", "ignore", "-c", script], stdout=subprocess.PIPE, text=True,
                             env=env, cwd=REPO)
    line = child.stdout.readline()
    if not line.strip():
        child.kill()
        child.wait()
        pytest.fail(f"the harness process printed no pids (exit {child.returncode})")
    return child, [int(word) for word in line.split()]


def kill_and_check(child: subprocess.Popen, helpers: list[int]) -> None:
    """SIGKILL `child`; every helper it started is gone within a few seconds."""
    recorded = [identity(pid) for pid in helpers]
    assert None not in recorded, "a helper died before its parent was killed"
    child.kill()
    child.wait()
    child.stdout.close()
    assert wait_until(lambda: not still_alive(recorded), 5.0), f"outlived their parent: {still_alive(recorded)}"


MECHANISM = """
import os, re, subprocess, sys, threading, time
from harness.execution import lifeline

fd = lifeline.parent_end()
armed_r, armed_w = os.pipe()
pids = []

def child(work):
    pid = os.fork()
    if pid == 0:
        lifeline.die_with_parent(fd)  # the parent's lifeline, inherited by the fork
        os.write(armed_w, b"x")
        work()
        os._exit(0)
    pids.append(pid)

# C code that holds the GIL for hours: no Python-level watcher could run in this child
child(lambda: re.match(r"(a+)+$", "a" * 64 + "b"))
# forked from a thread that ends at once: a parent-death signal would kill it now; a lifeline does not
thread = threading.Thread(target=child, args=(lambda: time.sleep(600),))
thread.start()
thread.join()
# an exec'd helper, told its lifeline through the environment
exec_armed = "from harness.execution import lifeline; import os, sys, time; lifeline.die_with_parent_from_environment(); "
exec_armed += "os.write(int(sys.argv[1]), b'x'); time.sleep(600)"
helper = subprocess.Popen([sys.executable, "-c", exec_armed, str(armed_w)], pass_fds=(fd, armed_w),
                          env=lifeline.child_environment(dict(os.environ)))
pids.append(helper.pid)
got = b""
while len(got) < 3:
    got += os.read(armed_r, 3)
time.sleep(0.3)  # the thread-forked child outlives its thread
print(*pids, flush=True)
time.sleep(600)
"""


def test_helpers_die_with_their_killed_parent_whatever_they_run_and_however_they_started():
    child, helpers = start_harness(MECHANISM)
    assert len(helpers) == 3
    kill_and_check(child, helpers)


def test_a_helper_whose_parent_died_before_it_set_its_lifeline_dies_then():
    """The race the lifeline closes: the parent is gone before the child arms it."""
    report_r, report_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # the parent of the helper: makes its lifeline, forks, exits at once
        try:
            fd = lifeline.parent_end()
            if os.fork() == 0:
                try:
                    parent = os.getppid()
                    while os.getppid() == parent:  # until the parent has exited
                        time.sleep(0.005)
                    lifeline.die_with_parent(fd)
                    os.write(report_w, b"survived")
                finally:
                    os._exit(0)
        finally:
            os._exit(0)
    os.close(report_w)
    os.waitpid(middle, 0)
    with os.fdopen(report_r, "rb") as report:
        assert report.read() == b""  # EOF: the helper died (SIGKILL) without writing


def test_the_write_end_stays_with_the_process_that_made_it():
    """A forked child holds no copy of its parent's write end (else the pipe would never reach EOF)."""
    lifeline.parent_end()
    write_end = lifeline._pipe[2]
    report_r, report_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            try:
                os.fstat(write_end)
                os.write(report_w, b"held")
            except OSError:
                os.write(report_w, b"closed")
        finally:
            os._exit(0)
    os.close(report_w)
    os.waitpid(pid, 0)
    with os.fdopen(report_r, "rb") as report:
        assert report.read() == b"closed"
    os.fstat(write_end)  # still open here


SCORER_POOL = """
import contextlib, os, tempfile, time
tempfile.tempdir = {lock_root!r}  # the slot lock files of this test only
from harness.execution import sandbox
from harness.execution.bounded import ScorerPool, ScoreResult

def worker_pid(response, reference):
    return ScoreResult(1.0, "correct", str(os.getpid()))

with contextlib.ExitStack() as slots:
    uids = [slots.enter_context(sandbox._uid_slot(True)) for _ in range(sandbox.SLOT_COUNT)]
    pool = ScorerPool(workers=2, timeout_s=30.0)  # forked while every slot is held: each inherits the locks
    results = pool.map(worker_pid, [(str(i), None) for i in range(8)])
    assert sorted(set(uids)) == list(range(sandbox.SLOT_UID_BASE, sandbox.SLOT_UID_BASE + sandbox.SLOT_COUNT))
    print(*sorted({{int(r.extracted) for r in results}}), flush=True)
    time.sleep(600)
"""


def test_scorer_workers_die_with_their_killed_harness_and_free_every_slot_it_held(tmp_path, monkeypatch):
    """A harness killed while its runs hold every uid slot, with scorer workers forked meanwhile
    (holding copies of the lock descriptors): the workers go, and a new scorer gets every slot at once."""
    child, workers = start_harness(SCORER_POOL.format(lock_root=str(tmp_path)))
    assert len(workers) == 2
    kill_and_check(child, workers)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    got: list[int] = []

    def take_every_slot() -> None:
        with contextlib.ExitStack() as slots:
            got.extend(slots.enter_context(sandbox._uid_slot(True)) for _ in range(sandbox.SLOT_COUNT))

    taker = threading.Thread(target=take_every_slot, daemon=True)
    taker.start()
    taker.join(timeout=5.0)  # a held slot would make it wait for ever
    assert not taker.is_alive() and len(set(got)) == sandbox.SLOT_COUNT


def test_a_released_slot_is_free_although_a_child_forked_meanwhile_holds_its_descriptor(tmp_path, monkeypatch):
    """flock locks belong to the open file description: closing the harness's copy alone would leave
    the slot locked for as long as a scorer worker forked during the run lives."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with sandbox._uid_slot(True) as uid:
        pid = os.fork()
        if pid == 0:
            time.sleep(30)
            os._exit(0)
    try:
        fd = os.open(os.path.join(sandbox._lock_dir(), f"{uid}.lock"), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if still held
        finally:
            os.close(fd)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


GENERATION = """
import functools
from suites.procedural import TaskRequest, generate_items
from tests.test_lifeline import generate_slowly

requests = [TaskRequest("t", f"slow{{i}}", functools.partial(generate_slowly, {report!r}), i, "train", 1, True, 0.0, False)
            for i in range(2)]
generate_items(requests, workers=2, fixed_hash_seed={fresh})
"""


def generate_slowly(report: str, seed: int):
    """A generator that says which process runs it (a line in the file `report`) and never yields."""
    with open(report, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(600)
    yield from ()


@pytest.mark.parametrize("fresh", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["forked-workers", "fresh-interpreters"])
def test_generation_workers_die_with_their_killed_harness(fresh, tmp_path):
    """Both ways `generate_items` makes items in other processes: a fork pool, and interpreters
    started with PYTHONHASHSEED=0 when the caller's hashes are randomized (slow tier: two
    interpreter starts, about 8 s on 2 busy cores)."""
    report = tmp_path / "generators"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONHASHSEED", None)  # randomized: the fresh-interpreter path
    child = subprocess.Popen([sys.executable, "-W", "ignore", "-c", GENERATION.format(report=str(report), fresh=fresh)],
                             stdout=subprocess.PIPE, env=env, cwd=REPO)
    try:
        started = lambda: report.is_file() and report.read_text().count("\n") == 2  # noqa: E731
        assert wait_until(started, 60.0), f"the generators did not start (exit {child.poll()})"
        kill_and_check(child, [int(pid) for pid in report.read_text().split()])
    finally:
        child.kill()
        child.wait()
