"""Supervisor that runs inside the code-reward sandbox; started by `r1jax.rewards.code`, never imported.

Invoked as `python -I -S _sandbox_runner.py JOB_FILE` (a marshal-encoded dict) with the sandbox
working directory as cwd, either directly or as PID 1 of fresh namespaces created by `unshare`. It
starts once per program, so it imports only cheap built-in modules. It never executes the untrusted
program itself: each test case runs in a forked child that lowers its resource limits, drops to the
sandbox uid and installs a socket guard before running the program. As the supervisor keeps its
privileges and the children do not, the program can neither signal nor trace it, so the records it
writes can be trusted.

For each case it writes one record on stdout: a header line of seven integers
  case exit_code timed_out output_overflow assertions_completed stdout_bytes stderr_bytes
followed by that many bytes of stdout and then of stderr (its tail). The caller judges the output,
so expected outputs never reach memory the program could read.

Everything here is plain try/except rather than contextlib and the like: each stdlib import is paid
once per program.
"""
import marshal
import os
import resource
import select
import signal
import sys
import time

_WORLD_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_STDERR_TAIL_BYTES = 4096
_READ_CHUNK = 1 << 16
# Descriptor on which an assert-style case reports completion with a per-case random token.
_REPORT_FD = 3
_TOKEN_HEX_BYTES = 32
_SETUP_FAILED = 125
_AF_UNIX = 1  # socket.AF_UNIX on Linux; importing socket inside the audit hook would re-enter it
# Bound before any program runs, so a program that rebinds os._exit cannot keep its child alive
# inside the supervisor's code.
_hard_exit = os._exit

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC = 0x2, 0x4, 0x8, 0x1000, 0x4000
_PR_SET_NO_NEW_PRIVS = 38


