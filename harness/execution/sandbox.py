"""Run untrusted Python programs (code rewards) with bounded time, memory, output and reach.

Code rewards execute programs a language model wrote, thousands per RL step. `run(code, stdin)`
executes one program and returns an `Execution`; `run_many(jobs)` runs many in parallel, in order;
`outputs_match` is the comparison the code scorer uses; `use_fork_server` chooses how runs start
and `stop_fork_server` stops this process's fork server (see "How a run works");
`python -m harness.execution.sandbox` prints the throughput of trivial programs (executions per
second).

Threat model
------------
Stopped (accidents and naive hostile code):
  * infinite loops and sleeps: a wall-clock deadline kills the whole run; RLIMIT_CPU backs it up;
  * fork, thread and subprocess bombs: each concurrent run gets its own unprivileged uid, whose
    RLIMIT_NPROC (processes and threads, counted per uid) is 64;
  * memory bombs: RLIMIT_AS per process (`memory_mb`);
  * output floods: stdout and stderr are read incrementally and capped at 1 MiB each;
  * disk writes: RLIMIT_FSIZE (16 MiB per file), RLIMIT_NOFILE (64); files go to a fresh working
    directory that is removed afterwards;
  * writes and deletions outside that directory: the program runs as a dedicated uid that owns
    nothing on the host, and the world-writable places (/tmp, /var/tmp, /dev/shm, /run/lock) are
    replaced by private mounts; /tmp *is* its working directory;
  * reading the parent's environment (secrets): the program gets a fresh minimal environment, and
    a private /proc that shows only its own processes;
  * network access: a fresh network namespace with only a loopback device that is down, so every
    connect fails at once (loopback included);
  * killing the parent or other runs: the uid cannot signal the harness (root or another uid), and
    a private pid namespace hides every other process;
  * lingering children (`sleep 100 &`, double fork + setsid daemons): every process of a run lives
    in the run's pid namespace; when the program exits or is killed, the kernel kills the rest.
    SysV IPC objects die with the run's private IPC namespace.

Not stopped (this is not a VM or a container; run the harness inside one for real adversaries):
  kernel exploits and anything a seccomp filter would block (no syscall filtering); side channels;
  reading world-readable host files (/etc, the repository, world-connectable unix sockets); CPU,
  memory-bandwidth and disk contention with neighbours; total memory of a run is bounded only by
  64 processes x `memory_mb` (run the harness in a memory-limited cgroup); disk use of the working
  directory is bounded only by time x bandwidth (each file is at most 16 MiB); unprivileged user
  namespaces, where the kernel allows them (more kernel surface, no more host access).

How a run works (as root)
-------------------------
Every run is three fresh processes, forked from a bootstrap interpreter (`sandbox_child.py`, run
as `-c` text that a one-line stub reads from an inherited memfd, so `ps` shows the stub, not the
text; started with vfork+exec: no `preexec_fn`, so it is safe from threads and cheap from a parent
with a large address space):

  launcher (root)  unshare(net, mount, pid, ipc), fork the init, wait for it;
                   SIGUSR1 from the parent means "kill the run".
  init (root)      pid 1 of the new pid namespace: private mounts, fork the program, reap
                   orphans, report the program's wait status and CPU time on a status pipe, exit.
                   When the init exits the kernel kills every process left in the namespace, and
                   the launcher sees the init exit only after that, so "launcher exited" means
                   "nothing of this run is alive".
  program (uid)    resource limits, drop to the slot uid, no_new_privs, then run the code. It is a
                   fork of the bootstrap interpreter, so there is no second interpreter start.

Without namespaces the launcher also kills the init's process group (the program and the
children that stayed in it) and, as root, every process of the slot uid before it exits.

The launcher comes one of two ways (`use_fork_server`; `harness bench sandbox` compares them):

  fork server  (the default) One bootstrap per harness process, started by the first run (the
               mode probe) and kept, waits on a unix socket (`sandbox_child.serve`). For each run
               the harness sends the run's parameters and five pipe ends (stdin, stdout, stderr,
               status, alive); the server hands them to a launcher, which from there is a per-run
               bootstrap in every respect: it runs exactly one program and exits with it. The
               launchers are started ahead of need: the server keeps two spares forked, each in
               its new namespaces (the slow part of a start, done before the code is known),
               waiting for a run; it forks a new spare after each hand-over, while that run goes
               on. The server never runs a program and holds nothing of one (the code is in the
               run's working directory; its stdin goes down the run's own pipe). A run costs no
               interpreter start and its imports: about half the CPU of a per-run start, which is
               what bounds runs per second on a busy machine, and the spares take the namespaces
               off its wall time (results/experiments/2026-12-01-sandbox-prestart.md). Idle
               spares hold a copy of the host's mount table: a file system unmounted on the host
               stays mounted in their namespaces until they are used or let go.
               The launcher is the server's child, not the harness's: the harness learns that it,
               and so the whole run, is gone from EOF on the alive pipe (only the launcher holds
               its write end), and signals it through the server, which signals only launchers it
               has not reaped, so never a reused pid. The server exits when the harness closes the
               socket (`stop_fork_server`; at exit: atexit, and a multiprocessing finalizer in
               scorer workers, which leave without atexit) or dies (EOF), after killing and
               reaping its launchers. A forked harness process starts its own server.
  per run      The bootstrap is started for this run alone and is itself the launcher: how runs
               started before the fork server; kept for comparison, and used when the fork server
               fails its probe.

A program cannot tell the two apart (tests/test_sandbox.py runs a corpus both ways and compares
every field but the wall time), except through `sys.orig_argv` and /proc/self/cmdline (the
server's command line) and the address-space layout, which with the server is the same in every
run (ASLR happens at exec, not at fork); the layout tells a program nothing it can use against the
server: it has no descriptor of it, another uid and another pid namespace. Not done: gc.freeze in
the server (it would spare each program's collections some copy-on-write faults, but frozen
objects are not torn down at exit, so a program's `__del__` at exit would not run), and whole
bootstraps started ahead of need, one interpreter per run (that takes the interpreter's start off
a run's wall time but not off the CPU, and code scoring on a small machine is CPU-bound).

Choices and fallbacks (each fallback warns once, loudly):
  * No `preexec_fn`: it forks the caller (slow when the trainer maps many GB) and is not safe
    with threads (`run_many`); the bootstrap does the same work in a fresh single-threaded process.
  * No cgroup: the pid namespace already gives what `cgroup.kill` would (an exact, atomic "kill
    everything of this run", setsid or not), on cgroup v1 and v2 alike and without a delegated
    hierarchy. A per-run memory cgroup would also bound a run's total memory: see "Not stopped".
  * Interpreter flags `-S -B`: no `site`, so programs see the standard library only (rewards do
    not depend on what the harness venv has installed, and start-up is ~3x faster); `exit` and
    `quit` are provided as `site` would. Not `-I`/`-E`, because the environment is entirely ours
    and PYTHONHASHSEED=0 must apply (set and dict-of-str ordering, so rewards are reproducible).
  * The fork server must pass the same probe as a per-run start (one program run through it);
    if it does not, every run starts its own bootstrap. If the server dies (a crash, or, without
    root, a program of the same uid killing it), runs in flight end `killed` or in SandboxError and
    the next run starts a new server.
  * The interpreter is `sys.executable` if the sandbox uid can use its standard library;
    otherwise (e.g. a pyenv under a 0700 /root) the first usable `/usr/bin/python3.X`.
  * Slot uids 61000.. (no passwd entries needed): one per concurrent run, locked with flock, so
    RLIMIT_NPROC and cleanup are per run even across processes. The kernel releases the lock of a
    process that dies, and nothing outlives a harness process to hold a copy of it (its helpers
    die with it: `harness.execution.lifeline`), so a killed run's slots are free for the next.
  * No CAP_SYS_ADMIN (namespaces refused): the program still drops to its slot uid; at the end
    every process of that uid is killed (kill(-1) as that uid) and files it left at the top of
    the world-writable directories are removed; network, /proc and other world-writable files
    are then NOT isolated.
  * Not root: the program keeps the caller's uid; only its process group is killed at the end
    (a setsid'ed escapee survives until its RLIMIT_CPU), RLIMIT_NPROC is the user's current task
    count + 64, and nothing outside the working directory is protected beyond file permissions.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import itertools
import logging
import math
import multiprocessing.util
import os
import pwd
import select
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

logger = logging.getLogger(__name__)

STATUSES = ("ok", "error", "timeout", "memory", "output_limit", "killed")
OUTPUT_LIMIT_BYTES = 1 << 20
"""Cap on captured stdout and on captured stderr; more output ends the run (`output_limit`)."""
FILE_SIZE_BYTES = 16 << 20
"""RLIMIT_FSIZE: the largest file a program can write."""
OPEN_FILES = 64
"""RLIMIT_NOFILE."""
PROCESSES = 64
"""RLIMIT_NPROC for a run's uid: processes and threads together."""
SLOT_UID_BASE = 61000
SLOT_COUNT = 128
"""Runs as root use uids SLOT_UID_BASE .. SLOT_UID_BASE + SLOT_COUNT - 1, one per concurrent run.
They must not belong to anyone else on the machine (checked against the passwd database)."""
STARTUP_GRACE_S = 5.0
"""Time the bootstrap may take to start before the deadline applies to the program itself."""
KILL_GRACE_S = 10.0
"""Time the launcher gets to take a run down after SIGUSR1 before its group is SIGKILLed."""
DRAIN_S = 1.0
"""Once the program has exited, how long its output pipes may stay open (held by descendants that
are being killed, or, without root, by escapees) before the parent stops reading."""
WORKDIR_PREFIX = "harness-sandbox-run-"
"""Working directories are tempdir/WORKDIR_PREFIX<pid of the harness process>-<random>; a fork
server's command line ends with WORKDIR_PREFIX<pid>-fork-server (`workdir_owner` reads both)."""
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")
"""Directories every uid may write to: masked by private mounts (or swept, without namespaces)."""
SANDBOX_CHILD = Path(__file__).with_name("sandbox_child.py")
"""The bootstrap program (launcher, init, program set-up; standard library only). Its text is read
once, here, and run with `-c`, never by path: sys.path[0] stays '' (the working directory) and the
program inherits no `__file__` or loader of it, and the child never has to read the file (as the
slot uid, or through the run's private mounts). The text itself is not on the command line (`ps`
would print its 23 kB for every run): it waits in a sealed memfd, and `-c` gets a one-line stub
that reads it from that inherited descriptor, closes it and runs it (`_bootstrap_command`)."""
_BOOTSTRAP = SANDBOX_CHILD.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Execution:
    """What happened when one program ran."""

    status: str
    """`ok` (exit 0), `error` (nonzero exit), `timeout` (wall clock or CPU limit), `memory`
    (MemoryError or out of address space), `output_limit` (stdout or stderr over the cap) or
    `killed` (a signal the sandbox did not send, e.g. a segfault or the program killing itself)."""
    stdout: str
    stderr: str
    exit_code: int | None
    """The exit status; minus the signal number if a signal ended it; None if the sandbox
    stopped the program (timeout, output limit)."""
    wall_s: float


