"""Code-execution reward: run the program in a completion against test cases inside a sandbox.

The reward of a completion is the share of its test cases that pass, in [0, 1]; with `all_or_nothing`,
1 only if all pass (DeepCoder's sparse reward: partial credit also pays programs that special-case some
tests). The program is the *last* fenced Python block of the completion (```python / ```py /
```python3 or a bare ```) after its last `</think>`; a completion without one, or with only an
unterminated block, scores 0. A string without fences is not guessed to be code: pass
`from_completion=False` to run a string that is already a program (reference solutions, dataset checks).

Test cases are either
  * stdin/stdout: `{"input": "...", "output": "..."}`; the program runs as `__main__` with the input
    on stdin and passes if it exits with status 0 and its stdout matches the expected output as
    LiveCodeBench's judge matches them: line by line, each stripped of surrounding whitespace, and a
    line that still differs passes if both read as the same whitespace-separated decimal numbers
    (`2.50` and `2.5 `; no tolerance: `0.3334` is not `0.3333`); or
  * assert-style: a string of Python statements (usually asserts) executed after the program, on a
    copy of its namespace (the program's `if __name__ == "__main__":` block runs, with an empty
    stdin). It passes only if the statements run to the end: exiting early (`sys.exit`, `os._exit`)
    fails. What their comparisons (but `is`), arithmetic and asserts look at must be plain data:
    built-in values (None, bool, int, float, complex, str, bytes, range, tuple, list, dict, set,
    frozenset, classes), where an instance of a subclass (a Counter, a namedtuple) counts as the
    built-in value it holds, and numpy's scalars and arrays as their `tolist()`; anything else fails
    the case. The builtins, `math` (imported or not) and `__name__` they name are those of a fresh
    interpreter, whatever the program rebinds or patches; or
  * function calls: `{"function": name, "args": [...], "output": value}`; the program is imported as a
    module (its `if __name__ == "__main__":` block does not run), with typing's, collections', heapq's,
    bisect's, itertools', functools' and math's names already imported and a recursion limit of 50000,
    as in LiveCodeBench's judge. Then `Solution().name(*args)` is called where the program defines a class
    `Solution` with that method (LeetCode), else its function `name` (not one of those imported names, unless
    the program binds it anew). The case passes if the call returns a value equal to `output` (Python's `==`
    on JSON values: a tuple read as a list, a Counter as a dict, numpy values as Python's); with `"wrapped": true`
    (APPS and TACO give each return value inside a one-element list) also if it equals `output[0]`, as
    APPS's judge accepts. `args` and `output` must be JSON values.

Isolation, outermost first. `sandbox_isolation()` probes once which layers work here and says which
are active; every program goes through the strongest combination that passed the probe.
  1. Process: each program gets its own process tree in a new session, started from a scrubbed
     environment (no variable of the caller leaks) with its own temporary directory as cwd, removed
     afterwards. The caller waits on it with a wall-clock limit and then kills the whole group.
  2. Namespaces (`unshare` from util-linux; inside a user namespace when the caller is not root):
     network (no interfaces, not even loopback), PID (the supervisor is PID 1, so every process of
     the program dies with it and none can escape by daemonising), mount, IPC and UTS. In the mount
     namespace the working directory and the world-writable directories (/tmp, /var/tmp, /dev/shm,
     /run/lock) are private tmpfs capped in size and files, so nothing the program writes reaches the
     host; top-level directories but the system's (/usr, /etc, /lib...) are empty and files at the
     root read as empty, with the Python installation bound back, so data sets and run directories
     (expected outputs) are out of sight.
     The IPC namespace's System V shared memory is capped at `memory_mb` (no rlimit counts it).
  3. Dedicated uid (caller is root): test cases run as a fresh unprivileged uid drawn from
     `SANDBOX_UID_RANGE`, so the program can modify nothing it does not own and cannot signal or
     trace the supervisor; RLIMIT_NPROC is counted per uid and root ignores it, so a uid of its own
     is what makes the process limit hold.
  4. Resource limits on every test-case process: CPU time, address space, file size, open files,
     processes (where layer 2 or 3 makes it meaningful), no core dumps; plus the per-case
     timeout (CPU time, with a wall-clock backstop) and an output cap enforced by the supervisor.
     no_new_privs is set, so setuid binaries and file capabilities grant the program nothing.
  5. A Python audit hook refusing non-Unix sockets: the network block where namespaces are not
     available, and a second wall where they are (a program can get around it with ctypes).

Inside the sandbox a small supervisor (`_sandbox_runner.py`) forks one child per test case, so the
interpreter starts once per program rather than once per case; judging happens here, so expected
outputs never enter the sandbox. An assert-style case passes only if its process hands back a random
per-case token that the statements' own code writes after their last line, which `os._exit`,
`sys.exit` or printing cannot fake. As the statements share a process with the program, they guard
themselves against it: the program can neither read nor change their code (nor the token in it),
nor steer their comparisons with objects that rig `__eq__` and the like (see the runner's docstring),
nor try answers until one passes: the statements run once (calling them again raises), and an
assert-style case process cannot fork (a forked copy per guess would do the same).
Programs run as under `python`: `exit()` and `quit()` exist, `sys.__stdout__` is the captured
stdout, and OMP/OpenBLAS/MKL are told to use one thread (threads count against `max_processes`).

What remains open: memory is capped per process, not per program (at most `max_processes` x
`memory_mb`, plus what memfd files hold, which no limit counts); a program running `max_processes` busy
processes slows the programs scored beside it, which the CPU-time timeout absorbs up to its wall-clock
backstop. An in-process test cannot be fully
tamper-proof: a determined program can read and change what the assert-style statements keep in
variables and in the namespace and modules (but math) they share with it, and the list, dict and set
literals they compare with (by a finalizer or a thread running during the comparison; expected
numbers, text and tuples are immutable); builtins are protected
only in statements without `from M import *` and only for names the statements never bind; native
code (e.g. numpy) or crafted bytecode can read the token from memory, as can a process the program
starts where there is no dedicated uid. Without namespaces the program can write to world-writable
host directories; without a dedicated uid it runs as the caller (namespaces without root: a user
namespace mapping the caller's uid), so it can write whatever the caller may outside the private
directories and tamper with the supervisor; with neither, a daemonised descendant can outlive it.
Run as root (dedicated uids) to train on untrusted code. Needs Linux >= 5.3.

Any failure of the machinery gives a score of 0 with the reason in the `CodeRewardResult`; only
caller bugs (malformed test cases, a non-positive timeout) raise.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import decimal
import json
import logging
import marshal
import os
import re
import secrets
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1jax.rewards.format import after_thinking

__all__ = [
    "SANDBOX_UID_RANGE",
    "CaseResult",
    "CodeRewardResult",
    "SandboxIsolation",
    "SandboxLimits",
    "TestCase",
    "check_tests",
    "evaluate",
    "evaluate_batch",
    "extract_code",
    "run_tests",
    "run_tests_batch",
    "sandbox_isolation",
]

logger = logging.getLogger(__name__)

TestCase = Mapping[str, Any] | str

# Random per program, so concurrent programs do not share a process budget. Far above regular users
# and the usual subordinate-uid ranges (100000+65536*n).
SANDBOX_UID_RANGE = range(1_500_000_000, 1_500_000_000 + (1 << 24))

_RUNNER = Path(__file__).with_name("_sandbox_runner.py")
_UNSHARE = shutil.which("unshare")
# Sets no_new_privs before the supervisor starts, which spares it loading ctypes (see _sandbox_runner.py).
_SETPRIV = shutil.which("setpriv")
# Added to the program's sys.path: the supervisor runs with -S, which skips site (and its .pth files).
_SITE_PACKAGES = [d for d in site.getsitepackages() if os.path.isdir(d)]
_PYTHON_FENCE_TAGS = frozenset({"", "python", "python3", "py", "py3"})
# A fence line: its indentation and its info string (empty on a closing fence).
_FENCE_LINE = re.compile(r"([ \t]*)```[ \t]*([^`]*?)[ \t\r]*")
# Wall-clock slack on top of the per-case timeouts before the caller kills the sandbox outright: the
# supervisor enforces each case's timeout itself, so this only fires if the supervisor is stuck.
_STARTUP_SLACK_S = 10.0
_KILL_WAIT_S = 2.0
_PER_CASE_SLACK_S = 1.0
# A case's wall clock may run to this many times its CPU-time limit, plus the slack: room for sharing the CPUs.
_WALL_CLOCK_FACTOR = 2.0
_WALL_CLOCK_SLACK_S = 1.0


# ---------------------------------------------------------------- public types


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for each test-case process of a program (the timeout is an argument)."""

    memory_mb: int = 1024  # address space per process
    # Processes and threads, the program's main thread included (the supervisor too where it
    # runs in a user namespace). Only enforced where the isolation limits_processes.
    max_processes: int = 8
    max_output_bytes: int = 1 << 20  # stdout (and stderr) per case; more fails the case
    max_file_bytes: int = 16 << 20  # largest file the program may write
    max_open_files: int = 64
    # Each private tmpfs the program can write (its working directory, /tmp, /var/tmp, /dev/shm,
    # /run/lock) holds at most this much; only where namespaces are active.
    max_disk_bytes: int = 32 << 20


