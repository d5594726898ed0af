"""Programming problems as an RL task: the test-case layouts of public code datasets, prompts, and GRPO
rollouts scored by running the programs in the sandbox."""

import json
import os

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
])
def test_the_layouts_of_public_code_datasets_become_test_cases(tests, expected):
    assert tasks.code_tests(tests) == expected


@pytest.mark.parametrize("tests, message", [
    (json.dumps({"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"}), "function-call tests .fn_name 'add'"),
    ([{"input": "add(1, 2)", "output": "3", "testtype": "functional"}], "'functional' test cases are not supported"),
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
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": {"fn_name": "f"}}])
    with pytest.raises(ValueError, match=r"p.jsonl:1: the tests under 'tests': function-call tests"):
        tasks.read_code_jsonl(path)


def test_problems_whose_tests_cannot_run_are_left_out_only_when_asked(tmp_path, capsys):
    functional = [{"input": "[1, 2]", "output": "3", "testtype": "functional"}]
    path = _write_problems(tmp_path / "p.jsonl", [{"problem": "Add.", "tests": ADD},
                                                  {"problem": "Add as a method.", "tests": functional}])
    with pytest.raises(ValueError, match=r"p.jsonl:2: .*'functional' test cases .*data.code.skip_unsupported"):
        tasks.read_code_jsonl(path)
    assert tasks.read_code_jsonl(path, skip_unsupported=True) == [{"question": "Add.", "tests": ADD}]
    assert "p.jsonl: left out 1 of 2 problems whose tests cannot run here (the first: " in capsys.readouterr().out
    only_functional = _write_problems(tmp_path / "f.jsonl", [{"problem": "Add as a method.", "tests": functional}])
    with pytest.raises(ValueError, match="no problem has tests that can run here"):
        tasks.read_code_jsonl(only_functional, skip_unsupported=True)


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
