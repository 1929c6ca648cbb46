"""The sandbox's child program (the "bootstrap"): launcher, init and program set-up of one run.

This file is not imported by the harness. `harness.execution.sandbox` reads its text once and runs
it in a fresh interpreter, as the parent's child, for every sandboxed run (the module docstring of
`sandbox` describes the three processes it becomes and why):

  interpreter  `_Mode.python`: `sys.executable`, or a system `/usr/bin/python3.X` when the slot uid
               cannot use that one's standard library; any Python 3.8+.
  command      `<python> -S -B -c <this file's text> STATUS_FD PARENT_PID ISOLATE UID GID CPU_S
               MEMORY FSIZE NOFILE NPROC WORKDIR [MASK ...]` (built by `sandbox._bootstrap_argv`,
               read by `parse_argv`). The text is passed with `-c` rather than this file's path so
               that the program sees what it always saw: sys.path[0] is '' (its working directory,
               not this package's folder), sys.argv[0] is '-c' until the program's own argv is
               set, and no `__file__`, `__cached__` or source loader of this file is left in the
               globals the program inherits; nothing has to read this file as the slot uid or
               through the run's private mounts.
  fds          0, 1, 2: pipes to the parent (the program's stdin, stdout, stderr); STATUS_FD: the
               write end of the status pipe (`ready`, `exit <wait status> <cpu seconds>` or
               `error <what>`, one per line); nothing else (close_fds).
  environment  only what the parent sets: PATH=/usr/bin:/bin, LANG and LC_ALL=C.UTF-8, HOME and
               TMPDIR (/tmp with namespaces, else the working directory), PYTHONDONTWRITEBYTECODE=1,
               PYTHONHASHSEED=0; working directory WORKDIR; a new session; root when the parent is.

It must import only the standard library (and nothing `site` would have added): it runs under
whichever interpreter the sandbox chose, with `-S` and a scrubbed environment, possibly not the
harness's venv. The program process ends in `run_program`, which runs the model's main.py as
`__main__` in this same interpreter after deleting everything defined here from the globals.
Importing this module has no side effects beyond loading libc: the entry point is guarded.
"""

import _signal as signal  # _signal: no enum import
import _sitebuiltins
import builtins
import ctypes
import os
import resource
import sys
import time

# The run's parameters, set from the command line by the entry point (see `parse_argv`).
STATUS_FD = PARENT_PID = ISOLATE = UID = GID = CPU_S = MEMORY = FSIZE = NOFILE = NPROC = WORKDIR = MASKS = None
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x8000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 0x1000, 0x4000, 0x40000
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = (ctypes.c_int,) + (ctypes.c_ulong,) * 4
libc.mount.argtypes = (ctypes.c_char_p,) * 3 + (ctypes.c_ulong, ctypes.c_char_p)


def parse_argv(argv):
    """(STATUS_FD, PARENT_PID, ISOLATE, UID, GID, CPU_S, MEMORY, FSIZE, NOFILE, NPROC, WORKDIR,
    MASKS) from the command line: ten integers, the working directory, the directories to mask."""
    return (*map(int, argv[1:11]), argv[11], argv[12:])


def report(line):
    """A line for the parent on the status pipe."""
    os.write(STATUS_FD, line.encode() + b"\n")


def fail(what):
    report("error " + what)
    os._exit(125)


def call(result, what):
    """Fail the run unless a libc call returned 0."""
    if result != 0:
        fail("%s: %s" % (what, os.strerror(ctypes.get_errno())))


def start():
    """Launcher and init never return from here; the program process returns, set up."""
    call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    if os.getppid() != PARENT_PID:  # the parent died before the prctl
        os._exit(125)
    if ISOLATE:
        call(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET), "unshare")
    lifeline_r, lifeline_w = os.pipe()  # EOF in the init = the launcher is gone
    init = os.fork()
    if init:
        os.close(lifeline_r)
        launcher(init)
    os.close(lifeline_w)
    call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
    os.set_blocking(lifeline_r, False)
    try:
        if os.read(lifeline_r, 1) == b"":
            os._exit(125)
    except BlockingIOError:
        pass
    try:
        os.setpgid(0, 0)  # the init's group holds the program and its children (unless they leave)
        if ISOLATE:
            private_mounts()
        init_pid = os.getpid()  # 1 with namespaces
        program = os.fork()
    except OSError as exc:
        fail("init: %s" % exc)
    if program:
        supervise(program)
    try:
        enter_limits(init_pid)
    except (OSError, ValueError) as exc:
        fail("program setup: %s" % exc)


