"""Supervisor that runs inside the code-reward sandbox; started by `r1jax.rewards.code`, never imported.

Invoked as `python -I -S _sandbox_runner.py JOB_FILE [--no-new-privs-set]` (JOB_FILE: a
marshal-encoded dict; the flag: `setpriv --no-new-privs` started it) with the sandbox working
directory as cwd, either directly or as PID 1 of fresh namespaces created by `unshare`. It starts
once per program (twice for assert-style cases without setpriv, see `main`), so it imports only
cheap built-in modules. It never executes the untrusted program
itself: each test case runs in a forked child that lowers its resource limits, drops to the sandbox
uid and installs a socket guard before running the program. As the supervisor keeps its privileges
and the children do not, the program can neither signal nor trace it, so the records it writes can
be trusted.

For each case it writes one record on stdout: a header line of seven integers
  case exit_code timed_out output_overflow assertions_completed stdout_bytes stderr_bytes
followed by that many bytes of stdout and then of stderr (its tail). The caller judges the output,
so expected outputs never reach memory the program could read. A case times out past `timeout_s` of CPU
time (every process of it the supervisor reaps: with a PID namespace all of them, orphans included;
without one, its main process and the children it waited for) or `wall_timeout_s` of wall clock. With the job's
`stop_at_failure`, the cases after one that exits with an error, times out or overflows are not run.

Function-call cases (`{"call": name, "args": [...]}`) import the program as a module (not as
__main__, as LiveCodeBench's and APPS's judges do) into a namespace that has what LeetCode-style code
assumes imported (`_CALL_PRELUDE`), call `Solution().name(*args)` (or the module's function `name`)
and write the return value, as JSON, where stdout would go: the program's own stdout joins its stderr.
What the record then holds is only a value the program could have returned anyway, so it needs no
token: the judge compares it with the expected value, which stays outside.

Assert-style tests have to run in the program's own process, so they guard themselves against a
program that tries to pass them without solving the task (`_compile_tests`):
  * They report their own completion. Their last statement writes a per-case random token, which is
    a constant of their compiled code and nowhere else in the child: the supervisor makes it after
    forking and sends it through a pipe that the child reads, straight into that code, and closes
    before the program starts. An audit hook, which the program cannot remove, refuses reading or
    swapping the tests' code (`f_code`, `__code__`, `gi_code`... of the tests; gc's object graph;
    ctypes, which no test case process inherits either: see `_isolate_filesystem`) and tracing,
    which could jump over their lines. So the token is reached only by running the tests to their
    end, whatever the program does to the runner's own code and variables.
  * They are compiled before the program runs, from a rewritten syntax tree: comparisons (but
    `is`), arithmetic and what asserts check act on plain-data copies of their operands (built-in
    values, read without calling any method the program defined), so an object with a rigged
    `__eq__`, `__sub__` or `__bool__` gets nowhere; builtins, `math` and `__name__` are constants,
    so rebinding or monkeypatching them does not reach the tests.
What an in-process test cannot defend: frames stay reachable (the standard library needs
sys._getframe), so what the tests keep in variables, in the namespace they share with the program
or in modules other than math can be read and changed by a determined program (e.g. expected values
kept in a table of cases; and a list, dict or set written as a literal in the asserts is a fresh object that
program code running while the comparison copies its operands, a garbage-collector finalizer or another
thread, can find in the helpers' frames and change in place; numbers, text and tuples cannot be); and memory,
the token's included, can be read by native code (ctypes is refused, third-party extensions such as
numpy's array interface are not) and by bytecode crafted to index out of bounds (CPython does not
check code objects, which a program can build). The kernel keeps other processes and /proc/self/mem
out of the child's memory only where it runs under a dedicated uid (it is then not dumpable); in
weaker tiers a process the program starts, which no audit hook binds, can read it.

Everything here is plain try/except rather than contextlib and the like: each stdlib import is paid
once per program.
"""
import builtins
import marshal
import os
import resource
import select
import signal
import sys
import time

_WORLD_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
# Top-level directories the program sees (the system and its libraries); every other one (/home, /srv, /data,
# /work, /opt, /var...: where data sets, checkpoints and run directories live) is an empty tmpfs to it, with
# the Python installation bound back in place.
_VISIBLE_TOP_LEVEL_DIRS = frozenset({"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "sys",
                                     "usr"})
_SHADOW_INODES = 1024  # an empty tmpfs only holds the directories Python is bound back onto
_WRITABLE_INODES = 4096  # files and directories of a private tmpfs: inodes are kernel memory no size limit counts
_STDERR_TAIL_BYTES = 4096
_READ_CHUNK = 1 << 16
# Descriptor on which an assert-style case reports completion with a per-case random token.
_REPORT_FD = 3
# Descriptor from which the child reads that token, before its program starts.
_TOKEN_FD = 4
_TOKEN_HEX_BYTES = 32
_TESTS_FILE = "tests.py"
_SETUP_FAILED = 125
_AF_UNIX = 1  # socket.AF_UNIX on Linux; importing socket inside the audit hook would re-enter it
# Bound before any program runs, so a program that rebinds os._exit cannot keep its child alive
# inside the supervisor's code.
_hard_exit = os._exit
# What the builtins are before any program runs; the tests get them from here.
_BUILTINS = dict(vars(builtins))
_FunctionType = type(lambda: None)
_MappingProxyType = type(type.__dict__)

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC = 0x2, 0x4, 0x8, 0x1000, 0x4000
_PR_SET_NO_NEW_PRIVS = 38
_NO_NEW_PRIVS_SET = "--no-new-privs-set"


