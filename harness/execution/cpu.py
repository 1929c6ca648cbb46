"""CPU seconds of this process and of every process below it: the meter of a `cpu_s` budget.

A training step spends CPU in three places: this process (every thread: torch's intra-op pool, the
rollout engine), the scorer workers (`bounded.ScorerPool`: long-lived children), and what they
start (the code sandbox's fork server, its launchers and the programs). `getrusage(RUSAGE_CHILDREN)`
counts only children that have exited and been waited for, so it misses the workers while they
live; their time is read live instead, from /proc/<pid>/stat (utime + stime, plus cutime + cstime:
their own children that were waited for, e.g. every finished sandbox run).

`tree_cpu_s()` = RUSAGE_SELF + RUSAGE_CHILDREN (this process and its reaped children) + every live
descendant's own and reaped children's time. A process is counted once: alive, it is a descendant;
reaped, it is in its parent's children's time (a zombie not yet reaped still shows its times).
Nothing outside the tree is counted, so the time a scheduler gives to another process (another
job, a hog) is not charged to this one.

What load still moves, and a lot (results/experiments/2026-12-04-cpu-budget-under-load.md: the same
smoke step cost 2-3 CPU s at load ~6 and 13-18 at load ~20 on 2 cores): likely threads that spin
while they wait for a descheduled sibling (OpenMP barriers), and caches shared with neighbours.
Read with care: a descendant reaped by its parent while the table is being read can be counted
twice or not at all (tens of milliseconds: one sandbox run);
`run_training` reads the meter between steps, when no scorer call is in flight.

`tree_wait_s()`: how long the same tree's threads waited for a CPU (schedstat's run delay): what
`harness compare` reports as the machine being busy for this run (harness/report/summary.py
`machine_load`), since the load average counts the run's own tasks too.

Where /proc is missing (macOS), `psutil` is used if installed; without either `available()` is
False and a `cpu_s` budget is refused in one line.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") and "SC_CLK_TCK" in os.sysconf_names else 100


def _rusage_s() -> float:
    """User + system seconds of this process (all threads) and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _stat(pid_dir: Path) -> tuple[int, int] | None:
    """(ppid, utime + stime + cutime + cstime in clock ticks) of one /proc entry; None if it is gone."""
    try:
        text = (pid_dir / "stat").read_text()
    except (OSError, ValueError):  # exited meanwhile, or unreadable
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name may hold spaces and parentheses
    # after the name: state ppid ... utime(14) stime(15) cutime(16) cstime(17), numbered as in proc(5)
    return int(fields[1]), sum(int(v) for v in fields[11:15])


def _descendants(root: int) -> dict[int, int]:
    """{pid: utime + stime + cutime + cstime in clock ticks} of the live descendants of `root`."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        got = _stat(entry)
        if got is None:
            continue
        pid = int(entry.name)
        children.setdefault(got[0], []).append(pid)
        ticks[pid] = got[1]
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found[pid] = ticks[pid]
        todo += children.get(pid, [])
    return found


def descendants_cpu_s(root: int | None = None) -> float:
    """Seconds used by the live descendants of `root` (default: this process), each with its reaped
    children; `root` itself is not included. Linux (/proc)."""
    return sum(_descendants(os.getpid() if root is None else root).values()) / _TICK


def _run_delay_ns(pid: int) -> int:
    """Nanoseconds the threads of `pid` have spent runnable but waiting for a CPU (schedstat's second
    field, per thread: proc(5)); 0 if it is gone or the kernel keeps no schedstat."""
    total = 0
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return 0
    for task in tasks:
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total


def wait_available() -> bool:
    """Whether this kernel shows how long a process waited for a CPU (/proc/PID/task/TID/schedstat)."""
    return (PROC / str(os.getpid()) / "task" / str(os.getpid()) / "schedstat").is_file()


def tree_wait_s() -> float:
    """Seconds the threads of this process and of its live descendants have spent runnable but
    waiting for a CPU: the CPU they wanted and the machine did not give them. Near 0 on a machine
    with a core for each of them; grows with every other runnable task. A lower bound: the waits of
    descendants that have exited are not kept (no counterpart of RUSAGE_CHILDREN). Take differences."""
    me = os.getpid()
    return sum(_run_delay_ns(pid) for pid in [me, *_descendants(me)]) / 1e9


def _psutil_tree_s() -> float:
    import psutil  # lazy: optional; only where /proc is missing

    me = psutil.Process()
    total = _rusage_s()
    for child in me.children(recursive=True):
        try:
            t = child.cpu_times()
        except psutil.Error:  # exited meanwhile
            continue
        total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
    return total


def available() -> bool:
    """Whether `tree_cpu_s` can see live descendants here (/proc, or psutil)."""
    if (PROC / str(os.getpid()) / "stat").is_file():
        return True
    try:
        import psutil  # noqa: F401  # lazy: optional dependency, probed only
    except ImportError:
        return False
    return True


def tree_cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process, its reaped children, and every live
    descendant with its own reaped children. Monotone apart from the race in the module docstring;
    take differences. Raises RuntimeError where `available()` is False."""
    if (PROC / str(os.getpid()) / "stat").is_file():
        return _rusage_s() + descendants_cpu_s()
    if not available():
        raise RuntimeError("cannot read the CPU time of child processes here (no /proc, no psutil)")
    return _psutil_tree_s()