def launcher(init):
    """Outside the new pid namespace: SIGUSR1 kills the init (so the whole namespace); exit once
    the init is gone, which the kernel allows only after everything in the namespace is gone.
    Without namespaces, kill the init's process group and then every process of the uid."""
    signal.signal(signal.SIGUSR1, lambda *_: os.kill(init, signal.SIGKILL))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the output pipes close when the program's processes are gone, not later
        os.dup2(devnull, fd)
    report("ready")
    os.close(STATUS_FD)
    os.waitid(os.P_PID, init, os.WEXITED | os.WNOWAIT)  # not reaped yet: its pid and group stay ours
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    if not ISOLATE:
        try:
            os.killpg(init, signal.SIGKILL)
        except OSError:
            pass
        if UID >= 0:
            kill_uid()
    os.waitpid(init, 0)
    os._exit(0)


def private_mounts():
    """The run's working directory becomes /tmp; other world-writable places become empty private
    tmpfs; a /proc of the new pid namespace. Nothing propagates back to the host."""
    call(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    call(libc.mount(os.fsencode(WORKDIR), b"/tmp", None, MS_BIND, None), "bind working directory on /tmp")
    for path in MASKS:
        call(libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", MS_NOSUID | MS_NODEV,
                        b"size=16m,mode=1777"), "tmpfs on " + path)
    call(libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    os.chdir("/tmp")


def supervise(program):
    """The init: reap orphans until the program exits, report its wait status and CPU time, exit
    (with namespaces, that kills whatever is left)."""
    while True:
        child = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
        if child.si_pid == program:
            break
        os.waitpid(child.si_pid, 0)
    _, status, usage = os.wait4(program, 0)
    report("exit %d %.3f" % (status, usage.ru_utime + usage.ru_stime))
    os._exit(0)


def kill_uid():
    """Without namespaces: as the run's uid, SIGKILL every process of that uid (kill(-1) cannot
    miss one that forks meanwhile), until /proc shows none, zombies included (at most 5 s)."""
    helper = os.fork()
    if helper == 0:
        os.setresuid(UID, UID, UID)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except this one
            except ProcessLookupError:
                pass
            if not any(owned_by_uid(pid) for pid in os.listdir("/proc") if pid.isdigit()):
                os._exit(0)
            time.sleep(0.01)
        os._exit(1)
    os.waitpid(helper, 0)


def owned_by_uid(pid):
    """Whether process `pid` (not this one) has the run's uid as real, effective or saved uid."""
    if int(pid) == os.getpid():
        return False
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return str(UID) in line.split()[1:4]
    except OSError:
        pass
    return False


def enter_limits(init_pid):
    """In the program process: resource limits, the slot uid, no privilege gain, die with the init."""
    fd_ceiling = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limits = [(resource.RLIMIT_CPU, CPU_S, CPU_S + 1), (resource.RLIMIT_AS, MEMORY, MEMORY),
              (resource.RLIMIT_FSIZE, FSIZE, FSIZE), (resource.RLIMIT_NOFILE, NOFILE, NOFILE),
              (resource.RLIMIT_NPROC, NPROC, NPROC), (resource.RLIMIT_CORE, 0, 0)]
    for which, soft, hard in limits:
        current = resource.getrlimit(which)[1]
        if current != resource.RLIM_INFINITY and os.geteuid() != 0:
            soft, hard = min(soft, current), min(hard, current)
        resource.setrlimit(which, (soft, hard))
    if UID >= 0:
        os.setgroups([])
        os.setresgid(GID, GID, GID)
        os.setresuid(UID, UID, UID)
    call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")  # after setuid
    if os.getppid() != init_pid:  # the init died before the prctl
        os._exit(125)
    os.closerange(3, fd_ceiling if fd_ceiling != resource.RLIM_INFINITY else 1 << 16)


def run_program():
    """Run main.py as __main__, in this interpreter, with `exit`/`quit` as `site` would give."""
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    path = os.path.join(os.getcwd(), "main.py")
    with open(path, "rb") as f:
        source = f.read()
    sys.argv[:] = [path]
    code = compile(source, path, "exec", dont_inherit=True)
    namespace = globals()
    for name in [name for name in namespace if not name.startswith("__")]:
        del namespace[name]
    namespace["__doc__"] = None  # this file's docstring; main.py sets its own if it has one
    namespace["__file__"] = path
    exec(code, namespace)


if __name__ == "__main__":
    STATUS_FD, PARENT_PID, ISOLATE, UID, GID, CPU_S, MEMORY, FSIZE, NOFILE, NPROC, WORKDIR, MASKS = parse_argv(sys.argv)
    start()
    run_program()
