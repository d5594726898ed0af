"""Every shipped config and documented variant: parses, validates, and (GRPO, SFT) lowers its train step at full size.

Paths a user gives on the command line (a Hugging Face checkpoint, data files, a prompts file) are
placeholders in the config files. Each must fail validation with its own one-line error; the test then
puts a small stand-in in its place, so that every other check still runs and no real error hides
behind a placeholder. The checkpoint's stand-in is a directory holding only the config.json of the
architecture the config names in `model.name`: validation and the model's shape come from it as from
the real checkpoint, and no weights are needed.

The train step is lowered (traced to StableHLO, not compiled) with abstract inputs carrying the
shardings a run uses (`r1jax.aot`), on the 8 fake CPU devices. A machine preset with fewer devices uses
the first ones; a bigger one has its slices joined into one and is shrunk by halving its data, then fsdp,
then tensor axis until it fits, which keeps its kinds of parallelism and every batch divisibility. Shapes
stay those of the real model and batch.
"""

import ast
import glob
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import jax
import pytest

from r1jax import aot, distributed, hf, main, pipeline, runtime, sharding
from r1jax import config as config_lib
from r1jax import model as model_lib
from r1jax.config import ConfigError, load_config_file, validate
from r1jax.data import benchmarks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


def _documented_variants(path):
    """'' and every `configs/<file>.py:<variant>` that the docstring's commands use."""
    with open(path, encoding="utf-8") as f:
        docstring = ast.get_docstring(ast.parse(f.read())) or ""
    pattern = re.escape(f"configs/{os.path.basename(path)}") + r":(\S+)"
    return ["", *dict.fromkeys(re.findall(pattern, docstring))]


CASES = [pytest.param(path, variant, id=os.path.basename(path) + (f":{variant}" if variant else ""))
         for path in CONFIG_FILES for variant in _documented_variants(path)]


def _load(path, variant):
    return load_config_file(f"{path}:{variant}" if variant else path)


def _config_module(path):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mesh_device_count(mesh_config):
    """The devices a mesh is laid out for; a mesh with a -1 axis fits any count, so the test devices."""
    sizes = [mesh_config[axis] for axis in (*sharding.MESH_AXES, *sharding.DCN_AXES)]
    return jax.device_count() if -1 in sizes else math.prod(sizes)


def _write(path, text):
    path.write_text(text)
    return str(path)


def _stand_ins(config, tmp_path):
    """{dotted key: stand-in} for the inputs this config leaves to the command line."""
    stand_ins = {}
    if config.model.checkpoint and not os.path.isdir(config.model.checkpoint):
        assert config.model.name in model_lib.MODEL_CONFIGS, (
            "a config with a checkpoint placeholder names the checkpoint's architecture in model.name")
        stand_ins["model.checkpoint"] = _checkpoint_stand_in(config, tmp_path)
    elif "tokenizer" in config and not config.tokenizer and not config.model.checkpoint:
        stand_ins["tokenizer"] = "char"
    if "prompts_file" in config and not os.path.isfile(config.prompts_file):
        stand_ins["prompts_file"] = _write(tmp_path / "prompts.txt", "2 + 2 =\n")
    if config.mode == "evaluate" and config.data.name in benchmarks.BENCHMARKS:
        benchmark = benchmarks.BENCHMARKS[config.data.name]
        if not os.path.isfile(os.path.join(config.data.manual_dir, benchmark.file_name)):
            manual_dir = tmp_path / "manual"
            manual_dir.mkdir()
            line = json.dumps({benchmark.question_keys[0]: "What is 2 + 2?", benchmark.answer_keys[0]: "#### 4"})
            _write(manual_dir / benchmark.file_name, line + "\n")
            stand_ins["data.manual_dir"] = str(manual_dir)
    if config.mode == "evaluate" and config.data.name == "code" and not os.path.isfile(config.data.code.test_file):
        line = json.dumps({config.data.code.question_key: "Print 4.",
                           config.data.code.tests_key: [{"input": "", "output": "4"}]})
        stand_ins["data.code.test_file"] = _write(tmp_path / "problems.jsonl", line + "\n")
    if config.mode == "grpo" and config.data.name in ("math", "code"):
        files = config.data[config.data.name]
        line = json.dumps({files.question_key: "What is 2 + 2?", files.get("answer_key", "answer"): "4",
                           files.get("tests_key", "tests"): ["assert 2 + 2 == 4"]})
        for key in ("train_file", "test_file"):
            if not os.path.isfile(files[key]):
                stand_ins[f"data.{config.data.name}.{key}"] = _write(tmp_path / f"{key}.jsonl", line + "\n")
    if config.mode == "sft":
        if not config.data.synthetic and not os.path.isfile(config.data.train_file):
            line = json.dumps({"prompt": "2 + 2 =", "completion": " 4"})
            stand_ins["data.train_file"] = _write(tmp_path / "train.jsonl", line + "\n")
        if config.sft.teacher_checkpoint and not os.path.isdir(config.sft.teacher_checkpoint):
            stand_ins["sft.teacher_checkpoint"] = _checkpoint_stand_in(config, tmp_path)
    return stand_ins


