"""The command line: config validation before anything runs, the benchmark mode (shipped configs: test_configs.py)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import xla_flags

from r1jax import benchmark, checkpoint, hf, main
from r1jax import config as config_lib
from r1jax import model as model_lib
from r1jax.config import ConfigError, load_config_file, unknown_override, validate

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config_with(name, **changes):
    """A shipped config with `section__key=value` changes."""
    config = load_config_file(os.path.join(REPO, "configs", name))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = config
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def _benchmark_config(**changes):
    return _config_with("benchmark.py", **changes)


@pytest.mark.parametrize("changes,key", [
    (dict(mode="train"), "config.mode"),
    (dict(mesh__data=3), "config.mesh"),
    (dict(mesh__data=-1, mesh__fsdp=-1), "config.mesh"),
    (dict(mesh__rules="nope"), "config.mesh.rules"),
    (dict(mesh__data=2, mesh__dcn_data=2), "config.mesh"),  # 2 x 2 slices, 8 devices
    (dict(mesh__dcn_fsdp=0), "config.mesh"),
    (dict(batch_size=6, mesh__data=4, mesh__fsdp=2), "config.batch_size"),
    (dict(batch_size=0), "config.batch_size"),
    (dict(model__name="gpt-17"), "config.model.name"),
    (dict(model__checkpoint="/no/such/dir"), "config.model.checkpoint"),
    (dict(model__dtype="float8"), "config.model.dtype"),
    (dict(model__remat="sometimes"), "config.model.remat"),
    (dict(model__attention_impl="cudnn"), "config.model.attention_impl"),
])
def test_invalid_configs_name_the_key(changes, key):
    with pytest.raises(ConfigError) as error:
        validate(_benchmark_config(**changes), known_modes=main.MODES, num_devices=8)
    message = str(error.value)
    assert message.startswith(key + ":") and "\n" not in message


def test_checkpoint_without_config_json_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="has no config.json"):
        validate(_benchmark_config(model__checkpoint=str(tmp_path)), known_modes=main.MODES, num_devices=8)


def test_pretraining_and_a_checkpoint_exclude_each_other(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(hf.config_to_hf(model_lib.MODEL_CONFIGS["tiny"])))
    with pytest.raises(ConfigError, match="^config.pretrain.steps: .*model.checkpoint"):
        validate(_config_with("countdown_tiny.py", model__checkpoint=str(tmp_path), model__vocab_size=0),
                 known_modes=main.MODES, num_devices=8)


def _run_cli(*args, cwd):
    env = {**os.environ, "XLA_FLAGS": xla_flags(8), "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "r1jax.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_cli_rejects_a_bad_config_with_exit_code_2_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    result = _run_cli("--config", os.path.join(REPO, "configs", "benchmark.py"), "--workdir", str(workdir),
                      "--config.mesh.tensor=3", cwd=REPO)
    assert result.returncode == 2
    assert "config.mesh:" in result.stderr and "8 devices" in result.stderr
    assert not workdir.exists()


def test_a_pipeline_stage_with_a_bad_config_is_one_line_and_the_corrected_command_is_not_refused(tmp_path):
    workdir = tmp_path / "run"
    pipeline = os.path.join(REPO, "configs", "r1_pipeline_tiny.py")
    result = _run_cli("--config", pipeline, "--workdir", str(workdir), "--config.vars.base=/no/such/base", cwd=REPO)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("r1jax: ") and "/no/such/base" in result.stderr
    assert not (workdir / "config.json").exists()  # nothing ran: another value is a new run, not a changed one


def test_an_input_a_mode_refuses_is_one_line_and_leaves_the_workdir_as_it_was(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    args = ["--config", os.path.join(REPO, "configs", "sft_countdown_tiny.py"), "--workdir", str(tmp_path / "run"),
            f"--config.data.train_file={empty}", "--config.model.checkpoint=", "--config.tokenizer=char"]
    result = _run_cli(*args, cwd=REPO)
    assert (result.returncode, result.stderr) == (2, f"r1jax: {empty}: no records in the file\n")
    assert not (tmp_path / "run" / "config.json").exists()  # a new run that did not start
    (tmp_path / "run" / "config.json").write_text('{"steps": 7}')  # an earlier run's
    result = _run_cli(*args, "--allow_config_change", cwd=REPO)
    assert result.returncode == 2 and (tmp_path / "run" / "config.json").read_text() == '{"steps": 7}'


@pytest.mark.parametrize("name, text, message", [
    ("cfg.txt", "x = 1", "is not a Python file"),
    ("no_function.py", "x = 1", "defines no get_config(arg=None)"),
    ("returns_int.py", "def get_config(arg=None):\n    return 5", "get_config returned a int, not an ml_collections"),
    ("broken.py", "def get_config(arg=None)\n    return 5", "broken.py:1: expected ':'"),
])
def test_a_file_that_is_not_a_config_is_one_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    problem = config_lib.config_file_problem(str(tmp_path / name))
    assert problem.startswith(f"--config {tmp_path / name}: ") and message in problem and "\n" not in problem


def test_only_errors_r1jax_raises_about_its_inputs_are_shown_without_a_traceback(tmp_path):
    from r1jax.data import records

    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError) as refused:
        records.read_records(str(tmp_path / "empty.jsonl"))
    with pytest.raises(ValueError) as in_a_library:
        np.zeros(2).reshape(3)
    with pytest.raises(ValueError) as in_a_call:
        int("x")
    assert main._refused_input(refused.value)
    assert not main._refused_input(in_a_library.value) and not main._refused_input(in_a_call.value)


@pytest.mark.parametrize("dotted,expected", [
    ("grpo.beta", None),
    ("model.checkpoint", None),
    ("checkpoint", "--config.checkpoint: the config has no field 'checkpoint'; did you mean --config.model.checkpoint?"),
    ("grpo.bta", "--config.grpo.bta: config.grpo has no field 'bta'; did you mean --config.grpo.beta?"),
    ("model.checkpoint.path", "--config.model.checkpoint.path: config.model.checkpoint is a str, not a section; "
                              "set --config.model.checkpoint=..."),
    ("zzz", "--config.zzz: the config has no field 'zzz'"),
])
def test_an_override_naming_no_field_is_explained(dotted, expected):
    assert unknown_override(load_config_file(os.path.join(REPO, "configs", "countdown_tiny.py")), dotted) == expected


@pytest.mark.parametrize("override,message", [
    ("--config.checkpoint=/some/model", "--config.checkpoint: the config has no field 'checkpoint'; did you mean "
                                        "--config.model.checkpoint?"),
    # An element of a tuple: ml_collections cannot even parse the path.
    ("--config.stop_strings.0=x", "--config.stop_strings.0: config.stop_strings is a tuple, not a section; "
                                  "set --config.stop_strings=..."),
])
def test_cli_rejects_an_unknown_override_in_one_line_with_exit_code_2(tmp_path, override, message):
    result = _run_cli("--config", os.path.join(REPO, "configs", "generate.py") + ":greedy", "--workdir",
                      str(tmp_path / "run"), override, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip() == f"r1jax: {message}"
    assert not (tmp_path / "run").exists()


def test_the_rewards_can_be_replaced_on_the_command_line(tmp_path):
    """The list is a tuple in the defaults, which config_flags parses from a Python literal."""
    result = _run_cli("--config", os.path.join(REPO, "configs", "countdown_tiny.py"), "--workdir", str(tmp_path / "run"),
                      "--config.rewards=({'name': 'countdown', 'weight': 1.0}, {'name': 'format_tag', 'weight': 0.1})",
                      cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("r1jax: config.rewards[1]: unknown reward 'format_tag'")
    assert not (tmp_path / "run").exists()


def test_cli_rejects_a_missing_config_file_and_an_unknown_variant_in_one_line(tmp_path):
    missing = _run_cli("--config", "configs/no_such.py", "--workdir", str(tmp_path / "run"), cwd=REPO)
    assert (missing.returncode, missing.stderr.strip()) == (2, "r1jax: --config: 'configs/no_such.py' is not a file")
    variant = _run_cli("--config", "configs/countdown_tiny.py:smok", "--workdir", str(tmp_path / "run"), cwd=REPO)
    assert variant.returncode == 2 and variant.stderr.strip().splitlines() == [
        "r1jax: --config configs/countdown_tiny.py:smok: unknown variant 'smok'; the only variant is 'smoke'"]
    assert not (tmp_path / "run").exists()


def test_the_default_workdir_names_the_config_and_its_variant():
    assert main.default_workdir("configs/countdown_tiny.py") == os.path.join("workdir", "countdown_tiny")
    assert main.default_workdir("/x/sft_journey_tiny.py:journey,smoke") == os.path.join(
        "workdir", "sft_journey_tiny_journey_smoke")


def test_a_workdir_holding_a_run_of_another_config_is_refused(tmp_path):
    workdir = tmp_path / "run"
    first = json.dumps({"steps": 120, "rollout": {"group_size": 8, "temperature": 1.0}, "seed": 0})
    other = json.dumps({"steps": 2, "rollout": {"group_size": 8, "temperature": 0.7}, "seed": 0, "new": 1})

    def prepare(config_json, allow=False):
        return checkpoint.prepare_workdir(str(workdir), config_json, write=True, allow_config_change=allow)

    assert prepare(first) is None and prepare(first) is None  # a new run, then its resumption
    assert prepare(other) == (f"{workdir} holds a run of another config (new: '(none)' -> 1; "
                              "rollout.temperature: 1.0 -> 0.7; steps: 120 -> 2); use another workdir, or "
                              "--allow_config_change to continue that run with this config")
    assert json.loads((workdir / "config.json").read_text())["steps"] == 120  # left as it was
    assert prepare(other, allow=True) is None and json.loads((workdir / "config.json").read_text())["steps"] == 2
    (tmp_path / "a_file").write_text("")
    assert checkpoint.prepare_workdir(str(tmp_path / "a_file"), first, write=True,
                                      allow_config_change=False).startswith(f"{tmp_path / 'a_file'}: [Errno 17]")


def test_cli_runs_the_benchmark_mode_with_variant_and_overrides(tmp_path):
    workdir = tmp_path / "run"
    result = _run_cli("--config", os.path.join(REPO, "configs", "benchmark.py") + ":tiny-llama", "--workdir",
                      str(workdir), "--config.steps=2", "--config.seq_len=32", "--config.mesh.fsdp=2", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tokens/s" in result.stdout and "'fsdp': 2" in result.stdout
    saved = json.loads((workdir / "config.json").read_text())
    assert saved["model"]["name"] == "tiny-llama" and saved["steps"] == 2
    metrics = json.loads((workdir / "metrics.jsonl").read_text().splitlines()[-1])
    assert metrics["tokens_per_s"] > 0


def test_benchmark_reads_a_hugging_face_checkpoint(tmp_path):
    model_config = model_lib.get_model_config("tiny-qwen3")
    hf.save_pretrained(model_config, model_lib.init_params(model_config, jax.random.key(0)), str(tmp_path / "hf"))
    config = _benchmark_config(model__checkpoint=str(tmp_path / "hf"), steps=1, seq_len=16, mesh__tensor=2)
    validate(config, known_modes=main.MODES, num_devices=8)
    metrics = benchmark.run(config, str(tmp_path))
    assert metrics["tokens_per_s"] > 0 and metrics["mean_logsumexp"] > 0


def _countdown_config(**changes):
    return _config_with("countdown_tiny.py", **changes)


@pytest.mark.parametrize("changes,key", [
    (dict(rollout__group_size=1), "config.rollout.group_size"),
    (dict(rollout__max_new_tokens=0), "config.rollout.max_new_tokens"),
    (dict(rollout__temperature=-0.5), "config.rollout.temperature"),
    (dict(rollout__top_p=1.5), "config.rollout.top_p"),
    (dict(rollout__min_p=-0.1), "config.rollout.min_p"),
    (dict(rollout__top_k=-1), "config.rollout.top_k"),
    (dict(rollout__stop_strings=("",)), "config.rollout.stop_strings"),
    (dict(rollout__rules="no_such_rules"), "config.rollout.rules"),
    (dict(grpo__minibatch_size=48), "config.grpo.minibatch_size"),
    (dict(grpo__loss_type="ppo"), "config.grpo.loss_type"),
    (dict(grpo__importance_level="word"), "config.grpo.importance_level"),
    (dict(rewards=[dict(name="no_such_reward")]), "config.rewards[0]"),
    (dict(rewards=[dict(name="countdown", weigth=1.0)]), "config.rewards[0]"),
    (dict(rewards=["countdown"]), "config.rewards[0]"),
    (dict(accuracy_reward="math"), "config.accuracy_reward"),
    (dict(tokenizer=""), "config.tokenizer"),
    (dict(tokenizer="/no/such/tokenizer.json"), "config.tokenizer"),
    (dict(data__template="fancy"), "config.data.template"),
    (dict(model__vocab_size=-1), "config.model.vocab_size"),
    (dict(pretrain__steps=-1), "config.pretrain.steps"),
    (dict(pretrain__style="prose"), "config.pretrain.style"),
    (dict(pretrain__max_attempts=0), "config.pretrain.min_attempts"),
    (dict(pretrain__max_value=0), "config.pretrain.arithmetic_facts"),
    (dict(pretrain__batch_size=0), "config.pretrain.batch_size"),
    (dict(pretrain__checkpoint_every=0), "config.pretrain.checkpoint_every"),
])
def test_invalid_grpo_configs_name_the_key(changes, key):
    with pytest.raises(ConfigError) as error:
        validate(_countdown_config(**changes), known_modes=main.MODES, num_devices=8)
    assert str(error.value).startswith(key + ":") and "\n" not in str(error.value)