@dataclass(frozen=True)
class CaseResult:
    passed: bool
    reason: str  # "passed", or why not: "wrong output", "timed out after 2s", "exit code 1: ..."


@dataclass(frozen=True)
class CodeRewardResult:
    cases: tuple[CaseResult, ...]  # one per test case, in order
    reason: str = ""  # why the program did not run or was cut short ("" when every case ran)

    @property
    def score(self) -> float:
        """Share of test cases passed; 0.0 when there are none."""
        return sum(case.passed for case in self.cases) / len(self.cases) if self.cases else 0.0

    @classmethod
    def not_run(cls, n_cases: int, reason: str) -> CodeRewardResult:
        return cls(tuple(CaseResult(False, reason) for _ in range(n_cases)), reason)


@dataclass(frozen=True)
class SandboxIsolation:
    """Which isolation layers programs run under (see the module docstring)."""

    namespaces: bool  # network, PID, mount, IPC and UTS namespaces via `unshare`
    user_namespace: bool  # those namespaces sit in a user namespace (the caller is not root)
    dedicated_uid: bool  # test cases run as a fresh unprivileged uid
    notes: str = dataclasses.field(default="", compare=False)  # why stronger layers were not used

    @property
    def limits_processes(self) -> bool:
        """Whether RLIMIT_NPROC counts only the program's own processes (root is exempt from it)."""
        return self.dedicated_uid or self.user_namespace

    def __str__(self) -> str:
        if self.namespaces:
            network = "network namespace without interfaces, plus a Python audit hook refusing non-Unix sockets"
            filesystem = ("private mount namespace: tmpfs working dir, /tmp, /var/tmp, /dev/shm, /run/lock; host "
                          "directories but the system's hidden")
            cleanup = "PID namespace: every process dies with the supervisor"
        else:
            network = "Python audit hook refusing non-Unix sockets (no network namespace)"
            filesystem = "host filesystem, own temporary working dir"
            cleanup = "process group killed" + (", then every process of the sandbox uid" if self.dedicated_uid else "")
        if self.dedicated_uid:
            identity = "dedicated unprivileged uid per program"
        elif self.user_namespace:
            identity = "caller's uid (root only inside its own user namespace)"
        else:
            identity = "caller's uid (WARNING: no privilege separation)"
        limits = "rlimits on CPU, address space, file size, open files, no core"
        if self.limits_processes:
            limits += ", processes"
        parts = {"identity": identity, "network": network, "filesystem": filesystem, "cleanup": cleanup,
                 "limits": limits + "; no_new_privs"}
        description = "; ".join(f"{name}: {value}" for name, value in parts.items())
        return description + (f" [{self.notes}]" if self.notes else "")