def _checkpoint_stand_in(config, tmp_path):
    """A directory holding only the config.json of the architecture `model.name` names."""
    checkpoint = tmp_path / "checkpoint"
    if not checkpoint.exists():
        checkpoint.mkdir()
        _write(checkpoint / "config.json", json.dumps(hf.config_to_hf(model_lib.MODEL_CONFIGS[config.model.name])))
    return str(checkpoint)


def _validated(path, variant, tmp_path):
    """The config with its placeholders replaced, each shown to fail validation on its own first. A
    pipeline's stages are each validated so, with the earlier stages' workdirs standing in for their output."""
    config = _load(path, variant)
    if config.mode == "pipeline":
        validate(config, known_modes=main.MODES, num_devices=jax.device_count())
        names = {**{key: str(value) for key, value in config.vars.items()},
                 **{stage["name"]: str(tmp_path / stage["name"]) for stage in config.stages}}
        for stage in config.stages:
            stage_dir = tmp_path / stage["name"]
            stage_dir.mkdir()
            _with_stand_ins(pipeline.stage_config(stage, names), stage_dir)
        return config
    return _with_stand_ins(config, tmp_path)


def _with_stand_ins(config, tmp_path):
    remaining = _stand_ins(config, tmp_path)
    while True:
        try:
            validate(config, known_modes=main.MODES, num_devices=_mesh_device_count(config.mesh))
            break
        except ConfigError as error:
            message = str(error)
            key = message.split(":", 1)[0].removeprefix("config.")
            assert key in remaining, f"a real error, not a placeholder: {message}"
            assert "\n" not in message
            config.update_from_flattened_dict({key: remaining.pop(key)})
    assert not remaining, f"validation accepted these placeholders: {remaining}"
    return config


@pytest.mark.parametrize("path,variant", CASES)
def test_config_validates_and_documents_its_command(path, variant, tmp_path):
    _validated(path, variant, tmp_path)
    assert f"--config configs/{os.path.basename(path)}" in _config_module(path).__doc__


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES if hasattr(_config_module(p), "MACHINES")],
                         ids=os.path.basename)
def test_unknown_or_conflicting_variants_are_rejected(path):
    module = _config_module(path)
    for variant in ("no-such-machine", ",".join(module.MACHINES[:2])):
        with pytest.raises(ValueError, match="variant"):
            module.get_config(variant)


TRAIN_CASES = [case for case in CASES if _load(*case.values).mode in aot.TRAIN_MODES]


def _test_mesh(mesh_config):
    """The config's mesh on the test devices (module docstring), its slices joined into one."""
    sizes = dict(zip(sharding.MESH_AXES, sharding.resolve_mesh_shape(mesh_config, _mesh_device_count(mesh_config))))
    for axis in sharding.MESH_AXES:
        while math.prod(sizes.values()) > jax.device_count() and sizes[axis] % 2 == 0:
            sizes[axis] //= 2
    return sharding.make_mesh(sizes, jax.devices()[:math.prod(sizes.values())])


@pytest.mark.parametrize("path,variant", TRAIN_CASES)
def test_train_step_lowers_at_full_size_on_the_configured_mesh(path, variant, tmp_path):
    config = _validated(path, variant, tmp_path)
    step = aot.lower_train_step(config, runtime.model_config(config), _test_mesh(config.mesh),
                                sharding.get_rules(config.mesh.rules))
    new_state, metrics = step.lowered.out_info
    assert jax.tree.map(lambda x: (x.shape, x.dtype), new_state) == \
        jax.tree.map(lambda x: (x.shape, x.dtype), step.state)
    assert {"loss", "grad_norm", "learning_rate"} <= set(metrics) and metrics["loss"].shape == ()


