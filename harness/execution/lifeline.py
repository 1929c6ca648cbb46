"""Helper processes that die with the process that started them, however it dies (SIGKILL too).

A cluster's scheduler, the OOM killer or a lost node end a harness process with SIGKILL, which runs
no cleanup handler (atexit, finalizers, `finally`). Any helper it started (a scorer worker, a
generation worker, an evaluation replica, a job watcher) must then go by itself, or it lives on,
re-parented to init, holding the dead run's files and locks. This module is the one way helpers
do that here:

  parent   `parent_end()`: the read end of this process's lifeline, a pipe whose write end only
           this process holds. The write end is non-inheritable (closed at exec) and closed in
           every child forked from here (an `os.register_at_fork` hook, so multiprocessing's fork
           children and `concurrent.futures` workers included); its read end reaches a forked
           child as it is, and an exec'd one through `pass_fds` plus `child_environment`.
  child    `die_with_parent(fd)` (or `die_with_parent_from_environment()` in an exec'd program),
           first thing: it opens a description of the pipe of its own and asks the kernel to send
           it SIGKILL when the pipe becomes readable (F_SETOWN, F_SETSIG SIGKILL, O_ASYNC), which
           happens when the write end's last copy closes, that is when the parent exits, however.
           If the parent is already gone (the pipe is at EOF), the child kills itself at once.

The kernel sends the signal, so it works while the child runs C code that holds the GIL (a regex
backtracking over a megabyte, say) and needs no thread in the child. Nobody ever writes to the
pipe, so nothing else makes it readable.

Why not `prctl(PR_SET_PDEATHSIG)`: its "parent" is the thread that forked the child, not the
process, so a helper started from a short-lived thread (a ThreadPoolExecutor's, verl's reward
threads) would be killed when that thread ends, in the middle of a run. The sandbox's bootstrap
uses PR_SET_PDEATHSIG where the parent is single-threaded (the fork server's launchers, the
init, the program). The fork server itself needs neither: it exits when its request socket, which
only the harness process holds, reaches EOF (`sandbox_child.serve`).

Linux only (F_SETSIG, /proc), like the sandbox.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import threading

ENVIRONMENT_VARIABLE = "HARNESS_LIFELINE_FD"
"""Names the lifeline's read end in an exec'd helper's environment (`child_environment`)."""

_lock = threading.Lock()
_pipe: tuple[int, int, int] | None = None
"""(pid that made it, read end, write end) of this process's lifeline, made on first use."""


def parent_end() -> int:
    """The read end of this process's lifeline, for the children it starts (see the module
    docstring); made on first use, kept open for the life of the process."""
    global _pipe
    with _lock:
        if _pipe is None or _pipe[0] != os.getpid():
            read_end, write_end = os.pipe()  # both non-inheritable: an exec'd child gets only what pass_fds names
            _pipe = (os.getpid(), read_end, write_end)
        return _pipe[1]


def child_environment(environment: dict[str, str]) -> dict[str, str]:
    """`environment` plus the variable that tells an exec'd helper its lifeline; start the helper
    with `pass_fds` including `parent_end()`."""
    return {**environment, ENVIRONMENT_VARIABLE: str(parent_end())}


def die_with_parent(fd: int) -> None:
    """In a child, first thing: be SIGKILLed by the kernel when the process that made the lifeline
    `fd` (its read end) exits. Closes `fd` (the child keeps a description of its own, closed at
    exec, and so not passed on to the child's own children)."""
    own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    os.close(fd)
    # Owner and signal belong to the open file description: siblings must not share one, hence own.
    fcntl.fcntl(own, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(own, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(own, fcntl.F_SETFL, fcntl.fcntl(own, fcntl.F_GETFL) | os.O_ASYNC)
    if select.select([own], [], [], 0)[0]:  # at EOF already: the parent died before the line above
        os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent_from_environment() -> bool:
    """`die_with_parent` in an exec'd helper started with `child_environment`; whether it had a
    lifeline. The variable is removed, so that the helper's own children do not read it as theirs."""
    value = os.environ.pop(ENVIRONMENT_VARIABLE, None)
    if value is None:
        return False
    die_with_parent(int(value))
    return True


def _close_in_child() -> None:
    """After a fork, in the child: the parent's write end must not be held by anyone else, or the
    pipe would not reach EOF when the parent dies. The child makes its own lifeline if it needs one."""
    global _pipe, _lock
    _lock = threading.Lock()
    if _pipe is not None:
        os.close(_pipe[2])
        _pipe = None


os.register_at_fork(after_in_child=_close_in_child)