# ---------------------------------------------------------------- public functions


def extract_code(completion: str) -> str | None:
    """The last fenced Python block of `completion` after its last `</think>` (an untagged block counts), or None.

    A block runs from a fence line to the next bare fence line; the opening fence's indentation is taken
    off its lines (a block inside a Markdown list). One pass over the lines: a block that never closes
    ends the search, as no later fence could close another.
    """
    code, opening = None, None  # opening: (indentation, info string, index of the first body line)
    lines = after_thinking(completion).split("\n")
    for index, line in enumerate(lines):
        fence = _FENCE_LINE.fullmatch(line)
        if fence is None:
            continue
        if opening is None:
            opening = (fence[1], fence[2], index + 1)
        elif not fence[2]:
            indentation, info, first = opening
            if _fence_language(info) in _PYTHON_FENCE_TAGS:
                code = "".join((body[len(indentation):] if body.startswith(indentation) else body) + "\n"
                               for body in lines[first:index])
            opening = None
    return code


def _fence_language(info: str) -> str:
    """The language of a fence's info string: its first word ("python" in "python title=a.py")."""
    words = info.split()
    return words[0].lower() if words else ""


def evaluate(
    completion: str,
    tests: Sequence[TestCase],
    *,
    timeout_s: float = 2.0,
    from_completion: bool = True,
    limits: SandboxLimits = SandboxLimits(),
    stop_at_failure: bool = False,
) -> CodeRewardResult:
    """Run the program of `completion` against `tests` in the sandbox.

    `completion` is a model output, or with `from_completion=False` the program itself. `timeout_s`
    is the CPU time each test case may take (all its processes where the sandbox has a PID namespace,
    else its main process and the children it waited for), as judges count it: a case slowed by the
    programs scored beside it does not time out. The wall
    clock of a case may run to `2 * timeout_s + 1` (a program that sleeps or blocks is stopped there).
    With `stop_at_failure`, the cases after the first one that
    exits with an error, times out or overflows its output are not run (a program stuck in a loop costs
    one timeout, not one per case); a wrong output is only judged here, so it does not stop the run.
    """
    _check_timeout(timeout_s)
    return _evaluate_parsed(completion, _parse_cases(tests), timeout_s, from_completion, limits, stop_at_failure)


