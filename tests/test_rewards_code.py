"""Tests for the sandboxed code-execution reward (r1jax/rewards/code.py).

Hostile programs run together in one parallel batch (module fixture) with a 1 s timeout; the tests
then check each one's score and that the host was left as it was. Sandbox processes are recognised
by markers unique to this test run (the uids it allocated, its private temp dir, marker strings in
commands), so the stray-process checks hold even while other test processes run sandboxes.
"""
from __future__ import annotations

import dataclasses
import dis
import importlib.util
import inspect
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from r1jax.rewards import code

ISOLATION = code.sandbox_isolation()
# The program can touch neither the caller's processes nor its files under /tmp (own uid, or own namespaces
# with a private /tmp); with namespaces but no dedicated uid it could write the caller's files elsewhere.
CONTAINED = ISOLATION.namespaces or ISOLATION.dedicated_uid
README = str(Path(__file__).resolve().parent.parent / "README.md")
RELAXED_TIMEOUT_S = 10.0  # for programs expected to pass: generous, the CPUs are shared
HOSTILE_TIMEOUT_S = 1.0


def program(source: str) -> str:
    return textwrap.dedent(source).lstrip("\n")


def fenced(source: str, tag: str = "python") -> str:
    return f"Let me think.\n```{tag}\n{source}```\nDone."


def prints(output: str) -> list[dict[str, str]]:
    """A single stdin/stdout case with empty input."""
    return [{"input": "", "output": output}]


ADD_TWO_NUMBERS = "a, b = map(int, input().split())\nprint(a + b)\n"
ADDITION_TESTS = [{"input": f"{a} {b}\n", "output": f"{a + b}\n"} for a, b in [(1, 2), (10, 20), (-5, 5), (7, 8)]]


# ---------------------------------------------------------------- extracting the program


def test_extract_code_takes_the_last_python_block():
    completion = (
        "```python\nprint(1)\n```\ntext\n```cpp\nint main() {}\n```\n```\nprint(2)\n```\n```py\nprint(3)\n```\nbye"
    )
    assert code.extract_code(completion) == "print(3)\n"


def test_extract_code_accepts_an_untagged_block_and_ignores_other_languages():
    assert code.extract_code("```\nx = 1\n```") == "x = 1\n"
    assert code.extract_code("``` Python3 title=a.py\nx = 2\n```") == "x = 2\n"
    assert code.extract_code("```bash\nrm -rf /\n```") is None


def test_extract_code_reads_only_what_follows_the_thinking():
    thought = "<think>\n```python\nprint(1)\n```\n</think>\n"
    assert code.extract_code(thought + "```python\nprint(2)\n```\n") == "print(2)\n"
    assert code.extract_code(thought + "<answer>no code</answer>") is None  # the thinking's draft is not the answer
    assert code.extract_code("<think>\n```python\nprint(3)\n```\n") == "print(3)\n"  # no close: all of it


def test_extract_code_ignores_an_unterminated_block():
    assert code.extract_code("```python\nprint(1)\n```\nand then\n```python\nprint(2)") == "print(1)\n"


def test_extract_code_takes_an_indented_block_off_its_indentation_and_reads_crlf():
    assert code.extract_code("1. Read the input:\n   ```python\n   x = 1\n   if x:\n       print(x)\n   ```\n") == \
        "x = 1\nif x:\n    print(x)\n"
    assert code.extract_code("```python\r\nx = 1\r\n```\r\n") == "x = 1\r\n"


def test_extract_code_reads_a_degenerate_completion_in_one_pass():
    # Thousands of openings that never close: a regex retrying at each scanned to the end every time.
    assert code.extract_code("```python\nprint(1)\n```\n" + "```python\nx\n" * 20_000) == "print(1)\n"


@given(st.text(alphabet=st.characters(blacklist_characters="`")))
def test_text_without_fences_has_no_code(text):
    assert code.extract_code(text) is None


LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@given(
    prose=st.text(alphabet=st.characters(blacklist_characters="`" + LINE_BREAKS)),
    body_lines=st.lists(st.text(alphabet="abcdefghij =+()0123456789:'\"", min_size=1), max_size=5),
)
def test_a_fenced_block_in_prose_is_extracted_verbatim(prose, body_lines):
    body = "".join(line + "\n" for line in body_lines)
    assert code.extract_code(f"{prose}\n```python\n{body}```\n{prose}") == body


# ---------------------------------------------------------------- inputs that never reach the sandbox


def test_completion_without_a_code_block_scores_zero():
    result = code.evaluate(ADD_TWO_NUMBERS, ADDITION_TESTS)  # plain code, but it is taken as a completion
    assert result.score == 0.0
    assert result.reason == "no fenced Python code block"
    assert len(result.cases) == len(ADDITION_TESTS)


def test_no_tests_scores_zero():
    assert code.evaluate(fenced(ADD_TWO_NUMBERS), []) == code.CodeRewardResult((), "no test cases")


@pytest.mark.parametrize(
    "tests, error", [("assert True", TypeError), ([{"input": "1"}], ValueError), ([42], ValueError)]
)
def test_malformed_tests_raise(tests, error):
    with pytest.raises(error):
        code.run_tests(fenced("print(1)\n"), tests)
    with pytest.raises(error):
        code.run_tests_batch([(fenced("print(1)\n"), ["assert True"]), (fenced("print(1)\n"), tests)])


def test_non_positive_timeout_raises():
    with pytest.raises(ValueError):
        code.run_tests(fenced("print(1)\n"), prints("1"), timeout_s=0)


# ---------------------------------------------------------------- scoring


def test_stdin_stdout_scores_share_of_cases_passed():
    odd_sums_wrong = "a, b = map(int, input().split())\nprint(a + b if (a + b) % 2 == 0 else 0)\n"
    items = [(fenced(source), ADDITION_TESTS) for source in (ADD_TWO_NUMBERS, odd_sums_wrong, "print('no idea')\n")]
    assert code.run_tests_batch(items, timeout_s=RELAXED_TIMEOUT_S) == [1.0, 0.5, 0.0]


def test_all_or_nothing_pays_only_a_program_that_passes_every_case():
    odd_sums_wrong = "a, b = map(int, input().split())\nprint(a + b if (a + b) % 2 == 0 else 0)\n"
    scores = [code.run_tests(fenced(source), ADDITION_TESTS, timeout_s=RELAXED_TIMEOUT_S, all_or_nothing=True)
              for source in (ADD_TWO_NUMBERS, odd_sums_wrong)]
    assert scores == [1.0, 0.0]


def test_plain_code_runs_when_not_a_completion():
    assert code.run_tests(ADD_TWO_NUMBERS, ADDITION_TESTS, from_completion=False, timeout_s=RELAXED_TIMEOUT_S) == 1.0


def test_an_input_with_a_lone_surrogate_fails_only_its_own_case():
    tests = [{"input": "1 \ud800\n", "output": "1\n"}, *ADDITION_TESTS[:1]]
    assert code.run_tests(ADD_TWO_NUMBERS, tests, from_completion=False, timeout_s=RELAXED_TIMEOUT_S) == 0.5


# (printed, expected, passes): LiveCodeBench's judge's verdicts, worked out by hand from its rule.
OUTPUT_VERDICTS = [
    ("1 2   \n3\n\n", "1 2\n3\n", True),  # whitespace around lines and the text
    (" 1 2\n3", "1 2\n3", True),
    ("1  2", "1 2", True),  # numbers: the same whitespace-separated values
    ("2.0 -0", "2 0", True),
    ("2.500000", "2.500000000", True),
    ("1e3", "1000", True),
    ("0.3333333333333333", "0.333333333333", False),  # no tolerance
    ("a  b", "a b", False),  # words keep their spacing
    ("1\n2", "1 2", False),  # lines stay lines
    ("1\n\n2", "1\n2", False),
    ("YES", "yes", False),
    ("nan", "nan", True), ("nan", "NaN", False),  # text equal or not; NaN equals no number
    ("1_000", "1000", False),
]