def main() -> None:
    job_path, *flags = sys.argv[1:]
    with open(job_path, "rb") as job_file:
        job = marshal.load(job_file)
    has_tests = any("assert" in case for case in job["cases"])
    has_calls = any("call" in case for case in job["cases"])
    if _NO_NEW_PRIVS_SET not in flags:
        # Inherited by every process of the program: setuid binaries and file capabilities grant nothing.
        _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        if has_tests:
            # ctypes, just loaded for that call, would stay within reach of every test case process
            # (see _isolate_filesystem): start afresh, which keeps no_new_privs.
            os.execv(sys.executable, [sys.executable, "-I", "-S", __file__, job_path, _NO_NEW_PRIVS_SET])
    os.unlink(job_path)
    if job["namespaces"]:
        _isolate_filesystem(job)
    if has_tests:
        _load_test_tools()
    if has_calls:
        _load_call_tools()
    for index, case in enumerate(job["cases"]):
        record, failed = _run_case(job, case, index)
        _write_all(1, record)
        if failed and job["stop_at_failure"]:
            break


# ---------------------------------------------------------------- filesystem view (namespaces only)


def _isolate_filesystem(job: dict) -> None:
    """Mount the program's view of the filesystem (see _mount_filesystem_view) and move onto it.

    The mounts need ctypes, so a forked helper makes them (they hold for the whole mount namespace):
    once loaded, ctypes' classes stay reachable from object.__subclasses__() and read any memory
    without an audit event, so a test case process forked from a supervisor that loaded it could
    read its tests' token.
    """
    helper = os.fork()
    if helper == 0:
        try:
            _mount_filesystem_view(job)
        except BaseException as error:
            os.write(2, f"sandbox setup failed: {error!r}\n".encode())
            _hard_exit(_SETUP_FAILED)
        _hard_exit(0)
    _, status = os.waitpid(helper, 0)
    if status != 0:
        raise OSError("mounting the sandbox's filesystem view failed")
    os.chdir(job["workdir"])  # onto the tmpfs now mounted over it


