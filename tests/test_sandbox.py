"""The sandbox against a corpus of hostile programs, legitimate programs, and in parallel.

For every hostile program: this process survives, the wall time is bounded, nothing outside the
run's working directory changes (canary files, escape paths), no process of a sandbox uid is left,
no working directory is left, and the status is the expected one.
"""

from __future__ import annotations

import glob
import os
import secrets
import signal
import socket
import stat
import sys
import tempfile
import time
from dataclasses import FrozenInstanceError, dataclass, replace
from pathlib import Path

import pytest

from harness.execution import sandbox
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
    slot_uids = range(sandbox.SLOT_UID_BASE, sandbox.SLOT_UID_BASE + sandbox.SLOT_COUNT)
    found = []
    for status_path in glob.glob("/proc/[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in Path(status_path).read_text().splitlines() if ":" in line)
        except OSError:
            continue  # exited meanwhile
        slot = any(int(uid) in slot_uids for uid in fields["Uid"].split()[:3])
        if slot and run_owner(status_path.split("/")[2]) in (None, os.getpid()):
            found.append(f"{status_path}: {fields['Name'].strip()} {fields['State'].strip()}")
    return found


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
