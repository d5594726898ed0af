"""The generate mode end to end: a random tiny model saved as a HF directory with a tokenizer trained here."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from bpe import train_byte_level_bpe
from interrupted import signal_once_exists

from r1jax import checkpoint
from r1jax import config as config_lib
from r1jax import generate, hf, sampler
from r1jax import model as model_lib
from r1jax.tokenizer import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
CORPUS = ["The answer is 42.", "Think step by step, then answer.", "<think>2 + 2 = 4</think> 4"] * 30
PROMPTS = ["What is 2 + 2?", "Think", "The quick brown fox jumps over the lazy dog and then"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen3 whose vocabulary is exactly a byte-level BPE trained here; EOS `<|im_end|>`."""
    directory = tmp_path_factory.mktemp("generate_model")
    bpe = train_byte_level_bpe(CORPUS, vocab_size=300, special_tokens=["<|endoftext|>", "<|im_end|>"])
    bpe.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None}))
    config = model_lib.get_model_config("tiny-qwen3", vocab_size=bpe.get_vocab_size())
    params = jax.tree.map(lambda x: 10 * x if x.ndim >= 2 else x, model_lib.init_params(config, jax.random.key(0)))
    hf.save_pretrained(config, params, str(directory))
    return directory


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def _config(model_dir, prompts_file, variant=None, **overrides):
    spec = importlib.util.spec_from_file_location("generate_config", REPO / "configs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(variant)
    config.model.checkpoint = str(model_dir)
    config.prompts_file = str(prompts_file)
    config.max_new_tokens = 16
    config.prompt_batch_size = 2
    config.update(overrides)
    return config


def test_generate_mode_writes_one_line_per_sample(model_dir, prompts_file, tmp_path):
    config = _config(model_dir, prompts_file, num_samples=2, temperature=0.9, top_p=0.95)
    config_lib.validate(config, known_modes=["generate"], num_devices=jax.device_count())
    path = generate.run(config, str(tmp_path))
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()]
    assert [(r["prompt_index"], r["sample"]) for r in lines] == [(i, s) for i in range(3) for s in range(2)]
    for record in lines:
        assert record["prompt"] == PROMPTS[record["prompt_index"]]
        assert 1 <= record["num_tokens"] <= 16 and isinstance(record["completion"], str)
        assert record["finished"] or record["num_tokens"] == 16  # unfinished means truncated
        assert record["mean_logprob"] < 0


def test_greedy_output_is_the_sampler_output_decoded(model_dir, prompts_file, tmp_path):
    config = _config(model_dir, prompts_file, "greedy")
    lines = [json.loads(line) for line in Path(generate.run(config, str(tmp_path))).read_text().splitlines()]
    model_config, params = hf.load_pretrained(str(model_dir))
    tokenizer = load_tokenizer(model_dir)
    expected = sampler.generate(model_config, params, [tokenizer.encode(p) for p in PROMPTS], max_new_tokens=16,
                                temperature=0.0, eos_ids=tokenizer.eos_ids)
    for record, tokens, length, finished in zip(lines, expected.tokens, expected.lengths, expected.finished):
        # Special tokens stay (tags may be special tokens); only the EOS that ended the sample goes.
        ended_by_eos = length and tokens[length - 1] in tokenizer.eos_ids
        assert record["completion"] == tokenizer.decode(tokens[:length - ended_by_eos])
        assert (record["num_tokens"], record["finished"]) == (length, finished)


@pytest.mark.parametrize("overrides,key", [
    (dict(prompts_file="/nonexistent.jsonl"), "config.prompts_file"),
    (dict(max_new_tokens=0), "config.max_new_tokens"),
    (dict(top_p=1.5), "config.top_p"),
    (dict(stop_strings=("",)), "config.stop_strings"),
    (dict(output_file=""), "config.output_file: '' names no file"),
    (dict(output_file="sub/"), "config.output_file: 'sub/' names no file"),
])
def test_bad_keys_are_named(model_dir, prompts_file, overrides, key):
    with pytest.raises(config_lib.ConfigError, match=key):
        generate.validate_config(_config(model_dir, overrides.pop("prompts_file", prompts_file), **overrides))


@pytest.mark.parametrize("name,text,error", [
    ("p.jsonl", '{"prompt": "a"}\n\n{"prompt": "b"\n', r"p.jsonl:3: not a JSON line"),
    ("p.jsonl", '{"prompt": "a"}\n{"question": "b"}\n', r"p.jsonl:2: expected an object with a string 'prompt'"),
    ("p.jsonl", '\n\n', r"p.jsonl: no prompts in the file"),
    ("p.txt", '  \n', r"p.txt: no prompts in the file"),
    ("p.json", '[{"prompt": "a"}, {"prompt": "b"}]', r"p.json:1: expected a JSON object per line, got a list"),
    ("p.txt", b"first\ncaf\xe9\n", r"p.txt:2: not UTF-8"),
])
def test_bad_prompt_files_name_the_file_and_line(tmp_path, name, text, error):
    (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match=error):
        generate.read_prompts(str(tmp_path / name))


