"""The sandbox against a corpus of hostile programs, legitimate programs, and in parallel.

For every hostile program: this process survives, the wall time is bounded, nothing outside the
run's working directory changes (canary files, escape paths), no process of a sandbox uid is left,
no working directory is left, and the status is the expected one.
"""

from __future__ import annotations

import glob
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import FrozenInstanceError, dataclass, replace
from pathlib import Path

import pytest

from harness.execution import sandbox, sandbox_child
from harness.execution.bounded import ScoreResult, ScorerPool
from harness.execution.sandbox import Execution, Job, outputs_match, run, run_many

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

REPO = Path(__file__).resolve().parents[1]
SLACK_S = 5.0
"""Wall time a run may take beyond its timeout (start-up and teardown on a loaded 2-core machine)."""
SECRET = "HARNESS_SECRET_TOKEN"


# --- what the checks look at -----------------------------------------------------------------

def sandbox_processes() -> list[str]:
    """Processes (zombies included) whose real, effective or saved uid is a sandbox slot uid, and
    that belong to this process's runs or to no live run (an orphan). Runs of another harness
    process on the machine (training beside the tests) are theirs, not a leak of ours."""
    return slot_processes_of(os.getpid())


def run_owner(pid: str) -> int | None:
    """Pid of the harness process whose sandbox run `pid` is part of: read off the run's working
    directory (named after that pid) on the command line of `pid` or its nearest ancestor that has
    one (the run's bootstrap). None when no ancestor has one."""
    while pid not in ("0", "1"):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return None  # exited meanwhile
        owners = [owner for owner in map(sandbox.workdir_owner, args) if owner is not None]
        if owners:
            return owners[0]
        pid = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
    return None


def leftover_workdirs() -> set[str]:
    """This process's run working directories (named after its pid; the runs are its threads)."""
    return set(glob.glob(os.path.join(tempfile.gettempdir(), f"{sandbox.WORKDIR_PREFIX}{os.getpid()}-*")))


def sysv_shm_segments() -> list[str]:
    return Path("/proc/sysvipc/shm").read_text().splitlines()[1:]


@pytest.fixture(scope="module")
def mode():
    return sandbox._sandbox_mode()


@pytest.fixture(scope="module")
def isolated(mode):
    if not mode.isolate:
        pytest.skip("namespaces are not available here (not root, or no CAP_SYS_ADMIN)")
    return mode


@dataclass
class Canary:
    """Things outside the sandbox a hostile program goes after, and how they looked before."""

    open_dir: Path  # world-writable directory in /tmp with a world-writable file
    open_file: Path
    protected_file: Path  # an ordinary file of this user, under pytest's tmp_path
    escapes: list[Path]  # paths that must not exist afterwards
    listener: socket.socket
    marker: str  # the canary files' content
    secret: str  # the value of SECRET in this process's environment

    def substitutions(self) -> dict[str, str]:
        return {
            "OPEN_DIR": repr(str(self.open_dir)), "OPEN_FILE": repr(str(self.open_file)),
            "PROTECTED_FILE": repr(str(self.protected_file)), "ESCAPES": repr([str(p) for p in self.escapes]),
            "TEST_PID": str(os.getpid()), "PORT": str(self.listener.getsockname()[1]),
        }

    def assert_untouched(self) -> None:
        assert sorted(p.name for p in self.open_dir.iterdir()) == ["canary.txt"]
        assert self.open_file.read_text() == self.marker
        assert stat.S_IMODE(self.open_file.stat().st_mode) == 0o666
        assert self.protected_file.read_text() == self.marker
        for path in self.escapes:
            assert not os.path.lexists(path), f"a sandboxed program created {path}"
        self.listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            self.listener.accept()  # nobody got through to the loopback listener


@pytest.fixture
def canary(tmp_path, monkeypatch):
    marker = secrets.token_hex(8)
    open_dir = Path(tempfile.mkdtemp(prefix="sandbox-canary-", dir="/tmp"))
    open_dir.chmod(0o777)
    open_file = open_dir / "canary.txt"
    open_file.write_text(marker)
    open_file.chmod(0o666)
    protected = tmp_path / "protected.txt"
    protected.write_text(marker)
    escapes = [Path(d) / f"sandbox_escape_{marker}" for d in ("/tmp", "/var/tmp", "/dev/shm", REPO)]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    secret = secrets.token_hex(16)
    monkeypatch.setenv(SECRET, secret)
    try:
        yield Canary(open_dir, open_file, protected, escapes, listener, marker, secret)
    finally:
        listener.close()
        for path in escapes:
            if os.path.lexists(path):
                os.unlink(path)
        for path in open_dir.iterdir():
            path.unlink()
        open_dir.rmdir()


# --- the hostile corpus ------------------------------------------------------------------------

@dataclass(frozen=True)
class Hostile:
    name: str
    code: str
    statuses: tuple[str, ...]
    timeout_s: float = 2.0
    memory_mb: int = 256
    stdin: str = ""
    stdout_has: str | None = None
    stdout_lacks: str | None = None
    stderr_has: str | None = None
    exit_code: int | None = None