def test_stdout_is_judged_as_livecodebench_judges_it():
    echo = "import sys\nsys.stdout.write(sys.stdin.read())\n"
    tests = [{"input": printed, "output": expected} for printed, expected, _ in OUTPUT_VERDICTS]
    result = code.evaluate(echo, tests, from_completion=False, timeout_s=RELAXED_TIMEOUT_S)
    assert [case.passed for case in result.cases] == [passes for *_, passes in OUTPUT_VERDICTS]


def test_assert_tests_run_after_the_program_in_its_namespace():
    source = program("""
        def square(x):
            return x * x if x < 3 else -1

        if __name__ == "__main__":
            CALLED_AS_SCRIPT = True
    """)
    tests = ["assert square(1) == 1", "assert square(2) == 4\nassert CALLED_AS_SCRIPT", "assert square(3) == 9"]
    result = code.evaluate(fenced(source), tests, timeout_s=RELAXED_TIMEOUT_S)
    assert [case.passed for case in result.cases] == [True, True, False]
    assert result.cases[2].reason == "exit code 1: AssertionError"
    assert result.score == pytest.approx(2 / 3)


def test_stdin_and_assert_cases_mix():
    source = program("""
        def double(x):
            return 2 * x

        if __name__ == "__main__":
            import sys
            for line in sys.stdin:
                print(double(int(line)))
    """)
    tests = [{"input": "21\n", "output": "42\n"}, "assert double(4) == 8", "assert double(1) == 3"]
    assert code.run_tests(fenced(source), tests, timeout_s=RELAXED_TIMEOUT_S) == pytest.approx(2 / 3)


def test_output_of_worker_threads_and_exit_callbacks_counts():
    """The interpreter joins non-daemon threads and runs atexit callbacks before exiting; so does the sandbox."""
    source = program("""
        import atexit, threading

        def work():
            print(sum(map(int, input().split())))

        threading.Thread(target=work).start()
        atexit.register(print, "bye")
    """)
    assert code.run_tests(fenced(source), [{"input": "2 3\n", "output": "5\nbye"}], timeout_s=RELAXED_TIMEOUT_S) == 1.0


def test_runtime_error_fails_with_its_exception_as_reason():
    result = code.evaluate(fenced("print(1 // 0)\n"), prints("1"), timeout_s=RELAXED_TIMEOUT_S)
    assert result.score == 0.0
    assert result.cases[0].reason == "exit code 1: ZeroDivisionError: integer division or modulo by zero"


LOOPS_ON_2 = program("""
    def f(x):
        while x == 2:
            pass
        return x
""")


def test_a_case_that_times_out_does_not_sink_the_others():
    result = code.evaluate(fenced(LOOPS_ON_2), ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3"],
                           timeout_s=1.0)
    assert [case.passed for case in result.cases] == [True, False, True]
    assert result.cases[1].reason == "timed out after 1s"


def test_the_timeout_counts_cpu_time_with_a_wall_clock_backstop():
    """A case waiting (as it does when other programs take the CPUs) is not timed out until twice its limit plus a
    second of wall clock; one computing is timed out by its CPU time, that of the children it waited for too."""
    source = program("""
        import subprocess, sys, time
        def waits(seconds):
            time.sleep(seconds)
            return seconds
        def computes(seconds, in_child=False):
            if in_child:
                subprocess.run([sys.executable, "-c", f"import time\\nend = time.process_time() + {seconds}\\n"
                                "while time.process_time() < end: pass"], check=True)
            else:
                end = time.process_time() + seconds
                while time.process_time() < end:
                    pass
            return seconds
    """)
    tests = ["assert waits(0.9) == 0.9", "assert waits(5) == 5", "assert computes(0.1) == 0.1",
             "assert computes(1.2) == 1.2", "assert computes(1.2, in_child=True) == 1.2"]
    result = code.evaluate(source, tests, from_completion=False, timeout_s=0.6)
    assert [case.reason for case in result.cases] == ["passed", "timed out after 0.6s", "passed",
                                                      "timed out after 0.6s", "timed out after 0.6s"]
    if ISOLATION.namespaces:  # the supervisor is PID 1: orphans are its children, their CPU time counted
        in_orphans = program("""
            import os, time
            def solve(n):
                readers = []
                for _ in range(n):  # each child does a share of the work; nobody waits for them
                    r, w = os.pipe()
                    if os.fork() == 0:
                        end = time.process_time() + 0.3
                        while time.process_time() < end:
                            pass
                        os.write(w, b"1")
                        os._exit(0)
                    readers.append(r)
                return sum(len(os.read(r, 1)) for r in readers)
        """)
        result = code.evaluate(in_orphans, [{"function": "solve", "args": [n], "output": n} for n in (1, 3)],
                               from_completion=False, timeout_s=0.6)
        assert [case.reason for case in result.cases] == ["passed", "timed out after 0.6s"]


def test_stop_at_failure_runs_no_case_after_one_that_times_out_or_fails():
    tests = ["assert f(1) == 1", "assert f(2) == 2", "assert f(3) == 3", "assert f(4) == 4"]
    result = code.evaluate(fenced(LOOPS_ON_2), tests, timeout_s=1.0, stop_at_failure=True)
    assert [(case.passed, case.reason) for case in result.cases] == [
        (True, "passed"), (False, "timed out after 1s"), (False, "not run: an earlier case failed"),
        (False, "not run: an earlier case failed")]
    assert code.run_tests(fenced(LOOPS_ON_2), tests, timeout_s=1.0, all_or_nothing=True) == 0.0
    crashing = code.evaluate(fenced("raise SystemExit(3)\n"), prints("1") * 3, stop_at_failure=True)
    assert [case.reason for case in crashing.cases][1:] == ["not run: an earlier case failed"] * 2
    wrong = code.evaluate(fenced("print(2)\n"), prints("1") * 3, timeout_s=RELAXED_TIMEOUT_S, stop_at_failure=True)
    assert [case.reason for case in wrong.cases] == ["wrong output"] * 3  # judged here: the cases all ran