def run_tests(
    completion: str,
    tests: Sequence[TestCase],
    *,
    timeout_s: float = 2.0,
    from_completion: bool = True,
    limits: SandboxLimits = SandboxLimits(),
    all_or_nothing: bool = False,
) -> float:
    """Share of `tests` the program passes, in [0, 1]; with `all_or_nothing`, 1.0 if it passes them all, else 0.0,
    and it stops at the first failing case (see `evaluate`).

    The parameter names fit `r1jax.rewards.registry`: the reward 'code' reads `tests` from the example.
    """
    score = evaluate(completion, tests, timeout_s=timeout_s, from_completion=from_completion, limits=limits,
                     stop_at_failure=all_or_nothing).score
    return float(score == 1.0) if all_or_nothing else score


def evaluate_batch(
    items: Sequence[tuple[str, Sequence[TestCase]]],
    *,
    max_workers: int | None = None,
    timeout_s: float = 2.0,
    from_completion: bool = True,
    limits: SandboxLimits = SandboxLimits(),
) -> list[CodeRewardResult]:
    """`evaluate` for many (completion, tests) pairs, `max_workers` sandboxes at a time.

    Threads suffice: each one only waits on its sandbox process. The default is one sandbox per CPU;
    more workers raise throughput for light programs, and as timeouts count CPU time, busy programs
    get no more false timeouts for it until the wall-clock backstop (see `evaluate`). Test cases are all
    validated before anything runs, so a malformed item raises without wasting the batch.
    """
    _check_timeout(timeout_s)
    parsed = [(completion, _parse_cases(tests)) for completion, tests in items]

    def evaluate_item(item: tuple[str, list[dict[str, Any]]]) -> CodeRewardResult:
        return _evaluate_parsed(*item, timeout_s, from_completion, limits, stop_at_failure=False)

    with concurrent.futures.ThreadPoolExecutor(max_workers or os.cpu_count(), thread_name_prefix="code-reward") as pool:
        return list(pool.map(evaluate_item, parsed))


