"""`mode: distill` (rejection sampling: verification, keep policies, provenance, SFT-readable output) and logit
distillation's KL against numpy in float64."""

import json
import re
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from r1jax import checkpoint, distill, main, sampler, sft
from r1jax import model as model_lib
from r1jax.config import ConfigError, distill_config, validate
from r1jax.data import prompts
from r1jax.data.char_tokenizer import EOS, write_char_tokenizer
from r1jax.tokenizer import load_tokenizer

SMALL = model_lib.get_model_config("tiny", vocab_size=104, hidden_size=32, intermediate_size=64, num_layers=1,
                                   num_heads=2, num_kv_heads=1, head_dim=16)


def _log_softmax64(logits):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Logit distillation


def test_forward_kl_matches_numpy_float64():
    student = jax.random.normal(jax.random.key(0), (2, 3, 11)) * 3
    teacher = jax.random.normal(jax.random.key(1), (2, 3, 13)) * 3  # a larger (padded) embedding table
    log_p, log_q = _log_softmax64(np.asarray(teacher)[..., :11]), _log_softmax64(student)
    expected = (np.exp(log_p) * (log_p - log_q)).sum(-1)
    np.testing.assert_allclose(sft.forward_kl(student, teacher), expected, rtol=1e-5, atol=1e-6)
    assert np.all(expected > 0)
    np.testing.assert_allclose(sft.forward_kl(student, student), 0, atol=1e-6)


def test_the_kl_term_sums_the_teachers_kl_over_the_trained_tokens():
    params = model_lib.init_params(SMALL, jax.random.key(0))
    teacher = sft.Teacher(SMALL, model_lib.init_params(SMALL, jax.random.key(1)))
    sequences = [[[5, 6, 7], [8, 9]], [[10, 11], [12, 13, 14], [15], [16]]]
    rows = sft.pack(sequences, seq_len=16, pad_id=0)
    _, kl, count = jax.jit(lambda r: sft.completion_loss_terms(SMALL, params, r, teacher))(
        sft.PackedRows(*map(jnp.asarray, rows)))
    forward = jax.jit(model_lib.forward, static_argnums=0)
    expected = 0.0
    for parts in sequences:  # each sequence alone, in float64
        tokens = jnp.asarray([sum(parts, [])])
        log_q, log_p = (_log_softmax64(forward(SMALL, p, tokens))[0] for p in (params, teacher.params))
        trained = np.concatenate([np.full(len(part), i % 2 == 1) for i, part in enumerate(parts)])
        for t in np.flatnonzero(trained):  # logits at t - 1 predict token t
            expected += (np.exp(log_p[t - 1]) * (log_p[t - 1] - log_q[t - 1])).sum()
    assert count == 6
    np.testing.assert_allclose(kl, expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Verification and keep policies


def _candidate(prompt_id, sample, num_tokens):
    return distill.Candidate(prompt_id, sample, "p", "c", num_tokens, True, "t")


def test_keep_policies():
    candidates = [_candidate(0, 0, 9), _candidate(0, 1, 5), _candidate(0, 2, 5), _candidate(0, 3, 2),
                  _candidate(1, 0, 4), _candidate(2, 1, 7), _candidate(2, 0, 8)]
    correct = [False, True, True, False, False, True, True]
    assert distill.select(candidates, correct, "all") == [1, 2, 6, 5]  # by prompt, then sample index
    assert distill.select(candidates, correct, "first") == [1, 6]
    assert distill.select(candidates, correct, "shortest") == [1, 5]  # ties: the lower sample index
    with pytest.raises(ValueError, match="keep"):
        distill.select(candidates, correct, "best")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("countdown"))


def _config(data_dir, **changes):
    config = distill_config()
    config.model.update(name="tiny-qwen3", vocab_size=104)
    config.tokenizer = "char"
    config.data.update(template="compact", data_dir=data_dir)
    config.data.countdown.update(min_count=2, max_count=2, train_size=8, test_size=4)
    config.sampling.update(num_samples=3, max_new_tokens=8)
    config.update_from_flattened_dict(changes)
    return config


def _answer(example, equation=None):
    return f"{example['solution']}</think>\n<answer>{equation or example['solution']}</answer>"


def _examples(data_dir, tmp_path):
    from r1jax.data import tasks

    tokenizer = load_tokenizer(write_char_tokenizer(str(tmp_path / "tok")))
    task = tasks.load_task(_config(data_dir).data, tokenizer, str(tmp_path))
    return [task.train[i] for i in range(len(task.train))]


@pytest.mark.parametrize("keep,kept", [("all", [(0, 1), (0, 2), (2, 0)]), ("first", [(0, 1), (2, 0)]),
                                       ("shortest", [(0, 2), (2, 0)])])