def test_program_works_in_a_private_writable_directory_that_is_removed(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    source = program("""
        import os
        assert os.listdir(".") == []
        with open("notes.txt", "w") as notes:
            notes.write("scratch")
        print(open("notes.txt").read())
    """)
    assert code.run_tests(fenced(source), prints("scratch"), timeout_s=RELAXED_TIMEOUT_S) == 1.0
    assert list(tmp_path.iterdir()) == []


def test_program_cannot_gain_privileges():
    source = "print(next(line for line in open('/proc/self/status') if line.startswith('NoNewPrivs')))\n"
    assert code.run_tests(fenced(source), prints("NoNewPrivs:\t1"), timeout_s=RELAXED_TIMEOUT_S) == 1.0


def test_pool_runs_programs_in_parallel_and_keeps_order():
    items = [(fenced(f"import time\ntime.sleep(0.5)\nprint({i})\n"), prints(str(i))) for i in range(8)]
    start = time.monotonic()
    results = code.evaluate_batch(items, max_workers=8, timeout_s=RELAXED_TIMEOUT_S)
    assert [result.score for result in results] == [1.0] * 8
    assert time.monotonic() - start < 8 * 0.5 / 2


# ---------------------------------------------------------------- function calls


def test_function_calls_reach_a_solution_method_or_a_module_function():
    leetcode = program("""
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> Tuple[int, int]:  # typing's names need no import
                seen = {}
                for i, x in enumerate(nums):
                    if target - x in seen:
                        return seen[target - x], i  # a tuple: read as a list
                    seen[x] = i
        print("debugging output is not the return value")
        if __name__ == "__main__":
            raise SystemExit(3)  # a module's main block does not run
    """)
    tests = [{"function": "twoSum", "args": [[2, 7, 11, 15], 9], "output": [0, 1]},
             {"function": "twoSum", "args": [[3, 3], 6], "output": [0, 2]}]
    result = code.evaluate(leetcode, tests, from_completion=False, timeout_s=RELAXED_TIMEOUT_S)
    assert [(case.passed, case.reason) for case in result.cases] == [(True, "passed"), (False, "wrong return value")]
    module_function = program("""
        import numpy as np
        from fractions import Fraction
        def power(base, exponent):
            return pow(base, exponent, 7), deque([gcd(4, 6)])[0]
        def counts(text):
            return Counter(text), np.int64(len(text)), np.array([[1, 2]]), Fraction(6, 2)
    """)
    result = code.evaluate(module_function, [{"function": "power", "args": [3, 4], "output": [4, 2]},
                                             {"function": "square", "args": [3], "output": 9},
                                             {"function": "counts", "args": ["aab"], "output": [{"a": 2, "b": 1}, 3,
                                                                                                 [[1, 2]], 3]}],
                           from_completion=False, timeout_s=RELAXED_TIMEOUT_S)
    assert result.cases[0].passed  # builtins' three-argument pow, not math's
    assert result.cases[2].passed, result.cases[2]  # a Counter, numpy values, a Fraction: as the judges compare them
    assert result.cases[1].reason == ("exit code 1: NameError: the program defines no function 'square' (nor a class "
                                      "Solution with that method)")


@pytest.mark.parametrize("returned, reason", [
    ("{1, 2}", "exit code 1: TypeError: the function returned a set, which no test's value equals"),
    ("{1: 2}", "exit code 1: TypeError: the function returned a dict with keys that are not text, which no test's "
               "value equals"),
    ("__import__('os')._exit(0)", "exited before the function returned"),
    ("1 / 0", "exit code 1: ZeroDivisionError: division by zero"),
])
def test_a_function_call_that_returns_no_json_value_fails_with_its_reason(returned, reason):
    source = f"def f():\n    return {returned}\n"
    result = code.evaluate(source, [{"function": "f", "args": [], "output": [1, 2]}], from_completion=False,
                           timeout_s=RELAXED_TIMEOUT_S)
    assert [case.reason for case in result.cases] == [reason]


def _json_values(rng, depth=0):
    kind = rng.integers(0, 8 if depth < 2 else 5)
    scalars = [None, True, False, 0, 1, -3, 2.5, 1.0, "", "a", "1"]
    if kind < 5:
        return scalars[rng.integers(len(scalars))]
    items = [_json_values(rng, depth + 1) for _ in range(rng.integers(0, 3))]
    if kind == 5:
        return items
    if kind == 6:
        return tuple(items) if depth == 0 else items  # a returned tuple (top level: as the references convert)
    return {str(rng.integers(3)): item for item in items}


def test_function_call_verdicts_equal_those_of_the_apps_and_livecodebench_judges():
    """Random return values against expected values (equal, or another random value, wrapped in a list as APPS
    stores them or not), judged in one run; the reference verdicts are those judges' own comparison rules."""
    import numpy as np

    rng = np.random.default_rng(0)
    returned, tests, reference = [], [], []
    for i in range(48):
        value = _json_values(rng)
        as_json = list(value) if isinstance(value, tuple) else value  # LiveCodeBench's and APPS's only conversion
        expected = as_json if rng.random() < 0.5 else _json_values(rng)
        wrapped = bool(rng.integers(2))
        if wrapped and rng.random() < 0.7:
            expected = [expected]
        returned.append(value)
        tests.append({"function": "f", "args": [i], "output": expected, "wrapped": wrapped})
        reference.append(as_json == expected or (wrapped and isinstance(expected, list) and len(expected) > 0
                                                  and as_json == expected[0]))
    source = f"RETURNED = {returned!r}\ndef f(i):\n    return RETURNED[i]\n"
    result = code.evaluate(source, tests, from_completion=False, timeout_s=RELAXED_TIMEOUT_S)
    assert [case.passed for case in result.cases] == reference
    assert 10 < sum(reference) < 38  # both verdicts are well represented


def test_expected_return_values_never_enter_the_sandbox(monkeypatch):
    secret = f"secret-{uuid.uuid4().hex}"
    sent = []
    real_dump = code.marshal.dump
    monkeypatch.setattr(code.marshal, "dump", lambda job, file: (sent.append(repr(job)), real_dump(job, file)))
    result = code.evaluate("def f(x):\n    return x\n", [{"function": "f", "args": ["arg"], "output": secret}],
                           from_completion=False, timeout_s=RELAXED_TIMEOUT_S)
    assert result.cases[0].reason == "wrong return value"
    assert "'arg'" in sent[0] and secret not in sent[0]


@pytest.mark.parametrize("case, message", [
    ({"function": "not a name", "args": [], "output": 1}, "names its function with an identifier"),
    ({"function": "f", "args": 1, "output": 1}, "a function-call case is"),
    ({"function": "f", "args": []}, "a function-call case is"),
    ({"function": "f", "args": [], "output": 1, "wrapped": "yes"}, "a function-call case is"),
    ({"function": "f", "args": [object()], "output": 1}, "must be JSON values"),
])
def test_malformed_function_call_cases_raise(case, message):
    with pytest.raises(ValueError, match=message):
        code.check_tests([case])


# ---------------------------------------------------------------- failures of the machinery


def test_supervisor_that_cannot_start_scores_zero_with_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(code, "_RUNNER", tmp_path / "missing_runner.py")
    result = code.evaluate(fenced("print(1)\n"), [*prints("1"), "assert True"], timeout_s=RELAXED_TIMEOUT_S)
    assert result.score == 0.0
    assert result.reason.startswith("sandbox exited with code 2") and "missing_runner.py" in result.reason
    assert all(case.reason == result.reason for case in result.cases)


def test_sandbox_exception_scores_zero_instead_of_raising(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no more processes")

    monkeypatch.setattr(code.subprocess, "Popen", refuse)
    result = code.evaluate(fenced("print(1)\n"), prints("1"))
    assert result.score == 0.0
    assert result.reason == "sandbox error: OSError('no more processes')"


def test_stuck_sandbox_is_killed_at_the_wall_limit(monkeypatch, track_sandboxes):
    """The caller's own limit, for a supervisor that never finishes: everything in it dies too."""
    markers, uids = track_sandboxes
    marker = f"r1jax-stray-{uuid.uuid4().hex}"
    monkeypatch.setattr(code, "_wall_limit_s", lambda n_cases, timeout_s: 1.0)
    source = program(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            os.execv("/bin/sh", ["sh", "-c", "sleep 60; : {marker}"])
        time.sleep(60)
    """)
    start = time.monotonic()
    result = code.evaluate(fenced(source), [*prints(""), "assert True"], timeout_s=RELAXED_TIMEOUT_S)
    assert time.monotonic() - start < 5
    assert result.reason == "sandbox killed after 1s wall clock"
    assert [case.reason for case in result.cases] == [result.reason] * 2
    if CONTAINED:
        assert _stray_processes([*markers, marker], uids) == []


def _unshare_works(*flags: str) -> bool:
    unshare = shutil.which("unshare")
    return bool(unshare) and subprocess.run([unshare, *flags, "true"], capture_output=True, check=False).returncode == 0


def test_strongest_available_isolation_is_used():
    description = str(ISOLATION)
    assert ("network namespace" in description) == ISOLATION.namespaces
    if os.geteuid() == 0 and _unshare_works("--net", "--pid", "--fork", "--mount", "--mount-proc"):
        assert ISOLATION.namespaces and ISOLATION.dedicated_uid and not ISOLATION.user_namespace
        assert "dedicated unprivileged uid" in description


# ---------------------------------------------------------------- hostile programs


@dataclasses.dataclass(frozen=True)
class Hostile:
    source: str
    tests: list
    skip_reason: str = ""  # set where this sandbox cannot contain the program
    scores_zero: bool = True


@dataclasses.dataclass
class HostileRun:
    results: dict[str, code.CodeRewardResult]
    skipped: dict[str, str]
    elapsed_s: float
    host_dir: Path
    escape_path: Path
    connection_arrived: bool
    strays: list[str]


SECRET_VARIABLE = "R1JAX_TEST_SECRET"
NEVER = prints("never printed")


def hostile_programs(host_dir: Path, escape_path: Path, port: int, secret: str, marker: str) -> dict[str, Hostile]:
    sentinel, existing, new_file = host_dir / "sentinel.txt", host_dir / "existing.txt", host_dir / "new.txt"
    no_process_limit = "" if ISOLATION.limits_processes else "RLIMIT_NPROC does not apply here"
    uncontained = "" if CONTAINED else "the program runs with the caller's privileges here"

    def write(path: Path) -> str:
        return f"open({str(path)!r}, 'w').write('pwned')\nprint('written')\n"

    return {
        "fork_bomb": Hostile(program("""
            import os
            while True:
                try:
                    os.fork()
                except OSError:
                    pass
        """), NEVER, no_process_limit),
        # Gigabyte pieces: the cap refuses the first at once, where filling smaller ones could take
        # longer than the timeout on CPUs shared with the other hostile programs.
        "memory_bomb": Hostile("hoard = [bytearray(1 << 30) for _ in range(64)]\n", NEVER),
        "infinite_loop": Hostile("while True:\n    pass\n", NEVER),
        "output_flood": Hostile("while True:\n    print('spam' * 100)\n", NEVER),
        "sleep_past_timeout": Hostile("import time\ntime.sleep(30)\nprint('awake')\n", prints("awake")),
        "write_new_host_file": Hostile(write(new_file), prints("written"), uncontained),
        "overwrite_host_file": Hostile(write(existing), prints("written"), uncontained),
        # Succeeds, but in the sandbox's private /tmp: what counts is that the host's stays untouched.
        "write_world_writable_dir": Hostile(
            write(escape_path), prints("written"), "" if ISOLATION.namespaces else "no private /tmp here", False
        ),
        "delete_host_file": Hostile(f"import os\nos.remove({str(sentinel)!r})\nprint('deleted')\n",
                                    prints("deleted"), uncontained),
        "delete_host_tree": Hostile(f"import shutil\nshutil.rmtree({str(host_dir)!r})\nprint('deleted')\n",
                                    prints("deleted"), uncontained),
        "connect_localhost": Hostile(program(f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=1).sendall(b"hi")
            print("connected")
        """), prints("connected")),
        "connect_with_ctypes": Hostile(program(f"""
            import ctypes, socket, struct
            libc = ctypes.CDLL(None)
            fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
            address = struct.pack("<HH4s8x", socket.AF_INET, socket.htons({port}), bytes([127, 0, 0, 1]))
            print("connected" if libc.connect(fd, address, 16) == 0 else "refused")
        """), prints("connected"), "" if ISOLATION.namespaces else "only the audit hook blocks sockets here"),
        "read_environment": Hostile(f"import os\nprint(os.environ.get({SECRET_VARIABLE!r}, 'absent'))\n",
                                    prints(secret)),
        "read_other_processes_environment": Hostile(program(f"""
            import os
            found = "absent"
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if {secret!r} in open(f"/proc/{{pid}}/environ").read():
                        found = {secret!r}
                except OSError:
                    pass
            print(found)
        """), prints(secret), uncontained),
        "kill_parent_and_caller": Hostile(program(f"""
            import os, signal
            os.kill(os.getppid(), signal.SIGKILL)
            os.kill({os.getpid()}, signal.SIGKILL)
            print("killed")
        """), prints("killed"), uncontained),
        # Prints the answer only after the main process has exited, from a daemonised child.
        "background_child": Hostile(program(f"""
            import os, time
            if os.fork() == 0:
                os.setsid()
                time.sleep(0.3)
                print("late answer", flush=True)
                os.execv("/bin/sh", ["sh", "-c", "sleep 60; : {marker}"])
        """), prints("late answer"), uncontained),
        "exit_before_assertions": Hostile("import os\nos._exit(0)\n", ["assert False"]),
        "exit_inside_assertion": Hostile("import os\ndef solve(x):\n    os._exit(0)\n", ["assert solve(1) == 2"]),
        "sys_exit_inside_assertion": Hostile("import sys\ndef solve(x):\n    sys.exit(0)\n", ["assert solve(1) == 2"]),
        "forge_completion_report": Hostile("import os\nos.write(3, b'0' * 32)\nos._exit(0)\n", ["assert False"]),
    }