MACHINE_CASES = [case for case in CASES if hasattr(_config_module(case.values[0]), "MACHINES")]


@pytest.mark.parametrize("path,variant", MACHINE_CASES)
def test_training_state_fits_in_half_the_memory_of_the_chosen_machine(path, variant, tmp_path):
    """Weights, gradients and Adam's two moments (and a reference copy under a KL) per device, on the
    machine's own mesh; the other half is for activations, logits and the sampler's KV cache."""
    module = _config_module(path)
    name, _ = config_lib.parse_variant(variant, machines=module.MACHINES, options=getattr(module, "OPTIONS", ()))
    hardware = config_lib.HARDWARE[name]
    config = _validated(path, variant, tmp_path)
    assert {axis: config.mesh[axis] for axis in sharding.MESH_AXES} == dict(hardware.mesh)
    assert {axis: config.mesh[axis] for axis in sharding.DCN_AXES} == {
        axis: hardware.dcn.get(axis, 1) for axis in sharding.DCN_AXES}

    model_config = runtime.model_config(config)
    mesh = jax.sharding.AbstractMesh(sharding.resolve_mesh_shape(config.mesh, hardware.devices), sharding.MESH_AXES)
    shapes = model_lib.param_shapes(model_config)
    shardings = sharding.param_shardings(model_lib.param_logical_axes(model_config), shapes, mesh,
                                         sharding.get_rules(config.mesh.rules))
    param_bytes = sum(math.prod(s.shard_shape(x.shape)) * x.dtype.itemsize
                      for s, x in zip(jax.tree.leaves(shardings), jax.tree.leaves(shapes)))
    copies = 4 + (config.grpo.beta > 0)
    assert copies * param_bytes < hardware.memory_gib * 2**30 / 2, (
        f"{copies} x {param_bytes / 2**30:.1f} GiB of state per device on {name}")


# ---------------------------------------------------------------------------------------------
# Keys the shipped configs leave valid, each broken on its own


def _grpo_smoke(**changes):
    config = _load(os.path.join(REPO, "configs", "countdown_tiny.py"), "smoke")
    config.update_from_flattened_dict({"pretrain.steps": 0, "steps": 1, **changes})
    return config