def test_prompt_files_give_their_prompts_in_order(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"prompt": "2 + 2 ="}\n\n{"prompt": "ok\\nnext", "id": 7}\n')
    (tmp_path / "p.txt").write_text("first line\n\n  second\n")
    assert generate.read_prompts(str(tmp_path / "p.jsonl")) == ["2 + 2 =", "ok\nnext"]
    assert generate.read_prompts(str(tmp_path / "p.txt")) == ["first line", "  second"]


def test_a_prompt_too_long_for_the_cache_is_named_before_anything_is_written(model_dir, prompts_file, tmp_path):
    config = _config(model_dir, prompts_file, max_prompt_len=10)  # the third prompt has more tokens
    with pytest.raises(ValueError, match=rf"{prompts_file}: prompt 2 has \d+ tokens, more than max_prompt_len=10"):
        generate.run(config, str(tmp_path))
    assert not (tmp_path / config.output_file).exists() or not (tmp_path / config.output_file).read_text()


def test_output_file_in_a_new_folder(model_dir, prompts_file, tmp_path):
    config = _config(model_dir, prompts_file, "greedy", max_new_tokens=2, output_file="sub/out.jsonl")
    assert generate.run(config, str(tmp_path)) == str(tmp_path / "sub" / "out.jsonl")
    assert len((tmp_path / "sub" / "out.jsonl").read_text().splitlines()) == len(PROMPTS)


def test_a_stopped_run_continues_to_the_output_of_an_uninterrupted_one(model_dir, tmp_path, monkeypatch):
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("\n".join(f"{p} {i}" for i, p in enumerate(PROMPTS * 3)) + "\n")  # 5 batches of 2
    config = _config(model_dir, prompts_file, num_samples=2, top_p=0.9)
    whole = Path(generate.run(config, str(tmp_path / "whole"))).read_bytes()

    calls, real_generate = [], sampler.generate

    def generate_then_sigterm(*args, **kwargs):
        calls.append(1)
        result = real_generate(*args, **kwargs)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends before it kills the job
        return result

    monkeypatch.setattr(sampler, "generate", generate_then_sigterm)
    with pytest.raises(checkpoint.StoppedBySignal, match=r"generate stopped by SIGTERM after 4 of 9 prompts"):
        generate.run(config, str(tmp_path / "stopped"))
    assert len(calls) == 2
    output = tmp_path / "stopped" / "completions.jsonl"
    assert len(output.read_text().splitlines()) == 4 * 2
    output.write_bytes(output.read_bytes() + b'{"prompt_index": 4, "sam')  # killed while writing batch 3
    assert Path(generate.run(config, str(tmp_path / "stopped"))).read_bytes() == whole
    assert len(calls) == 2 + 3  # the three batches left

    with pytest.raises(ValueError, match=r"holds part of a run of other settings \(config.temperature: 1.0 -> 0.5\)"):
        generate.run(_config(model_dir, prompts_file, num_samples=2, top_p=0.9, temperature=0.5),
                     str(tmp_path / "stopped"))


def test_command_line_stops_on_sigterm_with_exit_code_75_and_continues(model_dir, tmp_path):
    """`python -m r1jax.main --config configs/generate.py ...` on one device, stopped and run again."""
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text("".join(f"{i} + {i} =\n" for i in range(60)))
    command = [sys.executable, "-m", "r1jax.main", "--config", str(REPO / "configs/generate.py:greedy"),
               f"--config.model.checkpoint={model_dir}", f"--config.prompts_file={prompts_file}",
               "--config.max_new_tokens=4", "--config.prompt_batch_size=1", f"--workdir={tmp_path}"]
    env = {"PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    stopped = signal_once_exists(command, tmp_path / "completions.jsonl.progress", cwd=REPO, env=env,
                                 sig=signal.SIGTERM)
    assert stopped.returncode == checkpoint.STOPPED_EXIT_CODE, stopped.stdout[-2000:]
    assert "generate stopped by SIGTERM after" in stopped.stdout and "the same command continues it" in stopped.stdout
    done = len((tmp_path / "completions.jsonl").read_text().splitlines())
    assert 0 < done < 60
    subprocess.run(command, check=True, cwd=REPO, env=env, capture_output=True, timeout=300)
    lines = [json.loads(line) for line in (tmp_path / "completions.jsonl").read_text().splitlines()]
    assert [r["prompt_index"] for r in lines] == list(range(60))