def _stray_processes(markers: list[str], uids: set[int]) -> list[str]:
    """Live processes of this test's sandboxes: one of its uids, or a marker in the command line."""
    strays = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
            command = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        uid = int(fields["Uid"].split()[0])
        if fields["State"].split()[0] != "Z" and (uid in uids or any(marker in command for marker in markers)):
            strays.append(f"pid {entry.name} uid {uid}: {command}")
    return strays


@pytest.fixture(scope="module")
def track_sandboxes(tmp_path_factory) -> Iterator[tuple[list[str], set[int]]]:
    """Put sandbox temp dirs in a private dir and record allocated uids; yields (markers, uids).

    The supervisor's command line names its job file in that dir, and so do the processes it forks.
    """
    sandbox_root = tmp_path_factory.mktemp("sandboxes")
    uids: set[int] = set()
    allocate = code._allocate_sandbox_uid

    def allocate_and_record() -> int:
        uid = allocate()
        uids.add(uid)
        return uid

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(sandbox_root))
        patch.setattr(code, "_allocate_sandbox_uid", allocate_and_record)
        yield [str(sandbox_root)], uids


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, track_sandboxes) -> Iterator[HostileRun]:
    markers, uids = track_sandboxes
    host_dir = tmp_path_factory.mktemp("host")
    (host_dir / "sentinel.txt").write_text("keep me")
    (host_dir / "existing.txt").write_text("original")
    marker = f"r1jax-stray-{uuid.uuid4().hex}"
    escape_path = Path("/tmp", f"r1jax-escape-{uuid.uuid4().hex}")
    secret = uuid.uuid4().hex
    with socket.create_server(("127.0.0.1", 0)) as listener, pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_VARIABLE, secret)
        cases = hostile_programs(host_dir, escape_path, listener.getsockname()[1], secret, marker)
        runnable = {name: case for name, case in cases.items() if not case.skip_reason}
        start = time.monotonic()
        results = code.evaluate_batch(
            [(case.source, case.tests) for case in runnable.values()],
            max_workers=len(runnable), timeout_s=HOSTILE_TIMEOUT_S, from_completion=False,
        )
        elapsed_s = time.monotonic() - start
        strays = _stray_processes([*markers, marker], uids)
        listener.setblocking(False)
        try:
            listener.accept()[0].close()
            connection_arrived = True
        except BlockingIOError:
            connection_arrived = False
    try:
        yield HostileRun(
            results=dict(zip(runnable, results, strict=True)),
            skipped={name: case.skip_reason for name, case in cases.items() if case.skip_reason},
            elapsed_s=elapsed_s,
            host_dir=host_dir,
            escape_path=escape_path,
            connection_arrived=connection_arrived,
            strays=strays,
        )
    finally:
        escape_path.unlink(missing_ok=True)


