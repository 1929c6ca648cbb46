"""The sandbox's child program (the "bootstrap"): launcher, init and program set-up of one run.

This file is not imported by the harness. `harness.execution.sandbox` reads its text once and runs
it in a fresh interpreter, in one of two ways (the module docstring of `sandbox` describes the
three processes a run becomes and why):

  per run      started as the parent's child for one run: it becomes that run's launcher;
  fork server  started once per harness process (`serve`): it never runs a program itself; it
               keeps SPARES launchers forked ahead of need, namespaces entered, and hands each run
               request to one of them (or forks one then), so a run costs no interpreter start
               and less waiting. Each launcher is used for exactly one run and exits with it.

Per run:

  interpreter  `_Mode.python`: `sys.executable`, or a system `/usr/bin/python3.X` when the slot uid
               cannot use that one's standard library; any Python 3.8+.
  command      `<python> -S -B -c <stub> STATUS_FD PARENT_PID ISOLATE UID GID CPU_S
               MEMORY FSIZE NOFILE NPROC WORKDIR [MASK ...]` (built by `sandbox._bootstrap_argv`,
               read by `parse_argv`). The stub (`import os;t=os.pread(FD,SIZE,0);os.close(FD);
               exec(t)`, `sandbox._bootstrap_command`) reads this file's text from a sealed memfd
               the parent passes as FD, closes it and runs the text in `__main__`: what `-c <text>`
               did, with a command line `ps` prints in one short line instead of this whole file
               for every run. The text is run as `-c` does rather than from this file's path so
               that the program sees what it always saw: sys.path[0] is '' (its working directory,
               not this package's folder), sys.argv[0] is '-c' until the program's own argv is
               set, and no `__file__`, `__cached__` or source loader of this file is left in the
               globals the program inherits; nothing has to read this file as the slot uid or
               through the run's private mounts.
  fds          0, 1, 2: pipes to the parent (the program's stdin, stdout, stderr); STATUS_FD: the
               write end of the status pipe (`ready`, `exit <wait status> <cpu seconds>` or
               `error <what>`, one per line); the text's memfd, which the stub closes before the
               text runs; nothing else (close_fds).
  environment  only what the parent sets: PATH=/usr/bin:/bin, LANG and LC_ALL=C.UTF-8, HOME and
               TMPDIR (/tmp with namespaces, else the working directory), PYTHONDONTWRITEBYTECODE=1,
               PYTHONHASHSEED=0; working directory WORKDIR; a new session; root when the parent is.

Fork server (`serve`):
  command      `<python> -S -B -c <stub> serve SOCKET_FD OWNER` (built by
               `sandbox._ForkServer`); OWNER names the harness process (`sandbox.workdir_owner`
               reads it), so that `ps` and the tests can tell whose runs these are.
  fds          0, 1, 2: /dev/null; SOCKET_FD: a SOCK_SEQPACKET unix socket to the harness. Each
               message is a NUL-separated request: `run RUN_ID HOME` and then the per-run command
               line's words from STATUS_FD on (STATUS_FD and PARENT_PID are placeholders, replaced
               here), carrying five fds (SCM_RIGHTS): the run's stdin, stdout, stderr, status
               pipe and an "alive" pipe whose write end only the launcher keeps, so that the
               harness sees EOF on it once the launcher, and so the whole run, is gone (the
               harness cannot wait for a process that is not its child);
               `kill RUN_ID usr1|group`: SIGUSR1 to that run's launcher, or SIGKILL to its process
               group, if it has not been reaped yet (so the pid cannot belong to anyone else).
               EOF: the harness closed its end or exited: kill every launcher, reap them, exit.
  environment  as per run, with HOME and TMPDIR set by each request; working directory /.
A forked launcher first undoes what is the server's (its signal handlers, fds and the modules it
imported to serve) and makes its own session; a spare then enters the namespaces and waits on its
own socket for a request (the server forwards it, fds and all). The launcher takes the request's
fds, working directory and parameters, and from there runs exactly the per-run code (`start`,
which skips the namespaces a spare already entered, and `run_program`, from the same lines of the
entry point), so a program cannot tell which way its run was started (but for `sys.orig_argv` and
/proc/self/cmdline, which show the server's command line).

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
IN_NAMESPACES = False  # a spare launcher of the fork server entered them before its run was known
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
    if ISOLATE and not IN_NAMESPACES:
        enter_namespaces()
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


def enter_namespaces():
    """New net, mount, pid (for the children) and IPC namespaces."""
    global IN_NAMESPACES
    call(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET), "unshare")
    IN_NAMESPACES = True


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


# --- the fork server ---------------------------------------------------------------------------

RUN_FDS = 5
"""File descriptors a `run` request carries: stdin, stdout, stderr, status, alive."""


SPARES = 2
"""Launchers the fork server keeps forked ahead of need (namespaces entered, waiting for a run)."""


def serve(socket_fd):
    """The fork server: serve requests until EOF (then kill and reap every launcher and exit).
    Returns only in a launcher it forked, set up for its run (`become_launcher`); the entry point
    then starts that run."""
    before = set(sys.modules)
    import _socket  # lazy: only the server needs it, and its launchers drop it (_socket: no enum, selectors)
    import select  # lazy: as _socket
    server = Server(socket_fd, _socket, set(sys.modules) - before)
    while True:
        readable = select.select([server.requests, server.wake_r], [], [])[0]
        if server.wake_r in readable:
            server.reap()
        if server.requests in readable and server.handle_request():
            return


class Server:
    """The fork server's state and its requests (see the module docstring). Launchers are forked
    ahead of need: SPARES of them wait, namespaces entered (the slow part of a start), each on its
    own socket, and the next `run` request is handed to the oldest; a new spare is forked after
    each hand-over, while that run starts. A spare runs exactly one program, like any launcher.
    Without a spare (the first run, or one of the other ISOLATE), the launcher is forked then."""

    def __init__(self, socket_fd, _socket, serving_modules):
        self.sockets = _socket
        self.requests = _socket.socket(fileno=socket_fd)
        self.serving_modules = serving_modules
        """Modules imported to serve, which a launcher removes: the program sees those of a per-run start."""
        self.wake_r, self.wake_w = os.pipe()  # SIGCHLD writes here: the loop wakes and reaps
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.pid = os.getpid()
        self.launchers = {}
        """Run id (or "spare <pid>") -> pid of its launcher, until reaped; `kill` finds them here."""
        self.spares = []
        """(pid, socket to it) of the spares, oldest first."""
        self.spares_isolate = None
        """ISOLATE of the last run: the spares were made for it."""

    def reap(self):
        """Reap launchers that exited; forget spares that did (killed, say)."""
        while True:
            try:
                if not os.read(self.wake_r, 256):
                    break
            except BlockingIOError:
                break
        reap(self.launchers, block=False)
        for pid, sock in list(self.spares):
            if "spare %d" % pid not in self.launchers:
                sock.close()
                self.spares.remove((pid, sock))

    def handle_request(self):
        """One request off the socket; True only in a launcher forked for it."""
        message, ancillary, _, _ = self.requests.recvmsg(1 << 16, self.sockets.CMSG_SPACE(RUN_FDS * 4))
        fds = received_fds(ancillary, self.sockets)
        if not message:  # the harness closed its end or exited: nothing of its runs may outlive it
            self.let_spares_go()
            for pid in self.launchers.values():
                kill_group(pid)
            reap(self.launchers, block=True)
            os._exit(0)
        fields = [os.fsdecode(field) for field in message.split(b"\0")]
        if fields[0] == "kill" and len(fields) == 3 and fields[1] in self.launchers:
            pid = self.launchers[fields[1]]
            if fields[2] == "usr1":
                os.kill(pid, signal.SIGUSR1)
            else:
                kill_group(pid)
        elif fields[0] == "run" and len(fds) == RUN_FDS and len(fields) >= 14:
            isolate = fields[5] == "1"  # the request's ISOLATE word
            if isolate != self.spares_isolate:
                self.let_spares_go()
                self.spares_isolate = isolate
            if not self.hand_to_spare(fields[1], message, fds):
                try:
                    pid = os.fork()
                except OSError as exc:
                    os.write(fds[3], ("error fork server: fork: %s\n" % exc).encode())
                    pid = -1
                if pid == 0:
                    self.forget_in_child()
                    become_launcher(fields[2], fields[3:], fds, self.pid)
                    return True
                if pid > 0:
                    self.launchers[fields[1]] = pid
            for fd in fds:  # the launcher has its copies
                os.close(fd)
            fds = []
            while len(self.spares) < SPARES:
                if self.fork_spare(isolate):
                    return True
        for fd in fds:  # a request the server does not know: dropped
            os.close(fd)
        return False

    def hand_to_spare(self, run_id, message, fds):
        """Pass the request to the oldest live spare; whether one took it."""
        while self.spares:
            pid, sock = self.spares.pop(0)
            rights = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
            try:
                sock.sendmsg([message], [(self.sockets.SOL_SOCKET, self.sockets.SCM_RIGHTS, rights)])
            except OSError:  # it died meanwhile
                continue
            finally:
                sock.close()
            self.launchers[run_id] = self.launchers.pop("spare %d" % pid, pid)
            return True
        return False

    def fork_spare(self, isolate):
        """Fork a spare launcher; True only in the spare, once it has its run."""
        ours, theirs = self.sockets.socketpair(self.sockets.AF_UNIX, self.sockets.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            ours.close()
            theirs.close()
            return False
        if pid:
            theirs.close()
            self.spares.append((pid, ours))
            self.launchers["spare %d" % pid] = pid
            return False
        ours.close()
        self.forget_in_child()
        call(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(PDEATHSIG)")
        if os.getppid() != self.pid:  # the server died before the prctl
            os._exit(125)
        if isolate:
            enter_namespaces()
        message, ancillary, _, _ = theirs.recvmsg(1 << 16, self.sockets.CMSG_SPACE(RUN_FDS * 4))
        fds = received_fds(ancillary, self.sockets)
        if not message or len(fds) != RUN_FDS:  # let go (or the server is gone)
            os._exit(0)
        theirs.close()
        fields = [os.fsdecode(field) for field in message.split(b"\0")]
        become_launcher(fields[2], fields[3:], fds, self.pid)
        return True

    def let_spares_go(self):
        """Close the spares' sockets: each sees EOF and exits (reaped later)."""
        for _, sock in self.spares:
            sock.close()
        self.spares = []

    def forget_in_child(self):
        """In a launcher just forked: drop what is the server's (signal handling, sockets, pipes,
        the modules it imported) and start a session of its own."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self.requests.close()
        os.close(self.wake_r)
        os.close(self.wake_w)
        for _, sock in self.spares:
            sock.close()
        for name in self.serving_modules:
            del sys.modules[name]
        os.setsid()


def received_fds(ancillary, _socket):
    """The file descriptors an SCM_RIGHTS message carried."""
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder, signed=True) for i in range(0, len(data) - 3, 4)]
    return fds


def kill_group(pid):
    """SIGKILL a launcher's process group (its session: the launcher ran setsid), or the launcher
    alone if it has not made its session yet."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def reap(launchers, block):
    """Wait for launchers that exited (all of them, if `block`) and forget them."""
    for run_id, pid in list(launchers.items()):
        if os.waitpid(pid, 0 if block else os.WNOHANG)[0] == pid:
            del launchers[run_id]


def become_launcher(home, words, fds, server_pid):
    """In a launcher forked by the server (its session already made): the run's parameters, fds,
    working directory and environment, as a per-run bootstrap started by the harness has them."""
    global STATUS_FD, PARENT_PID, ISOLATE, UID, GID, CPU_S, MEMORY, FSIZE, NOFILE, NPROC, WORKDIR, MASKS
    _, _, ISOLATE, UID, GID, CPU_S, MEMORY, FSIZE, NOFILE, NPROC, WORKDIR, MASKS = parse_argv(["-c", *words])
    stdin, stdout, stderr, STATUS_FD, _alive = fds  # alive: kept open until this process exits
    PARENT_PID = server_pid
    for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(WORKDIR)
    os.environ["HOME"] = home
    os.environ["TMPDIR"] = home


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))  # returns only in a launcher it forked, with the run's parameters set
    else:
        STATUS_FD, PARENT_PID, ISOLATE, UID, GID, CPU_S, MEMORY, FSIZE, NOFILE, NPROC, WORKDIR, MASKS = parse_argv(sys.argv)
    start()
    run_program()