HOSTILE = [
    Hostile("infinite_loop", "while True:\n    pass\n", ("timeout",), timeout_s=1.0),
    Hostile("cpu_limit_threads", """
import hashlib, threading
data = b"x" * (1 << 20)
def burn():
    while True:
        hashlib.sha256(data).digest()  # releases the GIL: CPU time grows faster than wall time
for _ in range(3):
    threading.Thread(target=burn, daemon=True).start()
burn()
""", ("timeout",), timeout_s=3.0),
    Hostile("fork_bomb", "import os\nwhile True:\n    os.fork()\n", ("error", "timeout")),
    Hostile("fork_bomb_persistent", """
import os
while True:
    try:
        os.fork()
    except OSError:
        pass
""", ("timeout",), timeout_s=1.5),
    Hostile("subprocess_bomb", """
import subprocess, sys
children = []
while True:
    children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100)"]))
""", ("error", "timeout")),
    Hostile("shell_fork_bomb", """
import os
os.system("f() { f | f & }; f")
print("bombed")
""", ("ok", "error", "timeout")),
    Hostile("memory_bomb", "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))\n", ("memory",), timeout_s=5.0),
    Hostile("huge_allocation", "x = bytearray(10 ** 12)\n", ("memory",)),
    Hostile("stdout_flood", "while True:\n    print('x' * 1000)\n", ("output_limit",)),
    Hostile("stderr_flood", "import sys\nwhile True:\n    sys.stderr.write('y' * 1000)\n", ("output_limit",)),
    Hostile("write_outside", """
import os
targets = [OPEN_FILE, OPEN_DIR + "/new.txt", PROTECTED_FILE, "/etc/sandbox_escape", "/escape"] + ESCAPES
for target in targets:
    try:
        with open(target, "w") as f:
            f.write("pwned")
    except OSError as exc:
        print("refused", target, type(exc).__name__)
os.chdir("/")
try:
    open("escape_from_root", "w")
except OSError:
    print("refused /")
print("done")
""", ("ok",), stdout_has="done"),
    Hostile("delete_outside", """
import os, shutil
for action in (lambda: os.remove(OPEN_FILE), lambda: shutil.rmtree(OPEN_DIR), lambda: os.remove(PROTECTED_FILE),
               lambda: os.chmod(OPEN_FILE, 0), lambda: os.rename(OPEN_FILE, "stolen.txt"),
               lambda: os.remove("/etc/hostname")):
    try:
        action()
        print("did it")
    except OSError as exc:
        print("refused", type(exc).__name__)
""", ("ok",), stdout_lacks="did it"),
    Hostile("symlink_out_of_workdir", """
import os
os.symlink(OPEN_DIR, "dir_link")
os.symlink(OPEN_FILE, "file_link")
os.symlink("/", "root_link")
try:
    open("file_link", "w").write("pwned")
    print("wrote through link")
except OSError:
    print("refused")
""", ("ok",), stdout_lacks="wrote"),
    Hostile("read_environment", """
import os
print(dict(os.environ))
for path in ["/proc/%d/environ" % TEST_PID, "/proc/1/environ"] + ["/proc/%s/environ" % p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        print(path, open(path, "rb").read())
    except OSError as exc:
        print(path, type(exc).__name__)
print("pids visible:", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
""", ("ok",), stdout_lacks=SECRET),
    Hostile("connect_loopback", """
import socket
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=2)
    print("connected")
except OSError as exc:
    print("blocked", exc)
""", ("ok",), stdout_has="blocked"),
    Hostile("connect_outward", """
import socket, time
start = time.monotonic()
for address in [("8.8.8.8", 53), ("1.1.1.1", 443)]:
    try:
        socket.create_connection(address, timeout=5)
        print("connected")
    except OSError as exc:
        print("blocked", exc)
try:
    socket.getaddrinfo("example.com", 80)
    print("resolved")
except OSError as exc:
    print("no dns", exc)
print("fast" if time.monotonic() - start < 1.0 else "slow")
""", ("ok",), stdout_has="fast", stdout_lacks="connected"),
    Hostile("kill_parent", """
import os, signal
for pid in (os.getppid(), TEST_PID, 1):
    try:
        os.kill(pid, signal.SIGKILL)
        print("signalled", pid)
    except OSError as exc:
        print("refused", pid, type(exc).__name__)
try:
    os.kill(-1, signal.SIGKILL)  # everything this uid may signal (not this process itself)
except ProcessLookupError:
    pass  # nothing else to signal: the harness and the other runs are out of sight
print("still here")
""", ("ok",), stdout_has="still here"),
    Hostile("daemon_double_fork", """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.closerange(0, 3)
        time.sleep(100)
    os._exit(0)
time.sleep(0.2)
print("parent done")
""", ("ok",), stdout_has="parent done"),
    Hostile("background_sleep", "import os\nos.system('sleep 100 &')\nprint('returned')\n", ("ok",), stdout_has="returned"),
    Hostile("setsid_background", """
import os
os.system("setsid sleep 100 < /dev/null > /dev/null 2>&1 &")
os.system("nohup sleep 100 > /dev/null 2>&1 &")
print("returned")
""", ("ok",), stdout_has="returned"),
    Hostile("ctypes_tricks", """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("setuid", libc.setuid(0), "setgid", libc.setgid(0), "uid", os.getuid())
print("unshare", libc.unshare(0x40000000))
print("kill_all", libc.kill(-1, 9))
print("alive")
""", ("ok",), stdout_has="setuid -1 setgid -1"),
    Hostile("raise_limits", """
import resource
for limit in (resource.RLIMIT_NPROC, resource.RLIMIT_AS, resource.RLIMIT_CPU):
    try:
        resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("raised", limit)
    except (ValueError, OSError) as exc:
        print("refused", limit)
""", ("ok",), stdout_lacks="raised"),
    Hostile("close_stdout", "import os\nos.close(1)\n", ("ok", "error")),
    Hostile("exit_3", "import sys\nsys.exit(3)\n", ("error",), exit_code=3),
    Hostile("raise_exception", "raise ValueError('boom')\n", ("error",), exit_code=1, stderr_has="ValueError: boom"),
    Hostile("segfault", "import ctypes\nctypes.string_at(0)\n", ("killed",), exit_code=-signal.SIGSEGV),
    Hostile("kill_self", "import os, signal\nos.killpg(0, signal.SIGKILL)\n", ("killed",), exit_code=-signal.SIGKILL),
    Hostile("big_file", """
chunk = b"\\0" * (1 << 20)
with open("big.bin", "wb") as f:
    for _ in range(100):
        f.write(chunk)
""", ("error",), stderr_has="File too large"),
    Hostile("many_files", "files = [open(f'f{i}.txt', 'w') for i in range(10000)]\n", ("error",),
            stderr_has="Too many open files"),
    Hostile("read_stdin_forever", "import sys\nwhile True:\n    sys.stdin.read()\n", ("timeout",), timeout_s=1.0),
    Hostile("sleep_forever", "import time\ntime.sleep(10 ** 6)\n", ("timeout",), timeout_s=1.0),
    Hostile("thread_bomb", """
import threading, time
while True:
    threading.Thread(target=time.sleep, args=(100,)).start()
""", ("error", "timeout")),
    Hostile("ignore_signals", """
import signal
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGXCPU):
    signal.signal(sig, signal.SIG_IGN)
while True:
    pass
""", ("timeout",), timeout_s=1.0),
    Hostile("sysv_shared_memory", """
import ctypes
libc = ctypes.CDLL(None)
print("segment", libc.shmget(0, 1 << 20, 0o1000 | 0o666))
""", ("ok",), stdout_has="segment"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[case.name for case in HOSTILE])
def test_hostile_program_is_contained(case, canary, isolated):
    workdirs_before, shm_before = leftover_workdirs(), sysv_shm_segments()
    assert sandbox_processes() == []
    code = case.code
    for name, value in canary.substitutions().items():
        code = code.replace(name, value)

    start = time.monotonic()
    result = run(code, stdin=case.stdin, timeout_s=case.timeout_s, memory_mb=case.memory_mb)
    elapsed = time.monotonic() - start

    assert result.status in case.statuses, result
    assert result.wall_s < case.timeout_s + SLACK_S and elapsed < case.timeout_s + SLACK_S, result
    assert len(result.stdout) <= sandbox.OUTPUT_LIMIT_BYTES and len(result.stderr) <= sandbox.OUTPUT_LIMIT_BYTES
    if case.stdout_has:
        assert case.stdout_has in result.stdout, result
    if case.stdout_lacks:
        assert case.stdout_lacks not in result.stdout, result
    if case.stderr_has:
        assert case.stderr_has in result.stderr, result
    if case.exit_code is not None:
        assert result.exit_code == case.exit_code, result
    assert SECRET not in result.stdout + result.stderr and canary.secret not in result.stdout + result.stderr
    assert canary.marker + "\n" not in result.stdout  # never read the canary's content either
    canary.assert_untouched()
    assert sandbox_processes() == []
    assert leftover_workdirs() == workdirs_before
    assert sysv_shm_segments() == shm_before
    os.kill(os.getpid(), 0)  # still alive (trivially, but that is the point)


def test_corpus_is_large_enough():
    assert len(HOSTILE) >= 20


# --- legitimate programs -----------------------------------------------------------------------

LEGIT = [
    ("echo_stdin", "print(input())\n", "hi\n", "hi\n", 1024),
    ("recursion", """
import sys
sys.setrecursionlimit(10000)
def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)
print(depth(5000))
""", "", "5000\n", 1024),
    ("moderate_memory", "x = bytearray(100 * 1024 * 1024)\nprint(len(x))\n", "", f"{100 * 1024 * 1024}\n", 1024),
    ("many_prints", "for i in range(10000):\n    print(i)\n", "", "".join(f"{i}\n" for i in range(10000)), 1024),
    ("stdlib", """
import collections, itertools, math, heapq, bisect, functools, fractions, re, json
counts = collections.Counter("mississippi")
pairs = list(itertools.combinations(range(4), 2))
print(counts.most_common(1)[0], len(pairs), math.comb(10, 3), heapq.nsmallest(2, [5, 1, 3]), json.dumps({"a": 1}))
""", "", "('i', 4) 6 120 [1, 3] {\"a\": 1}\n", 1024),
    ("file_in_cwd", """
with open("data.txt", "w") as f:
    f.write("42\\n")
print(open("data.txt").read().strip())
""", "", "42\n", 1024),
    ("sum_large_stdin", "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n",
     " ".join(map(str, range(200000))) + "\n", f"{sum(range(200000))}\n", 1024),
    ("exit_builtin", "print('before')\nexit()\nprint('after')\n", "", "before\n", 1024),
    ("unicode", "print('héllo ✓ 世界')\n", "", "héllo ✓ 世界\n", 1024),
    ("subprocess_and_threads", """
import subprocess, sys
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(8) as pool:
    squares = list(pool.map(lambda x: x * x, range(10)))
child = subprocess.run([sys.executable, "-c", "print(7)"], capture_output=True, text=True)
print(sum(squares), child.stdout.strip())
""", "", "285 7\n", 1024),
    ("main_guard", "if __name__ == '__main__':\n    print(__file__.endswith('/main.py'))\n", "", "True\n", 1024),
]


@pytest.mark.parametrize("name,code,stdin,expected,memory_mb", LEGIT, ids=[case[0] for case in LEGIT])
def test_legitimate_program_runs(name, code, stdin, expected, memory_mb):
    result = run(code, stdin=stdin, timeout_s=10.0, memory_mb=memory_mb)
    assert (result.status, result.exit_code, result.stderr) == ("ok", 0, ""), result
    assert result.stdout == expected
    assert sandbox_processes() == []


def test_set_order_is_reproducible_across_runs():
    code = "print(list({'apple', 'banana', 'cherry', 'date', 'elderberry'}))\n"
    assert len({run(code).stdout for _ in range(3)}) == 1


# --- parallel runs -----------------------------------------------------------------------------

def test_run_many_keeps_order_and_leaves_nothing_behind():
    workdirs_before = leftover_workdirs()
    kinds = [  # (job, statuses it may end with, stdout it must print or None)
        (lambda i: Job("while True:\n    pass\n", timeout_s=1.0), ("timeout",), None),
        (lambda i: Job("import os\nwhile True:\n    os.fork()\n", timeout_s=2.0), ("error", "timeout"), None),
        (lambda i: Job("x = bytearray(10 ** 12)\n", memory_mb=256), ("memory",), None),
        (lambda i: Job("import sys\nsys.exit(3)\n"), ("error",), None),
        (lambda i: Job("a, b = map(int, input().split())\nprint(a * b)\n", stdin=f"{i} 7\n"), ("ok",), "{product}\n"),
    ]
    cases = []
    for i in range(20):
        make, statuses, stdout = kinds[i % len(kinds)]
        cases.append((make(i), statuses, stdout and stdout.format(product=i * 7)))
    results = run_many([job for job, _, _ in cases], workers=4)
    assert len(results) == len(cases)
    for i, (result, (_, statuses, stdout)) in enumerate(zip(results, cases)):
        assert result.status in statuses, (i, result)
        if stdout is not None:
            assert result.stdout == stdout, (i, result)
    assert sandbox_processes() == []
    assert leftover_workdirs() == workdirs_before


def test_benchmark_reports_throughput():
    report = sandbox.benchmark(n=8, workers=2)
    assert report["executions"] == 8 and report["workers"] == 2
    assert report["executions_per_s"] > 0


# --- fallback without namespaces (root only): uid tracking and the /tmp sweep ------------------

FALLBACK = [
    Hostile("daemon_double_fork", HOSTILE[[c.name for c in HOSTILE].index("daemon_double_fork")].code, ("ok",)),
    Hostile("background_sleep", "import os\nos.system('sleep 100 &')\n", ("ok",)),
    Hostile("fork_bomb", "import os\nwhile True:\n    os.fork()\n", ("error", "timeout")),
    Hostile("write_tmp", "for p in ESCAPES:\n    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass\n", ("ok",)),
]


@pytest.mark.parametrize("case", FALLBACK, ids=[case.name for case in FALLBACK])
def test_fallback_without_namespaces_still_cleans_up(case, canary, mode, monkeypatch):
    if not mode.drop_uid:
        pytest.skip("the uid fallback needs root")
    monkeypatch.setattr(sandbox, "_mode", replace(mode, isolate=False))
    code = case.code
    for name, value in canary.substitutions().items():
        code = code.replace(name, value)
    result = run(code, timeout_s=2.0, memory_mb=256)
    assert result.status in case.statuses, result
    assert result.wall_s < 2.0 + SLACK_S + 5.0, result  # + the init's 5 s wait for zombies
    assert sandbox_processes() == []
    for path in canary.escapes:
        assert not os.path.lexists(path), path


# --- small parts -------------------------------------------------------------------------------

def test_outputs_match_compares_tokens():
    assert outputs_match("1 2\n3\n", "1 2 3")
    assert outputs_match("  a\tb \n\n", "a b")
    assert not outputs_match("1 2", "12")
    assert not outputs_match("1 2 3", "1 2")


def test_execution_is_frozen():
    result = Execution("ok", "", "", 0, 0.1)
    with pytest.raises(FrozenInstanceError):
        result.status = "error"


@pytest.mark.parametrize("stopped,status,stderr,expected", [
    ("timeout", "", "", ("timeout", None)),
    ("output_limit", "exit 0 0.1", "", ("output_limit", None)),
    (None, "exit 0 0.1", "", ("ok", 0)),
    (None, f"exit {3 << 8} 0.1", "", ("error", 3)),
    (None, f"exit {1 << 8} 0.1", "Traceback\nMemoryError\n", ("memory", 1)),
    (None, f"exit {signal.SIGXCPU} 3.0", "", ("timeout", -signal.SIGXCPU)),
    (None, f"exit {signal.SIGKILL} 3.9", "", ("timeout", -signal.SIGKILL)),
    (None, f"exit {signal.SIGKILL} 0.2", "", ("killed", -signal.SIGKILL)),
    (None, f"exit {signal.SIGSEGV} 0.2", "", ("killed", -signal.SIGSEGV)),
    (None, "", "", ("killed", None)),
])
def test_status_mapping(stopped, status, stderr, expected):
    assert sandbox._classify(stopped, status, stderr, cpu_s=4) == expected


def test_rejects_nonsense_limits():
    with pytest.raises(ValueError):
        run("print(1)", timeout_s=0)


def test_stale_workdirs_of_dead_harness_processes_are_removed():
    dead_pid = 2 ** 22 + 12345  # above any pid_max: no such process
    stale = Path(tempfile.mkdtemp(prefix=f"{sandbox.WORKDIR_PREFIX}{dead_pid}-"))
    (stale / "main.py").write_text("print(1)\n")
    live = Path(tempfile.mkdtemp(prefix=f"{sandbox.WORKDIR_PREFIX}{os.getpid()}-"))
    try:
        sandbox._remove_stale_workdirs()
        assert not stale.exists() and live.exists()
    finally:
        live.rmdir()


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.isfile("/usr/bin/python3"),
                    reason="needs root (the slot uid) and a system /usr/bin/python3")