@dataclass(frozen=True)
class Job:
    """One program for `run_many`."""

    code: str
    stdin: str = ""
    timeout_s: float = 5.0
    memory_mb: int = 1024


@dataclass(frozen=True)
class _Mode:
    """How runs are isolated and started on this machine; chosen once by `_sandbox_mode`."""

    python: str
    """Interpreter for the bootstrap and the program; its standard library is readable by the uid."""
    isolate: bool
    """Private net, mount, pid and IPC namespaces (root with CAP_SYS_ADMIN)."""
    drop_uid: bool
    """Run as a per-run slot uid (root)."""
    fork_server: bool = False
    """Runs may be started by this process's fork server (its probe passed here); otherwise every
    run starts a bootstrap interpreter of its own."""


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program): setup refused, bootstrap crashed."""


def outputs_match(actual: str, expected: str) -> bool:
    """Whether two outputs have the same whitespace-separated tokens (the code scorer's test)."""
    return actual.split() == expected.split()


def run(code: str, stdin: str = "", timeout_s: float = 5.0, memory_mb: int = 1024) -> Execution:
    """Run `code` as a Python 3 program with `stdin`, at most `timeout_s` seconds of wall clock and
    `memory_mb` MiB of address space per process; see the module docstring for the isolation."""
    if timeout_s <= 0 or memory_mb <= 0:
        raise ValueError(f"timeout_s and memory_mb must be positive, got {timeout_s}, {memory_mb}")
    mode = _sandbox_mode()
    served = mode.fork_server and _fork_server_wanted
    with _uid_slot(mode.drop_uid) as uid:
        return _execute(code, stdin, timeout_s, memory_mb, mode, uid, served)


def run_many(jobs: Sequence[Job], workers: int | None = None) -> list[Execution]:
    """Run `jobs` on `workers` threads (default: the CPU count), results in the order of `jobs`.
    Each run is its own process tree with its own slot uid, so the threads only wait."""
    workers = workers or os.cpu_count() or 1
    _sandbox_mode()  # choose (and warn) once, before the threads start
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda job: run(job.code, job.stdin, job.timeout_s, job.memory_mb), jobs))


