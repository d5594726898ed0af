"""Programming problems as an RL task: the test-case layouts of public code datasets, prompts, and GRPO
rollouts scored by running the programs in the sandbox."""

import base64
import json
import os
import pickle
import zlib

import jax
import numpy as np
import pytest

from r1jax import sampler
from r1jax.config import ConfigError, load_config_file, validate
from r1jax.data import prompts, tasks
from r1jax.main import MODES
from r1jax.rl import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADD = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 7\n", "output": "12\n"}]


@pytest.mark.parametrize("tests, expected", [
    pytest.param(ADD, ADD, id="stdin-stdout-cases"),
    pytest.param(["assert add(1, 2) == 3", "assert add(0, 0) == 0"], ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
                 id="mbpp-assert-statements"),
    pytest.param(json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", ["12", ""]]}),
                 [{"input": "1 2\n", "output": "3\n"}, {"input": "5 7\n", "output": "12\n"}],
                 id="apps-taco-input-output-json-with-an-output-as-lines"),
    pytest.param({"input": ["1 2\n", "5 7\n"], "output": ["3\n", "12\n"]}, ADD, id="codecontests-public-tests"),
    pytest.param(json.dumps({"language": "python", "test_cases": [
        {"input": "1 2\n", "output": "3\n", "type": "stdin_stdout"}]}), ADD[:1], id="open-r1-verification-info"),
    pytest.param(json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]), ADD[:1],
                 id="livecodebench-public-test-cases"),
    pytest.param(json.dumps({"inputs": [[1, 2], [[5], "x"]], "outputs": [[3], [[5, "x"]]], "fn_name": "pair"}),
                 [{"function": "pair", "args": [1, 2], "output": [3], "wrapped": True},
                  {"function": "pair", "args": [[5], "x"], "output": [[5, "x"]], "wrapped": True}],
                 id="apps-taco-function-calls"),
    pytest.param([{"input": "[1, 2]\n\"x\"", "output": "[3, \"x\"]", "testtype": "functional",
                   "metadata": {"func_name": "pair"}}],
                 [{"function": "pair", "args": [[1, 2], "x"], "output": [3, "x"]}],
                 id="livecodebench-functional-with-the-name-in-the-case-deepcoder"),
    pytest.param(json.dumps({"language": "python", "test_cases": [
        {"fn_name": "add", "input": "[1, 2]", "output": "[3]", "type": "function_call"}]}),
                 [{"function": "add", "args": [1, 2], "output": [3], "wrapped": True}], id="open-r1-function-call"),
    pytest.param([{"function": "add", "args": [1, 2], "output": 3}], [{"function": "add", "args": [1, 2], "output": 3}],
                 id="r1jax-function-calls"),
])
def test_the_layouts_of_public_code_datasets_become_test_cases(tests, expected):
    assert tasks.code_tests(tests) == expected


def test_livecodebench_functional_cases_take_the_function_name_of_their_problem():
    cases = [{"input": "3\n4", "output": "7", "testtype": "functional"}]
    assert tasks.code_tests(cases, function_name="add") == [{"function": "add", "args": [3, 4], "output": 7}]
    with pytest.raises(ValueError, match="'functional' test case with no function name"):
        tasks.code_tests(cases)


def _livecodebench_compressed(value) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(value))).decode()


def test_livecodebench_compressed_private_tests_are_read_without_loading_pickled_objects(tmp_path):
    assert tasks.code_tests(_livecodebench_compressed(json.dumps([{"input": "1 2\n", "output": "3\n",
                                                                    "testtype": "stdin"}]))) == ADD[:1]
    marker = tmp_path / "ran"

    class Payload:  # a pickle that would run code when loaded with pickle.loads
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    with pytest.raises(ValueError, match=r"do not unpickle: the pickle names posix.system; only pickled text is read"):
        tasks.code_tests(_livecodebench_compressed(Payload()))
    assert not marker.exists()
    with pytest.raises(ValueError, match="hold a list, not JSON text"):
        tasks.code_tests(_livecodebench_compressed([1]))


