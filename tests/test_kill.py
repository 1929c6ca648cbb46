"""Nothing outlives a killed harness (issue 33): `harness train` and `harness compare` on the smoke
profile, each SIGKILLed while scoring is under way (its scorer workers and their sandbox fork
servers running), leave none of the processes they started, no uid slot held, and a new run
scores normally right after (an evaluation of the code suite, which runs the sandbox through
the scorer workers). What a scheduler, the OOM killer or a lost node does to a run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness.execution import sandbox
from tests.test_lifeline import identity, still_alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return None


def tree(root: int) -> list[tuple[int, str]]:
    """Identities (pid, start time) of `root`'s live descendants, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (ppid := parent_of(int(entry))) is not None:
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if (who := identity(pid)) is not None:
            found.append(who)
        todo += children.get(pid, [])
    return found


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def sandbox_processes(root: int, processes: list[tuple[int, str]]) -> list[int]:
    """Of `processes` (`root`'s tree), those started by a process `root` forked: a scorer worker's
    sandbox fork server, its launchers, a run (the workers start nothing else)."""
    children = {pid for pid, _ in processes if parent_of(pid) == root}
    return [pid for pid, _ in processes if parent_of(pid) in children]


@pytest.fixture
def slot_dir():
    """A temporary directory of this test's own (TMPDIR of the runs): its slot locks are the runs'
    only, not those of other jobs on the machine. Traversable by the sandbox uids."""
    path = tempfile.mkdtemp(prefix="harness-kill-test-", dir="/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def held_slots(tmpdir: str) -> list[int]:
    """Slot uids whose lock file in `tmpdir`'s lock folder someone holds."""
    folder = Path(tmpdir) / "harness-sandbox-slots"
    held = []
    for uid in range(sandbox.SLOT_UID_BASE, sandbox.SLOT_UID_BASE + sandbox.SLOT_COUNT):
        path = folder / f"{uid}.lock"
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(uid)
        finally:
            os.close(fd)
    return held


def harness_env(cache: Path, tmpdir: str) -> dict[str, str]:
    return {**os.environ, "HARNESS_CACHE": str(cache), "TMPDIR": tmpdir}


def kill_while_scoring(args: list[str], cache: Path, tmpdir: str) -> list[tuple[int, str]]:
    """Start `harness ARGS` and SIGKILL it while a scorer worker's sandbox run holds a uid slot
    (the workers and their sandbox processes running); the process tree recorded just before."""
    harness = subprocess.Popen([sys.executable, "-m", "harness.cli", *args], env=harness_env(cache, tmpdir),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    recorded: list[tuple[int, str]] = []

    def scoring() -> bool:
        nonlocal recorded
        if harness.poll() is not None:
            return True
        recorded = tree(harness.pid)
        # as root, mid-run: a slot is held (not root, runs take no slot)
        return bool(sandbox_processes(harness.pid, recorded)) and (os.geteuid() != 0 or bool(held_slots(tmpdir)))

    try:
        assert wait_until(scoring, 300.0) and harness.poll() is None, \
            f"no scoring seen (exit {harness.poll()}): {harness.stderr.read()[-2000:] if harness.poll() is not None else ''}"
        harness.kill()
    finally:
        harness.kill()
        harness.wait()
        harness.stderr.close()
    return recorded


def check_nothing_left(recorded: list[tuple[int, str]], tmpdir: str) -> None:
    """Within a few seconds: none of the recorded processes alive, no slot held."""
    # the scorer workers and at least one sandbox process of theirs (what `kill_while_scoring` waited for)
    assert len(recorded) >= 3, recorded
    assert wait_until(lambda: not still_alive(recorded), 5.0), \
        [(pid, command_line(pid)[:3]) for pid, _ in still_alive(recorded)]
    assert wait_until(lambda: not held_slots(tmpdir), 2.0), held_slots(tmpdir)


def check_a_new_run_scores(base: Path, cache: Path, tmpdir: str, out: Path) -> None:
    """A new run at once, with the same slot locks: the code suite's evaluation (scorer workers,
    sandbox runs), every response scored (no timeout, no error). Cheaper than a training step."""
    done = subprocess.run([sys.executable, "-m", "harness.cli", "eval", str(base), "--suites", "code", "--profile", "smoke",
                           "--out", str(out), "--quiet", "eval.k=4"],
                          env=harness_env(cache, tmpdir), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    code = json.loads((out / "eval.json").read_text())["suites"]["code"]
    assert sum(code["statuses"].values()) == 4 * code["n_items"] > 0
    assert set(code["statuses"]) <= {"correct", "partial", "wrong", "no_answer"}, code["statuses"]


def test_a_killed_train_leaves_nothing_and_the_next_run_scores(smoke_base, slot_dir, tmp_path):
    base, cache = smoke_base
    recorded = kill_while_scoring(["train", "prorl", "--profile", "smoke", "--out", str(tmp_path / "killed"), "--quiet"],
                                  cache, slot_dir)
    check_nothing_left(recorded, slot_dir)
    check_a_new_run_scores(base, cache, slot_dir, tmp_path / "next")


def test_a_killed_compare_leaves_nothing_and_the_next_run_scores(smoke_base, slot_dir, tmp_path):
    base, cache = smoke_base
    recorded = kill_while_scoring(["compare", "prorl", "brorl", "--profile", "smoke", "--out", str(tmp_path / "killed"),
                                   "--quiet"], cache, slot_dir)
    check_nothing_left(recorded, slot_dir)
    check_a_new_run_scores(base, cache, slot_dir, tmp_path / "next")