def use_fork_server(enabled: bool) -> bool:
    """Start runs through this process's fork server (True, the default; it applies where the
    server's probe passed) or each with a bootstrap interpreter of its own (False: the way runs
    started before the fork server, kept so that `harness bench sandbox` can compare the two, and
    as a way out). Process-wide, read as each run starts, inherited by forked scorer workers;
    returns the previous setting."""
    global _fork_server_wanted
    previous, _fork_server_wanted = _fork_server_wanted, bool(enabled)
    return previous


def stop_fork_server() -> None:
    """Stop this process's fork server and wait for it to exit; runs still in flight are killed
    (they end `killed`, or in SandboxError). Runs at exit; the next run starts a new server."""
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.close()


def benchmark(n: int = 200, workers: int | None = None) -> dict:
    """Throughput of `n` trivial legitimate programs (read two numbers, print the sum), started the
    way runs start now (`use_fork_server`; `fork_server` in the result says which way that was)."""
    workers = workers or os.cpu_count() or 1
    mode = _sandbox_mode()  # the one-off probe (and the fork server's start) is not part of the measurement
    code = "a, b = map(int, input().split())\nprint(a + b)\n"
    jobs = [Job(code, f"{i} {i + 1}\n") for i in range(n)]
    start = time.monotonic()
    results = run_many(jobs, workers)
    seconds = time.monotonic() - start
    wrong = [i for i, r in enumerate(results) if r.status != "ok" or r.stdout != f"{2 * i + 1}\n"]
    if wrong:
        raise SandboxError(f"benchmark program {wrong[0]} failed: {results[wrong[0]]}")
    return {"executions": n, "workers": workers, "seconds": round(seconds, 3),
            "executions_per_s": round(n / seconds, 1), "fork_server": mode.fork_server and _fork_server_wanted}


# --- one run ---------------------------------------------------------------------------------

