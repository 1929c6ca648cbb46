"""The sandbox's child program (`harness/execution/sandbox_child.py`): its own functions, imported as
a module, and a run through it end to end."""

from __future__ import annotations

import ast
import errno
import os
import subprocess
import sys
import textwrap

import pytest

from harness.execution import sandbox
from harness.execution import sandbox_child as child

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")


def test_importing_has_no_side_effects():
    assert child.STATUS_FD is None and child.WORKDIR is None  # the entry point did not run
    assert callable(child.start) and callable(child.run_program)


def test_imports_only_the_standard_library():
    """It runs under whichever interpreter the sandbox chose, with -S: nothing else is importable."""
    tree = ast.parse(sandbox.SANDBOX_CHILD.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported and imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_the_parent_passes_the_files_text_and_the_child_reads_its_numbers():
    mode = sandbox._Mode("/usr/bin/python3", isolate=True, drop_uid=True)
    limits = sandbox._Limits(cpu_s=6, memory_bytes=1 << 30, file_bytes=16 << 20, open_files=64, processes=64)
    argv = sandbox._bootstrap_argv(mode, 61003, "/tmp/harness-sandbox-run-1-x", limits, 7)
    assert argv[:4] == ["/usr/bin/python3", "-S", "-B", "-c"]
    fd = sandbox._bootstrap_text_fd()
    assert argv[4] == f"import os;t=os.pread({fd},{len(sandbox._BOOTSTRAP_BYTES)},0);os.close({fd});exec(t)"
    assert os.pread(fd, 1 << 20, 0) == sandbox.SANDBOX_CHILD.read_bytes()  # the text the stub runs
    assert str(sandbox.SANDBOX_CHILD) not in argv  # by text, not by path: see SANDBOX_CHILD
    # `python -c TEXT a b ...` gives the program sys.argv == ["-c", "a", "b", ...]
    assert child.parse_argv(["-c", *argv[5:]]) == (
        7, os.getpid(), 1, 61003, 61003, 6, 1 << 30, 16 << 20, 64, 64, "/tmp/harness-sandbox-run-1-x", sandbox._mask_dirs())
    plain = sandbox._bootstrap_argv(sandbox._Mode("/usr/bin/python3", isolate=False, drop_uid=False), -1, "/w", limits, 3)
    _, _, isolate, uid, gid, *_, workdir, masks = child.parse_argv(["-c", *plain[5:]])
    assert (isolate, uid, gid, workdir, masks) == (0, -1, -1, "/w", [])  # no namespaces: nothing to mask


def test_report_writes_one_line_on_the_status_pipe(monkeypatch):
    read_end, write_end = os.pipe()
    try:
        monkeypatch.setattr(child, "STATUS_FD", write_end)
        child.report("ready")
        child.report("exit 0 0.012")
        os.close(write_end)
        write_end = -1
        assert os.read(read_end, 1 << 10) == b"ready\nexit 0 0.012\n"
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_call_is_silent_when_libc_returned_zero(monkeypatch):
    monkeypatch.setattr(child, "STATUS_FD", -1)  # any write would fail
    assert child.call(0, "unshare") is None


def test_a_failed_libc_call_reports_an_error_line_and_exits_125():
    """In a separate process: `fail` ends the process with os._exit. The file is loaded by path,
    with -S -I like the sandbox's interpreter, so this also checks it needs nothing but itself."""
    code = textwrap.dedent(f"""
        import ctypes, errno, importlib.util
        spec = importlib.util.spec_from_file_location("sandbox_child", {str(sandbox.SANDBOX_CHILD)!r})
        child = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(child)
        child.STATUS_FD = 1
        ctypes.set_errno(errno.EPERM)
        child.call(-1, "unshare")
        print("not reached")
    """)
    result = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 125, result.stderr
    assert result.stdout == f"error unshare: {os.strerror(errno.EPERM)}\n"


def test_owned_by_uid_reads_the_uid_lines_of_proc(monkeypatch):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        monkeypatch.setattr(child, "UID", os.getuid())
        assert child.owned_by_uid(str(sleeper.pid))
        assert not child.owned_by_uid(str(os.getpid()))  # never the process asking
        assert not child.owned_by_uid("999999999")  # no such process
        monkeypatch.setattr(child, "UID", sandbox.SLOT_UID_BASE + sandbox.SLOT_COUNT - 1)
        assert not child.owned_by_uid(str(sleeper.pid))
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_program_runs_end_to_end_through_the_child():
    result = sandbox.run("print(1)")
    assert (result.status, result.stdout, result.exit_code) == ("ok", "1\n", 0), result.stderr


def test_the_program_sees_the_globals_and_path_of_python_c_not_of_the_child_file():
    """What the program inherits from the bootstrap's `__main__`: no docstring, no loader or cache
    of sandbox_child.py, its own working directory first on sys.path, its own argv."""
    code = ("import os, sys\n"
            "g = globals()\n"
            "print(g['__doc__'], g['__name__'], '__cached__' in g, getattr(g['__loader__'], '__name__', g['__loader__']))\n"
            "print(repr(sys.path[0]), sys.argv == [__file__], __file__ == os.path.join(os.getcwd(), 'main.py'))\n"
            "print(sorted(k for k in g if not k.startswith('__')))\n")
    result = sandbox.run(code)
    assert result.status == "ok", result.stderr
    assert result.stdout.splitlines() == ["None __main__ False BuiltinImporter", "'' True True", "['g', 'os', 'sys']"]
    documented = sandbox.run('"""A program with a docstring."""\nprint(__doc__)\n')
    assert documented.stdout == "A program with a docstring.\n"


@pytest.mark.parametrize("served", [True, False], ids=["fork server", "per run"])
def test_a_runs_processes_show_a_short_command_line(served):
    """`ps` on a node prints each run's command line: the stub and the parameters (a few hundred
    characters with the masked directories), never the bootstrap's text. The program's own
    /proc/self/cmdline is its bootstrap's (the fork server's, when served), as ps shows it for the
    launcher, the init and the program alike. The stub's descriptor is closed before the text runs,
    and the text's memfd is sealed: nobody can change what the next bootstrap runs."""
    previous = sandbox.use_fork_server(served)
    try:
        result = sandbox.run("import os\nprint(len(open('/proc/self/cmdline', 'rb').read()))\n"
                             "print(sorted(int(fd) for fd in os.listdir('/proc/self/fd')))\n")
    finally:
        sandbox.use_fork_server(previous)
    assert result.status == "ok", result.stderr
    length, fds = result.stdout.splitlines()
    assert 0 < int(length) < 400, length
    assert fds == "[0, 1, 2, 3]", fds  # 3: the listing's own descriptor
    fd = sandbox._bootstrap_text_fd()
    with pytest.raises(PermissionError):
        os.pwrite(fd, b"x", 0)


def test_the_program_can_import_modules_it_wrote_in_its_working_directory():
    code = ("with open('helper_mod.py', 'w') as f:\n"
            "    f.write('VALUE = 41\\n')\n"
            "import helper_mod\n"
            "print(helper_mod.VALUE + 1)\n")
    result = sandbox.run(code)
    assert (result.status, result.stdout) == ("ok", "42\n"), result.stderr


# --- the fork server (`serve`) -------------------------------------------------------------------

def test_both_ways_reach_the_same_start_and_run_program_lines():
    """The entry point calls `start()` and `run_program()` once, after the if/else that chooses per
    run or fork server, so both ways run the program from the same frames: tracebacks, which show
    the bootstrap's line numbers, come out the same."""
    tree = ast.parse(sandbox.SANDBOX_CHILD.read_text(encoding="utf-8"))
    entry = next(node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.dump(node.test))
    choose, *rest = entry.body
    assert isinstance(choose, ast.If) and "serve" in ast.dump(choose.test)
    assert [ast.unparse(node) for node in rest] == ["start()", "run_program()"]


def test_received_fds_reads_the_descriptors_of_an_scm_rights_message():
    import _socket
    import socket

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe()
    try:
        socket.send_fds(ours, [b"run"], [read_end, write_end])
        message, ancillary, _, _ = theirs.recvmsg(1 << 10, socket.CMSG_SPACE(child.RUN_FDS * 4))
        received = child.received_fds(ancillary, _socket)
        assert message == b"run" and len(received) == 2
        os.write(received[1], b"x")
        assert os.read(read_end, 1) == b"x"  # the same pipe, through new descriptors
        for fd in received:
            os.close(fd)
    finally:
        ours.close()
        theirs.close()
        os.close(read_end)
        os.close(write_end)


def test_a_forked_launcher_takes_the_requests_descriptors_parameters_and_environment():
    """`become_launcher`, in a separate process (it calls chdir and dup2): the run's pipes become
    0, 1, 2, the numbers come from the request, the parent is the server."""
    code = textwrap.dedent(f"""
        import importlib.util, os
        spec = importlib.util.spec_from_file_location("sandbox_child", {str(sandbox.SANDBOX_CHILD)!r})
        child = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(child)
        report = os.dup(1)
        pipes = [os.pipe() for _ in range(5)]
        fds = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1], pipes[4][1]]
        words = ["-1", "-1", "1", "61005", "61005", "6", str(1 << 30), str(16 << 20), "64", "64", "/", "/dev/shm"]
        child.become_launcher("/tmp", words, fds, 4242)
        os.write(1, b"to stdout")
        os.write(report, repr((
            child.STATUS_FD == pipes[3][1], child.PARENT_PID, child.ISOLATE, child.UID, child.GID, child.CPU_S,
            child.MEMORY, child.NPROC, child.WORKDIR, child.MASKS, os.getcwd(), os.environ["HOME"],
            os.environ["TMPDIR"], os.read(pipes[1][0], 64))).encode())
    """)
    result = subprocess.run([sys.executable, "-S", "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == repr((True, 4242, 1, 61005, 61005, 6, 1 << 30, 64, "/", ["/dev/shm"], "/", "/tmp", "/tmp",
                                  b"to stdout"))