def hostile_result(run: HostileRun, name: str) -> code.CodeRewardResult:
    if name in run.skipped:
        pytest.skip(run.skipped[name])
    return run.results[name]


HOSTILE_NAMES_SCORING_ZERO = [
    name for name, case in hostile_programs(Path("/host"), Path("/tmp/escape"), 1, "secret", "marker").items()
    if case.scores_zero
]


@pytest.mark.parametrize("name", HOSTILE_NAMES_SCORING_ZERO)
def test_hostile_program_scores_zero(hostile, name):
    result = hostile_result(hostile, name)
    assert result.score == 0.0, result


def test_hostile_programs_end_within_their_limits(hostile):
    assert hostile.elapsed_s < HOSTILE_TIMEOUT_S + 8, hostile.elapsed_s  # all at once, on shared CPUs


@pytest.mark.parametrize("name, reason", [
    ("fork_bomb", "timed out after 1s"),
    ("infinite_loop", "timed out after 1s"),
    ("sleep_past_timeout", "timed out after 1s"),
    ("memory_bomb", "exit code 1: MemoryError"),
    ("output_flood", "output limit exceeded"),
    ("connect_localhost", "exit code 1: PermissionError: network access is disabled in the sandbox"),
    ("exit_before_assertions", "exited before the test code completed"),
    ("exit_inside_assertion", "exited before the test code completed"),
    ("sys_exit_inside_assertion", "exited before the test code completed"),
    ("forge_completion_report", "exited before the test code completed"),
])
def test_hostile_program_fails_for_the_right_reason(hostile, name, reason):
    assert hostile_result(hostile, name).cases[0].reason == reason


def test_host_files_survive(hostile):
    for name in ("write_new_host_file", "overwrite_host_file", "delete_host_file", "delete_host_tree"):
        hostile_result(hostile, name)
    assert (hostile.host_dir / "sentinel.txt").read_text() == "keep me"
    assert (hostile.host_dir / "existing.txt").read_text() == "original"
    assert not (hostile.host_dir / "new.txt").exists()


@pytest.mark.skipif(not ISOLATION.namespaces, reason="the filesystem view and IPC caps need namespaces")
def test_data_memory_and_inodes_outside_the_limits_are_out_of_reach():
    """Host directories but the system's are empty (a world-readable data set or run directory, here this
    project's own files, cannot be read); System V shared memory, which outlives its process and no rlimit
    counts, is capped at one process's memory; a private tmpfs holds a few thousand files, not millions."""
    root_files = [entry.path for entry in os.scandir("/") if entry.is_file(follow_symlinks=False)]
    source = program(f"""
        import ctypes, os
        print(os.path.exists({code.__file__!r}), os.path.exists("/usr/bin/env"), os.path.exists({README!r}))
        print(sum(len(open(path, "rb").read()) for path in {root_files!r}))  # files at the root read as empty
        for directory in ("/tmp", "/var/tmp", "/dev/shm"):  # private, but there
            with open(os.path.join(directory, "scratch"), "w") as scratch:
                scratch.write("x")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmget.restype = ctypes.c_int
        print(libc.shmget(0, ctypes.c_size_t(2 * {code.SandboxLimits().memory_mb} << 20), 0o1600))
        created = 0
        try:
            while created < 20000:
                open(f"f{{created}}", "w").close()
                created += 1
        except OSError:
            pass
        print(created < 5000)
    """)
    result = code.evaluate(source, prints("False True False\n0\n-1\nTrue\n"), from_completion=False,
                           timeout_s=RELAXED_TIMEOUT_S)
    assert result.score == 1.0, result


@pytest.mark.skipif(not (ISOLATION.namespaces and os.access("/", os.W_OK)), reason="needs namespaces and a writable /")
def test_a_socket_at_the_root_is_out_of_reach():
    """Unix sockets stay allowed inside; one a host service keeps at / must not be reachable."""
    path = f"/r1jax-test-{uuid.uuid4().hex}.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o666)
    server.listen()
    try:
        source = program(f"""
            import socket
            client = socket.socket(socket.AF_UNIX)
            try:
                client.connect({path!r})
                print("reached")
            except OSError:
                print("out of reach")
        """)
        result = code.evaluate(source, prints("out of reach\n"), from_completion=False, timeout_s=RELAXED_TIMEOUT_S)
        assert result.score == 1.0, result
    finally:
        server.close()
        os.unlink(path)