@pytest.mark.parametrize("tests, message", [
    ([{"input": "add(1, 2)", "output": "3", "testtype": "interactive"}], "'interactive' test cases are not supported"),
    ([{"input": "[1, 2", "output": "3", "testtype": "functional", "metadata": {"func_name": "f"}}],
     "an argument line that is not JSON"),
    ({"inputs": [7], "outputs": [[3]], "fn_name": "add"}, "a function-call case is"),  # arguments must be a list
    ({"inputs": [[1]], "outputs": [[3]], "fn_name": "not a name"}, "names its function with an identifier"),
    ({"language": "cpp", "test_cases": ADD}, "the tests are for 'cpp'"),
    ({"inputs": ["1 2\n"], "outputs": []}, "lists of equal length"),
    ([], "a non-empty list"),
    ("{not json", "text that is not JSON"),
    ([{"input": "1 2\n"}], "a test case is"),  # no output: code.check_tests refuses it
    ([7], "a test case is"),
])
def test_test_cases_that_cannot_run_are_refused(tests, message):
    with pytest.raises(ValueError, match=message):
        tasks.code_tests(tests)


def _write_problems(path, lines):
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_a_problem_without_a_statement_or_with_bad_tests_names_its_line(tmp_path):
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": ADD}, {"question": "Add.", "tests": ADD}])
    with pytest.raises(ValueError, match=r"p.jsonl:2: no question text under 'problem' .*data.code.question_key"):
        tasks.read_code_jsonl(path)
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": ADD}, {"problem": "Add."}])
    with pytest.raises(ValueError, match=r"p.jsonl:2: no test cases under 'tests' .*data.code.tests_key"):
        tasks.read_code_jsonl(path)
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": {"fn_name": "f", "inputs": [1]}}])
    with pytest.raises(ValueError, match=r"p.jsonl:1: the tests under 'tests': a mapping of tests needs"):
        tasks.read_code_jsonl(path)
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": ADD, "starter_code": ["def f():"]}])
    with pytest.raises(ValueError, match=r"p.jsonl:1: the starter code under 'starter_code' is not text"):
        tasks.read_code_jsonl(path)


def test_problems_whose_tests_cannot_run_are_left_out_only_when_asked(tmp_path, capsys):
    interactive = [{"input": "[1, 2]", "output": "3", "testtype": "interactive"}]
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": ADD},
                                                  {"problem": "Add, talking to a judge.", "tests": interactive}])
    with pytest.raises(ValueError, match=r"p.jsonl:2: .*'interactive' test cases .*data.code.skip_unsupported"):
        tasks.read_code_jsonl(path)
    assert tasks.read_code_jsonl(path, skip_unsupported=True) == [{"question": "Add.", "tests": ADD, "starter_code": ""}]
    assert "p.jsonl: left out 1 of 2 problems whose tests cannot run here (the first: " in capsys.readouterr().out
    only_interactive = _write_problems(tmp_path / "f.jsonl", [{"problem": "Add, talking.", "tests": interactive}])
    with pytest.raises(ValueError, match="no problem has tests that can run here"):
        tasks.read_code_jsonl(only_interactive, skip_unsupported=True)


LEETCODE_STARTER = "class Solution:\n    def addTwo(self, nums: List[int]) -> int:\n        "
LEETCODE_SOLUTION = LEETCODE_STARTER.rstrip() + "\n        return sum(sorted(nums)[-2:])\n"


def test_a_livecodebench_problem_is_read_prompted_with_its_starter_code_and_judged(tmp_path):
    """A LiveCodeBench line as its dataset stores it: the tests and metadata as JSON text, the private tests
    compressed; a LeetCode-style solution (typing's names not imported) passes both, a wrong one neither."""
    from r1jax.rewards import code

    public = [{"input": "[1, 5, 3]", "output": "8", "testtype": "functional"}]
    private = [{"input": "[2, 2, 1]", "output": "4", "testtype": "functional"},
               {"input": "[-1, -2, -3]", "output": "-3", "testtype": "functional"}]
    line = {"question_content": "Return the sum of the two largest numbers.", "starter_code": LEETCODE_STARTER,
            "public_test_cases": json.dumps(public), "private_test_cases": _livecodebench_compressed(json.dumps(private)),
            "metadata": json.dumps({"func_name": "addTwo"})}
    path = _write_problems(tmp_path / "lcb.jsonl", [line])
    for tests_key, n_cases in (("public_test_cases", 1), ("private_test_cases", 2)):
        [problem] = tasks.read_code_jsonl(path, question_key="question_content", tests_key=tests_key)
        assert len(problem["tests"]) == n_cases and problem["starter_code"] == LEETCODE_STARTER
        assert code.run_tests(LEETCODE_SOLUTION, problem["tests"], from_completion=False) == 1.0
        wrong = LEETCODE_SOLUTION.replace("[-2:]", "[-3:]")
        assert code.run_tests(wrong, problem["tests"], from_completion=False) == 0.0
    prompt = tasks.problem_prompt("code", problem, template="base", renderer=None)
    assert f"{prompts._CODE_STARTER_REQUEST}\n```python\n{LEETCODE_STARTER.strip()}\n```" in prompt
    assert prompts._CODE_REQUEST not in prompt  # no request to read standard input


