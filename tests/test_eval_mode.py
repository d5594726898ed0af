"""`mode: evaluate`: curves against brute force on scripted samples, a run on a random tiny model, the
benchmark builders on fixture files, and the errors a bad config or a missing file gives."""

import functools
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from r1jax import checkpoint
from r1jax import config as config_lib
from r1jax import evaluate, evaluate_mode, hf, sampler
from r1jax import model as model_lib
from r1jax.data import benchmarks, prompts
from r1jax.data.char_tokenizer import vocab_size, write_char_tokenizer
from r1jax.tokenizer import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
GSM8K_LINES = [
    {"question": "Janet has 3 apples and buys 15 more. How many apples does she have?",
     "answer": "She has 3 + 15 = <<3+15=18>>18 apples.\n#### 18"},
    {"question": "A train goes 1,000 km in 4 hours. How far does it go in 1 hour?",
     "answer": "1000 / 4 = 250\n#### 250"},
]


def _eval_config(variant="smoke", **overrides):
    spec = importlib.util.spec_from_file_location("eval_countdown", REPO / "configs" / "eval_countdown.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    config.update_from_flattened_dict(overrides)
    return config


def _write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


@pytest.fixture(scope="module")
def char_tokenizer(tmp_path_factory):
    return load_tokenizer(write_char_tokenizer(str(tmp_path_factory.mktemp("char_tokenizer"))))


# ---------------------------------------------------------------------------------------------
# Scripted samples: the report's curves against enumerating every subset

# (example, prompt, scripted completions with the mean log-prob of each). The answers mix correct ones that
# vote apart (Countdown: "3+4" and "4+3"), wrong ones that outvote them, unreadable ones, and log-probs that
# rank a wrong answer first, so pass@N, maj@N and both best-of-N differ.
COUNTDOWN_PROBLEMS = [
    (dict(nums=[3, 4], target=7), [("3+4", -1.0), ("3*4", -0.2), ("4+3", -0.5), (None, -0.1), ("3*4", -0.3),
                                   (" 3 + 4", -0.9)]),
    (dict(nums=[9, 5], target=45), [("9+5", -0.4), ("9+5", -0.4), ("9*5", -2.0), ("9-5", -0.1), ("9*5", -3.0),
                                    ("9+5", -0.7)]),
    (dict(nums=[8, 2], target=4), [("8/2", -0.5), (None, -0.3), (None, -0.2), ("8-2", -0.5), ("8-2", -0.1),
                                   ("8+2", -0.6)]),
]
# GSM8K: equal answers written differently vote together under the math checker.
GSM8K_SCRIPTS = [[("18", -1.0), ("18.0", -0.8), ("17", -0.1), ("17", -0.2), ("\\frac{36}{2}", -0.5), (None, -0.3)],
                 [("250", -0.9), ("25", -0.1), ("25", -0.3), ("25.0", -0.4), ("250", -0.5), ("2500", -2.0)]]


# Code: two right programs of problem 1 vote apart, wrong ones outvote them; problem 2's wrong program passes
# one of its two tests, which is not a right answer.
CODE_PROBLEMS = [{"problem": "Print the sum of the two integers on the input line.",
                  "tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "5 -7\n", "output": "-2\n"}]},
                 {"problem": "Write double(x).", "tests": ["assert double(2) == 4", "assert double(-1) == -2"]}]
_SUM, _SUM_TOO, _ZERO = ("a, b = map(int, input().split())\nprint(a + b)\n",
                         "print(sum(map(int, input().split())))\n", "print(0)\n")
_DOUBLE, _PLUS_TWO = "def double(x):\n    return 2 * x\n", "def double(x):\n    return x + 2\n"


def _fenced(program):
    return f"\n```python\n{program}```\n"


CODE_SCRIPTS = [[(_fenced(_SUM), -1.0), (_fenced(_ZERO), -0.2), (_fenced(_SUM_TOO), -0.5), (None, -0.1),
                 (_fenced(_ZERO), -0.3), (_fenced(_SUM + "\n"), -0.9)],
                [(_fenced(_DOUBLE), -0.4), (_fenced(_DOUBLE), -0.4), (_fenced(_PLUS_TWO), -0.1),
                 (_fenced(_PLUS_TWO), -0.2), (_fenced(_PLUS_TWO), -3.0), (None, -0.7)]]


def _completion(answer):
    return "attempts</think>\n" + ("no answer" if answer is None else f"<answer>{answer}</answer>")


def _fake_generate(tokenizer, scripts_by_prompt):
    """A stand-in for `sampler.generate` that returns the scripted completions of each prompt."""

    def generate(config, params, prompts_, *, max_new_tokens, num_samples=1, **_):
        rows = [scripts_by_prompt[tokenizer.decode(p)][i] for p in prompts_ for i in range(num_samples)]
        tokens = np.zeros((len(rows), max_new_tokens), np.int32)
        lengths = np.zeros(len(rows), np.int32)
        logprobs = np.zeros((len(rows), max_new_tokens), np.float32)
        for row, (answer, mean_logprob) in enumerate(rows):
            ids = tokenizer.encode(_completion(answer)) + [tokenizer.eos_id]
            tokens[row, :len(ids)], lengths[row], logprobs[row, :len(ids)] = ids, len(ids), mean_logprob
        return sampler.SampleResult(tokens, lengths, logprobs, np.ones(len(rows), bool))

    return generate


def _brute_force(task, examples, scripts, k):
    """Each curve at N=k: the mean over problems of the mean over every k-subset, with r1jax.evaluate's functions."""
    reward = evaluate_mode.RewardSet([dict(name=task.accuracy_reward)])
    curves = {name: [] for name in ("pass@k", "maj@k", "best_of_n_verifier", "best_of_n_logprob")}
    for example, script in zip(examples, scripts):
        texts = [_completion(answer) for answer, _ in script]
        scores = reward.score_batch(texts, [example] * len(texts)).total
        samples = list(zip(texts, scores))
        per_subset = {name: [] for name in curves}
        for subset in itertools.combinations(range(len(script)), k):
            chosen = [samples[i] for i in subset]
            per_subset["pass@k"].append(float(any(evaluate.is_correct(score) for _, score in chosen)))
            per_subset["maj@k"].append(evaluate.cons_at_k(chosen, task.answers))
            per_subset["best_of_n_verifier"].append(evaluate.best_of_n(chosen, dict(samples).get))
            best = evaluate.best_of_n_index([script[i][1] for i in subset])
            per_subset["best_of_n_logprob"].append(float(evaluate.is_correct(chosen[best][1])))
        for name in curves:
            curves[name].append(np.mean(per_subset[name]))
    return {name: float(np.mean(values)) for name, values in curves.items()}


@pytest.mark.parametrize("task_name", ["countdown", "gsm8k", "code"])
def test_sampling_curves_equal_enumerating_every_subset(task_name, char_tokenizer, tmp_path, monkeypatch):
    config = _eval_config(**{"sampling.num_samples": 6, "max_new_tokens": 96, "prompt_batch_size": 2})
    if task_name == "countdown":
        examples, scripts = [e for e, _ in COUNTDOWN_PROBLEMS], [s for _, s in COUNTDOWN_PROBLEMS]
        texts = [prompts.compact_prompt(e["nums"], e["target"]) for e in examples]
    elif task_name == "code":
        test_file = _write_jsonl(tmp_path / "code.jsonl", CODE_PROBLEMS)
        config.data.update(name="code", template="base")
        config.data.code.update(test_file=str(test_file))
        config.verifier = [dict(name="code")]
        config.reward_workers = 2  # sandboxes in two spawned processes
        evaluate_mode.validate_config(config)
        examples, texts = evaluate_mode.load_problems(config.data, char_tokenizer, str(tmp_path))
        assert examples[1]["tests"] == CODE_PROBLEMS[1]["tests"]
        scripts = CODE_SCRIPTS
    else:
        manual_dir = _write_jsonl(tmp_path / "gsm8k" / "test.jsonl", GSM8K_LINES).parent
        config.data.update(name="gsm8k", template="base", manual_dir=str(manual_dir), data_dir=str(tmp_path / "tfds"))
        config.verifier = [dict(name="math")]
        examples, texts = evaluate_mode.load_problems(config.data, char_tokenizer, str(tmp_path))
        scripts = GSM8K_SCRIPTS
    monkeypatch.setattr(sampler, "generate", _fake_generate(char_tokenizer, dict(zip(texts, scripts))))
    evaluator = evaluate_mode.Evaluator(config, None, None, char_tokenizer, examples, texts, str(tmp_path / "s"))
    try:
        results = evaluator.sampling()
    finally:
        evaluator.close()

    task = evaluate_mode.EVAL_TASKS[task_name]
    assert [row["n"] for row in results["pass@k"]["rows"]] == [1, 2, 4, 6]
    for i, k in enumerate([1, 2, 4, 6]):
        expected = _brute_force(task, examples, scripts, k)
        for name, value in expected.items():
            assert results[name]["rows"][i]["accuracy"] == pytest.approx(value, abs=1e-12), (name, k)
    at_4 = {name: results[name]["rows"][2]["accuracy"] for name in evaluate_mode.CURVES}
    # The scripts separate the methods: the vote and log-prob ranking lose to the oracle verifier.
    assert at_4["maj@k"] < at_4["pass@k"] and at_4["best_of_n_logprob"] < at_4["best_of_n_verifier"]
    pass_at_1 = _brute_force(task, examples, scripts, 1)["pass@k"]
    assert results["mean_pass@1"]["rows"][0]["accuracy"] == pytest.approx(pass_at_1)


def test_verifier_that_needs_fields_the_task_lacks_fails_before_sampling(char_tokenizer):
    config = _eval_config()
    config.verifier = [dict(name="math")]  # reads `answer`; Countdown problems have nums and target
    examples = [e for e, _ in COUNTDOWN_PROBLEMS]
    with pytest.raises(ValueError, match="config.verifier: reward 'math' needs 'answer'"):
        evaluate_mode.Evaluator(config, None, None, char_tokenizer, examples, ["x"] * len(examples), "")


# ---------------------------------------------------------------------------------------------
# The mode end to end on a random tiny model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen3 with the character tokenizer, saved as a Hugging Face directory."""
    directory = tmp_path_factory.mktemp("eval_model")
    config = model_lib.get_model_config("tiny-qwen3", vocab_size=vocab_size())
    hf.save_pretrained(config, model_lib.init_params(config, jax.random.key(0)), str(directory))
    write_char_tokenizer(str(directory))
    return directory


@pytest.fixture(scope="module")
def report(model_dir, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eval_workdir")
    config = _eval_config(**{"model.checkpoint": str(model_dir), "max_new_tokens": 8,
                             "budget_forcing.budgets": ((2, 6),)})
    config_lib.validate(config, known_modes=["evaluate"], num_devices=jax.device_count())
    return evaluate_mode.run(config, str(workdir)), workdir


def test_run_writes_the_report_and_the_plot(report):
    result, workdir = report
    on_disk = json.loads((workdir / "report.json").read_text())
    assert on_disk["methods"] == json.loads(json.dumps(result["methods"]))
    assert (on_disk["task"], on_disk["num_questions"]) == ("countdown", 8)
    assert set(on_disk["methods"]) == {"greedy", "mean_pass@1", *evaluate_mode.CURVES, "beam_search", "budget_forcing"}
    assert (workdir / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    for name, method in on_disk["methods"].items():
        assert method["config"] and method["rows"], name
        for row in method["rows"]:
            assert 0 <= row["accuracy"] <= 1 and row["samples_per_question"] >= 1 and row["tokens_per_question"] > 0


def test_run_rows_are_consistent(report):
    methods = report[0]["methods"]
    curves = {name: methods[name]["rows"] for name in evaluate_mode.CURVES}
    assert [row["n"] for row in curves["pass@k"]] == [1, 2, 4]
    first = {name: rows[0]["accuracy"] for name, rows in curves.items()}
    assert set(first.values()) == {methods["mean_pass@1"]["rows"][0]["accuracy"]}  # one sample: every method alike
    # The verifier is the accuracy reward itself (an oracle), so best-of-N is pass@N.
    accuracy = {name: [row["accuracy"] for row in rows] for name, rows in curves.items()}
    assert accuracy["best_of_n_verifier"] == pytest.approx(accuracy["pass@k"])
    tokens = [row["tokens_per_question"] for row in curves["maj@k"]]
    assert tokens == pytest.approx([n * tokens[0] for n in (1, 2, 4)]) and tokens[0] <= 8
    [beam] = methods["beam_search"]["rows"]
    assert beam["width"] == 2 and beam["tokens_per_question"] <= 2 * 8
    [forced] = methods["budget_forcing"]["rows"]
    assert (forced["min_thinking_tokens"], forced["max_thinking_tokens"]) == (2, 6)
    assert 0 <= forced["waits"] and forced["thinking_tokens"] <= 6
    # The thinking, "</think>", "\n" "<answer>" and up to 8 answer tokens.
    assert forced["tokens_per_question"] <= 6 + 3 + 8


def test_a_stopped_evaluation_continues_to_the_report_of_an_uninterrupted_one(model_dir, tmp_path, monkeypatch):
    config = _eval_config(**{"model.checkpoint": str(model_dir), "max_new_tokens": 8, "prompt_batch_size": 4,
                             "methods": ("greedy", "sampling", "beam_search")})
    whole = evaluate_mode.run(config, str(tmp_path / "whole"))
    calls, real_generate = [], sampler.generate

    def generate_then_sigterm(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the first batch of the sampling method (greedy took two)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sampler, "generate", generate_then_sigterm)
    with pytest.raises(checkpoint.StoppedBySignal, match=r"evaluate \(sampling x4\) stopped by SIGTERM after 4 of 8 "
                                                         r"problems; .*sampling.jsonl holds them"):
        evaluate_mode.run(config, str(tmp_path / "stopped"))
    greedy_samples = (tmp_path / "stopped" / "samples" / "greedy.jsonl").read_bytes()
    calls.clear()
    resumed = evaluate_mode.run(config, str(tmp_path / "stopped"))
    assert len(calls) == 1  # the second sampling batch; greedy's samples are read back
    assert (tmp_path / "stopped" / "samples" / "greedy.jsonl").read_bytes() == greedy_samples
    assert resumed["methods"] == whole["methods"]


def test_command_line_knows_the_mode_and_names_a_bad_key(model_dir, tmp_path):
    """`python -m r1jax.main --config configs/eval_countdown.py:smoke ...` validates as `mode: evaluate`."""
    command = [sys.executable, "-m", "r1jax.main", "--config", str(REPO / "configs/eval_countdown.py:smoke"),
               f"--config.model.checkpoint={model_dir}", "--config.methods=('greedy', 'self_consistency')",
               f"--workdir={tmp_path}"]
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    bad = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "r1jax: config.methods: " in bad.stderr, bad.stderr


# ---------------------------------------------------------------------------------------------
# Bad configs


@pytest.mark.parametrize("overrides, key", [
    ({"methods": ("greedy", "self_consistency")}, "config.methods"),
    ({"methods": ()}, "config.methods"),
    ({"methods": ("greedy", "greedy")}, "config.methods"),
    ({"data.name": "gsm8k_platinum"}, "config.data.name"),
    ({"data.template": "chat_ml"}, "config.data.template"),
    ({"data.num_examples": -1}, "config.data.num_examples"),
    ({"data.countdown.min_count": 1}, "config.data.countdown"),
    ({"sampling.temperature": 0.0}, "config.sampling.temperature"),
    ({"sampling.num_samples": 0}, "config.sampling.num_samples"),
    ({"verifier": [dict(name="no_such_reward")]}, r"config.verifier\[0\]"),
    ({"beam_search.widths": (2, 0)}, "config.beam_search.widths"),
    ({"budget_forcing.budgets": ((8, 4),)}, "config.budget_forcing.budgets"),
    ({"budget_forcing.budgets": (0, 16)}, "config.budget_forcing.budgets"),  # one pair, not a tuple of pairs
    ({"budget_forcing.max_answer_tokens": 0}, "config.budget_forcing.max_answer_tokens"),
    ({"stop_strings": ("",)}, "config.stop_strings"),
])
def test_bad_keys_are_named(overrides, key):
    config = _eval_config()
    with pytest.raises(config_lib.ConfigError, match=key) as error:
        config.update_from_flattened_dict(overrides)
        evaluate_mode.validate_config(config)
    assert "\n" not in str(error.value)


def test_missing_benchmark_file_says_which_file_goes_where(tmp_path):
    config = _eval_config(**{"data.name": "math500", "data.template": "base", "data.manual_dir": str(tmp_path)})
    with pytest.raises(config_lib.ConfigError, match="config.data.manual_dir: ") as error:
        evaluate_mode.validate_config(config)
    message = str(error.value)
    assert str(tmp_path / "test.jsonl") in message and "MATH-500" in message and "\n" not in message
    config.data.manual_dir = ""
    with pytest.raises(config_lib.ConfigError, match="manual_dir is not set"):
        evaluate_mode.validate_config(config)


# ---------------------------------------------------------------------------------------------
# Benchmark builders on fixture files


def test_gsm8k_builder_keeps_the_file_order_and_the_final_answer(tmp_path):
    _write_jsonl(tmp_path / "manual" / "test.jsonl", GSM8K_LINES)
    source = benchmarks.load("gsm8k", manual_dir=str(tmp_path / "manual"), data_dir=str(tmp_path / "tfds"))
    assert [source[i] for i in range(len(source))] == [
        {"question": GSM8K_LINES[0]["question"], "answer": "18"},
        {"question": GSM8K_LINES[1]["question"], "answer": "250"}]
    assert source.__getitems__([1, 0]) == [source[1], source[0]]  # the batched read decodes the same way


def test_gsm8k_gold_is_the_text_after_the_last_marker_and_an_empty_one_is_named(tmp_path):
    path = tmp_path / "test.jsonl"
    _write_jsonl(path, [{"question": "q", "answer": "the worked \\boxed{5}, then\n#### 6"}])
    assert benchmarks.read_benchmark(benchmarks.BENCHMARKS["gsm8k"], str(path))[0]["answer"] == "6"
    _write_jsonl(path, [GSM8K_LINES[0], {"question": "q", "answer": "no final answer\n####"}])
    with pytest.raises(ValueError, match="example 2's answer has no '#### <final answer>'"):
        benchmarks.read_benchmark(benchmarks.BENCHMARKS["gsm8k"], str(path))


def test_benchmark_is_rebuilt_when_its_file_changes(tmp_path, capsys):
    path = _write_jsonl(tmp_path / "manual" / "test.jsonl", GSM8K_LINES)
    load = functools.partial(benchmarks.load, "gsm8k", manual_dir=str(path.parent), data_dir=str(tmp_path / "tfds"))
    assert load()[1]["answer"] == "250"
    assert "rebuilding" not in capsys.readouterr().out
    assert len(load()) == 2 and "rebuilding" not in capsys.readouterr().out  # same file: the prepared data
    edited = [GSM8K_LINES[0], {**GSM8K_LINES[1], "answer": "... #### 251"}, GSM8K_LINES[0]]
    _write_jsonl(path, edited)
    source = load()
    assert "rebuilding" in capsys.readouterr().out
    assert [source[i]["answer"] for i in range(len(source))] == ["18", "251", "18"]


@pytest.mark.parametrize("name, file_name, records, expected", [
    ("math500", "test.jsonl",
     [{"problem": "Compute $\\frac{1}{2}+\\frac{1}{2}$.", "solution": "... \\boxed{1}", "answer": "1", "level": 1},
      {"problem": "Simplify $\\sqrt{8}$.", "answer": "2\\sqrt{2}", "subject": "Algebra"}],
     [("Compute $\\frac{1}{2}+\\frac{1}{2}$.", "1"), ("Simplify $\\sqrt{8}$.", "2\\sqrt{2}")]),
    ("aime2024", "aime_2024.jsonl",  # Maxwell-Jia/AIME_2024's columns; integer answers
     [{"ID": "2024-I-1", "Problem": "Find $m+n$.", "Answer": 204},
      {"ID": "2024-I-2", "Problem": "Find $x$.", "Answer": 25}],
     [("Find $m+n$.", "204"), ("Find $x$.", "25")]),
    ("aime2024", "aime_2024.jsonl",  # HuggingFaceH4/aime_2024's columns
     [{"id": 60, "problem": "Find $m+n$.", "answer": "204", "year": 2024}], [("Find $m+n$.", "204")]),
])
def test_math_benchmark_builders(name, file_name, records, expected, tmp_path):
    _write_jsonl(tmp_path / "manual" / file_name, records)
    source = benchmarks.load(name, manual_dir=str(tmp_path / "manual"), data_dir=str(tmp_path / "tfds"))
    assert [(source[i]["question"], source[i]["answer"]) for i in range(len(source))] == expected


@pytest.mark.parametrize("name, lines, message", [
    ("gsm8k", ['{"question": "Q", "answer": "42"}'], "example 1's answer has no '#### <final answer>'"),
    ("math500", ['{"problem": "Q", "answer": "1"}', "{not json"], "test.jsonl:2: not a JSON line"),
    ("aime2024", ['{"Question": "Q", "Answer": 1}'],
     "no question text under 'Problem' (the line has fields ['Answer', 'Question']); aime2024 reads the question "
     "from Problem or problem and the answer from Answer or answer: is the file Maxwell-Jia/AIME_2024"),
    ("math500", ['{"problem": "Q", "answer": "caf\u00e9"}'], "test.jsonl:1: not UTF-8"),  # written as Latin-1
])
def test_bad_benchmark_files_name_the_line(name, lines, message, tmp_path):
    path = tmp_path / "manual" / benchmarks.BENCHMARKS[name].file_name
    path.parent.mkdir()
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(ValueError, match=re.escape(message)):
        benchmarks.load(name, manual_dir=str(path.parent), data_dir=str(tmp_path / "tfds"))


def test_missing_file_error_of_the_builder(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path / 'aime_2024.jsonl'} does not exist; download aime2024's"):
        benchmarks.load("aime2024", manual_dir=str(tmp_path), data_dir=str(tmp_path / "tfds"))