def test_programs_import_the_packages_of_a_virtual_environment_under_tmp(tmp_path):
    """CI installs into a virtual environment in its clone, which may sit under /tmp: the sandbox's private /tmp
    must not hide its packages or its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)], check=True)
    [site_packages] = venv.glob("lib/python*/site-packages")
    (site_packages / "only_in_this_venv.py").write_text("VALUE = 'from the venv'\n")
    source = ("import only_in_this_venv, subprocess, sys\n"
              "print(only_in_this_venv.VALUE, subprocess.run([sys.executable, '-c', 'print(7)'], capture_output=True,"
              " text=True).stdout.strip())\n")
    check = (f"from r1jax.rewards import code\n"
             f"result = code.evaluate({source!r}, [{{'input': '', 'output': 'from the venv 7'}}],"
             f" from_completion=False, timeout_s=10)\n"
             f"print(result.score, result.cases[0].reason)\n")
    run = subprocess.run([str(venv / "bin" / "python"), "-c", check], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "1.0 passed", run.stderr


def test_world_writable_dirs_are_private(hostile):
    assert hostile_result(hostile, "write_world_writable_dir").score == 1.0
    assert not hostile.escape_path.exists()


def test_no_connection_reaches_the_host(hostile):
    hostile_result(hostile, "connect_localhost")
    assert not hostile.connection_arrived


def test_no_sandbox_process_outlives_its_program(hostile):
    assert hostile.strays == []


# ---------------------------------------------------------------- assert-style tests: honest programs

HONEST_PROGRAMS = {
    "standard_library_types": (program("""
        import collections, dataclasses, enum, functools, typing

        Point = collections.namedtuple("Point", "x y")  # namedtuple, Enum() and TypeVar read their caller's frame
        T = typing.TypeVar("T")


        class Colour(enum.Enum):
            RED = 1


        Shape = enum.Enum("Shape", "SQUARE CIRCLE")


        class Pair(typing.NamedTuple):
            first: int
            second: int


        @dataclasses.dataclass(frozen=True)
        class Item:
            weight: int
            value: int = 0


        @functools.lru_cache(maxsize=None)
        def fib(n: int) -> int:
            return n if n < 2 else fib(n - 1) + fib(n - 2)


        def best_value(items: list[Item], capacity: int) -> int:
            @functools.lru_cache(maxsize=None)
            def best(index: int, room: int) -> int:
                if index == len(items):
                    return 0
                skip = best(index + 1, room)
                item = items[index]
                return skip if item.weight > room else max(skip, item.value + best(index + 1, room - item.weight))
            return best(0, capacity)


        def depth(n: int) -> int:
            return 0 if n == 0 else 1 + depth(n - 1)


        def squares(n: int) -> list[tuple[int, int]]:
            Square = collections.namedtuple("Square", "x y")  # here the caller's frame is the tests'
            return [Square(i, i * i) for i in range(n)]


        def letter_counts(text: str) -> collections.Counter:
            return collections.Counter(text)


        def by_parity(numbers: list[int]) -> dict[int, list[int]]:
            groups = collections.defaultdict(list)
            for number in numbers:
                groups[number % 2].append(number)
            return groups
    """), [
        "assert fib(30) == 832040 and depth(500) == 500",
        "assert best_value([Item(2, 3), Item(3, 4), Item(4, 5)], 5) == 7",
        "assert squares(3) == [(0, 0), (1, 1), (2, 4)] and squares(2)[1].y == 1",
        "assert letter_counts('abca') == {'a': 2, 'b': 1, 'c': 1}",
        "assert by_parity([1, 2, 3]) == {1: [1, 3], 0: [2]}",
        "assert Pair(1, 2) == Point(1, 2) == (1, 2) and Colour.RED.value + Shape.CIRCLE.value == 3",
    ]),
    "humaneval_style_check": ("def add(a, b):\n    return a + b\n", [program("""
        METADATA = {"author": "jt", "dataset": "test"}


        def check(candidate):
            assert candidate(2, 3) == 5
            assert candidate(-1, -2) != 0
            assert 0 < candidate(1, 1) <= 2 < 3
            assert candidate(1, 1) in (2, 3) and candidate(1, 1) not in [0]
            assert not candidate(0, 0)
            assert candidate(1, 2) is not None
            assert type(candidate(1, 2)) == int and isinstance(candidate(1, 2), int)
            assert -candidate(1, 2) == -3 and ~candidate(0, 0) == -1
            assert candidate("a", "b") == "ab"
            assert candidate([1, [2]], [{"k": (3,)}]) == [1, [2], {"k": (3,)}]
            assert candidate((1,), (2,)) == (1, 2)
            assert set(candidate([3, 1], [2])) == {1, 2, 3} and candidate(1, 1) in {2, 3}
            assert sorted([candidate(1, 1), candidate(0, 0)]) == [0, 2]
            assert all(candidate(i, 0) == i for i in range(5))
            assert [x for x in range(6) if candidate(x, x) % 4 == 0] == [0, 2, 4]
            assert abs(candidate(0.1, 0.2) - 0.3) < 1e-6, "float sums are close"


        if __name__ == "__main__":
            check(add)
    """)]),
    "floats": ("def root(x):\n    return x ** 0.5\n", [
        "assert abs(root(2) - 1.41421356) < 1e-6",
        "assert math.isclose(root(2), 2 ** 0.5)",
        "import math\nassert math.isclose(root(2), math.sqrt(2), rel_tol=1e-9)",
        "from math import isclose as close\nassert close(root(9), 3.0)",
        "assert round(root(2), 3) == 1.414 and root(4) == 2",
    ]),
    "classes_in_the_tests": ("def area(shape):\n    return shape.area()\n", [program("""
        class Square:
            def __init__(self, side):
                self.side = side

            def area(self):
                return self.side ** 2


        class Cube(Square):
            def area(self):
                return 6 * super().area()


        assert area(Square(3)) == 9 and area(Cube(1)) == 6
    """), program("""
        from collections import deque


        class Square:
            def __init__(self, side):
                self.side = side

            def area(self):
                return self.side ** 2


        sides = deque([1, 2])
        while sides:  # the tests' own control flow takes any value
            side = sides.popleft()
            assert area(Square(side)) == side * side
    """)]),
    "exceptions_caught_and_printed": (program("""
        import logging, sys, traceback, warnings


        def safe_div(a, b):
            try:
                return a // b
            except ZeroDivisionError:
                traceback.print_exc()
                logging.getLogger(__name__).warning("division by zero")
                warnings.warn("returning None", stacklevel=2)
                return None
    """), [
        "assert safe_div(1, 0) is None and safe_div(7, 2) == 3",
        "try:\n    safe_div(1, 'a')\n    assert False\nexcept TypeError:\n    pass",
    ]),
    "threads_and_asyncio": (program("""
        import asyncio, concurrent.futures


        async def twice(x):
            await asyncio.sleep(0)
            return 2 * x


        def solve(x):
            return asyncio.run(twice(x))


        def plus_one(values):
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                return list(pool.map(lambda value: value + 1, values))
    """), ["assert solve(4) == 8", "assert plus_one([1, 2]) == [2, 3]"]),
    # Competitive-programming habits: exit() and quit() (site defines them; the supervisor runs
    # without site), writing to sys.__stdout__; numerical libraries told to start one thread.
    "exit_quit_and_the_original_streams": (program("""
        import os, sys
        n = int(input())
        print(n + 1, os.environ["OPENBLAS_NUM_THREADS"], os.environ["OMP_NUM_THREADS"], file=sys.__stdout__)
        exit() if n % 2 else quit(0)
        print("never")
    """), [{"input": "1\n", "output": "2 1 1\n"}, {"input": "2\n", "output": "3 1 1\n"}]),
    "truth_of_results": ("import re\ndef digits(text):\n    return re.match(r'\\d+', text)\n", [
        "assert digits('12a') and not digits('a')",
        "assert digits('7').group() == '7'",
    ]),
    "numpy_results": (program("""
        import numpy as np
        def total(values):
            return np.sum(np.array(values))  # a numpy integer, compared as the int it holds
        def doubled(values):
            return np.array(values) * 2.0
    """), ["assert total([1, 2]) == 3 and total([1]) != 2", "assert doubled([1, 2]) == [2, 4]",
           "assert doubled([0.5])[0] == 1.0 and bool(total([0])) is False"]),
}


@pytest.fixture(scope="module")
def honest() -> dict[str, code.CodeRewardResult]:
    items = list(HONEST_PROGRAMS.values())
    results = code.evaluate_batch(items, max_workers=4, timeout_s=RELAXED_TIMEOUT_S, from_completion=False)
    return dict(zip(HONEST_PROGRAMS, results, strict=True))


@pytest.mark.parametrize("name", HONEST_PROGRAMS)
def test_honest_program_passes_its_assert_style_tests(honest, name):
    assert honest[name].score == 1.0, honest[name]


def test_comparing_values_that_are_not_plain_data_fails_the_case():
    source = "import fractions\ndef half():\n    return fractions.Fraction(1, 2)\n"
    result = code.evaluate(source, ["assert half() == fractions.Fraction(1, 2)"], timeout_s=RELAXED_TIMEOUT_S,
                           from_completion=False)
    assert result.cases[0].reason == "exit code 1: TypeError: tests compare plain data only, got fractions.Fraction"


def _load_runner():
    spec = importlib.util.spec_from_file_location("r1jax_sandbox_runner", code._RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


def _code_objects(code_object):
    yield code_object
    for constant in code_object.co_consts:
        if inspect.iscode(constant):
            yield from _code_objects(constant)


def test_trusted_helpers_of_the_tests_look_up_no_names_when_they_run():
    """Globals and builtins are the program's to change while the tests run."""
    runner = _load_runner()
    functions = [runner._plain_copy, runner._plain, runner._truth, runner._compare, runner._guard_tests({})]
    for function in functions:
        for code_object in _code_objects(function.__code__):
            instructions = dis.get_instructions(code_object)
            lookups = [op.argval for op in instructions if op.opname in ("LOAD_GLOBAL", "LOAD_NAME")]
            assert lookups == [], f"{function.__qualname__} looks up {lookups}"


# ---------------------------------------------------------------- assert-style tests: reward hacks


IMPOSSIBLE = ["assert solve(1) == 2", "assert solve(5) == 10 and False"]  # the second can never pass honestly
# Function calls whose expected values a program cannot know: they never enter the sandbox.
SECRET_CALLS = [{"function": "solve", "args": [i], "output": f"secret-{uuid.uuid4().hex}"} for i in range(2)]


@dataclasses.dataclass(frozen=True)
class Hack:
    source: str
    reason: str  # what every case fails with: the hack gets nowhere, for the expected reason
    tests: list = dataclasses.field(default_factory=lambda: IMPOSSIBLE)