def test_code_prompts_ask_for_a_python_block_the_reward_can_read():
    base = prompts.code_prompt("Add two numbers.", template="base")
    assert base.endswith("Add two numbers.\n\n" + prompts._CODE_REQUEST + "\nAssistant: <think>")
    layout = base[base.index("<think> reasoning"):base.index("\nUser:")]
    from r1jax.rewards import code

    assert code.extract_code(layout) == "program\n"  # the layout the prompt shows is one the reward reads
    with pytest.raises(ValueError, match="unknown template 'compact' for programming problems"):
        prompts.code_prompt("Add.", template="compact")


ADD_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
COMPLETIONS = [  # per sample of each prompt: what the scripted sampler writes, and its all-or-nothing reward
    (f" sum it</think>\n<answer>\n```python\n{ADD_PROGRAM}```\n</answer>", 1.0),
    (" off by one</think>\n<answer>\n```python\na, b = map(int, input().split())\nprint(a + b + 1)\n```\n</answer>", 0.0),
    (f" drafted\n```python\n{ADD_PROGRAM}```\n</think>\n<answer>no code</answer>", 0.0),  # the draft is not the answer
    (" never closes\n```python\nwhile True: pass\n```", 0.0),
]


def _code_config(tmp_path, **changes):
    config = load_config_file(os.path.join(REPO, "configs", "countdown_tiny.py:smoke"))
    problems = [{"problem": f"Print the sum of two integers ({i}).", "tests": ADD} for i in range(4)]
    files = {key: _write_problems(tmp_path / f"{key}.jsonl", problems) for key in ("train_file", "test_file")}
    config.update_from_flattened_dict({
        "data.name": "code", "data.template": "base", "data.code.train_file": files["train_file"],
        "data.code.test_file": files["test_file"], "pretrain.steps": 0, "rollout.group_size": len(COMPLETIONS),
        "rollout.max_new_tokens": 96, "rollout.stop_strings": ("</answer>",), "accuracy_reward": "code",
        **changes})
    config.rewards = [dict(name="code", weight=1.0, kwargs=dict(all_or_nothing=True, timeout_s=2.0)),
                      dict(name="format_tags", weight=0.0, kwargs=dict(prefill="<think>"))]
    return config


def test_a_code_task_needs_its_files_and_a_tests_field(tmp_path):
    for key in ("data.code.train_file", "data.code.tests_key"):
        config = _code_config(tmp_path, **{key: ""})
        with pytest.raises(ConfigError, match=f"config.{key}"):
            validate(config, known_modes=MODES, num_devices=8)


def test_grpo_on_programming_problems_rewards_the_programs_that_pass_their_tests(tmp_path, monkeypatch):
    config = _code_config(tmp_path, reward_workers=2)
    validate(config, known_modes=MODES, num_devices=8)
    run = trainer.GRPORun(config, str(tmp_path / "run"))
    assert run.task.train[0]["tests"] == ADD

    def scripted_generate(model_config, params, prompts_, *, num_samples, max_new_tokens, **kwargs):
        rows = [run.tokenizer.encode(text) for _ in prompts_ for text, _ in COMPLETIONS]
        tokens = np.zeros((len(rows), max_new_tokens), np.int32)
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = row
        return sampler.SampleResult(tokens, np.array([len(r) for r in rows], np.int32),
                                    np.full(tokens.shape, -1.0, np.float32), np.ones(len(rows), bool))

    monkeypatch.setattr(sampler, "generate", scripted_generate)
    try:
        rollout = run.rollout(run.task.test_examples(2), jax.random.key(0), num_samples=len(COMPLETIONS),
                              temperature=1.0)
    finally:
        run.rewards.close()
    expected = [reward for _ in range(2) for _, reward in COMPLETIONS]
    assert rollout.reward_scores["code"].tolist() == expected
    assert rollout.total_rewards.tolist() == expected  # the format reward has weight 0
    assert rollout.reward_scores["format_tags"][0] == 1.0