def _execute(code: str, stdin: str, timeout_s: float, memory_mb: int, mode: _Mode, uid: int,
             served: bool) -> Execution:
    """One run in a fresh working directory, which is removed afterwards whatever happens;
    `served`: started by the fork server, else by a bootstrap of its own."""
    workdir = tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")
    start = time.monotonic()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8", errors="replace") as f:
            f.write(code)
        os.chmod(os.path.join(workdir, "main.py"), 0o644)
        if uid >= 0:
            os.chown(workdir, uid, uid)
        cpu_s = math.ceil(timeout_s) + 1
        limits = _Limits(cpu_s, memory_mb << 20, FILE_SIZE_BYTES, OPEN_FILES,
                         PROCESSES if uid >= 0 else _count_tasks(os.getuid()) + PROCESSES)
        stdout, stderr, status, stopped = _spawn_and_collect(mode, uid, workdir, limits, stdin.encode(), timeout_s,
                                                             served)
    finally:
        _remove_tree(workdir)
        if uid >= 0 and not mode.isolate:
            _sweep_world_writable(uid)
    out = stdout.decode("utf-8", errors="replace")
    err = stderr.decode("utf-8", errors="replace")
    verdict, exit_code = _classify(stopped, status, err, cpu_s)
    return Execution(verdict, out, err, exit_code, round(time.monotonic() - start, 4))


@dataclass(frozen=True)
class _Limits:
    """Resource limits of the program process (setrlimit values)."""

    cpu_s: int
    memory_bytes: int
    file_bytes: int
    open_files: int
    processes: int


def _bootstrap_words(mode: _Mode, uid: int, workdir: str, limits: _Limits, status_fd: int,
                     parent_pid: int) -> list[str]:
    """The bootstrap's parameters, as they follow `-c TEXT` on a per-run command line (see
    `sandbox_child.py` for what the numbers mean); a fork server request carries the same."""
    numbers = [status_fd, parent_pid, int(mode.isolate), uid, uid, limits.cpu_s, limits.memory_bytes,
               limits.file_bytes, limits.open_files, limits.processes]
    masks = _mask_dirs() if mode.isolate else []
    return [*map(str, numbers), workdir, *masks]


def _bootstrap_argv(mode: _Mode, uid: int, workdir: str, limits: _Limits, status_fd: int) -> list[str]:
    """Command line of a per-run bootstrap; the child must inherit `_bootstrap_text_fd()`."""
    words = _bootstrap_words(mode, uid, workdir, limits, status_fd, os.getpid())
    return _bootstrap_command(mode.python, words)


def _bootstrap_command(python: str, words: list[str]) -> list[str]:
    """`python -S -B -c STUB WORDS...`: the stub reads the bootstrap's text from the inherited memfd
    (`_bootstrap_text_fd`), closes it and runs the text in `__main__`, as `-c TEXT` would. So the
    program still sees what `-c` gives (sys.path[0] '', argv[0] '-c' until its own is set, no
    `__file__` or loader of the bootstrap; the stub's two names go with the bootstrap's own in
    `run_program`), and `ps` shows about a hundred characters, not the whole bootstrap."""
    fd = _bootstrap_text_fd()
    stub = f"import os;t=os.pread({fd},{len(_BOOTSTRAP_BYTES)},0);os.close({fd});exec(t)"
    return [python, "-S", "-B", "-c", stub, *words]


_BOOTSTRAP_BYTES = _BOOTSTRAP.encode("utf-8")
_bootstrap_fd = -1
_bootstrap_fd_lock = threading.Lock()