def main() -> None:
    job_path = sys.argv[1]
    with open(job_path, "rb") as job_file:
        job = marshal.load(job_file)
    os.unlink(job_path)
    if job["namespaces"]:
        _isolate_filesystem(job)
    # Inherited by every process of the program: setuid binaries and file capabilities grant nothing.
    _libc_call("prctl", _PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    for index, case in enumerate(job["cases"]):
        _write_all(1, _run_case(job, case, index))


# ---------------------------------------------------------------- filesystem view (namespaces only)


def _isolate_filesystem(job: dict) -> None:
    """Give the program private, size-capped writable places and hide host directories.

    We are root in a private mount namespace (mounts never propagate back to the host). The working
    directory and the world-writable directories become private tmpfs, each capped at
    max_disk_bytes. Host directories the sandbox uid could not traverse anyway (e.g. /root when
    Python lives under it) become empty read-only tmpfs, and the Python installation is bind-mounted
    back at its own path so the program can import the standard library.
    """
    workdir = job["workdir"]
    size = job["limits"]["max_disk_bytes"]
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    python_dirs = _outermost(d for d in (sys.prefix, sys.base_prefix, *job["site_dirs"]) if os.path.isdir(d))
    held = {d: os.open(d, os.O_PATH | os.O_DIRECTORY) for d in python_dirs}
    writable = [d for d in _WORLD_WRITABLE_DIRS if os.path.isdir(d)]
    closed_ancestors = (_first_untraversable_ancestor(d) for d in (*python_dirs, workdir))
    shadowed = _outermost([*writable, *filter(None, closed_ancestors)])
    for directory in shadowed:
        options = f"mode=1777,size={size}" if directory in writable else "mode=755,size=1m"
        _mount("tmpfs", directory, "tmpfs", flags, options)
    for directory, fd in held.items():
        if any(_is_within(directory, s) for s in shadowed):
            os.makedirs(directory, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", directory, None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    os.makedirs(workdir, exist_ok=True)
    owner = "" if job["uid"] is None else f",uid={job['uid']},gid={job['uid']}"
    _mount("tmpfs", workdir, "tmpfs", flags, f"mode=700,size={size}{owner}")
    os.chdir(workdir)


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


def _run_case(job: dict, case: dict, index: int) -> bytes:
    """Run one case in a forked child and return its record."""
    stdin_fd = _stdin_for(case)
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    report_r, report_w = os.pipe()
    token = os.urandom(_TOKEN_HEX_BYTES // 2).hex().encode()
    pid = os.fork()
    if pid == 0:
        try:
            _prepare_child(job, stdin_fd, stdout_w, stderr_w, report_w)
        except BaseException as error:
            os.write(2, f"sandbox setup failed: {error!r}\n".encode())
            _hard_exit(_SETUP_FAILED)
        try:
            _run_program(job["program"], case, token)
        finally:
            _hard_exit(_SETUP_FAILED)
    for fd in (stdin_fd, stdout_w, stderr_w, report_w):
        os.close(fd)
    try:
        os.setpgid(pid, pid)  # the child does the same; whichever runs first wins the race
    except OSError:
        pass
    captured = _Captured(stdout_r, stderr_r, report_r, job["limits"]["max_output_bytes"])
    timed_out = not _collect_until_exit(pid, captured, job["timeout_s"])
    if timed_out or captured.overflow:
        _kill_group(pid)
    _, status = os.waitpid(pid, 0)
    for fd in (stdout_r, stderr_r, report_r):
        os.close(fd)
    _kill_leftovers(job, pid)
    stdout = bytes(captured.stdout[: captured.max_output_bytes])
    stderr = bytes(captured.stderr_tail)
    fields = (index, os.waitstatus_to_exitcode(status), timed_out, captured.overflow,
              bytes(captured.report) == token, len(stdout), len(stderr))
    return b" ".join(b"%d" % field for field in fields) + b"\n" + stdout + stderr


def _collect_until_exit(pid: int, captured: _Captured, timeout_s: float) -> bool:
    """Read the child's pipes until it exits or overflows its output cap; False if time ran out first.

    Only the main process counts: once it has exited we take what is already in the pipes and stop,
    even if a descendant still holds them open.
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
                        while not captured.overflow and (chunk := _read_some(stream_fd)):
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
    _write_all(fd, case["stdin"].encode())
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


def _prepare_child(job: dict, stdin_fd: int, stdout_w: int, stderr_w: int, report_w: int) -> None:
    """Confine the forked child; limits are set while still privileged, the uid dropped last."""
    os.setpgid(0, 0)
    for target, fd in ((0, stdin_fd), (1, stdout_w), (2, stderr_w), (_REPORT_FD, report_w)):
        os.dup2(fd, target)
    os.closerange(_REPORT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
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


def _refuse_network_sockets(event: str, args: tuple) -> None:
    # Unix sockets stay usable (socketpair, multiprocessing); every other family is refused.
    if event == "socket.__new__" and args[1] != _AF_UNIX:
        raise PermissionError("network access is disabled in the sandbox")


def _run_program(program: str, case: dict, token: bytes) -> None:
    """Run the program as __main__ (then the case's assertions, if any) and exit; never returns."""
    main_module = type(sys)("__main__")
    main_module.__file__ = "solution.py"
    sys.modules["__main__"] = main_module
    ran_to_end = False
    try:
        exec(compile(program, "solution.py", "exec"), main_module.__dict__)
        if "assert" in case:
            exec(compile(case["assert"], "tests.py", "exec"), main_module.__dict__)
        ran_to_end = True
        exit_code = 0
    except SystemExit as exit_request:
        exit_code = _exit_code(exit_request)
    except BaseException:
        sys.__excepthook__(*sys.exc_info())  # C implementation: works even if the stdlib is unreadable
        exit_code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            exit_code = exit_code or 1
    if ran_to_end and exit_code == 0 and "assert" in case:
        # Only reached when the assertions themselves completed; exiting early (sys.exit, os._exit)
        # from the program or from inside a test leaves the token unwritten.
        os.write(_REPORT_FD, token)
    _hard_exit(exit_code)


def _exit_code(exit_request: SystemExit) -> int:
    """Exit status the interpreter would give for this SystemExit."""
    code = exit_request.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    main()