def run_tests_batch(
    items: Sequence[tuple[str, Sequence[TestCase]]],
    *,
    max_workers: int | None = None,
    timeout_s: float = 2.0,
    from_completion: bool = True,
    limits: SandboxLimits = SandboxLimits(),
) -> list[float]:
    """Scores of `evaluate_batch`, in the order of `items`."""
    results = evaluate_batch(
        items, max_workers=max_workers, timeout_s=timeout_s, from_completion=from_completion, limits=limits
    )
    return [result.score for result in results]


_isolation_lock = threading.Lock()
_isolation: SandboxIsolation | None = None


def sandbox_isolation() -> SandboxIsolation:
    """The strongest isolation that works here, probed once per process by running a real program."""
    global _isolation
    with _isolation_lock:
        if _isolation is None:
            _isolation = _probe_isolation()
            if not (_isolation.namespaces or _isolation.dedicated_uid):
                logger.warning("code reward sandbox is weak here: %s", _isolation)
        return _isolation


# ---------------------------------------------------------------- test cases and judging


def _check_timeout(timeout_s: float) -> None:
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")


def check_tests(tests: Sequence[TestCase]) -> None:
    """Raises what `evaluate` raises for malformed `tests`: a dataset's tests, checked when it is read."""
    _parse_cases(tests)


# Keys of a parsed case that only the judge reads: they never enter the sandbox.
_JUDGE_ONLY_KEYS = ("expected", "wrapped")


def _parse_cases(tests: Sequence[TestCase]) -> list[dict[str, Any]]:
    """Validate test cases into the runner's form: {"stdin": ...}, {"assert": ...} or {"call": ..., "args": ...}."""
    if isinstance(tests, (str, Mapping)):
        raise TypeError("tests must be a sequence of test cases, not a single case")
    cases = []
    for test in tests:
        if isinstance(test, str):
            cases.append({"assert": test})
        elif isinstance(test, Mapping) and "function" in test:
            cases.append(_call_case(test))
        elif isinstance(test, Mapping) and isinstance(test.get("input"), str) and isinstance(test.get("output"), str):
            cases.append({"stdin": test["input"], "expected": test["output"]})
        else:
            expected = ('an assert string, {"input": str, "output": str} or '
                        '{"function": str, "args": list, "output": value}')
            raise ValueError(f"a test case is {expected}, got {test!r:.200}")
    return cases