def test_another_models_traces_are_verified_into_sft_data(data_dir, tmp_path, keep, kept):
    examples = _examples(data_dir, tmp_path)
    e0, e1, e2 = examples[:3]
    wrong_equation = f"{e0['nums'][0]} + {e0['nums'][0]}"
    traces = [
        dict(prompt_id=0, sample=0, completion=_answer(e0, wrong_equation), teacher="other-7b"),
        dict(prompt_id=0, sample=1, completion="let me think again. " + _answer(e0), teacher="other-7b"),
        dict(prompt_id=0, sample=2, completion=_answer(e0), teacher="other-7b"),
        dict(prompt_id=1, completion="no answer at all"),
        dict(prompt_id=2, prompt="Their own prompt:", completion=_answer(e2)),
    ]
    traces_file = tmp_path / "traces.jsonl"
    traces_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    summary = distill.run(_config(data_dir, traces_file=str(traces_file), keep=keep), str(tmp_path))
    assert (summary["samples"], summary["correct_samples"], summary["solved_prompts"]) == (5, 3, 2)
    records = [json.loads(line) for line in open(summary["output_file"])]
    assert [(r["prompt_id"], r["sample"]) for r in records] == kept
    by_key = {(t["prompt_id"], t.get("sample", 0)): t for t in traces}
    for record in records:
        trace = by_key[(record["prompt_id"], record["sample"])]
        example = examples[record["prompt_id"]]
        assert record["completion"] == trace["completion"] and record["reward"] == 1.0
        assert record["rewards"] == {"countdown": 1.0} and record["split"] == "train"
        assert record["teacher"] == trace.get("teacher", str(traces_file))
        assert record["example"] == dict(example)
        assert record["prompt"] == trace.get("prompt", prompts.compact_prompt(example["nums"], example["target"]))
    # mode: sft reads the output as it is: the prompt, then the completion and EOS trained.
    tokenizer = load_tokenizer(str(tmp_path / "tok"))
    sequences, _ = sft.load_sequences(summary["output_file"], tokenizer, seq_len=256)
    assert [[tokenizer.decode(part) for part in parts] for parts in sequences] == [
        [r["prompt"], r["completion"] + EOS] for r in records]


def test_min_scores_reject_correct_traces_other_rewards_find_unreadable(data_dir, tmp_path):
    """R1's rejection sampling keeps correct and readable reasoning: here, in English."""
    e0 = _examples(data_dir, tmp_path)[0]
    traces = [dict(prompt_id=0, sample=0, completion="我们把数字加起来. " + _answer(e0)),
              dict(prompt_id=0, sample=1, completion="Adding them works. " + _answer(e0))]
    traces_file = tmp_path / "traces.jsonl"
    traces_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    config = _config(data_dir, traces_file=str(traces_file), keep="all")
    config.rewards = (dict(name="countdown", weight=1.0),
                      dict(name="language_consistency", weight=0.0, kwargs=dict(prefill="<think>")))
    config.min_scores = {"language_consistency": 0.9}
    summary = distill.run(config, str(tmp_path))
    assert (summary["correct_samples"], summary["correct_below_min_scores"], summary["kept"]) == (2, 1, 1)
    [record] = [json.loads(line) for line in open(summary["output_file"])]
    assert record["sample"] == 1 and record["rewards"] == {"countdown": 1.0, "language_consistency": 1.0}


def test_journey_detours_are_distinct_finished_wrong_samples_of_the_prompt():
    rng = np.random.default_rng(0)
    for trial in range(50):
        candidates = [distill.Candidate(int(p), int(s), "p", f"text {rng.integers(3)}", 1, True, "t")
                      for p in range(4) for s in rng.permutation(6)]
        wrong = rng.random(len(candidates)) < 0.6
        ends = [i for i, c in enumerate(candidates) if not wrong[i] and c.sample == 0]
        min_wrong, max_wrong = sorted(rng.integers(0, 4, 2))
        paths = distill.detours(candidates, wrong, ends, min_wrong=min_wrong, max_wrong=max_wrong, seed=trial)
        assert paths == distill.detours(candidates, wrong, ends, min_wrong=min_wrong, max_wrong=max_wrong,
                                        seed=trial)
        for end, path in zip(ends, paths):
            pool = {candidates[i].completion for i, c in enumerate(candidates)
                    if wrong[i] and c.prompt_id == candidates[end].prompt_id}
            assert min(min_wrong, len(pool)) <= len(path) <= min(max_wrong, len(pool))
            assert all(wrong[i] and candidates[i].prompt_id == candidates[end].prompt_id for i in path)
            assert len({candidates[i].completion for i in path}) == len(path)
            assert [candidates[i].sample for i in path] == sorted(candidates[i].sample for i in path)