def _mount_filesystem_view(job: dict) -> None:
    """Give the program private, size-capped writable places, hide host directories and cap System V IPC.

    We are root in a private mount namespace (mounts never propagate back to the host). The working
    directory and the world-writable directories become private tmpfs, each capped at
    max_disk_bytes and _WRITABLE_INODES. Top-level directories other than the system's
    (_VISIBLE_TOP_LEVEL_DIRS) and directories the sandbox uid could not traverse anyway (e.g. /root
    when Python lives under it) become empty tmpfs it cannot write, and the Python installation is
    bind-mounted back at its own path so the program can import the standard library: a world-readable
    data set (its expected outputs) or run directory is out of the program's sight.
    """
    workdir = job["workdir"]
    size = job["limits"]["max_disk_bytes"]
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _cap_ipc(job["limits"]["memory_mb"])
    # The interpreter's directory too: a virtual environment's python (run by subprocesses) lives outside its prefix.
    interpreter_dirs = (sys.prefix, sys.base_prefix, os.path.dirname(sys.executable), *job["site_dirs"])
    python_dirs = _outermost(d for d in interpreter_dirs if os.path.isdir(d))
    held = {d: os.open(d, os.O_PATH | os.O_DIRECTORY) for d in python_dirs}
    writable = [d for d in _WORLD_WRITABLE_DIRS if os.path.isdir(d)]
    top_level = [entry for entry in os.scandir("/")
                 if entry.name not in _VISIBLE_TOP_LEVEL_DIRS and entry.path not in writable]
    hidden_dirs = [entry.path for entry in top_level if entry.is_dir(follow_symlinks=False)]
    # Files, sockets, FIFOs and device nodes (a symbolic link leads to a path that is itself hidden or visible).
    hidden_files = [entry.path for entry in top_level
                    if not entry.is_dir(follow_symlinks=False) and not entry.is_symlink()]
    closed_ancestors = (_first_untraversable_ancestor(d) for d in (*python_dirs, workdir))
    shadowed = _outermost([*hidden_dirs, *filter(None, closed_ancestors)])
    for directory in shadowed:
        _mount("tmpfs", directory, "tmpfs", flags, f"mode=755,size=1m,nr_inodes={_SHADOW_INODES}")
    for path in hidden_files:  # e.g. a data set kept at the root reads as empty; a socket there cannot be reached
        _mount("/dev/null", path, None, _MS_BIND, None)
    for directory in writable:  # after the shadows, as /var/tmp sits in the hidden /var
        os.makedirs(directory, exist_ok=True)
        _mount("tmpfs", directory, "tmpfs", flags, f"mode=1777,size={size},nr_inodes={_WRITABLE_INODES}")
    for directory, fd in held.items():  # last: a virtual environment may live in /tmp
        if any(_is_within(directory, covered) for covered in (*shadowed, *writable)):
            os.makedirs(directory, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", directory, None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    os.makedirs(workdir, exist_ok=True)
    owner = "" if job["uid"] is None else f",uid={job['uid']},gid={job['uid']}"
    _mount("tmpfs", workdir, "tmpfs", flags, f"mode=700,size={size},nr_inodes={_WRITABLE_INODES}{owner}")


def _cap_ipc(memory_mb: int) -> None:
    """Cap the sandbox's own IPC namespace: System V shared memory outlives the process that made it and counts
    against no rlimit, so the whole namespace gets one process's memory, in a few segments and message queues.
    Where the kernel does not let a user namespace's root set them, they stay as they are."""
    page = os.sysconf("SC_PAGE_SIZE")
    for name, value in (("shmmax", memory_mb << 20), ("shmall", (memory_mb << 20) // page), ("shmmni", 16),
                        ("msgmni", 16)):
        try:
            with open(f"/proc/sys/kernel/{name}", "w") as setting:
                setting.write(str(value))
        except OSError:
            pass


def _mount(source: str, target: str, fstype: str | None, flags: int, options: str | None) -> None:
    encoded = [None if text is None else text.encode() for text in (source, target, fstype, options)]
    _libc_call("mount", *encoded[:3], flags, encoded[3])


def _libc_call(name: str, *args: int | bytes | None) -> None:
    """Call a libc function that returns nonzero on failure, raising OSError then."""
    import ctypes  # a few milliseconds, so only imported when needed

    # Integers go as unsigned long: prctl is variadic and the kernel reads whole registers.
    c_args = [ctypes.c_ulong(arg) if isinstance(arg, int) else arg for arg in args]
    if getattr(ctypes.CDLL(None, use_errno=True), name)(*c_args) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{name}{args!r}: {os.strerror(errno)}")


def _outermost(paths) -> list[str]:
    """Drop paths nested inside another path of the list (mounting on the outer one covers them)."""
    unique = sorted({os.path.realpath(p) for p in paths}, key=len)
    kept: list[str] = []
    for path in unique:
        if not any(_is_within(path, outer) for outer in kept):
            kept.append(path)
    return kept


def _is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _first_untraversable_ancestor(path: str) -> str | None:
    """Topmost proper ancestor that users other than its owner cannot search (lacks o+x)."""
    parts = os.path.realpath(path).split("/")[1:-1]
    for depth in range(1, len(parts) + 1):
        ancestor = "/" + "/".join(parts[:depth])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


# ---------------------------------------------------------------- one test case


class _Captured:
    """What a case's main process wrote: stdout up to the cap, the tail of stderr, the report token."""

    def __init__(self, stdout_fd: int, stderr_fd: int, report_fd: int, max_output_bytes: int) -> None:
        self.roles = {stdout_fd: "stdout", stderr_fd: "stderr", report_fd: "report"}
        self.max_output_bytes = max_output_bytes
        self.stdout = bytearray()
        self.stderr_tail = bytearray()
        self.stderr_bytes = 0
        self.report = bytearray()

    def add(self, fd: int, chunk: bytes) -> None:
        role = self.roles[fd]
        if role == "stdout":
            self.stdout += chunk
        elif role == "stderr":
            self.stderr_bytes += len(chunk)
            self.stderr_tail = (self.stderr_tail + chunk)[-_STDERR_TAIL_BYTES:]
        else:  # one byte more than a token suffices to tell a forged report
            self.report = (self.report + chunk)[: _TOKEN_HEX_BYTES + 1]

    @property
    def overflow(self) -> bool:
        return max(len(self.stdout), self.stderr_bytes) > self.max_output_bytes


def _run_case(job: dict, case: dict, index: int) -> tuple[bytes, bool]:
    """Run one case in a forked child; its record, and whether it failed here (an error exit, a timeout, too
    much output: a wrong output is judged by the caller)."""
    stdin_fd = _stdin_for(case)
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    report_r, report_w = os.pipe()
    token_r, token_w = os.pipe()
    cpu_before = _children_cpu_seconds()
    pid = os.fork()
    if pid == 0:
        # A function call's return value takes stdout's place in the record, and the program's prints join stderr.
        output_w, report_to = (stderr_w, stdout_w) if "call" in case else (stdout_w, report_w)
        _run_child(job, case, stdin_fd, output_w, stderr_w, report_to, token_r)
    # Made after the fork, so no frame of the child ever holds it: the child reads it from the pipe
    # straight into its compiled tests.
    token = os.urandom(_TOKEN_HEX_BYTES // 2).hex().encode()
    _write_all(token_w, token)
    for fd in (stdin_fd, stdout_w, stderr_w, report_w, token_r, token_w):
        os.close(fd)
    try:
        os.setpgid(pid, pid)  # the child does the same; whichever runs first wins the race
    except OSError:
        pass
    captured = _Captured(stdout_r, stderr_r, report_r, job["limits"]["max_output_bytes"])
    timed_out = not _collect_until_exit(pid, captured, job["wall_timeout_s"])
    if timed_out or captured.overflow:
        _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    for fd in (stdout_r, stderr_r, report_r):
        os.close(fd)
    _kill_leftovers(job, pid)
    # The limit is CPU time, as judges count it (the wall clock above is a backstop), so a case slowed down by
    # other programs on the machine does not fail: that of every process of the case reaped here. As PID 1 of its
    # namespace the supervisor reaps orphans too, so work left to children nobody waited for counts.
    timed_out = timed_out or _children_cpu_seconds() - cpu_before > job["timeout_s"]
    stdout = bytes(captured.stdout[: captured.max_output_bytes])
    stderr = bytes(captured.stderr_tail)
    exit_code = os.waitstatus_to_exitcode(status)
    fields = (index, exit_code, timed_out, captured.overflow, bytes(captured.report) == token, len(stdout), len(stderr))
    record = b" ".join(b"%d" % field for field in fields) + b"\n" + stdout + stderr
    return record, bool(exit_code or timed_out or captured.overflow)


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _collect_until_exit(pid: int, captured: _Captured, timeout_s: float) -> bool:
    """Read the child's pipes until it exits or overflows its output cap; False if time ran out first.

    Only the main process counts: once it has exited we take what is already in the pipes and stop,
    even if a descendant still holds them open (and keeps writing: the deadline bounds that too).
    """
    deadline = time.monotonic() + timeout_s
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in captured.roles:
        os.set_blocking(fd, False)
        poller.register(fd, select.POLLIN)
    try:
        while not captured.overflow:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            for fd, _ in poller.poll(max(1, int(remaining * 1000))):
                if fd == pidfd:
                    for stream_fd in captured.roles:
                        while (not captured.overflow and time.monotonic() < deadline
                               and (chunk := _read_some(stream_fd))):
                            captured.add(stream_fd, chunk)
                    return True
                chunk = _read_some(fd)
                if chunk:
                    captured.add(fd, chunk)
                elif chunk == b"":  # end of file
                    poller.unregister(fd)
        return True
    finally:
        os.close(pidfd)


def _stdin_for(case: dict) -> int:
    if "stdin" not in case:
        return os.open(os.devnull, os.O_RDONLY)
    fd = os.memfd_create("stdin")
    _write_all(fd, case["stdin"].encode("utf-8", "surrogatepass"))  # a lone surrogate must not sink the job
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_some(fd: int) -> bytes | None:
    """Up to one chunk; b"" at end of file, None when nothing is available yet."""
    try:
        return os.read(fd, _READ_CHUNK)
    except BlockingIOError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _kill_group(pid: int) -> None:
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, signal.SIGKILL)
        except OSError:
            pass


def _kill_leftovers(job: dict, child_pid: int) -> None:
    """Kill whatever the case left running (background or escaped processes) before the next case."""
    if os.getpid() == 1:
        # PID 1 of the sandbox's own PID namespace: -1 reaches every other process in it, nothing else.
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:  # nothing left to kill
            pass
        _reap(blocking=True)
        return
    if job["uid"] is not None:
        helper = os.fork()
        if helper == 0:
            try:
                os.setgid(job["uid"])
                os.setuid(job["uid"])  # raises on failure, so kill(-1) below never runs as root
                os.kill(-1, signal.SIGKILL)  # as the sandbox uid: exactly the processes of that uid
            finally:
                _hard_exit(0)
        os.waitpid(helper, 0)
    else:
        _kill_group(child_pid)
    _reap(blocking=False)


def _reap(*, blocking: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if blocking else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# ---------------------------------------------------------------- inside the forked child


def _run_child(job: dict, case: dict, stdin_fd: int, stdout_w: int, stderr_w: int, report_w: int,
               token_r: int) -> None:
    """Confine this forked child, then run the program and the case's tests in it; never returns."""
    # This process runs `case` only: the other cases' tests must not stay where the program can read them.
    job["cases"].clear()
    try:
        _prepare_child(job, stdin_fd, stdout_w, stderr_w, report_w, token_r)
    except BaseException as error:
        os.write(2, f"sandbox setup failed: {error!r}\n".encode())
        _hard_exit(_SETUP_FAILED)
    try:
        _run_program(job["program"], case)
    finally:
        _hard_exit(_SETUP_FAILED)


def _prepare_child(job: dict, stdin_fd: int, stdout_w: int, stderr_w: int, report_w: int, token_r: int) -> None:
    """Confine the forked child; limits are set while still privileged, the uid dropped last."""
    os.setpgid(0, 0)
    for target, fd in ((0, stdin_fd), (1, stdout_w), (2, stderr_w), (_REPORT_FD, report_w), (_TOKEN_FD, token_r)):
        os.dup2(fd, target)
    os.closerange(_TOKEN_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    limits = job["limits"]
    cpu_seconds = int(job["timeout_s"]) + 1
    caps = [
        (resource.RLIMIT_CPU, cpu_seconds),
        (resource.RLIMIT_AS, limits["memory_mb"] << 20),
        (resource.RLIMIT_FSIZE, limits["max_file_bytes"]),
        (resource.RLIMIT_NOFILE, limits["max_open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    if job["limit_processes"]:
        caps.append((resource.RLIMIT_NPROC, limits["max_processes"]))
    for which, value in caps:
        resource.setrlimit(which, (value, value))
    if job["uid"] is not None:
        os.setgroups([])
        os.setgid(job["uid"])
        os.setuid(job["uid"])
    os.umask(0o077)
    sys.addaudithook(_refuse_network_sockets)
    sys.path.extend(job["site_dirs"])
    sys.argv = ["solution.py"]
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)
    # What the program may write to directly; _shut_down flushes these.
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    # The supervisor runs without site (-S), which is what defines exit() and quit().
    import _sitebuiltins
    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")


def _refuse_network_sockets(event: str, args: tuple) -> None:
    # Unix sockets stay usable (socketpair, multiprocessing); every other family is refused.
    if event == "socket.__new__" and args[1] != _AF_UNIX:
        raise PermissionError("network access is disabled in the sandbox")


def _run_program(program: str, case: dict) -> None:
    """Run the program as __main__ (as a module for a function call), then the case's tests or call if it has
    one, and exit; never returns.

    The tests are taken out of `case` and compiled before the program starts, and they report their
    own completion (see `_compile_tests`): nothing that runs here once the program has started needs
    to be trusted.
    """
    module = type(sys)("solution" if "call" in case else "__main__")
    module.__file__ = "solution.py"
    sys.modules[module.__name__] = module
    exit_code = 0
    try:
        run_tests = _compile_tests(case.pop("assert")) if "assert" in case else None
        os.close(_TOKEN_FD)
        prelude = {}
        if "call" in case:
            exec(_CALL_PRELUDE, module.__dict__)
            prelude = dict(module.__dict__)
        exec(compile(program, "solution.py", "exec"), module.__dict__)
        if run_tests is not None:
            run_tests(module.__dict__)
        if "call" in case:
            function = _called(module.__dict__, case["call"], prelude)
            _write_all(_REPORT_FD, _json_dumps(_json_value(function(*case["args"]))).encode())
    except SystemExit as exit_request:
        exit_code = _exit_code(exit_request)
    except BaseException:
        sys.__excepthook__(*sys.exc_info())  # C implementation: works even if the stdlib is unreadable
        exit_code = 1
    _shut_down(exit_code)


def _exit_code(exit_request: SystemExit) -> int:
    """Exit status the interpreter would give for this SystemExit."""
    code = exit_request.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _shut_down(exit_code: int) -> None:
    """Finish as the interpreter's own shutdown does, then exit at once; never returns.

    Like Py_FinalizeEx: wait for non-daemon threads (the case's timeout bounds the wait), run atexit
    callbacks, flush the standard streams. What comes after (module teardown, finalizers) is skipped.
    """
    try:
        threading = sys.modules.get("threading")
        if threading is not None:
            threading._shutdown()
        atexit = sys.modules.get("atexit")
        if atexit is not None:
            atexit._run_exitfuncs()
    except BaseException:
        sys.__excepthook__(*sys.exc_info())
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            exit_code = exit_code or 1
    _hard_exit(exit_code)


# ---------------------------------------------------------------- function-call cases

# What LeetCode-style solutions use without importing it (`List[int]`, `deque`, `lru_cache`...), as in
# LiveCodeBench's judge; builtins come last so that math's names (pow) do not shadow them. Compiled by
# _load_call_tools, whose imports the forked children then share.
_CALL_PRELUDE_SOURCE = """
from typing import *
from collections import *
from heapq import *
from bisect import *
from itertools import *
from functools import *
from math import *
from builtins import *
import bisect, collections, functools, heapq, itertools, math, re, string, sys
sys.setrecursionlimit(50000)
"""
_CALL_PRELUDE = None
_json_dumps = None
_numbers = None


def _load_call_tools() -> None:
    """Import what function-call cases need: once per program, not in every forked child."""
    global _CALL_PRELUDE, _json_dumps, _numbers
    import json
    import numbers

    _json_dumps, _numbers = json.dumps, numbers
    _CALL_PRELUDE = compile(_CALL_PRELUDE_SOURCE, "<prelude>", "exec")
    exec(_CALL_PRELUDE, {})  # imports the modules here, before any fork


def _called(namespace: dict, name: str, prelude: dict):
    """`Solution().name` where the program defines a class Solution with that method, else its function `name`;
    never a name of the prelude the program did not bind itself (an empty program must not pass as `gcd`)."""
    solution = namespace.get("Solution")
    if isinstance(solution, type) and hasattr(solution, name):
        return getattr(solution(), name)
    if name not in namespace or (name in prelude and namespace[name] is prelude[name]):
        raise NameError(f"the program defines no function {name!r} (nor a class Solution with that method)")
    return namespace[name]


def _json_value(value):
    """A return value as a JSON value, as the judges of APPS and LiveCodeBench compare it: tuples as lists, a
    Counter as a dict, numpy values as Python's; what no JSON value equals (a set, a dict with keys that are not
    text, an object) raises TypeError. The program's own code may run here: whatever it makes this return, it
    could have returned, and the comparison happens outside."""
    if value is None or isinstance(value, bool):  # bool has no subclasses
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("the function returned a dict with keys that are not text, which no test's value equals")
        return {str(key): _json_value(item) for key, item in value.items()}
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # numpy scalars and arrays
        return _json_value(value.tolist())
    if isinstance(value, _numbers.Integral):
        return int(value)
    if isinstance(value, _numbers.Real):
        return float(value)
    raise TypeError(f"the function returned a {type(value).__name__}, which no test's value equals")


# ---------------------------------------------------------------- assert-style tests

# Set by _load_test_tools, for jobs with assert-style cases only: the _ast module, and the names the
# tests' code may use (see _TestsHardener) as a read-only mapping.
_ast = None
_TRUSTED = None


def _load_test_tools() -> None:
    """Import what compiling assert-style tests needs: once per program, not in every forked child."""
    global _ast, _TRUSTED
    import _ast
    import _operator
    import math

    operators = {
        "Add": _operator.add, "Sub": _operator.sub, "Mult": _operator.mul, "MatMult": _operator.matmul,
        "Div": _operator.truediv, "FloorDiv": _operator.floordiv, "Mod": _operator.mod, "Pow": _operator.pow,
        "LShift": _operator.lshift, "RShift": _operator.rshift, "BitOr": _operator.or_, "BitXor": _operator.xor,
        "BitAnd": _operator.and_, "USub": _operator.neg, "UAdd": _operator.pos, "Invert": _operator.invert,
    }
    # Keys that are not identifiers ("<compare>", "math.isclose") cannot collide with a builtin's name.
    _TRUSTED = _MappingProxyType({
        **{name: value for name, value in _BUILTINS.items() if not name.startswith("_")},
        "math": math,
        **{f"math.{name}": value for name, value in vars(math).items() if not name.startswith("_")},
        **{f"<{name}>": function for name, function in operators.items()},
        "<plain>": _plain,
        "<compare>": _compare,
        "<truth>": _truth,
        "<report>": os.write,
    })


# Stands for _TRUSTED in the tests' syntax tree (a syntax tree holds only literals); swapped for the
# mapping itself in the compiled code. The NULs keep it apart from any string a test could contain.
_TRUSTED_PLACEHOLDER = "\0trusted names\0"


def _compile_tests(source: str):
    """Compile assert-style tests, hardened (see _TestsHardener), and guard them with an audit hook.

    Returns a function that copies the program's namespace into the tests' own and runs them there;
    their code ends by writing the token (read here straight from its pipe into the syntax tree) to
    the report descriptor. The tests' namespace is how the audit hook tells their code apart, and
    its builtins are those from before the program ran (for `import` and `class` in the tests).
    """
    builtins_of_tests = dict(_BUILTINS)
    namespace = {"__builtins__": builtins_of_tests}
    tree = compile(source, _TESTS_FILE, "exec", _ast.PyCF_ONLY_AST, dont_inherit=True)
    tree = _TestsHardener(tree).rewrite(tree)
    tree.body.append(_report_statement(tree, os.read(_TOKEN_FD, _TOKEN_HEX_BYTES)))
    # The tests run once: a program that calls them again from inside (their function is reachable
    # through frames), to try answers until one passes, gets StopIteration at their first line.
    tree.body.insert(0, _located(tree.body[0], _ast.Expr(_trusted_call(tree.body[0], "<once>"))))
    trusted = _MappingProxyType({**_TRUSTED, "<once>": iter((None,)).__next__})
    code = _with_trusted_names(compile(tree, _TESTS_FILE, "exec", dont_inherit=True, optimize=0), trusted)
    tests = _FunctionType(code, namespace)  # module code called as a function runs in its globals
    sys.addaudithook(_guard_tests(namespace))

    def run_tests(program_namespace: dict) -> None:
        namespace.update(program_namespace)
        namespace["__builtins__"] = builtins_of_tests
        tests()

    return run_tests


def _report_statement(tree, token: bytes):
    """`os.write(_REPORT_FD, token)`, as a statement located after the tests' last one."""
    last = tree.body[-1] if tree.body else _ast.Pass(lineno=1, col_offset=0, end_lineno=1, end_col_offset=0)
    report = _ast.Call(_trusted(last, "<report>"), [_located(last, _ast.Constant(_REPORT_FD)),
                                                   _located(last, _ast.Constant(token))], [])
    return _located(last, _ast.Expr(_located(last, report)))


def _with_trusted_names(code, trusted):
    """`code` with the placeholder constant replaced by the `trusted` names, nested code included."""
    return code.replace(co_consts=tuple(
        _with_trusted_names(constant, trusted) if isinstance(constant, type(code))
        else trusted if type(constant) is str and constant == _TRUSTED_PLACEHOLDER
        else constant
        for constant in code.co_consts
    ))


def _trusted(template, key: str):
    """The expression `_TRUSTED.__getitem__(key)`, located at `template`.

    Not `_TRUSTED[key]`: the compiler warns about subscripting a string constant with a string.
    """
    method = _ast.Attribute(_located(template, _ast.Constant(_TRUSTED_PLACEHOLDER)), "__getitem__", _ast.Load())
    return _located(template, _ast.Call(_located(template, method), [_located(template, _ast.Constant(key))], []))


def _trusted_call(template, key: str, *args):
    return _located(template, _ast.Call(_trusted(template, key), list(args), []))


def _located(template, node):
    """`node`, placed where `template` is in the source (compiling needs every node placed)."""
    node.lineno, node.col_offset = template.lineno, template.col_offset
    node.end_lineno, node.end_col_offset = template.end_lineno, template.end_col_offset
    return node


_COMPARISONS = {"Eq": "==", "NotEq": "!=", "Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=",
                "In": "in", "NotIn": "not in", "Is": "is", "IsNot": "is not"}


class _TestsHardener:
    """Rewrites the tests' syntax tree so that the program's objects and names cannot steer them.

    * Comparisons (unless all `is`/`is not`) and arithmetic call trusted helpers on plain-data
      copies of their operands instead of the operands' own methods, and what an assert checks is
      taken as plain data too. Augmented assignments (`+=`) are left alone: they may act in place.
    * Names the tests load but never bind become constants where they are builtins (`abs`,
      `isinstance`...) or `__name__` ("__main__"); `math` (unless bound otherwise than by
      `import math`) too, with `math.NAME` taken from the module as it was before the program ran.
    """

    def __init__(self, tree) -> None:
        self.bound, math_imports, self.star_import = _bound_names(tree)
        # Names bound only by `import math [as name]`, and `math` itself when the tests never bind it.
        self.math_names = (math_imports | {"math"}) - self.bound
        # Nothing to rewrite in these, nor below them (match patterns must stay names and literals).
        self.untouched = (_ast.expr_context, _ast.boolop, _ast.operator, _ast.unaryop, _ast.cmpop,
                          _ast.Constant, _ast.alias, _ast.pattern)

    def rewrite(self, node):
        """The rewritten `node`: a node, or for an import of math a list of statements."""
        kind = type(node)
        if isinstance(node, self.untouched):
            return node
        if kind is _ast.Name:
            return self._name(node)
        if kind is _ast.Import or kind is _ast.ImportFrom:
            return self._import(node)
        if kind is _ast.Attribute and type(node.value) is _ast.Name and node.value.id in self.math_names:
            key = f"math.{node.attr}"
            if key in _TRUSTED and type(node.ctx) is _ast.Load:
                return _trusted(node, key)
        elif kind is _ast.Assert:
            node.test = _plain_truth(node.test)
        for field in node._fields:
            value = getattr(node, field, None)
            if type(value) is list:
                setattr(node, field, self._rewrite_all(value))
            elif isinstance(value, _ast.AST):
                setattr(node, field, self.rewrite(value))
        if kind is _ast.Compare and not all(type(op) is _ast.Is or type(op) is _ast.IsNot for op in node.ops):
            operators = _located(node, _ast.Constant(tuple(_COMPARISONS[type(op).__name__] for op in node.ops)))
            operands = _located(node, _ast.Tuple([node.left, *node.comparators], _ast.Load()))
            return _trusted_call(node, "<compare>", operators, operands)
        if kind is _ast.BinOp and not _literal(node.left, node.right):
            return _trusted_call(node, f"<{type(node.op).__name__}>", _plain_call(node.left), _plain_call(node.right))
        if kind is _ast.UnaryOp and type(node.op) is not _ast.Not and not _literal(node.operand):
            return _trusted_call(node, f"<{type(node.op).__name__}>", _plain_call(node.operand))
        return node

    def _rewrite_all(self, items: list) -> list:
        rewritten = []
        for item in items:
            item = self.rewrite(item) if isinstance(item, _ast.AST) else item  # None, or a name in `global`
            if type(item) is list:
                rewritten.extend(item)
            else:
                rewritten.append(item)
        return rewritten

    def _name(self, node):
        if type(node.ctx) is not _ast.Load:
            return node
        if node.id in self.math_names:
            return _trusted(node, "math")
        if node.id not in self.bound:
            if node.id == "__name__":
                return _located(node, _ast.Constant("__main__"))
            # Zero-argument super() needs the compiler to see its name.
            if node.id in _TRUSTED and node.id != "super" and not self.star_import:
                return _trusted(node, node.id)
        return node

    def _import(self, node):
        """`import math` dropped and `from math import NAME` bound to the constant; other imports kept."""
        if type(node) is _ast.Import:
            kept = [alias for alias in node.names if (alias.asname or alias.name) not in self.math_names]
            return _located(node, _ast.Import(kept)) if kept else _located(node, _ast.Pass())
        if node.module != "math" or node.level or any(alias.name == "*" for alias in node.names):
            return node
        return [
            _located(node, _ast.Assign([_located(node, _ast.Name(alias.asname or alias.name, _ast.Store()))],
                                       _trusted(node, f"math.{alias.name}")))
            if f"math.{alias.name}" in _TRUSTED else _located(node, _ast.ImportFrom("math", [alias], 0))
            for alias in node.names
        ]


def _bound_names(tree) -> tuple[set[str], set[str], bool]:
    """What the tests bind: names bound anywhere but by `import math [as name]`, the names bound that
    way, and whether they star-import (which binds names no one can list)."""
    bound: set[str] = set()
    math_imports: set[str] = set()
    star_import = False
    for node in _walk(tree):
        if isinstance(node, _ast.Name) and not isinstance(node.ctx, _ast.Load):
            bound.add(node.id)
        elif isinstance(node, _ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, _ast.Import):
            for alias in node.names:
                (math_imports if alias.name == "math" else bound).add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, _ast.ImportFrom):
            star_import = star_import or any(alias.name == "*" for alias in node.names)
            bound.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (_ast.ExceptHandler, _ast.MatchAs, _ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, _ast.MatchMapping) and node.rest:
            bound.add(node.rest)
        elif isinstance(node, (_ast.Global, _ast.Nonlocal)):
            bound.update(node.names)
    return bound, math_imports, star_import


def _walk(tree):
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        for field in node._fields:
            value = getattr(node, field, None)
            if type(value) is list:
                pending.extend(item for item in value if isinstance(item, _ast.AST))
            elif isinstance(value, _ast.AST):
                pending.append(value)


def _plain_truth(test):
    """`test`, checked for its truth as plain data; through `and`, `or` and `not`, each operand."""
    if type(test) is _ast.BoolOp:
        test.values = [_plain_truth(value) for value in test.values]
    elif type(test) is _ast.UnaryOp and type(test.op) is _ast.Not:
        test.operand = _plain_truth(test.operand)
    elif not isinstance(test, (_ast.Compare, _ast.Constant)):  # rewritten comparisons return a bool
        return _trusted_call(test, "<truth>", test)
    return test


def _plain_call(expression):
    return _trusted_call(expression, "<plain>", expression)


def _literal(*expressions) -> bool:
    return all(isinstance(expression, _ast.Constant) for expression in expressions)


# ---------------------------------------------------------------- trusted helpers of the tests
#
# The tests' rewritten code calls these while the program's objects are live, so they look nothing up
# when they run (globals and builtins are the program's to change): every name they use is a default
# bound when this module is imported, and the tests' audit hook refuses swapping their code or defaults.

# Taken as they are: exact built-in scalars, and classes whose metaclass is exactly `type` (those
# compare by identity). Identities, as hashing a program's class could run its metaclass's code.
_PLAIN_AS_IS = frozenset(map(id, (type(None), bool, int, float, complex, str, bytes, range, type)))
# Read with the base type's own C methods: an instance of a subclass (a Counter, a namedtuple, an int
# with a rigged __eq__) counts as the built-in value it holds, and nothing the program defined is called.
_PLAIN_SCALARS = ((int, int.__index__), (float, float.__float__), (complex, complex.__complex__),
                  (str, str.__str__), (bytes, bytes.__bytes__))
_PLAIN_CONTAINERS = ((list, list.__iter__), (tuple, tuple.__iter__), (set, set.__iter__),
                     (frozenset, frozenset.__iter__))
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made at run time (by `class`), unlike an extension's static types


def _plain_copy(value, copy, _type=type, _id=id, _issubclass=issubclass, _as_is=_PLAIN_AS_IS,
                _scalars=_PLAIN_SCALARS, _containers=_PLAIN_CONTAINERS, _dict=dict, _dict_items=dict.items,
                _heap_type=_HEAP_TYPE, _getattr=getattr, _error=TypeError):
    """`value` as plain data: built-in values all the way down, so comparing it runs only C code.

    `copy` is this function itself (recursing by name would be a global lookup); items that are
    taken as they are skip the call, which makes long lists several times faster to copy. numpy's
    scalars and arrays are read with numpy's own `tolist`: their types are static C types, which no
    program can define or change (a Python subclass of one is a heap type, and refused). Anything
    that is not plain data raises TypeError: the case fails.
    """
    kind = _type(value)
    if _id(kind) in _as_is:
        return value
    if _type(kind) is _type:  # a custom metaclass can rewrite the MRO, which subclass checks trust
        for base, read in _scalars:
            if _issubclass(kind, base):
                return read(value)
        for base, items in _containers:
            if _issubclass(kind, base):
                return base([item if _id(_type(item)) in _as_is else copy(item, copy) for item in items(value)])
        if _issubclass(kind, _dict):
            return {key if _id(_type(key)) in _as_is else copy(key, copy):
                    item if _id(_type(item)) in _as_is else copy(item, copy)
                    for key, item in _dict_items(value)}
        if not kind.__flags__ & _heap_type and kind.__module__ == "numpy":
            to_list = _getattr(kind, "tolist", None)
            if to_list is not None:
                return copy(to_list(value), copy)
    raise _error(f"tests compare plain data only, got {kind.__module__}.{kind.__qualname__}")


def _plain(value, _copy=_plain_copy):
    """`value` as plain data (see _plain_copy)."""
    return _copy(value, _copy)


def _truth(value, _plain=_plain, _type=type, _bool=bool):
    """Truth of `value` decided by no method of the program: that of its plain data, or True for an
    object whose class defines neither __bool__ nor __len__ (Python's default, e.g. a re.Match)."""
    kind = _type(value)
    if _type(kind) is _type:
        for cls in kind.__mro__:
            if "__bool__" in cls.__dict__ or "__len__" in cls.__dict__:
                break
        else:
            return True
    return _bool(_plain(value))


def _compare(operators, operands, _plain=_plain, _range=range, _len=len):
    """`operands[0] operators[0] operands[1] ...` chained as Python does, on plain copies of the operands.

    Only `is`/`is not` look at the operands themselves. The tests' code has evaluated every operand
    already, where Python would stop at the first false link; the outcome is the same.
    """
    for index in _range(_len(operators)):
        operator, left, right = operators[index], operands[index], operands[index + 1]
        if operator == "is":
            holds = left is right
        elif operator == "is not":
            holds = left is not right
        else:
            left, right = _plain(left), _plain(right)
            if operator == "==":
                holds = left == right
            elif operator == "!=":
                holds = left != right
            elif operator == "<":
                holds = left < right
            elif operator == "<=":
                holds = left <= right
            elif operator == ">":
                holds = left > right
            elif operator == ">=":
                holds = left >= right
            elif operator == "in":
                holds = left in right
            else:
                holds = left not in right
        if not holds:
            return False
    return True


_TRUSTED_FUNCTION_IDS = frozenset(map(id, (_plain_copy, _plain, _truth, _compare)))
# Refused outright while tests run: a tracer can jump over the tests' lines and rewrite their
# variables; gc's object graph reaches objects no name leads to, the tests' code among them; a
# subinterpreter would run without the tests' audit hook; a forked copy of the process could try
# one answer each against the tests and let the copy that passes report.
_REFUSED_EVENTS = frozenset({"sys.settrace", "sys.setprofile", "gc.get_objects", "gc.get_referrers",
                             "gc.get_referents", "cpython.PyInterpreterState_New", "os.fork", "os.forkpty"})
# Modules that read and write raw memory: ctypes, cffi, and CPython's test extensions.
_RAW_MEMORY_MODULE_PREFIXES = ("ctypes", "_ctypes", "cffi", "_cffi", "_test")
_FUNCTION_CODE_ATTRIBUTES = ("__code__", "__defaults__", "__kwdefaults__")


def _guard_tests(tests_namespace: dict, *, _type=type, _id=id, _getattr=getattr, _str=str, _any=any,
                 _split=str.split, _startswith=str.startswith, _function=_FunctionType,
                 _refused=_REFUSED_EVENTS, _raw_memory=_RAW_MEMORY_MODULE_PREFIXES,
                 _code_attributes=_FUNCTION_CODE_ATTRIBUTES, _trusted_ids=_TRUSTED_FUNCTION_IDS,
                 _permission_error=PermissionError, _import_error=ImportError):
    """Audit hook keeping the program away from the tests' code (and the token in it) and from their
    helpers. The tests' code is told apart by its globals: `tests_namespace`.

    Events were checked on CPython 3.11: frame.f_code, function.__code__/__defaults__/__kwdefaults__
    and the code and frame of generators, coroutines and async generators are audited reads; f_back,
    f_locals, f_globals and __closure__ are not, which is why no secret is kept in a variable.
    """

    def refuse_tampering(event: str, args: tuple) -> None:
        if event in _refused:
            raise _permission_error(f"{event} is disabled while tests run")
        if event == "import":
            # Every part of the name: an extension module loads under any package ("x._ctypes").
            name = args[0]
            if _type(name) is not _str or _any(_startswith(part, _raw_memory) for part in _split(name, ".")):
                raise _import_error("this module cannot be imported in the sandbox")  # numpy copes with that
        elif event == "object.__getattr__":
            target, name = args
            if name == "f_code":
                owner = target.f_globals
            elif name == "__code__":
                owner = target.__globals__
            elif name in ("gi_code", "cr_code", "ag_code"):
                # Told apart by the frame, which is None once finished: then the code is let through
                # (asyncio reads the code of finished coroutines for their repr).
                frame = _getattr(target, name[:2] + "_frame")
                owner = frame and frame.f_globals
            else:
                return
            if owner is tests_namespace:
                raise _permission_error("the code of the tests cannot be read")
        elif event in ("object.__setattr__", "object.__delattr__"):
            target = args[0]
            if (_type(target) is _function and args[1] in _code_attributes
                    and (_id(target) in _trusted_ids or target.__globals__ is tests_namespace)):
                raise _permission_error("the code of the tests and of their helpers cannot be changed")

    return refuse_tampering


if __name__ == "__main__":
    main()