def _call_case(test: Mapping[str, Any]) -> dict[str, Any]:
    name, args, wrapped = test["function"], test.get("args"), test.get("wrapped", False)
    if not (isinstance(name, str) and name.isidentifier()):
        raise ValueError(f"a function-call case names its function with an identifier, got {name!r:.100}")
    if not isinstance(args, (list, tuple)) or "output" not in test or not isinstance(wrapped, bool):
        raise ValueError(f"a function-call case is {{\"function\": str, \"args\": list, \"output\": value}} (and "
                         f"optionally \"wrapped\": bool), got {test!r:.200}")
    try:  # as JSON text and back: what the sandbox is sent and the return value is compared with are JSON values
        args, expected = json.loads(json.dumps([args, test["output"]]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"the args and output of a function-call case must be JSON values: {e}") from None
    return {"call": name, "args": args, "expected": expected, "wrapped": wrapped}


def _outputs_match(output: str, expected: str) -> bool:
    """LiveCodeBench's rule: the same lines, each compared with its surrounding whitespace stripped, and where the
    texts differ, equal as whitespace-separated numbers (exactly, as decimals: `2.50` is `2.5`, `0.3334` is not
    `0.3333`)."""
    lines, expected_lines = (text.strip().split("\n") for text in (output, expected))
    return len(lines) == len(expected_lines) and all(
        line.strip() == expected_line.strip() or _as_decimals(line) == _as_decimals(expected_line) is not None
        for line, expected_line in zip(lines, expected_lines))


def _as_decimals(line: str) -> list[decimal.Decimal] | None:
    try:
        numbers = [decimal.Decimal(token) for token in line.split()]
    except decimal.InvalidOperation:
        return None
    # NaN equals nothing (and a signalling one raises when compared); "1_000" is Python's spelling, not a judge's.
    return None if any(number.is_nan() for number in numbers) or "_" in line else numbers


@dataclass(frozen=True)
class _CaseRun:
    """What the sandbox supervisor reports about one test case (see _sandbox_runner.py)."""

    exit_code: int  # negative: killed by that signal
    timed_out: bool
    output_overflow: bool
    assertions_completed: bool
    stdout: str
    stderr_tail: str


def _parse_case_runs(data: bytes) -> dict[int, _CaseRun]:
    """Decode the supervisor's records; a record cut short by a kill ends the list."""
    runs = {}
    position = 0
    while (header_end := data.find(b"\n", position)) >= 0:
        try:
            case, exit_code, timed_out, overflow, completed, stdout_bytes, stderr_bytes = map(
                int, data[position:header_end].split()
            )
        except ValueError:
            break
        stdout_end = header_end + 1 + stdout_bytes
        position = stdout_end + stderr_bytes
        if position > len(data):
            break
        stdout, stderr_tail = data[header_end + 1 : stdout_end], data[stdout_end:position]
        runs[case] = _CaseRun(exit_code, bool(timed_out), bool(overflow), bool(completed),
                              stdout.decode("utf-8", "replace"), stderr_tail.decode("utf-8", "replace"))
    return runs


def _judge(case: dict[str, Any], run: _CaseRun, timeout_s: float) -> CaseResult:
    if run.timed_out:
        return CaseResult(False, f"timed out after {timeout_s:g}s")
    if run.output_overflow:
        return CaseResult(False, "output limit exceeded")
    if run.exit_code < 0:
        return CaseResult(False, f"killed by {_signal_name(-run.exit_code)}")
    if run.exit_code != 0:
        last_line = (run.stderr_tail.strip().splitlines() or [""])[-1]
        return CaseResult(False, f"exit code {run.exit_code}: {last_line}".rstrip(": "))
    if "call" in case:
        return _judge_return_value(case, run.stdout)
    if "assert" in case:
        if not run.assertions_completed:
            return CaseResult(False, "exited before the test code completed")
    elif not _outputs_match(run.stdout, case["expected"]):
        return CaseResult(False, "wrong output")
    return CaseResult(True, "passed")


def _judge_return_value(case: dict[str, Any], returned: str) -> CaseResult:
    if not returned:
        return CaseResult(False, "exited before the function returned")
    try:
        value = json.loads(returned)
    except (ValueError, RecursionError):
        return CaseResult(False, "unreadable return value")
    expected = case["expected"]
    if value == expected or (case["wrapped"] and isinstance(expected, list) and expected and value == expected[0]):
        return CaseResult(True, "passed")
    return CaseResult(False, "wrong return value")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals have no name
        return f"signal {number}"


# ---------------------------------------------------------------- running one program


def _evaluate_parsed(
    completion: str, cases: list[dict[str, Any]], timeout_s: float, from_completion: bool, limits: SandboxLimits,
    stop_at_failure: bool,
) -> CodeRewardResult:
    if not cases:
        return CodeRewardResult((), "no test cases")
    program = extract_code(completion) if from_completion else completion
    if program is None:
        return CodeRewardResult.not_run(len(cases), "no fenced Python code block")
    try:
        return _run_in_sandbox(program, cases, timeout_s, limits, sandbox_isolation(), stop_at_failure)
    except Exception as error:  # the reward must never take the trainer down
        logger.exception("code reward sandbox failed")
        return CodeRewardResult.not_run(len(cases), f"sandbox error: {error!r}")


def _run_in_sandbox(
    program: str, cases: list[dict[str, Any]], timeout_s: float, limits: SandboxLimits, isolation: SandboxIsolation,
    stop_at_failure: bool = False,
) -> CodeRewardResult:
    uid = _allocate_sandbox_uid() if isolation.dedicated_uid else None
    workdir = tempfile.mkdtemp(prefix="r1jax-sandbox-")
    try:
        if uid is not None:
            os.chown(workdir, uid, uid)
        job = {
            "program": program,
            # Expected outputs stay here: the sandbox only learns what the program is allowed to see.
            "cases": [{key: value for key, value in case.items() if key not in _JUDGE_ONLY_KEYS} for case in cases],
            "timeout_s": timeout_s,
            "wall_timeout_s": _case_wall_timeout_s(timeout_s),
            "stop_at_failure": stop_at_failure,
            "limits": dataclasses.asdict(limits),
            "uid": uid,
            "namespaces": isolation.namespaces,
            "limit_processes": isolation.limits_processes,
            "site_dirs": _SITE_PACKAGES,
            "workdir": workdir,
        }
        job_path = os.path.join(workdir, "job.marshal")
        with open(job_path, "wb") as job_file:
            marshal.dump(job, job_file)
        wall_limit_s = _wall_limit_s(len(cases), timeout_s)
        command = [*_namespace_launcher(isolation), *_supervisor_command(job_path)]
        try:
            stdout, stderr, exit_code = _run_supervisor(
                command, workdir, wall_limit_s, max_bytes=len(cases) * (2 * limits.max_output_bytes + 65536) + 65536
            )
        finally:
            if uid is not None:
                # Descendants that left the process group; and in a PID namespace, the processes the kernel is
                # still tearing down after the launcher was reaped. None outlives the call.
                _kill_processes_of(uid)
    finally:
        _remove_tree(workdir)
    records = _parse_case_runs(stdout)
    if exit_code is None:
        stopped = f"sandbox killed after {wall_limit_s:g}s wall clock"
    elif exit_code == 0 and stop_at_failure:
        stopped = "not run: an earlier case failed"
    else:
        stopped = f"sandbox exited with code {exit_code}: {stderr.decode('utf-8', 'replace').strip()[-500:]}"
    results = tuple(
        _judge(case, records[index], timeout_s) if index in records else CaseResult(False, stopped)
        for index, case in enumerate(cases)
    )
    return CodeRewardResult(results, "" if len(records) == len(cases) else stopped)


def _case_wall_timeout_s(timeout_s: float) -> float:
    return _WALL_CLOCK_FACTOR * timeout_s + _WALL_CLOCK_SLACK_S


def _wall_limit_s(n_cases: int, timeout_s: float) -> float:
    return _STARTUP_SLACK_S + n_cases * (_case_wall_timeout_s(timeout_s) + _PER_CASE_SLACK_S)


def _allocate_sandbox_uid() -> int:
    return SANDBOX_UID_RANGE[secrets.randbelow(len(SANDBOX_UID_RANGE))]


def _namespace_launcher(isolation: SandboxIsolation) -> list[str]:
    if not isolation.namespaces:
        return []
    user = ["--user", "--map-root-user"] if isolation.user_namespace else []
    namespaces = ["--net", "--pid", "--mount", "--ipc", "--uts", "--mount-proc"]
    # --kill-child: if the caller kills `unshare`, the supervisor (PID 1) and with it everything dies.
    return [_UNSHARE, *user, *namespaces, "--fork", "--kill-child", "--"]


def _supervisor_command(job_path: str) -> list[str]:
    supervisor = [sys.executable, "-I", "-S", str(_RUNNER), job_path]
    return [_SETPRIV, "--no-new-privs", *supervisor, "--no-new-privs-set"] if _SETPRIV else supervisor


def _run_supervisor(
    command: list[str], workdir: str, wall_limit_s: float, *, max_bytes: int
) -> tuple[bytes, bytes, int | None]:
    """Run the supervisor to completion (its exit code) or kill it at the wall limit (None).

    Either way its whole process group is killed before returning. Output beyond `max_bytes` per
    stream is dropped, so even a misbehaving sandbox cannot exhaust the caller's memory.
    """
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
                   # Threads count against max_processes: numerical libraries would start one per core.
                   **dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")}
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        cwd=workdir, env=environment, start_new_session=True,
    )
    outputs = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    try:
        deadline = time.monotonic() + wall_limit_s
        with selectors.DefaultSelector() as selector:
            for fd in outputs:
                selector.register(fd, selectors.EVENT_READ)
            while (open_streams := len(selector.get_map())) and (remaining := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(remaining):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fd)
                    elif len(outputs[key.fd]) < max_bytes:
                        outputs[key.fd] += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # before wait(), so the group id cannot be reused yet
        exit_code = process.wait()
        process.stdout.close()
        process.stderr.close()
    stdout, stderr = outputs.values()
    return bytes(stdout), bytes(stderr), None if open_streams else exit_code