@pytest.mark.parametrize("changes,message", [
    ({"rollout.prompts_per_step": 0}, "config.rollout.prompts_per_step: 0 must be positive"),
    ({"grpo.num_iterations": 0}, "config.grpo.num_iterations: 0 must be positive"),
    ({"grpo.beta": -0.01}, "config.grpo.beta: -0.01 must be >= 0"),
    ({"rollout.max_new_tokens": 3000}, "config.rollout.max_new_tokens: 3000 leaves no room for a prompt: the model "
                                       "has 2048 positions"),
    ({"rewards": ({"name": "countdown", "weight": "a"},)}, "config.rewards[0]: reward 'countdown': weight 'a' is not "
                                                            "a number"),
    ({"rewards": ({"name": "countdown", "kwargs": {"bogus": 1}},)}, "config.rewards[0]: reward 'countdown': countdown "
                                                                     "has no parameters ['bogus']"),
    ({"grpo.epsilon_low": 1.0}, "config.grpo.epsilon_low: 1.0 must be in [0, 1)"),
    ({"grpo.epsilon_high": -0.2}, "config.grpo.epsilon_high: -0.2 must be >= 0"),
    ({"eval.batch_size": 0}, "config.eval.batch_size: 0 must be positive"),
    ({"eval.num_examples": 0}, "config.eval.num_examples: 0 must be positive"),
    ({"eval.every": -1}, "config.eval.every: -1 must be >= 0"),
    ({"checkpoint_every": 0}, "config.checkpoint_every: 0 must be positive"),
    ({"keep_checkpoints": 0}, "config.keep_checkpoints: 0 must be positive"),
    ({"log_samples_every": -1}, "config.log_samples_every: -1 must be >= 0"),
    ({"steps": -1}, "config.steps: -1 must be positive"),
    ({"steps": 0}, "config.steps: 0 must be positive (0 only with pretrain.steps > 0"),
    ({"rollout.temperature": 0.0}, "config.rollout.temperature: GRPO needs sampling (> 0)"),
    ({"data.countdown.min_count": 5}, "config.data.countdown: need 2 <= min_count <= max_count"),
    ({"optimizer.schedule": "linear"}, "config.optimizer.schedule: 'linear' is not one of cosine, constant"),
    ({"optimizer.learning_rate": 0.0}, "config.optimizer.learning_rate: 0.0 must be positive"),
    ({"optimizer.warmup_steps": -1}, "config.optimizer.warmup_steps: -1 must be >= 0"),
    ({"optimizer.b1": 1.0}, "config.optimizer.b1: 1.0 must be in [0, 1)"),
    ({"optimizer.b2": -0.1}, "config.optimizer.b2: -0.1 must be in [0, 1)"),
    ({"pretrain.steps": 2, "pretrain.learning_rate": 0.0}, "config.pretrain.learning_rate: 0.0 must be positive"),
])
def test_invalid_grpo_configs_name_the_key(changes, message):
    validate(_grpo_smoke(), known_modes=main.MODES, num_devices=8)  # the base is valid
    with pytest.raises(ConfigError) as error:
        validate(_grpo_smoke(**changes), known_modes=main.MODES, num_devices=8)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize("changes, message", [
    ({"steps": 0}, "config.steps: 0 must be positive"),
    ({"seq_len": 0}, "config.seq_len: 0 must be in 1..2048"),
    ({"seq_len": 100_000}, "config.seq_len: 100000 must be in 1..2048, the model's positions"),
])
def test_invalid_benchmark_configs_name_the_key(changes, message):
    config = _load(os.path.join(REPO, "configs", "benchmark.py"), "")
    validate(config, known_modes=main.MODES, num_devices=8)
    config.update_from_flattened_dict(changes)
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        validate(config, known_modes=main.MODES, num_devices=8)


def test_dapo_warms_up_over_verls_ten_rl_steps_with_its_adamw_betas():
    config = load_config_file(os.path.join(REPO, "configs", "r1zero_math_qwen25_7b.py:dapo"))
    c = config
    updates_per_rl_step = c.grpo.num_iterations * c.rollout.prompts_per_step * c.rollout.group_size // c.grpo.minibatch_size
    assert c.optimizer.warmup_steps == 10 * updates_per_rl_step and (c.optimizer.b1, c.optimizer.b2) == (0.9, 0.999)


def test_grpo_steps_0_only_pretrains():
    validate(_grpo_smoke(**{"steps": 0, "pretrain.steps": 2}), known_modes=main.MODES, num_devices=8)


def test_the_optimizer_is_checked_in_every_mode_that_trains():
    config = _load(os.path.join(REPO, "configs", "sft_journey_tiny.py"), "journey,smoke")
    config.optimizer.b2 = 1.0
    with pytest.raises(ConfigError, match=r"^config.optimizer.b2: 1.0 must be in \[0, 1\)"):
        validate(config, known_modes=main.MODES, num_devices=8)


def test_a_config_error_stops_the_command_before_anything_runs(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "r1jax.main", "--config", "configs/countdown_tiny.py:smoke",
         "--config.pretrain.steps=0", "--config.steps=1", "--config.rollout.temperature=0", f"--workdir={workdir}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("r1jax: config.rollout.temperature: GRPO needs sampling")
    assert not workdir.exists()


@pytest.mark.parametrize("address", ["localhost", "localhost:", ":1234", "localhost:port"])
def test_a_coordinator_address_without_a_port_is_a_setup_error(monkeypatch, address):
    def no_initialize(*args, **kwargs):
        raise AssertionError("jax.distributed.initialize was called")

    monkeypatch.setattr(jax.distributed, "initialize", no_initialize)
    with pytest.raises(distributed.SetupError, match=re.escape(f"--coordinator_address: give host:port, got {address!r}")):
        distributed.initialize(address, 2, 0, environ={})
    with pytest.raises(distributed.SetupError, match=re.escape(f"R1JAX_COORDINATOR_ADDRESS: give host:port, got {address!r}")):
        distributed.initialize(environ={"R1JAX_COORDINATOR_ADDRESS": address, "R1JAX_NUM_PROCESSES": "2",
                                        "R1JAX_PROCESS_ID": "0"})