def _bootstrap_text_fd() -> int:
    """A memfd holding the bootstrap's text, made once per process and sealed (no write, no resize),
    close-on-exec: only a bootstrap it is passed to (pass_fds) inherits it, and its stub closes it
    before anything else runs. A forked harness process inherits it and uses the same one."""
    global _bootstrap_fd
    with _bootstrap_fd_lock:
        if _bootstrap_fd < 0:
            fd = os.memfd_create("harness-sandbox-bootstrap", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            os.write(fd, _BOOTSTRAP_BYTES)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            _bootstrap_fd = fd
        return _bootstrap_fd


def _environment(home: str) -> dict[str, str]:
    """The bootstrap's whole environment, which the program inherits."""
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": home,
            "TMPDIR": home, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


@dataclass
class _Pipes:
    """A run's pipes: the harness's ends (it writes `stdin` and reads `stdout`, `stderr` and
    `status`; -1 once closed) and the bootstrap's ends (`child`: stdin, stdout, stderr, status),
    which the harness closes as soon as the launcher has its copies."""

    stdin: int
    stdout: int
    stderr: int
    status: int
    child: list[int]

    @staticmethod
    def open() -> _Pipes:
        fds: list[int] = []
        try:
            for _ in range(4):
                fds.extend(os.pipe())
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        in_r, in_w, out_r, out_w, err_r, err_w, status_r, status_w = fds
        return _Pipes(in_w, out_r, err_r, status_r, child=[in_r, out_w, err_w, status_w])

    def close_child(self) -> None:
        for fd in self.child:
            os.close(fd)
        self.child = []

    def close_stdin(self) -> None:
        if self.stdin >= 0:
            os.close(self.stdin)
            self.stdin = -1

    def close(self) -> None:
        """Close the harness's ends that are still open."""
        self.close_stdin()
        for name in ("stdout", "stderr", "status"):
            if getattr(self, name) >= 0:
                os.close(getattr(self, name))
                setattr(self, name, -1)


def _spawn_and_collect(mode: _Mode, uid: int, workdir: str, limits: _Limits, stdin: bytes, timeout_s: float,
                       served: bool) -> tuple[bytes, bytes, str, str | None]:
    """Start the run's launcher (forked by the fork server if `served`, else a bootstrap of its
    own), feed stdin, collect capped output until everything of the run has exited or it must be
    stopped. Returns (stdout, stderr, status report, why stopped or None)."""
    home = "/tmp" if mode.isolate else workdir
    pipes = _Pipes.open()
    try:
        launcher = (_ServedLauncher if served else _PerRunLauncher)(mode, uid, workdir, limits, home, pipes)
    except BaseException:
        pipes.close()
        raise
    finally:
        pipes.close_child()
    try:
        stdout, stderr, status, stopped, ready = _collect(pipes, stdin, timeout_s, launcher)
    except BaseException:
        launcher.kill()
        raise
    finally:
        pipes.close()
        launcher.wait()
    if status.startswith("error") or launcher.failed(status, stopped, ready):
        detail = status or stderr.decode("utf-8", errors="replace")[-2000:]
        raise SandboxError(f"sandbox setup failed ({mode}): {detail.strip()}")
    return stdout, stderr, status, stopped


class _PerRunLauncher:
    """A bootstrap interpreter started (vfork+exec) for this run alone; the harness's child."""

    def __init__(self, mode: _Mode, uid: int, workdir: str, limits: _Limits, home: str, pipes: _Pipes):
        stdin_r, stdout_w, stderr_w, status_w = pipes.child
        self.proc = subprocess.Popen(_bootstrap_argv(mode, uid, workdir, limits, status_w),
                                     stdin=stdin_r, stdout=stdout_w, stderr=stderr_w, cwd=workdir,
                                     env=_environment(home), pass_fds=(status_w, _bootstrap_text_fd()),
                                     start_new_session=True)

    def stop(self, ready: bool) -> None:
        """Ask the launcher to kill the run (it kills the namespace's init and waits for the kernel
        to kill the rest). Before it is ready, SIGKILL it: the init and the program follow it
        through their parent-death signal."""
        if ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGUSR1)
        else:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the launcher's process group (safe: the launcher is not reaped yet). The last
        resort: the init follows through its parent-death signal, and with namespaces so does
        everything else."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def wait(self) -> None:
        """Wait for the launcher; it exits only after the whole run is gone."""
        try:
            self.proc.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            logger.warning("sandbox launcher %d did not exit; killing its group", self.proc.pid)
            self.kill()
            self.proc.wait()

    def failed(self, status: str, stopped: str | None, ready: bool) -> bool:
        """Whether the bootstrap died without a report (e.g. the interpreter did not start)."""
        return not status and not stopped and self.proc.returncode != 0


class _ServedLauncher:
    """A launcher of the fork server for this run (a spare, or one forked for it). It is the
    server's child, not the harness's: the harness signals it through the server, and learns that
    it (and so the whole run) is gone from EOF on the alive pipe, whose write end only the
    launcher holds."""

    def __init__(self, mode: _Mode, uid: int, workdir: str, limits: _Limits, home: str, pipes: _Pipes):
        self.alive_r, alive_w = os.pipe()
        words = _bootstrap_words(mode, uid, workdir, limits, status_fd=-1, parent_pid=-1)  # the server's to fill in
        try:
            self.server, self.run_id = _start_on_fork_server(mode.python, home, words, [*pipes.child, alive_w])
        except BaseException:
            os.close(self.alive_r)
            raise
        finally:
            os.close(alive_w)

    def stop(self, ready: bool) -> None:
        """As `_PerRunLauncher.stop`, sent through the server (which signals only a launcher it has
        not reaped, so never a process that reused the pid)."""
        self.server.signal_run(self.run_id, "usr1" if ready else "group")

    def kill(self) -> None:
        self.server.signal_run(self.run_id, "group")

    def wait(self) -> None:
        """Wait for EOF on the alive pipe. If it does not come: SIGKILL the launcher's group; if it
        still does not (the server does not answer), SIGKILL the server, whose launchers follow."""
        try:
            if _wait_for_eof(self.alive_r, KILL_GRACE_S):
                return
            logger.warning("sandbox launcher of run %d did not exit; killing its group", self.run_id)
            self.kill()
            if _wait_for_eof(self.alive_r, KILL_GRACE_S):
                return
            logger.warning("sandbox fork server %d does not answer; killing it", self.server.process.pid)
            self.server.kill()
            _wait_for_eof(self.alive_r, None)
        finally:
            os.close(self.alive_r)

    def failed(self, status: str, stopped: str | None, ready: bool) -> bool:
        """Whether the launcher went away without a report (never `ready`, not stopped by us)."""
        return not status and not stopped and not ready