WRONG_SOLVE = "\ndef solve(x):\n    return 0\n"
SANDBOX_PERMISSION = "exit code 1: PermissionError: "
REWARD_HACKS = {
    "always_equal_object": Hack(program("""
        class AlwaysEqual:
            def __eq__(self, other):
                return True
        def solve(x):
            return AlwaysEqual()
    """), "exit code 1: TypeError: tests compare plain data only, got __main__.AlwaysEqual"),
    "int_subclass_equal_to_everything": Hack(program("""
        class Int(int):
            __hash__ = int.__hash__
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
        def solve(x):
            return Int(0)
    """), "exit code 1: AssertionError"),
    "rigged_ne_lt_and_bool": Hack(program("""
        class Rigged:
            def __ne__(self, other):
                return False
            def __lt__(self, other):
                return True
            __gt__ = __lt__
            def __bool__(self):
                return True
        def solve(x):
            return Rigged()
    """), "exit code 1: TypeError: tests compare plain data only, got __main__.Rigged",
        ["assert not solve(5) != 10", "assert 9 < solve(5) < 11", "assert solve(5) and False"]),
    "rigged_subtraction_for_tolerances": Hack(program("""
        class Close(float):
            def __sub__(self, other):
                return 0.0
            __rsub__ = __sub__
        def solve(x):
            return Close(0.0)
    """), "exit code 1: AssertionError", ["assert abs(solve(5) - 10) < 1e-9"]),
    "patch_builtins_compile": Hack(
        "import builtins\n_c = builtins.compile\n"
        "builtins.compile = lambda src, name, mode, *a, **k: _c('pass', name, mode)\n" + WRONG_SOLVE,
        "exit code 1: AssertionError"),
    "patch_builtins_exec": Hack("import builtins\nbuiltins.exec = lambda *a, **k: None\n" + WRONG_SOLVE,
                                "exit code 1: AssertionError"),
    "patch_builtins_the_tests_use": Hack(program("""
        import builtins
        builtins.isinstance = lambda *args: True
        builtins.abs = lambda value: 0
        builtins.all = lambda values: True
        builtins.type = lambda *args: str
        def solve(x):
            return "nothing"
    """), "exit code 1: AssertionError", [
        "assert isinstance(solve(5), int) and abs(solve(5) - 10) < 1e-9",
        "assert type(solve(5)) == int or all(solve(x) == 2 * x for x in range(3))",
    ]),
    "shadow_builtins_with_globals": Hack(
        "abs = lambda value: 0\nall = lambda values: True\nisinstance = lambda *args: True\n" + WRONG_SOLVE,
        "exit code 1: AssertionError",
        ["assert isinstance(solve(5), str) and abs(solve(5) - 10) < 1e-9",
         "assert all(solve(x) == 2 * x for x in range(3))"]),
    "patch_math_isclose": Hack(program("""
        import math, sys, types
        math.isclose = lambda *args, **kwargs: True
        sys.modules["math"] = types.SimpleNamespace(isclose=math.isclose)
        def solve(x):
            return 0.0
    """), "exit code 1: AssertionError", [
        "import math\nassert math.isclose(solve(5), 10.0)",
        "assert math.isclose(solve(5), 10.0)",
        "from math import isclose\nassert isclose(solve(5), 10.0)",
    ]),
    "rename_main_to_skip_the_tests": Hack(
        "__name__ = 'skipped'\n" + WRONG_SOLVE, "exit code 1: AssertionError",
        ["def check(candidate):\n    assert candidate(5) == 10\n\nif __name__ == '__main__':\n    check(solve)\n"]),
    "steal_token_from_caller_frame": Hack(
        "import sys, os\nos.write(3, sys._getframe(1).f_locals['token'])\nos._exit(0)\n",
        "exit code 1: KeyError: 'token'"),
    "search_frames_and_closures_for_the_token": Hack(program("""
        import os, sys
        def tokens_in(value):
            if isinstance(value, bytes) and len(value) == 32:
                yield value
            elif callable(value) and hasattr(value, "__code__"):
                for cell in value.__closure__ or ():
                    yield from tokens_in(cell.cell_contents)
                yield from tokens_in(value.__code__.co_consts)
            elif isinstance(value, tuple):
                for item in value:
                    yield from tokens_in(item)
        def solve(x):
            frame = sys._getframe()
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    for token in tokens_in(value):
                        os.write(3, token)
                        os._exit(0)
                frame = frame.f_back
            return 0
    """), SANDBOX_PERMISSION + "the code of the tests cannot be read"),
    "rewrite_case_via_frame": Hack("import sys\nsys._getframe(1).f_locals['case']['assert'] = 'pass'\n" + WRONG_SOLVE,
                                   "exit code 1: AssertionError"),
    "read_expected_values_from_the_tests_code": Hack(program("""
        import sys
        def solve(x):
            return [c for c in sys._getframe(1).f_code.co_consts if type(c) is int][-1]
    """), SANDBOX_PERMISSION + "the code of the tests cannot be read"),
    "swap_the_code_of_a_test_function": Hack(program("""
        import sys
        def solve(x):
            sys._getframe(1).f_globals["check"].__code__ = (lambda candidate: None).__code__
            return 0
    """), SANDBOX_PERMISSION + "the code of the tests and of their helpers cannot be changed",
        ["def check(candidate):\n    assert candidate(5) == 10 and False\n\ncheck(solve)\ncheck(solve)\n"]),
    "patch_the_comparison_helper": Hack(program("""
        import sys
        def solve(x):
            frame = sys._getframe()
            while "_compare" not in frame.f_globals:
                frame = frame.f_back
            compare = frame.f_globals["_compare"]
            compare.__defaults__ = (lambda value: 10,) + compare.__defaults__[1:]
            return 0
    """), SANDBOX_PERMISSION + "the code of the tests and of their helpers cannot be changed"),
    "trace_jumps_over_failing_lines": Hack(program("""
        import sys
        def tracer(frame, event, arg):
            def jump_to_the_end(frame, event, arg):
                if event == "line":
                    try:
                        frame.f_lineno = frame.f_code.co_firstlineno + 10**6
                    except ValueError:
                        pass
                return jump_to_the_end
            return jump_to_the_end
        sys.settrace(tracer)
    """) + WRONG_SOLVE, SANDBOX_PERMISSION + "sys.settrace is disabled while tests run"),
    "forge_via_gc_referrers": Hack(program("""
        import gc, sys
        def solve(x):
            return len(gc.get_referrers(sys._getframe(1).f_globals))
    """), SANDBOX_PERMISSION + "gc.get_referrers is disabled while tests run"),
    "signal_handler_scans_frames": Hack(program("""
        import os, signal
        def scan(signum, frame):
            while frame is not None:
                for value in list(frame.f_locals.values()):
                    if isinstance(value, bytes) and len(value) == 32:
                        os.write(3, value)
                        os._exit(0)
                frame = frame.f_back
        signal.signal(signal.SIGALRM, scan)
        signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
        def solve(x):
            for _ in range(10**5):
                pass
            return 0
    """), "exit code 1: AssertionError"),
    "ctypes_reads_memory": Hack("import ctypes\n" + WRONG_SOLVE,
                                "exit code 1: ImportError: this module cannot be imported in the sandbox"),
    "ctypes_under_another_name": Hack(program("""
        import importlib.util, os, sys
        directory = next(path for path in sys.path if path.endswith("lib-dynload"))
        library = next(name for name in os.listdir(directory) if name.startswith("_ctypes."))
        spec = importlib.util.spec_from_file_location("disguised._ctypes", os.path.join(directory, library))
        importlib.util.module_from_spec(spec)
    """) + WRONG_SOLVE, "exit code 1: ImportError: this module cannot be imported in the sandbox"),
    "ctypes_classes_left_in_memory": Hack(program("""
        if any(cls.__module__ == "_ctypes" for cls in object.__subclasses__()):
            raise SystemError("ctypes classes are reachable: they read memory without an audit event")
    """) + WRONG_SOLVE, "exit code 1: AssertionError"),
    "fork_to_try_answers": Hack(program("""
        import os
        def solve(*args):  # each forked copy carries on with one guess; the one whose tests end reports
            for guess in range(-3, 40):
                pid = os.fork()
                if pid == 0:
                    return guess
                if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0:
                    os._exit(0)
            os._exit(1)
    """), SANDBOX_PERMISSION + "os.fork is disabled while tests run"),
    "call_the_tests_again_to_try_answers": Hack(program("""
        import os, sys
        def solve(*args):  # the tests' own function, from the frames, rerun with one guess each
            frame = sys._getframe()
            while "run_tests" not in frame.f_locals:
                frame = frame.f_back
            rerun = frame.f_locals["run_tests"]
            for guess in range(-3, 40):
                try:
                    rerun({"solve": lambda *args: guess})
                except AssertionError:
                    continue
                os._exit(0)  # the rerun ran to the end and reported
            os._exit(1)
    """), "exit code 1: StopIteration"),
    "subinterpreter_without_the_audit_hook": Hack(
        "import _xxsubinterpreters\n_xxsubinterpreters.create()\n" + WRONG_SOLVE,
        "exit code 1: RuntimeError: interpreter creation failed"),
    "call_returns_an_object_equal_to_everything": Hack(program("""
        class Solution:
            def solve(self, x):
                class AlwaysEqual:
                    def __eq__(self, other):
                        return True
                return AlwaysEqual()
    """), "exit code 1: TypeError: the function returned a AlwaysEqual, which no test's value equals",
        SECRET_CALLS),
    "call_looks_for_the_expected_value_everywhere": Hack(program("""
        import gc, os
        def solve(x):  # every object of the process, and every file it can read: the expected value is in none
            for value in gc.get_objects():
                items = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
                for item in items:
                    if isinstance(item, str) and item.startswith("secret") and item != "secret":
                        return item
            for directory in (".", "/tmp"):
                for name in os.listdir(directory):
                    path = os.path.join(directory, name)
                    if os.path.isfile(path):
                        text = open(path, "rb").read()
                        if b"secret-" in text:
                            return text[text.index(b"secret-"):].split(b'"')[0].decode()
            return "secret"
    """), "wrong return value", SECRET_CALLS),
    "numpy_subclass_equal_to_everything": Hack(program("""
        import numpy as np
        class Int(np.int64):
            def __eq__(self, other):
                return True
        def solve(x):
            return Int(0)
    """), "exit code 1: TypeError: tests compare plain data only, got __main__.Int"),
    "call_an_empty_program_as_a_prelude_function": Hack(
        "class Solution:\n    pass\n", "exit code 1: NameError: the program defines no function 'gcd' (nor a class "
        "Solution with that method)", [{"function": "gcd", "args": [12, 8], "output": 4}]),
    "call_forges_its_result_and_exits": Hack(program("""
        import os
        def solve(x):
            os.write(3, b'"a forged result"')  # where the return value goes: only a value it could return anyway
            os._exit(0)
    """), "wrong return value", SECRET_CALLS),
}