def test_journeys_stitch_wrong_samples_before_the_first_correct_one(data_dir, tmp_path):
    examples = _examples(data_dir, tmp_path)
    e0, e1 = examples[:2]
    misses = [f"{e0['nums'][0]} + {e0['nums'][0]}", f"{e0['nums'][1]} - {e0['nums'][1]}"]
    traces = [
        dict(prompt_id=0, sample=0, completion=f"{misses[0]}</think>\n<answer>{misses[0]}</answer>"),
        dict(prompt_id=0, sample=1, completion=f"{misses[1]}</think>\n<answer>{misses[1]}</answer>"),
        dict(prompt_id=0, sample=2, completion=_answer(e0)),
        dict(prompt_id=0, sample=3, completion="another right one: " + _answer(e0)),
        dict(prompt_id=1, sample=0, completion=_answer(e1)),  # solved at once: nothing to detour through
    ]
    traces_file = tmp_path / "traces.jsonl"
    traces_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    config = _config(data_dir, traces_file=str(traces_file), keep="journey", **{
        "journey.min_wrong": 2, "journey.max_wrong": 2, "journey.transition": " No. "})
    summary = distill.run(config, str(tmp_path))
    assert (summary["kept"], summary["journeys_with_detours"], summary["journeys_failing_verification"]) == (2, 1, 0)
    first, second = (json.loads(line) for line in open(summary["output_file"]))
    assert first["completion"] == f"{misses[0]} No. {misses[1]} No. " + _answer(e0)
    assert (first["sample"], first["detour_samples"], first["reward"]) == (2, [0, 1], 1.0)
    tokenizer = load_tokenizer(str(tmp_path / "tok"))
    assert first["num_tokens"] == len(tokenizer.encode(first["completion"]))
    assert (second["completion"], second["detour_samples"]) == (_answer(e1), [])
    # A stitched text the verifier no longer accepts is dropped. This verifier wants each tag once, and
    # the wrong sample (no </think>) goes in whole, with its answer block.
    traces[0]["completion"] = f"<answer>{misses[0]}</answer>"
    traces_file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    config.rewards = (dict(name="countdown", weight=1.0), dict(name="format_tags", weight=1.0,
                                                                kwargs=dict(prefill="<think>")))
    config.accuracy_reward = "format_tags"
    summary = distill.run(config, str(tmp_path / "format"))
    assert (summary["kept"], summary["journeys_with_detours"], summary["journeys_failing_verification"]) == (1, 0, 1)
    assert [json.loads(line)["prompt_id"] for line in open(summary["output_file"])] == [1]


