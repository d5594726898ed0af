"""The math task: JSONL problems, their prompts, the config keys, and errors that name the file and line."""

import json

import pytest
from chatml import ChatML

from r1jax.config import ConfigError, grpo_config, validate
from r1jax.data import prompts, tasks
from r1jax.rewards import RewardSet

TRAIN = [
    {"problem": "What is 2 + 3?", "answer": "5"},
    {"problem": "Halve 1.", "solution": "First \\boxed{2}, no: half of 1 is \\boxed{\\frac{1}{2}}."},
    {"problem": "How many legs do 3 spiders have?", "answer": 24, "level": "Level 1"},
    {"problem": "Solve x + 1 = 3.", "answer": "x = 2"},
    {"problem": "What is 10 / 4?", "answer": "", "solution": "It is \\boxed{2.5}."},
]
TEST = [{"problem": "What is 7 * 6?", "answer": "42"}, {"problem": "What is 1 - 1?", "answer": "0"}]


def _write_jsonl(path, records, *, extra_lines=()):
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "".join(extra_lines))
    return str(path)


class _ByteTokenizer(ChatML):
    """Enough of a tokenizer for tasks: bytes as ids, and the ChatML template."""

    def encode(self, text):
        return list(text.encode())

    encode_prompt = encode


class _ByteTokenizerWithBos(_ByteTokenizer):
    def encode_prompt(self, text):
        return [0, *self.encode(text)]


def _math_data_config(tmp_path, **changes):
    config = grpo_config().data
    config.update(name="math", template="base")
    config.math.update(train_file=_write_jsonl(tmp_path / "train.jsonl", TRAIN, extra_lines=["\n"]),
                       test_file=_write_jsonl(tmp_path / "test.jsonl", TEST))
    config.update_from_flattened_dict(changes)
    return config


def test_math_examples_carry_the_gold_answer_the_math_reward_scores(tmp_path):
    task = tasks.load_task(_math_data_config(tmp_path), _ByteTokenizer(), str(tmp_path))
    assert len(task.train) == len(TRAIN)  # the trailing blank line is skipped
    assert [e["answer"] for e in task.train] == ["5", "\\frac{1}{2}", "24", "x = 2", "2.5"]
    assert all(set(e) == {"question", "answer"} for e in task.train)  # no stray fields reach the rewards
    assert task.test_examples(10) == [{"question": r["problem"], "answer": r["answer"]} for r in TEST]

    halve = task.train[1]
    with RewardSet([dict(name="math")]) as rewards:
        scores = rewards.score_batch(["<think>1/2</think> <answer> 0.5 </answer>", "<answer>2</answer>"],
                                     [halve, halve])
    assert scores.total == [1.0, 0.0]


def test_prompts_start_with_the_tokenizers_bos(tmp_path):
    task = tasks.load_task(_math_data_config(tmp_path), _ByteTokenizerWithBos(), str(tmp_path))
    assert task.prompt_tokens(task.train[0]) == [0, *prompts.math_base_prompt(TRAIN[0]["problem"]).encode()]


def test_numeric_golds_are_written_positionally_and_nan_is_refused(tmp_path):
    train = tmp_path / "floats.jsonl"
    _write_jsonl(train, [{"problem": "p", "answer": 1e-07}, {"problem": "q", "answer": 2.5e16}])
    examples = tasks.read_math_jsonl(str(train))
    assert [e["answer"] for e in examples] == ["0.0000001", "25000000000000000"]
    train.write_text('{"problem": "p", "answer": 1}\n{"problem": "q", "answer": NaN}\n')
    with pytest.raises(ValueError, match=f"{train}:2: the answer under 'answer' is nan, not a number"):
        tasks.read_math_jsonl(str(train))


def test_math_train_stream_resumes_where_it_stopped(tmp_path):
    task = tasks.load_task(_math_data_config(tmp_path), _ByteTokenizer(), str(tmp_path))
    stream = task.train_examples(seed=3, start_index=0)
    first = [next(stream) for _ in range(2 * len(TRAIN) + 1)]  # into the third epoch
    assert sorted(e["question"] for _, e in first[:len(TRAIN)]) == sorted(r["problem"] for r in TRAIN)
    resumed = task.train_examples(seed=3, start_index=first[6][0] + 1)
    assert [next(resumed) for _ in range(len(first) - 7)] == first[7:]


def test_math_prompts_render_both_templates(tmp_path):
    question = TRAIN[0]["problem"]
    task = tasks.load_task(_math_data_config(tmp_path), _ByteTokenizer(), str(tmp_path))
    base = bytes(task.prompt_tokens(task.train[0])).decode()
    assert base == prompts.math_base_prompt(question)
    assert base.startswith("A conversation between User and Assistant.") and "<answer> </answer>" in base
    assert base.endswith(f"\nUser: {question}\nAssistant: <think>")

    chat_task = tasks.load_task(_math_data_config(tmp_path, template="chat"), _ByteTokenizer(), str(tmp_path))
    chat = bytes(chat_task.prompt_tokens(chat_task.train[0])).decode()
    assert chat.startswith("<|im_start|>user\n" + question) and "\\boxed{}" in chat  # no system turn (R1's advice)
    assert chat.endswith("<|im_end|>\n<|im_start|>assistant\n") and chat.count("<|im_start|>assistant") == 1
    with pytest.raises(ValueError, match="unknown template"):
        prompts.math_prompt(question, template="compact")


@pytest.mark.parametrize("lines,line_number,words", [
    (['{"problem": "1 + 1?", "answer": "2"}', '{"problem": "2 + 2?", "answer": '], 2, "not a JSON line"),
    (['{"problem": "1 + 1?", "answer": "2"}', '["1 + 1?", "2"]'], 2, "expected a JSON object"),
    (['{"problem": "1 + 1?", "answer": "2"}', "", '{"question": "2 + 2?", "answer": "4"}'], 3, "'problem'"),
    (['{"problem": "1 + 1?", "solution": "Two, of course."}'], 1, "\\boxed"),
])
def test_bad_math_lines_raise_naming_file_and_line(tmp_path, lines, line_number, words):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as error:
        tasks.read_math_jsonl(str(path))
    assert f"{path}:{line_number}:" in str(error.value) and words in str(error.value)


def test_missing_or_empty_math_files_raise_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="no-such.jsonl"):
        tasks.read_math_jsonl(str(tmp_path / "no-such.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl: no problems"):
        tasks.read_math_jsonl(str(tmp_path / "empty.jsonl"))


def _math_run_config(tmp_path, **changes):
    config = grpo_config()
    config.tokenizer = "char"
    config.data = _math_data_config(tmp_path)
    config.rewards = [dict(name="math", weight=1.0)]
    config.accuracy_reward = "math"
    config.update_from_flattened_dict(changes)
    return config


def test_a_math_run_config_validates(tmp_path):
    validate(_math_run_config(tmp_path), known_modes=["grpo"], num_devices=8)


@pytest.mark.parametrize("changes,key", [
    ({"data.math.train_file": "/no/such/train.jsonl"}, "config.data.math.train_file"),
    ({"data.math.test_file": ""}, "config.data.math.test_file"),
    ({"data.math.question_key": ""}, "config.data.math.question_key"),
    ({"data.math.answer_key": ""}, "config.data.math.answer_key"),
    ({"data.template": "compact"}, "config.data.template"),
])
def test_invalid_math_configs_name_the_key(tmp_path, changes, key):
    with pytest.raises(ConfigError) as error:
        validate(_math_run_config(tmp_path, **changes), known_modes=["grpo"], num_devices=8)
    assert str(error.value).startswith(key + ":") and "\n" not in str(error.value)