def _wait_for_eof(fd: int, timeout_s: float | None) -> bool:
    """Whether the pipe `fd` reached EOF (all its write ends closed) within `timeout_s` seconds."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if poller.poll(None if remaining is None else remaining * 1000) and os.read(fd, 1 << 10) == b"":
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False


def _collect(pipes: _Pipes, stdin: bytes, timeout_s: float,
             launcher: _PerRunLauncher | _ServedLauncher) -> tuple[bytes, bytes, str, str | None, bool]:
    """The parent's event loop: write stdin, read stdout, stderr and the status pipe, enforce the
    deadline and the output caps. The deadline starts when the launcher reports `ready`; once the
    init reports the program's exit, the rest is cleanup and only DRAIN_S more is waited for.
    Returns (stdout, stderr, status report, why stopped or None, whether the launcher was ready)."""
    deadline = time.monotonic() + timeout_s + STARTUP_GRACE_S
    outputs = {pipes.stdout: bytearray(), pipes.stderr: bytearray()}
    status = bytearray()
    reading = {*outputs, pipes.status}
    ready, exited, stopped, pending = False, False, None, memoryview(stdin)
    with selectors.DefaultSelector() as selector:
        for fd in reading:
            selector.register(fd, selectors.EVENT_READ)
        stdin_fd = pipes.stdin
        if pending:
            os.set_blocking(stdin_fd, False)
            selector.register(stdin_fd, selectors.EVENT_WRITE)
        else:
            pipes.close_stdin()
        while reading:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stopped = None if exited else "timeout"
                break
            for key, _ in selector.select(remaining):
                fd = key.fd
                if fd == stdin_fd:
                    pending = _write_some(fd, pending)
                    if not pending:
                        selector.unregister(fd)
                        pipes.close_stdin()
                    continue
                data = os.read(fd, 1 << 16)
                if not data:
                    selector.unregister(fd)
                    reading.discard(fd)
                elif fd == pipes.status:
                    status += data
                    if not ready and b"ready\n" in status:
                        ready, deadline = True, time.monotonic() + timeout_s
                    if not exited and b"\nexit " in b"\n" + status:
                        exited, deadline = True, time.monotonic() + DRAIN_S
                else:
                    outputs[fd] += data
                    if len(outputs[fd]) > OUTPUT_LIMIT_BYTES:
                        del outputs[fd][OUTPUT_LIMIT_BYTES:]
                        stopped = "output_limit"
            if stopped:
                break
    if stopped:
        launcher.stop(ready)
    lines = [line for line in status.decode(errors="replace").splitlines() if line != "ready"]
    return bytes(outputs[pipes.stdout]), bytes(outputs[pipes.stderr]), "\n".join(lines), stopped, ready


def _write_some(fd: int, pending: memoryview) -> memoryview:
    """Write what the stdin pipe takes now; what is left (empty when done or the reader is gone)."""
    try:
        return pending[os.write(fd, pending[: 1 << 16]):]
    except BlockingIOError:
        return pending
    except (BrokenPipeError, ConnectionResetError):
        return pending[:0]


def _classify(stopped: str | None, status: str, stderr: str, cpu_s: int) -> tuple[str, int | None]:
    """(status, exit code) from why the sandbox stopped the run, the init's `exit <wait status>
    <cpu seconds>` report and the program's stderr."""
    if stopped:
        return stopped, None
    if not status.startswith("exit "):
        return "killed", None  # the init itself was killed (e.g. by the OOM killer)
    _, raw, cpu = status.split()[:3]
    wait_status, cpu_used = int(raw), float(cpu)
    last_line = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    out_of_memory = "MemoryError" in last_line or "Cannot allocate memory" in last_line
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        if code == 0:
            return "ok", 0
        return ("memory" if out_of_memory else "error"), code
    signum = os.WTERMSIG(wait_status)
    if signum == signal.SIGXCPU or (signum == signal.SIGKILL and cpu_used >= cpu_s - 0.5):
        return "timeout", -signum
    return ("memory" if out_of_memory else "killed"), -signum


# --- the fork server (one per harness process) ---------------------------------------------------

class _ForkServer:
    """This process's fork server: a bootstrap interpreter running `sandbox_child.serve`, which
    hands each run request to a launcher it forked (see "How a run works"). Its command line ends
    with a name `workdir_owner` reads as this process's pid, as a per-run bootstrap's working
    directory is."""

    def __init__(self, python: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        owner = f"{WORKDIR_PREFIX}{os.getpid()}-fork-server"
        try:
            self.process = subprocess.Popen(
                _bootstrap_command(python, ["serve", str(theirs.fileno()), owner]),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                env=_environment("/tmp"), pass_fds=(theirs.fileno(), _bootstrap_text_fd()), start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.python = python
        self.socket = ours

    def start(self, run_id: int, home: str, words: list[str], fds: list[int]) -> None:
        """Ask for a launcher for run `run_id`, with `fds` (stdin, stdout, stderr, status, alive)."""
        message = b"\0".join(os.fsencode(field) for field in ("run", str(run_id), home, *words))
        socket.send_fds(self.socket, [message], fds)

    def signal_run(self, run_id: int, how: str) -> None:
        """`usr1`: ask run `run_id`'s launcher to kill the run; `group`: SIGKILL its process group."""
        with contextlib.suppress(OSError):
            self.socket.send(f"kill\0{run_id}\0{how}".encode())

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the server; every launcher it forked follows through its parent-death signal."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    def close(self) -> None:
        """Close the request socket (the server kills and reaps its launchers, then exits) and wait."""
        self.socket.close()
        try:
            self.process.wait(timeout=KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()


_fork_server_wanted = True
"""`use_fork_server`'s setting."""
_server: _ForkServer | None = None
_server_lock = threading.Lock()
_run_ids = itertools.count(1)
_parents_servers: list[_ForkServer] = []
"""Fork servers a forked child inherited from its parent: kept, never used, waited for or killed."""
_exit_hook_pid = -1


def _start_on_fork_server(python: str, home: str, words: list[str], fds: list[int]) -> tuple[_ForkServer, int]:
    """Send a run request to this process's fork server (started, or restarted once if it died)."""
    run_id = next(_run_ids)
    server = _fork_server(python)
    try:
        server.start(run_id, home, words, fds)
    except OSError:  # it exited since it was last used (killed, or crashed)
        _discard_fork_server(server)
        try:
            server = _fork_server(python)
            server.start(run_id, home, words, fds)
        except OSError as exc:
            raise SandboxError(f"sandbox fork server unusable: {exc}") from exc
    return server, run_id


def _fork_server(python: str) -> _ForkServer:
    """This process's fork server, started if there is none (or the last one exited)."""
    global _server, _exit_hook_pid
    with _server_lock:
        if _server is not None and (_server.python != python or not _server.alive()):
            if _server.python == python:
                logger.warning("sandbox fork server %d exited (%s); starting another",
                               _server.process.pid, _server.process.returncode)
            old, _server = _server, None
            old.close()
        if _server is None:
            _server = _ForkServer(python)
            if _exit_hook_pid != os.getpid():
                # A multiprocessing child (a scorer worker) leaves through os._exit after running
                # multiprocessing's finalizers, never atexit's: stop the server there too.
                _exit_hook_pid = os.getpid()
                multiprocessing.util.Finalize(None, stop_fork_server, exitpriority=0)
        return _server


def _discard_fork_server(server: _ForkServer) -> None:
    """Forget `server` (if it is still this process's) and reap it."""
    global _server
    with _server_lock:
        if _server is server:
            _server = None
    server.close()


def _forget_the_parents_fork_server() -> None:
    """In a forked child: the fork server belongs to the parent. Close this copy of its socket (the
    server sees EOF only once the parent closes its own) and keep the object; the child starts its
    own server on its first run."""
    global _server, _server_lock
    _server_lock = threading.Lock()
    if _server is not None:
        _server.socket.close()
        _parents_servers.append(_server)
        _server = None


os.register_at_fork(after_in_child=_forget_the_parents_fork_server)
atexit.register(stop_fork_server)


# --- choosing how to isolate (once per process) ------------------------------------------------

_mode: _Mode | None = None
_mode_lock = threading.Lock()


def _sandbox_mode() -> _Mode:
    """The strongest isolation that works here, probed once with a real run; warns on fallbacks."""
    global _mode
    with _mode_lock:
        if _mode is None:
            _mode = _select_mode()
        return _mode


def _select_mode() -> _Mode:
    _remove_stale_workdirs()
    root = os.geteuid() == 0
    if root:
        _check_slot_uids_unused()
    failures = []
    for isolate in ((True, False) if root else (False,)):
        for python in _interpreter_candidates():
            mode = _Mode(python, isolate, root)
            problem = _probe(mode)
            if problem is None:
                mode = _with_fork_server(mode, failures)
                _warn_about(mode, failures)
                return mode
            failures.append(f"{mode}: {problem}")
    raise SandboxError("no working sandbox configuration:\n  " + "\n  ".join(failures))


def _with_fork_server(mode: _Mode, failures: list[str]) -> _Mode:
    """`mode` with the fork server if the probe passes through it too (the server it started is
    this process's from then on); else `mode`, whose runs each start their own bootstrap."""
    served = replace(mode, fork_server=True)
    problem = _probe(served)
    if problem is None:
        return served
    failures.append(f"{served}: {problem}")
    stop_fork_server()
    return mode


def _probe(mode: _Mode) -> str | None:
    """None if a small program runs correctly under `mode`, else what went wrong. The program also
    checks that it can see its own interpreter: one under a directory the sandbox masks (a venv in
    /tmp, say) starts, but a program could not start it again (`subprocess` + sys.executable)."""
    code = ("import collections, math, os, sys\n"
            "assert os.access(sys.executable, os.X_OK), 'interpreter not visible in the sandbox'\n"
            "print(math.isqrt(collections.Counter('aab')['a'] ** 2))\n")
    try:
        with _uid_slot(mode.drop_uid) as uid:
            result = _execute(code, "", 20.0, 512, mode, uid, mode.fork_server)
    except (SandboxError, OSError) as exc:
        return str(exc)
    if result.status == "ok" and result.stdout == "2\n":
        return None
    return f"probe program: {result.status}: {result.stderr.strip()[-300:]}"


def _interpreter_candidates() -> list[str]:
    """sys.executable first, then the file it links to (a venv's python is usually a symlink, and
    the venv's folder may be closed to the sandbox uid: tox makes .tox 0700), then system
    interpreters of the same and of any Python 3 version."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    names = [sys.executable, os.path.realpath(sys.executable) if sys.executable else "",
             f"/usr/bin/python{version}", f"/usr/local/bin/python{version}", "/usr/bin/python3"]
    found: list[str] = []
    for name in names:
        if name and name not in found and os.path.isfile(name) and os.access(name, os.X_OK):
            found.append(name)
    return found


def _warn_about(mode: _Mode, failures: list[str]) -> None:
    """Say loudly, once, what this machine's sandbox does not do."""
    problems = []
    if mode.python != sys.executable:
        problems.append(f"programs run with {mode.python}, not {sys.executable} (whose probe failed, e.g. "
                        "because the sandbox uid cannot read its standard library, or it lives under a "
                        "directory the sandbox masks, such as /tmp)")
    if not mode.drop_uid:
        problems.append("not root: programs keep this user's uid; escaped (setsid) descendants are not "
                        "tracked; files this user can write are not protected")
    if not mode.isolate:
        problems.append("no namespaces: programs have the network, see the host's /proc and can write "
                        "world-writable files")
    if not mode.fork_server:
        problems.append("the fork server failed its probe: every run starts an interpreter of its own "
                        "(about 2.5x slower)")
    if problems:
        message = "sandbox degraded: " + "; ".join(problems)
        logger.debug("sandbox probes that failed: %s", failures)
        warnings.warn(message, RuntimeWarning, stacklevel=4)


def _check_slot_uids_unused() -> None:
    """Refuse to run as uids that belong to real accounts (their processes could be killed)."""
    for uid in range(SLOT_UID_BASE, SLOT_UID_BASE + SLOT_COUNT):
        try:
            owner = pwd.getpwuid(uid).pw_name
        except KeyError:
            continue
        raise SandboxError(f"sandbox slot uid {uid} belongs to user {owner!r}; change SLOT_UID_BASE")


def _mask_dirs() -> list[str]:
    """The world-writable directories (other than /tmp) to hide behind private tmpfs mounts."""
    dirs = {os.path.realpath(d) for d in WORLD_WRITABLE if os.path.isdir(d)}
    return sorted(d for d in dirs if d != os.path.realpath("/tmp"))


# --- slot uids -------------------------------------------------------------------------------

_slots_in_use: set[int] = set()
_slots_lock = threading.Lock()


def _forget_the_parents_slots() -> None:
    """In a forked child: the slots in use are the parent's runs', not the child's (a slot the
    parent still holds stays locked against the child by its flock), and a thread of the parent
    may have held the lock at the fork."""
    global _slots_lock
    _slots_lock = threading.Lock()
    _slots_in_use.clear()


os.register_at_fork(after_in_child=_forget_the_parents_slots)


@contextlib.contextmanager
def _uid_slot(enabled: bool) -> Iterator[int]:
    """A uid no other run uses meanwhile, in this process or any other (flock on a lock file);
    -1 when not dropping privileges."""
    if not enabled:
        yield -1
        return
    lock_dir = _lock_dir()
    while True:
        with _slots_lock:
            for uid in range(SLOT_UID_BASE, SLOT_UID_BASE + SLOT_COUNT):
                if uid in _slots_in_use:
                    continue
                fd = os.open(os.path.join(lock_dir, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue
                _slots_in_use.add(uid)
                break
            else:
                uid = -1
        if uid >= 0:
            break
        time.sleep(0.02)  # every slot is busy: wait for one
    try:
        yield uid
    finally:
        with _slots_lock:
            _slots_in_use.discard(uid)
        # Unlock, not only close: a child forked meanwhile (a scorer worker) holds a copy of the
        # descriptor, and a lock is released only when its last copy closes. If this process
        # dies holding the lock, the kernel releases it: its helpers die with it (lifeline.py).
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lock_dir() -> str:
    """A root-only directory for the slot lock files."""
    path = os.path.join(tempfile.gettempdir(), "harness-sandbox-slots")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(f"{path} must be a directory owned by uid {os.geteuid()} with mode 0700")
    return path


# --- small helpers -----------------------------------------------------------------------------

def _remove_tree(path: str) -> None:
    """Remove a run's working directory, whatever the program did to its permissions."""
    if os.geteuid() != 0:  # root ignores permissions; anyone else must restore them first
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    with contextlib.suppress(OSError):
                        os.chmod(full, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def workdir_owner(path: str) -> int | None:
    """Pid of the harness process a run working directory (or a fork server's name) belongs to
    (see WORKDIR_PREFIX); None when `path` is not one."""
    name = os.path.basename(path)
    pid = name[len(WORKDIR_PREFIX):].split("-")[0] if name.startswith(WORKDIR_PREFIX) else ""
    return int(pid) if pid.isdigit() else None


def _remove_stale_workdirs() -> None:
    """Remove working directories left by harness processes that died mid-run (e.g. SIGKILL)."""
    pattern = os.path.join(tempfile.gettempdir(), WORKDIR_PREFIX + "*")
    for path in glob.glob(pattern):
        pid = workdir_owner(path)
        if pid is not None and not os.path.exists(f"/proc/{pid}"):
            _remove_tree(path)


def _sweep_world_writable(uid: int) -> None:
    """Without namespaces: remove what `uid` left at the top of the world-writable directories."""
    for directory in WORLD_WRITABLE:
        with contextlib.suppress(OSError), os.scandir(directory) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)


def _count_tasks(uid: int) -> int:
    """Processes and threads owned by `uid` (RLIMIT_NPROC counts both), from /proc."""
    count = 0
    with os.scandir("/proc") as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and entry.stat().st_uid == uid:
                    count += len(os.listdir(os.path.join(entry.path, "task")))
    return count


if __name__ == "__main__":
    print(benchmark())