def _kill_processes_of(uid: int) -> None:
    """SIGKILLs the live processes of `uid` until there are none (zombies are dead), for at most
    _KILL_WAIT_S: SIGKILL is delivered asynchronously."""
    deadline = time.monotonic() + _KILL_WAIT_S
    while True:
        found = False
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/status", encoding="ascii", errors="replace") as status:
                    fields = dict(line.split(":", 1) for line in status if ":" in line)
                if int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] != "Z":
                    found = True
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, KeyError, IndexError, ValueError):
                continue  # gone meanwhile
        if not found or time.monotonic() > deadline:
            return
        time.sleep(0.005)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):  # the program took permissions away from what it created
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
            for root, directories, _ in os.walk(path):
                for directory in directories:
                    os.chmod(os.path.join(root, directory), 0o700)
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- probing


def _probe_isolation() -> SandboxIsolation:
    """Try the layer combinations strongest first with a program that needs a lazy stdlib import."""
    is_root = os.geteuid() == 0
    candidates = []
    if _UNSHARE:
        candidates.append(SandboxIsolation(namespaces=True, user_namespace=not is_root, dedicated_uid=is_root))
    if is_root:
        candidates.append(SandboxIsolation(namespaces=False, user_namespace=False, dedicated_uid=True))
    candidates.append(SandboxIsolation(namespaces=False, user_namespace=False, dedicated_uid=False))
    probe_program = "import heapq, sys\nprint(sum(heapq.nsmallest(2, map(int, sys.stdin.read().split()))))\n"
    probe_cases = [{"stdin": "5 2 3", "expected": "5"}]
    failures = [] if _UNSHARE else ["namespaces: no unshare binary"]
    for candidate in candidates:
        try:
            result = _run_in_sandbox(probe_program, probe_cases, 10.0, SandboxLimits(), candidate)
            failure = None if result.score == 1.0 else result.cases[0].reason
        except Exception as error:
            failure = repr(error)
        if failure is None:
            return dataclasses.replace(candidate, notes="; ".join(failures))
        failures.append(f"{_describe_layers(candidate)} failed: {failure}")
    return dataclasses.replace(candidates[-1], notes="; ".join(failures))


def _describe_layers(isolation: SandboxIsolation) -> str:
    layers = {
        "namespaces": isolation.namespaces,
        "user namespace": isolation.user_namespace,
        "dedicated uid": isolation.dedicated_uid,
    }
    return "+".join(name for name, active in layers.items() if active) or "plain process"