def test_an_interpreter_the_program_cannot_see_fails_the_probe_and_its_target_is_tried(tmp_path, monkeypatch):
    """A venv inside a 0700 folder (tox makes .tox 0700): its python starts as root, but the program,
    running as the slot uid, could not start it again, so the probe refuses it and the file it
    links to is the next candidate."""
    hidden = tmp_path / "private"
    (hidden / "bin").mkdir(parents=True)
    hidden.chmod(0o700)
    target = os.path.realpath("/usr/bin/python3")
    link = hidden / "bin" / "python"
    link.symlink_to(target)
    monkeypatch.setattr(sys, "executable", str(link))
    candidates = sandbox._interpreter_candidates()
    assert candidates[:2] == [str(link), target]
    assert "not visible" in (sandbox._probe(sandbox._Mode(str(link), isolate=False, drop_uid=True)) or "")
    assert sandbox._probe(sandbox._Mode(target, isolate=False, drop_uid=True)) is None


# --- the fork server: same results as a per-run start, one program per launcher, nothing left ----

def process_state(pid: int) -> str | None:
    """The state letter of process `pid` (Z: a zombie), or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (zombies included)."""
    found = []
    for stat_path in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_path.split("/")[2]))
    return found


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def slot_processes_of(owner: int) -> list[str]:
    """Processes of a sandbox slot uid that belong to harness process `owner`'s runs or to no run."""
    slot_uids = range(sandbox.SLOT_UID_BASE, sandbox.SLOT_UID_BASE + sandbox.SLOT_COUNT)
    found = []
    for status_path in glob.glob("/proc/[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in Path(status_path).read_text().splitlines() if ":" in line)
        except OSError:
            continue
        if any(int(uid) in slot_uids for uid in fields["Uid"].split()[:3]):
            if run_owner(status_path.split("/")[2]) in (None, owner):
                found.append(f"{status_path}: {fields['Name'].strip()} {fields['State'].strip()}")
    return found


@pytest.fixture
def served(mode):
    """Runs start through the fork server (restored afterwards); its pid."""
    if not mode.fork_server:
        pytest.skip("the fork server failed its probe here")
    previous = sandbox.use_fork_server(True)
    try:
        assert run("pass").status == "ok"
        yield sandbox._server.process.pid
    finally:
        sandbox.use_fork_server(previous)


INTROSPECT = """
import builtins, gc, os, resource, signal, sys, threading
in_namespace = os.getppid() == 1
print(sorted(sys.modules))
print(dict(os.environ))
print(sorted(globals()), __name__, __doc__, sys.argv == [__file__], sys.path[0] == "", sorted(builtins.__dict__))
print(os.getcwd(), sorted(os.listdir(".")), oct(os.umask(0o022)), oct(os.stat(".").st_mode), os.stat(".").st_uid == os.getuid())
print([u - os.getuid() for u in os.getresuid()], [g - os.getuid() for g in os.getresgid()], os.getgroups())  # slot uid = gid
print((os.getpid(), os.getpgid(0), os.getsid(0)) if in_namespace else "pids of the host")
print([(name, resource.getrlimit(getattr(resource, name))) for name in sorted(dir(resource)) if name.startswith("RLIMIT_")])
print([(s.name, str(signal.getsignal(s))) for s in sorted(signal.valid_signals()) if isinstance(s, signal.Signals)
       and s not in (signal.SIGKILL, signal.SIGSTOP)])
print(sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
print(sorted(os.listdir("/proc/self/fd")), [(fd, os.get_inheritable(fd), os.get_blocking(fd)) for fd in (0, 1, 2)])
print(sys.stdin.encoding, sys.stdout.encoding, sys.stdout.line_buffering, sys.stdin.isatty(), sys.stdout.isatty())
print(sys.flags, sys.getrecursionlimit(), sys.getswitchinterval(), threading.active_count(), gc.isenabled())
print(hash("abc"), list({"apple", "banana", "cherry", "date"}), os.getpriority(os.PRIO_PROCESS, 0))
print([line for line in open("/proc/self/status").read().splitlines()
       if line.split(":")[0] in ("NoNewPrivs", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp")])
print(sorted(os.listdir("/tmp")) if in_namespace else "host /tmp")
"""
"""What a program can see of how it was started (less what differs by design: see the module
docstring of harness/execution/sandbox.py, "How a run works"; and less its slot uid, which
depends on the runs beside it)."""

SAME_BOTH_WAYS = [(name, code, stdin) for name, code, stdin, _, _ in LEGIT] + [
    (case.name, case.code, case.stdin) for case in HOSTILE if case.name in (
        "infinite_loop", "stdout_flood", "stderr_flood", "huge_allocation", "raise_limits",
        "close_stdout", "exit_3", "raise_exception", "segfault", "kill_self", "big_file", "many_files",
        "read_stdin_forever", "sleep_forever", "ignore_signals")
] + [
    ("introspect", INTROSPECT, ""),
    ("atexit_and_threads", "import atexit, threading, time\natexit.register(print, 'atexit ran')\n"
     "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\nprint('main done')\n", ""),
    ("del_at_exit", "class Noisy:\n    def __del__(self):\n        print('deleted at exit')\nkeep = Noisy()\n", ""),
    ("unflushed_stdout", "import sys\nsys.stdout.write('no newline, never flushed')\n", ""),
    ("system_exit_message", "raise SystemExit('bye')\n", ""),
    ("keyboard_interrupt", "raise KeyboardInterrupt\n", ""),
    ("stdin_bytes", "import sys\ndata = sys.stdin.buffer.read()\nprint(len(data), data[:5])\n", "héllo\n" * 1000),
]


def outcome(result: Execution) -> tuple:
    """Everything a run reports except its wall time."""
    return result.status, result.stdout, result.stderr, result.exit_code


def test_the_fork_server_and_a_per_run_start_give_the_same_results(served, isolated):
    """Every Execution field but wall_s is the same both ways, one at a time and in parallel."""
    timeouts = {case.name: (case.timeout_s, case.memory_mb) for case in HOSTILE}
    jobs = [Job(code, stdin, *timeouts.get(name, (10.0, 1024))) for name, code, stdin in SAME_BOTH_WAYS]
    results = {}
    for fork_server in (True, False):
        sandbox.use_fork_server(fork_server)
        results[fork_server] = [run(job.code, job.stdin, job.timeout_s, job.memory_mb) for job in jobs]
        results[fork_server, "many"] = run_many(jobs, workers=3)
    sandbox.use_fork_server(True)
    for i, (name, _, _) in enumerate(SAME_BOTH_WAYS):
        per_run = outcome(results[False][i])
        assert outcome(results[True][i]) == per_run, name
        assert outcome(results[True, "many"][i]) == per_run, name
        assert outcome(results[False, "many"][i]) == per_run, name
    introspected = results[True][[name for name, _, _ in SAME_BOTH_WAYS].index("introspect")]
    assert (introspected.status, introspected.stdout.count("\n")) == ("ok", 15), introspected  # all it looks at
    assert sandbox_processes() == []


def test_a_served_launcher_runs_exactly_one_program_and_exits_with_it(served):
    """No interpreter is used twice: what one program leaves in its interpreter, the next does not
    see. Between runs the server's children are its SPARES spare launchers; a run takes one of
    them, which exits with that run and never comes back, and a new spare replaces it. The server
    stays the same process and never takes the program's uid."""
    leave_traces = ("import builtins, os, sys\n"
                    "print(getattr(builtins, 'LEFT', None), getattr(os, 'LEFT', None), 'trace' in sys.modules)\n"
                    "builtins.LEFT = os.LEFT = 'left by an earlier program'\n"
                    "sys.modules['trace'] = sys\n")
    results = [run(leave_traces) for _ in range(5)] + run_many([Job(leave_traces)] * 8, workers=4)
    assert [r.stdout for r in results] == ["None None False\n"] * 13, results
    used: list[int] = []
    for _ in range(3):
        assert wait_until(lambda: len(children_of(served)) == sandbox_child.SPARES, 5.0)
        spares = set(children_of(served))
        running = threading.Thread(target=run, args=("import time\ntime.sleep(1.0)\n",))
        running.start()
        assert wait_until(lambda spares=spares: len(set(children_of(served)) - spares) == 1, 5.0)  # its replacement
        during = set(children_of(served))
        running.join()
        assert wait_until(lambda: len(children_of(served)) == sandbox_child.SPARES, 5.0)
        gone = (spares | during) - set(children_of(served))
        assert len(gone) == 1 and gone <= spares, (spares, during, gone)  # the run's launcher was a spare
        used += gone
    assert len(set(used)) == 3 and not set(used) & set(children_of(served)), used
    assert sandbox._server.process.pid == served
    server_uids = [line for line in Path(f"/proc/{served}/status").read_text().splitlines() if line.startswith("Uid:")]
    assert server_uids[0].split()[1:] == [str(os.geteuid())] * 4
    assert sandbox.workdir_owner(Path(f"/proc/{served}/cmdline").read_bytes().split(b"\0")[-2].decode()) == os.getpid()


def test_a_burst_of_served_runs_leaves_nothing_and_stopping_the_server_reaps_it(served):
    daemon = HOSTILE[[c.name for c in HOSTILE].index("daemon_double_fork")].code
    kinds = [Job(daemon), Job("import os\nos.system('sleep 100 &')\n"), Job("import os\nwhile True:\n    os.fork()\n", timeout_s=1.0),
             Job("while True:\n    pass\n", timeout_s=0.5), Job("print(input())\n", "hi\n"), Job("import sys\nsys.exit(3)\n")]
    workdirs_before = leftover_workdirs()
    results = run_many([kinds[i % len(kinds)] for i in range(30)], workers=4)
    assert [r.stdout for r in results[4::6]] == ["hi\n"] * 5
    assert sandbox_processes() == []
    assert leftover_workdirs() == workdirs_before
    assert wait_until(lambda: len(children_of(served)) == sandbox_child.SPARES, 5.0)  # no launcher left, the spares
    sandbox.stop_fork_server()
    assert sandbox._server is None and process_state(served) is None  # exited and reaped
    assert run("print(5)").stdout == "5\n"  # a new server
    assert sandbox._server.process.pid != served


def test_stopping_the_server_kills_the_runs_in_flight_and_leaves_nothing(served):
    outcomes = []

    def long_run():
        try:
            outcomes.append(run("import time\ntime.sleep(60)\n", timeout_s=60.0).status)
        except sandbox.SandboxError:
            outcomes.append("SandboxError")

    running = threading.Thread(target=long_run)
    start = time.monotonic()
    running.start()
    assert wait_until(lambda: sandbox_processes() != [], 5.0)
    sandbox.stop_fork_server()
    running.join(timeout=SLACK_S)
    assert outcomes in (["killed"], ["SandboxError"]) and time.monotonic() - start < SLACK_S
    assert process_state(served) is None
    assert sandbox_processes() == []


def test_a_dead_fork_server_is_replaced_and_its_runs_end_killed(served):
    outcomes = []
    running = threading.Thread(target=lambda: outcomes.append(run("import time\ntime.sleep(60)\n", timeout_s=60.0)))
    running.start()
    assert wait_until(lambda: sandbox_processes() != [], 5.0)
    os.kill(served, signal.SIGKILL)  # its launchers follow (parent-death signal), and the runs with them
    running.join(timeout=SLACK_S)
    assert [r.status for r in outcomes] == ["killed"], outcomes
    assert wait_until(lambda: sandbox_processes() == [], 5.0)
    assert run("print(4)").stdout == "4\n"
    assert sandbox._server.process.pid != served and process_state(served) is None


def test_a_fork_server_that_fails_its_probe_leaves_runs_to_start_one_by_one(served):
    failures: list[str] = []
    broken = sandbox._Mode("/bin/false", isolate=False, drop_uid=False)
    assert sandbox._with_fork_server(broken, failures) == broken
    assert len(failures) == 1 and "fork_server=True" in failures[0]
    assert process_state(served) is None  # the probe replaced this process's server, then stopped it
    assert run("print(3)").stdout == "3\n"


def test_a_forked_child_starts_its_own_fork_server(served):
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, stop its own server, say what happened
        try:
            result = run("print(7)")
            own = sandbox._server.process.pid
            sandbox.stop_fork_server()
            os.write(write_end, f"{result.stdout.strip()} {own} {process_state(own)}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as report:
        stdout, child_server, state = report.read().split()
    os.waitpid(pid, 0)
    assert (stdout, state) == ("7", "None") and int(child_server) != served
    assert run("print(8)").stdout == "8\n" and sandbox._server.process.pid == served


def _run_in_a_worker(response: str, reference) -> ScoreResult:
    """A scorer for the test below: the program's stdout, and the pid of the worker's fork server."""
    result = run(response)
    return ScoreResult(1.0 if result.stdout == "ok\n" else 0.0, result.status, str(sandbox._server.process.pid))


def test_a_scorer_worker_stops_its_fork_server_when_it_exits(served):
    """A multiprocessing worker leaves through os._exit, without atexit: its finalizer stops the server."""
    with ScorerPool(workers=1, timeout_s=60.0) as pool:
        results = pool.map(_run_in_a_worker, [("print('ok')", None), ("print('ok') ", None)])
    assert [r.reward for r in results] == [1.0, 1.0]
    worker_server = int(results[0].extracted)
    assert worker_server != served and process_state(worker_server) is None


CHILD_HARNESS = """
import sys
sys.path.insert(0, {repo!r})
from harness.execution import sandbox
print(sandbox.run("print(1)").stdout.strip(), sandbox._server.process.pid, flush=True)
if {long_run!r}:
    sandbox.run("import time\\ntime.sleep(60)\\n", timeout_s=60.0)
"""


def test_a_harness_that_exits_leaves_no_fork_server_behind(served):
    script = CHILD_HARNESS.format(repo=str(REPO), long_run=False)
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed, server = done.stdout.split()
    assert printed == "1" and process_state(int(server)) is None  # stopped at exit and reaped


def test_a_harness_killed_mid_run_leaves_no_run_behind(served):
    """SIGKILL: the server sees EOF, kills its launchers and exits; the runs die with them. What
    may remain are zombies of the server and launcher, if this machine's pid 1 does not reap
    orphans: no memory, no uid slot, nothing running."""
    script = CHILD_HARNESS.format(repo=str(REPO), long_run=True)
    child = subprocess.Popen([sys.executable, "-W", "ignore", "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        printed, server = child.stdout.readline().split()
        assert printed == "1"
        assert wait_until(lambda: slot_processes_of(child.pid) != [], 10.0)
        child.kill()
        child.wait()
        assert wait_until(lambda: process_state(int(server)) in (None, "Z"), 10.0)
        assert wait_until(lambda: slot_processes_of(child.pid) == [], 10.0), slot_processes_of(child.pid)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a harness as another user")
def test_without_root_the_fork_server_and_a_per_run_start_agree():
    """The non-root fallback (no slot uid, no namespaces), as user nobody, both ways."""
    python = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if not os.path.isfile(python):
        pytest.skip(f"no {python} for user nobody (the venv's interpreter may be under /root)")
    script = f"""
import json, re, sys
sys.path.insert(0, {str(REPO)!r})
from harness.execution import sandbox
programs = {[(code, stdin) for name, code, stdin in SAME_BOTH_WAYS if name in ("echo_stdin", "stdlib", "exit_3",
                                                                                "raise_exception", "infinite_loop")]!r}
programs.append(("import os, sys\\nprint(os.getuid(), sorted(sys.modules), dict(os.environ).keys())\\n", ""))
mode = sandbox._sandbox_mode()
def outcome(result):  # without namespaces, tracebacks name the run's own working directory
    stderr = re.sub(sandbox.WORKDIR_PREFIX + r"[0-9]+-[^/]+", "WORKDIR", result.stderr)
    return result.status, result.stdout, stderr, result.exit_code
served = [sandbox.run(code, stdin, timeout_s=1.0) for code, stdin in programs]
server = sandbox._server.process.pid
sandbox.use_fork_server(False)
alone = [sandbox.run(code, stdin, timeout_s=1.0) for code, stdin in programs]
print(json.dumps({{"mode": [mode.isolate, mode.drop_uid, mode.fork_server], "server": server,
                  "same": [outcome(a) == outcome(b) for a, b in zip(served, alone)],
                  "statuses": [a.status for a in served]}}))
"""
    done = subprocess.run([python, "-W", "ignore", "-c", script], capture_output=True, text=True, timeout=120,
                          user=65534, group=65534, extra_groups=[], cwd="/", env={"PATH": "/usr/bin:/bin"})
    if done.returncode != 0 and "Permission denied" in done.stderr:
        pytest.skip(f"user nobody cannot read the repository: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["mode"] == [False, False, True]
    assert report["statuses"] == ["ok", "ok", "timeout", "error", "error", "ok"]
    assert all(report["same"]), report
    assert process_state(report["server"]) is None


def test_bench_sandbox_prints_both_ways_side_by_side(capsys, mode):
    from harness.cli import main

    assert main(["bench", "sandbox", "--profile", "tiny", "--samples", "32", "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sandbox: 8 trivial programs on ") and lines[0].endswith(" executions/s")
    assert lines[2] == "| workload | per-run start | fork server | fork server / per-run |"
    rows = [line.split(" | ") for line in lines[4:6]]
    assert rows[0][0].startswith("| trivial programs") and rows[1][0].startswith("| tiny code responses scored/s (4,")
    assert all(float(row[1]) > 0 and float(row[2]) > 0 and row[3].endswith("x |") for row in rows)
    assert lines[6] == "rewards and statuses of the 4 responses, per run vs fork server: 4 the same, 0 different"
    assert sandbox.use_fork_server(True) is True  # the benchmark put the setting back