@pytest.fixture(scope="module")
def hacks() -> dict[str, code.CodeRewardResult]:
    items = [(hack.source, hack.tests) for hack in REWARD_HACKS.values()]
    results = code.evaluate_batch(items, max_workers=4, timeout_s=RELAXED_TIMEOUT_S, from_completion=False)
    return dict(zip(REWARD_HACKS, results, strict=True))


@pytest.mark.parametrize("name", REWARD_HACKS)
def test_reward_hack_scores_zero_for_the_right_reason(hacks, name):
    result = hacks[name]
    assert result.score == 0.0, result
    assert [case.reason for case in result.cases] == [REWARD_HACKS[name].reason] * len(result.cases)


@pytest.mark.parametrize("setpriv", [True, False], ids=["setpriv", "no_setpriv"])
def test_case_processes_have_no_new_privs_and_no_ctypes(setpriv, monkeypatch):
    """Without setpriv the supervisor sets no_new_privs with ctypes, then starts afresh to run tests."""
    if setpriv and code._SETPRIV is None:
        pytest.skip("no setpriv here")
    if not setpriv:
        monkeypatch.setattr(code, "_SETPRIV", None)
    source = program("""
        no_new_privs = next(line for line in open("/proc/self/status") if line.startswith("NoNewPrivs")).split()[1]
        ctypes_loaded = any(cls.__module__ == "_ctypes" for cls in object.__subclasses__())
    """)
    result = code.evaluate(source, ["assert no_new_privs == '1'", "assert not ctypes_loaded"],
                           timeout_s=RELAXED_TIMEOUT_S, from_completion=False)
    assert result.score == 1.0, result


def test_honest_solution_passes_what_can_be_passed():
    source = "def solve(x):\n    return 2 * x\n"
    result = code.evaluate(source, IMPOSSIBLE, timeout_s=RELAXED_TIMEOUT_S, from_completion=False)
    assert [case.reason for case in result.cases] == ["passed", "exit code 1: AssertionError"]


# ---------------------------------------------------------------- weaker isolation tiers


WEAKER_TIERS = {
    "user_namespace": code.SandboxIsolation(namespaces=True, user_namespace=True, dedicated_uid=False),
    "dedicated_uid_only": code.SandboxIsolation(namespaces=False, user_namespace=False, dedicated_uid=True),
    "plain_process": code.SandboxIsolation(namespaces=False, user_namespace=False, dedicated_uid=False),
}


@pytest.mark.parametrize("tier", WEAKER_TIERS)
def test_weaker_isolation_tiers_still_score_and_clean_up(tier, monkeypatch, track_sandboxes):
    """Forces each fallback tier, with programs that are harmless even where they run as root."""
    if tier == "user_namespace" and not _unshare_works("--user", "--map-root-user", "--net", "--pid", "--fork"):
        pytest.skip("user namespaces are not available")
    if tier == "dedicated_uid_only" and os.geteuid() != 0:
        pytest.skip("needs root")
    monkeypatch.setattr(code, "sandbox_isolation", lambda: WEAKER_TIERS[tier])
    markers, uids = track_sandboxes
    marker = f"r1jax-stray-{uuid.uuid4().hex}"
    # Only modules the supervisor has imported already: without a mount namespace, a dedicated uid
    # may be unable to read a standard library installed under /root.
    leaves_child_behind = program(f"""
        import os
        if os.fork() == 0:
            os.execv("/bin/sh", ["sh", "-c", "sleep 60; : {marker}"])
        print(3)
    """)
    items = [
        (ADD_TWO_NUMBERS, ADDITION_TESTS),
        ("a, b = map(int, input().split())\nprint(a + b if a != 7 else 0)\n", ADDITION_TESTS),
        ("while True:\n    pass\n", NEVER),
        ("while True:\n    print('spam' * 100)\n", NEVER),
        ("s = __import__('socket').socket()\nprint('socket')\n", prints("socket")),
        (leaves_child_behind, prints("3")),
        ("def double(x):\n    return 2 * x\n", ["assert double(2) == 4", "assert double(5) == 10 and False"]),
    ]
    results = code.evaluate_batch(items, max_workers=len(items), timeout_s=HOSTILE_TIMEOUT_S, from_completion=False)
    assert [result.score for result in results] == [1.0, 0.75, 0.0, 0.0, 0.0, 1.0, 0.5], results
    assert _stray_processes([*markers, marker], uids) == []