@pytest.mark.parametrize("record,words", [
    ({"prompt_id": 8, "completion": "x"}, "'prompt_id' must be an index into the 8 prompts"),
    ({"prompt_id": "0", "completion": "x"}, "'prompt_id' must be an index"),
    ({"prompt_id": 0}, "'completion' must be a str"),
    ({"prompt_id": 0, "completion": "x", "sample": 1.5}, "'sample' must be a int"),
])
def test_bad_traces_raise_naming_file_and_line(data_dir, tmp_path, record, words):
    traces_file = tmp_path / "traces.jsonl"
    traces_file.write_text(json.dumps({"prompt_id": 0, "completion": "x"}) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(ValueError) as error:
        distill.run(_config(data_dir, traces_file=str(traces_file)), str(tmp_path))
    assert f"{traces_file}:2: " in str(error.value) and words in str(error.value)


def test_sampled_completions_are_indexed_verified_and_filtered(data_dir, tmp_path, monkeypatch):
    """The sampler's rows map to (prompt, sample); the EOS is dropped, and cut-off samples are not kept."""
    examples = _examples(data_dir, tmp_path)
    tokenizer = load_tokenizer(str(tmp_path / "tok"))
    eos = tokenizer.eos_id
    calls = []

    def fake_generate(config, params, prompt_tokens, *, num_samples, max_new_tokens, **kwargs):
        calls.append([tokenizer.decode(p) for p in prompt_tokens])
        first = sum(len(c) for c in calls[:-1])
        texts, finished = [], []
        for i in range(len(prompt_tokens)):
            example = examples[first + i]
            # sample 0 wrong, 1 right but cut off, 2 right; only problem 1 is solved by sample 0 too.
            texts += [_answer(example) if first + i == 1 else "<answer>0</answer>", _answer(example),
                      _answer(example)]
            finished += [True, False, True]
        rows = [tokenizer.encode(t) + [eos] * f for t, f in zip(texts, finished)]
        tokens = np.zeros((len(rows), max(map(len, rows))), np.int32)
        for r, row in enumerate(rows):
            tokens[r, :len(row)] = row
        lengths = np.array([len(row) for row in rows])
        return sampler.SampleResult(tokens, lengths, np.zeros(tokens.shape, np.float32), np.array(finished))

    monkeypatch.setattr(distill.sampler, "generate", fake_generate)
    summary = distill.run(_config(data_dir, num_prompts=5, prompt_batch_size=2, keep="first"), str(tmp_path))
    assert [len(c) for c in calls] == [2, 2, 1]
    assert calls[0][0] == prompts.compact_prompt(examples[0]["nums"], examples[0]["target"])
    assert (summary["samples"], summary["unfinished_samples"], summary["correct_samples"]) == (15, 5, 6)
    records = [json.loads(line) for line in open(summary["output_file"])]
    assert [(r["prompt_id"], r["sample"]) for r in records] == [(0, 2), (1, 0), (2, 2), (3, 2), (4, 2)]
    assert all(r["completion"] == _answer(examples[r["prompt_id"]]) for r in records)  # EOS dropped
    assert summary["teacher"] == records[0]["teacher"] == "tiny-qwen3 (random init, seed 0)"
    # Another verifier setting filters the same samples again: nothing is sampled.
    summary = distill.run(_config(data_dir, num_prompts=5, prompt_batch_size=2, keep="all"), str(tmp_path))
    assert [len(c) for c in calls] == [2, 2, 1]
    assert (summary["samples"], summary["kept"]) == (15, 6)


def test_a_stopped_distillation_continues_to_the_samples_of_an_uninterrupted_one(data_dir, tmp_path, monkeypatch):
    config = _config(data_dir, num_prompts=5, prompt_batch_size=2, keep="all")
    whole = distill.run(config, str(tmp_path / "whole"))
    calls, real_generate = [], sampler.generate

    def generate_then_sigterm(*args, **kwargs):
        calls.append(1)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the batch is sampled: it is finished and saved
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(sampler, "generate", generate_then_sigterm)
    with pytest.raises(checkpoint.StoppedBySignal, match="distill stopped by SIGTERM after 2 of 5 prompts"):
        distill.run(config, str(tmp_path / "stopped"))
    monkeypatch.setattr(sampler, "generate", real_generate)
    resumed = distill.run(config, str(tmp_path / "stopped"))
    for name in (distill.SAMPLES_FILE, config.output_file):
        assert (tmp_path / "stopped" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert {k: v for k, v in resumed.items() if k not in ("seconds", "output_file")} == \
        {k: v for k, v in whole.items() if k not in ("seconds", "output_file")}
    with pytest.raises(ValueError, match=r"holds part of a run of other settings \(sampling.temperature: 1.0 -> 0.7"):
        distill.run(_config(data_dir, num_prompts=5, prompt_batch_size=2, **{"sampling.temperature": 0.7}),
                    str(tmp_path / "stopped"))


def test_a_real_teacher_samples_k_completions_of_each_prompt(data_dir, tmp_path):
    summary = distill.run(_config(data_dir, num_prompts=2, split="test", keep="all"), str(tmp_path))
    assert (summary["prompts"], summary["samples"], summary["split"]) == (2, 6, "test")
    saved = json.loads((tmp_path / distill.SUMMARY_FILE).read_text())
    assert saved["samples"] == 6 and saved["kept"] == summary["kept"]
    assert len(open(summary["output_file"]).readlines()) == summary["kept"]


@pytest.mark.parametrize("changes,key", [
    ({"keep": "best"}, "config.keep"),
    ({"split": "validation"}, "config.split"),
    ({"traces_file": "/no/such.jsonl"}, "config.traces_file"),
    ({"sampling.num_samples": 0}, "config.sampling.num_samples"),
    ({"sampling.top_p": 0.0}, "config.sampling.top_p"),
    ({"accuracy_reward": "math"}, "config.accuracy_reward"),
    ({"data.template": "chatty"}, "config.data.template"),
    ({"output_file": ""}, "config.output_file"),
    ({"output_file": "sub/"}, "config.output_file"),
    ({"output_file": "/tmp/elsewhere.jsonl"}, "config.output_file"),
    ({"output_file": "../elsewhere.jsonl"}, "config.output_file"),
    ({"data.countdown.min_count": 5}, "config.data.countdown"),
    ({"journey.min_wrong": 3}, "config.journey.min_wrong"),
    ({"journey.transition": None}, "config.journey.transition"),
])
def test_invalid_distill_configs_name_the_key(data_dir, changes, key):
    with pytest.raises(ConfigError) as error:
        validate(_config(data_dir, **changes), known_modes=main.MODES, num_devices=8)
    assert str(error.value).startswith(key + ":") and "\n" not in str(error.value)


@pytest.mark.parametrize("min_scores, message", [
    ({"language": 0.9}, "config.min_scores.language: is not one of the reward keys ['countdown']"),
    ({"countdown": "high"}, "config.min_scores.countdown: 'high' must be a number"),
])
def test_min_scores_name_rewards_of_the_config(data_dir, min_scores, message):
    config = _config(data_dir)
    config.min_scores = min_scores
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(config, known_modes=main.MODES, num_devices=8)
