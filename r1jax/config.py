"""Run configs: the shared base every `configs/*.py` starts from, and validation before any compile.

Validation runs before anything is compiled or written: each problem is a `ConfigError` whose
one-line message names the key and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence

import jax.numpy as jnp
import ml_collections

from r1jax import model as model_lib
from r1jax import optim, pretrain, sharding

DTYPES = ("float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A config that cannot run; the message names the key and how to fix it."""


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """`get_config(variant)` of a config file, as `--config path[:variant]` loads it (for notebooks and tests)."""
    file_path, _, variant = path.partition(":")
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(file_path))[0], file_path)
    if spec is None or spec.loader is None:
        raise ValueError(f"{file_path} is not a Python file; a config is a .py file with get_config(arg=None)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ValueError(f"{e.filename}:{e.lineno}: {e.msg}") from None
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ValueError(f"{file_path} defines no get_config(arg=None)")
    config = get_config(variant or None)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"{file_path}: get_config returned a {type(config).__name__}, not an "
                         "ml_collections.ConfigDict")
    return config


def config_file_problem(config_file: str) -> str | None:
    """Why `--config config_file` (`path[:variant]`) cannot be loaded, in one line; None if it can."""
    path = config_file.partition(":")[0]
    if not os.path.isfile(path):
        return f"--config: {path!r} is not a file"
    try:
        load_config_file(config_file)
    except ValueError as e:  # an unknown variant, no get_config, a syntax error
        return f"--config {config_file}: {e}"
    return None


def first_unknown_override(config: ml_collections.ConfigDict, argv: Sequence[str]) -> str | None:
    """`unknown_override` of the first `--config.<dotted>=v` in `argv` that names no field of `config`."""
    overrides = (arg.partition("=")[0].removeprefix("--config.") for arg in argv if arg.startswith("--config."))
    return next(filter(None, (unknown_override(config, dotted) for dotted in overrides)), None)


def unknown_override(config: ml_collections.ConfigDict, dotted: str) -> str | None:
    """Why `--config.<dotted>=v` names no field of `config` (with the fields it may have meant), or None."""
    node, path = config, []
    for key in dotted.split("."):
        if not isinstance(node, ml_collections.ConfigDict):
            return (f"--config.{dotted}: config.{'.'.join(path)} is a {type(node).__name__}, not a section; "
                    f"set --config.{'.'.join(path)}=...")
        if key not in node:
            same_name = [name for name in _field_paths(config) if name.rsplit(".", 1)[-1] == key]
            close = difflib.get_close_matches(key, list(node.keys()), n=3)
            meant = same_name or [".".join([*path, name]) for name in close]
            hint = f"; did you mean {' or '.join('--config.' + name for name in meant)}?" if meant else ""
            where = f"config.{'.'.join(path)}" if path else "the config"
            return f"--config.{dotted}: {where} has no field {key!r}{hint}"
        node = node[key]
        path.append(key)
    return None


def _field_paths(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    paths = []
    for name, value in config.items():
        paths.append(prefix + name)
        if isinstance(value, ml_collections.ConfigDict):
            paths.extend(_field_paths(value, prefix + name + "."))
    return paths


def base_config() -> ml_collections.ConfigDict:
    """Sections shared by every mode. Config files override fields; `--config.a.b=v` overrides them."""
    config = ml_collections.ConfigDict()
    config.mode = ""
    config.seed = 0
    config.model = ml_collections.ConfigDict(dict(
        name="tiny",  # a key of r1jax.model.MODEL_CONFIGS, used when `checkpoint` is empty
        checkpoint="",  # a Hugging Face model directory; its config.json decides the architecture
        vocab_size=0,  # with `name`: 0 keeps the model's; set it to fit a tokenizer made here (e.g. 'char')
        dtype="float32",  # compute dtype
        param_dtype="float32",
        remat="none",
        scan_layers=True,
        attention_impl="xla",
    ))
    config.mesh = ml_collections.ConfigDict(dict(
        data=-1,  # -1: the devices the other axes leave (in each slice)
        fsdp=1,
        tensor=1,
        # Slices (TPU) or hosts (GPU) each axis spans over the data-centre network; the axis is dcn_x * x long.
        dcn_data=1,
        dcn_fsdp=1,
        dcn_tensor=1,
        # A preset (a file stem of r1jax/rules/: fsdp_tensor, fsdp, tensor_decode), a path to a JSON rule
        # file, or a list of (logical, mesh axes).
        rules="fsdp_tensor",
    ))
    return config


def countdown_data_config() -> ml_collections.ConfigDict:
    """Knobs of the generated Countdown problems (`r1jax.data.countdown.CountdownConfig`)."""
    return ml_collections.ConfigDict(dict(min_count=3, max_count=4, min_number=1, max_number=99, min_target=1,
                                          max_target=100, train_size=32768, test_size=1024, seed=0))


def task_data_config() -> ml_collections.ConfigDict:
    """The `data` section of the modes that prompt with a task of `r1jax.data.tasks` (grpo, distill)."""
    return ml_collections.ConfigDict(dict(
        name="countdown",
        data_dir="",  # default: <workdir>/data
        template="base",  # r1jax.data.prompts.TASK_TEMPLATES[name]
        countdown=countdown_data_config(),
        # name='math': JSONL files, one problem a line; without `answer_key`, the last \boxed{} of `solution`.
        math=dict(train_file="", test_file="", question_key="problem", answer_key="answer"),
        # name='code': JSONL files, one problem a line with its tests (r1jax.data.tasks.code_tests's layouts) and,
        # where it has one, its starter code (a function's signature, shown in the prompt).
        # skip_unsupported: leave out problems whose tests cannot run here, the count printed.
        code=dict(train_file="", test_file="", question_key="problem", tests_key="tests",
                  starter_code_key="starter_code", skip_unsupported=False),
    ))


def grpo_config() -> ml_collections.ConfigDict:
    """Defaults of `mode: grpo` (TinyZero-like Countdown); config files override what they change."""
    config = base_config()
    config.mode = "grpo"
    # A Hugging Face tokenizer directory or file; '' uses model.checkpoint's; 'char' is the built-in
    # character-level tokenizer for tiny models trained from scratch (r1jax.data.char_tokenizer).
    config.tokenizer = ""
    config.steps = 100
    config.data = task_data_config()
    config.rollout = ml_collections.ConfigDict(dict(
        prompts_per_step=8,
        group_size=8,
        max_new_tokens=256,
        max_prompt_len=0,  # 0: the model's positions minus max_new_tokens
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        stop_strings=("</answer>",),
        # The sampler's sharding rules (as mesh.rules), e.g. 'tensor_decode'; '' samples in the training layout.
        # The weights are resharded to them before each rollout.
        rules="",
    ))
    config.grpo = ml_collections.ConfigDict(dict(
        loss_type="dr_grpo",
        advantage_scale="group",
        epsilon_low=0.2,
        epsilon_high=0.28,  # DAPO's clip-higher
        beta=0.0,  # KL weight; 0 keeps no reference model
        kl_estimator="k3",
        importance_level="token",
        num_iterations=1,  # passes over each batch (mu)
        minibatch_size=64,  # rows per optimizer update
        microbatch_size=0,  # rows per forward/backward pass, accumulated to a minibatch; 0: the minibatch
        dynamic_sampling=False,
        max_sampling_rounds=3,
        mask_truncated=False,
    ))
    config.pretrain = pretrain.pretrain_config()
    # A tuple, which the command line can replace: --config.rewards="({'name': 'math', 'weight': 1.0},)".
    config.rewards = (dict(name="countdown", weight=1.0),)
    config.accuracy_reward = "countdown"  # a reward key; accuracy = share of scores >= accuracy_threshold
    config.accuracy_threshold = 1.0
    config.reward_workers = 0  # processes scoring in parallel (the code reward runs programs); 0: this one
    config.eval = ml_collections.ConfigDict(dict(every=10, num_examples=256, batch_size=64))
    config.optimizer = optim.optimizer_config(learning_rate=1e-6)
    config.checkpoint_every = 10
    config.keep_checkpoints = 3
    config.log_samples_every = 10
    return config


def sft_config() -> ml_collections.ConfigDict:
    """Defaults of `mode: sft` (r1jax/sft.py); config files override what they change."""
    config = base_config()
    config.mode = "sft"
    config.tokenizer = ""  # as in grpo_config
    config.steps = 1000
    config.batch_size = 32  # packed rows per optimizer step
    config.data = ml_collections.ConfigDict(dict(
        # JSON lines (or .array_record of JSON objects): {"messages": [{"role", "content"}, ...]} or
        # {"prompt", "completion"} per record; other fields are ignored.
        train_file="",
        eval_file="",  # held-out records of the same layout; or hold out `eval_size` records of train_file
        eval_size=0,
        chat_template=False,  # prompt/completion records as a user and an assistant turn of the chat template
        add_eos=True,  # end plain completions with the tokenizer's EOS (unless they end with one)
        drop_overlong=False,  # skip records longer than sft.seq_len instead of stopping with an error
        # 'journey' or 'shortcut': Countdown SFT data built in the run (r1jax.data.journey) from the problems
        # of `countdown` (train split; its test split is held out), instead of train_file.
        synthetic="",
        countdown=countdown_data_config(),
        # Wrong attempts per journey, drawn uniformly. With min_wrong >= 1 every first attempt is wrong, and
        # a student learns to reject its first attempt whatever its value (seen with the tiny model).
        journey=dict(min_wrong=0, max_wrong=3, style="inline", max_value=100, traces_per_example=1),
    ))
    config.sft = ml_collections.ConfigDict(dict(
        seq_len=1024,  # tokens per packed row
        microbatch_size=0,  # rows per forward/backward pass, accumulated to batch_size; 0: the whole batch
        teacher_checkpoint="",  # a Hugging Face model directory with the student's tokenizer: logit distillation
        kl_weight=0.0,  # weight of the forward KL to the teacher, added to the NLL
    ))
    config.eval = ml_collections.ConfigDict(dict(every=100))  # held-out loss every this many steps; 0: never
    config.optimizer = optim.optimizer_config(learning_rate=1e-5, schedule="cosine", warmup_steps=10)
    config.log_every = 10
    config.checkpoint_every = 100
    config.keep_checkpoints = 3
    return config


def distill_config() -> ml_collections.ConfigDict:
    """Defaults of `mode: distill` (r1jax/distill.py): the teacher is `model`."""
    config = base_config()
    config.mode = "distill"
    config.tokenizer = ""
    config.data = task_data_config()
    config.split = "train"  # the task split whose prompts are sampled
    config.num_prompts = 0  # the first this many problems of the split; 0: all
    config.prompt_batch_size = 64  # prompts per sampler call
    config.sampling = ml_collections.ConfigDict(dict(
        num_samples=4,  # k samples per prompt
        max_new_tokens=1024,
        max_prompt_len=0,  # 0: the model's positions minus max_new_tokens
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        stop_strings=("</answer>",),
    ))
    # The verifier: every reward is computed and recorded; a sample is correct when the score of
    # `accuracy_reward` is at least `accuracy_threshold`.
    config.rewards = (dict(name="countdown", weight=1.0),)
    config.accuracy_reward = "countdown"
    config.accuracy_threshold = 1.0
    # Scores other rewards of a kept sample must reach too, {reward key: minimum}: R1's rejection sampling also
    # drops unreadable reasoning, e.g. {'language_consistency': 0.95} with that reward listed in `rewards`. Set
    # it whole, in a config file or a pipeline override: the command line cannot add keys to it.
    config.min_scores = ml_collections.ConfigDict()
    config.reward_workers = 0  # as in grpo_config
    config.keep = "all"  # correct samples kept per prompt: 'all', 'first', 'shortest', or 'journey'
    # keep='journey': wrong samples (how many: uniform in min_wrong..max_wrong) stitched before the first
    # correct one, each followed by `transition` (r1jax/distill.py).
    config.journey = ml_collections.ConfigDict(dict(
        min_wrong=0, max_wrong=2, transition="\n\nWait, that is not right. Let me try again.\n\n"))
    # Another model's outputs to verify instead of sampling: JSON lines with `prompt_id` (an index into
    # `split`) and `completion`, optionally `prompt`, `sample` and `teacher`.
    config.traces_file = ""
    config.output_file = "distill.jsonl"  # under the workdir; records `mode: sft` reads as they are
    return config


@dataclasses.dataclass(frozen=True)
class Hardware:
    """A machine a config can target: its JAX devices, their memory, and the mesh used on it."""

    devices: int  # in all slices (hosts)
    memory_gib: float  # accelerator memory per device
    mesh: Mapping[str, int]  # in-slice sizes of data/fsdp/tensor
    dcn: Mapping[str, int] = dataclasses.field(default_factory=dict)  # slices (hosts) per axis; 1 when absent
    topology: str = ""  # a TPU slice's topology name (`jax.experimental.topologies`), e.g. 'v5e:16x16'


# Mesh presets for real machines. Tensor parallelism stays at 2 ways, inside fast links (NVLink, a
# TPU slice's ICI), where it also splits the vocabulary logits and keeps decode from gathering whole
# weights; 2 divides the KV heads of every Qwen2.5 model. FSDP takes the other devices of a slice, so
# the optimizer state is spread over all of them. Across slices or GPU hosts (DCN) only `data` is
# split: one gradient all-reduce per step crosses the slow network. Names are the cloud's: a TPU v4 or
# v5p chip is one JAX device (megacore) but counts as 2 cores, so 'v4-8' is 4 devices and 'v5p-16' 8;
# v5e and v6e name chips, one device each. Memory per device: v4 32 GiB, v5e 16, v5p 95, v6e 32.
HARDWARE: dict[str, Hardware] = {
    "gpu8": Hardware(devices=8, memory_gib=80, mesh=dict(data=1, fsdp=4, tensor=2)),  # 8 x H100/A100-80GB
    # Two such hosts; the granules of the DCN axis are processes, one per host.
    "gpu8x2": Hardware(devices=16, memory_gib=80, mesh=dict(data=1, fsdp=4, tensor=2), dcn=dict(dcn_data=2)),
    "v4-8": Hardware(devices=4, memory_gib=32, mesh=dict(data=1, fsdp=2, tensor=2), topology="v4:2x2x1"),
    "v4-32": Hardware(devices=16, memory_gib=32, mesh=dict(data=1, fsdp=8, tensor=2), topology="v4:2x2x4"),
    "v5e-8": Hardware(devices=8, memory_gib=16, mesh=dict(data=1, fsdp=4, tensor=2), topology="v5e:2x4"),
    "v5e-16": Hardware(devices=16, memory_gib=16, mesh=dict(data=1, fsdp=8, tensor=2), topology="v5e:4x4"),
    "v5e-32": Hardware(devices=32, memory_gib=16, mesh=dict(data=1, fsdp=16, tensor=2), topology="v5e:4x8"),
    "v5e-256": Hardware(devices=256, memory_gib=16, mesh=dict(data=1, fsdp=128, tensor=2), topology="v5e:16x16"),
    "2xv5e-256": Hardware(devices=512, memory_gib=16, mesh=dict(data=1, fsdp=128, tensor=2), dcn=dict(dcn_data=2),
                          topology="v5e:16x16"),
    "v5p-16": Hardware(devices=8, memory_gib=95, mesh=dict(data=1, fsdp=4, tensor=2), topology="v5:2x2x2"),
    "v5p-64": Hardware(devices=32, memory_gib=95, mesh=dict(data=1, fsdp=16, tensor=2), topology="v5:2x4x4"),
    "v5p-128": Hardware(devices=64, memory_gib=95, mesh=dict(data=1, fsdp=32, tensor=2), topology="v5:4x4x4"),
    "v6e-8": Hardware(devices=8, memory_gib=32, mesh=dict(data=1, fsdp=4, tensor=2), topology="v6e:2x4"),
    "v6e-64": Hardware(devices=64, memory_gib=32, mesh=dict(data=1, fsdp=32, tensor=2), topology="v6e:8x8"),
}


def parse_variant(arg: str | None, *, machines: Sequence[str], options: Sequence[str] = ()) -> tuple[str, set[str]]:
    """A config file's variant, e.g. "dapo,v5p-16", as (machine, other options).

    Items are comma-separated: at most one is one of `machines` (keys of HARDWARE; default: the first),
    the rest must be in `options`. Anything else raises ValueError listing the choices.
    """
    items = [item.strip() for item in (arg or "").split(",") if item.strip()]
    chosen = [item for item in items if item in machines]
    unknown = [item for item in items if item not in machines and item not in options]
    if unknown or len(chosen) > 1:
        raise ValueError(f"variant {arg!r}: give at most one machine of {', '.join(machines)}"
                         + (f" and any of {', '.join(options)}" if options else "") + ", separated by commas")
    return (chosen[0] if chosen else machines[0]), set(items) - set(chosen)


def use_hardware(config: ml_collections.ConfigDict, name: str) -> None:
    """Sets `config.mesh` to the layout of `HARDWARE[name]` (its in-slice and DCN sizes)."""
    hardware = HARDWARE[name]
    config.mesh.update(hardware.mesh)
    config.mesh.update({axis: hardware.dcn.get(axis, 1) for axis in sharding.DCN_AXES})


def _fail(key: str, message: str):
    raise ConfigError(f"config.{key}: {message}")


def validate(config: ml_collections.ConfigDict, *, known_modes: Iterable[str], num_devices: int) -> None:
    """Checks everything that can be checked without compiling; raises ConfigError on the first problem."""
    known_modes = sorted(known_modes)
    mode = config.get("mode", "")
    if mode not in known_modes:
        _fail("mode", f"{mode!r} is not a mode; set --config.mode to one of {', '.join(known_modes)}")
    if mode == "pipeline":  # its stages are validated as they start: they may read earlier stages' output
        from r1jax.pipeline import validate_config  # lazily: pipeline imports this module

        validate_config(config)
        return
    _validate_model(config.model)
    _validate_positions(config)
    try:
        mesh_shape = sharding.resolve_mesh_shape(dict(config.mesh), num_devices)
    except ValueError as e:
        _fail("mesh", f"{e}; make data*fsdp*tensor (times dcn_data*dcn_fsdp*dcn_tensor, the slices) equal the "
                      "device count, or set one of data/fsdp/tensor to -1 to fill")
    try:
        rules = sharding.get_rules(config.mesh.rules)
    except ValueError as e:
        _fail("mesh.rules", str(e))
    batch_ways = sharding.data_parallel_size(dict(zip(sharding.MESH_AXES, mesh_shape)), rules)
    for key in ("batch_size",):
        value = config.get(key)
        if value is None:
            continue
        if value <= 0:
            _fail(key, f"{value} must be positive")
        if value % batch_ways:
            _fail(key, f"{value} is not a multiple of the {batch_ways} ways the mesh splits the batch "
                       f"(mesh {dict(zip(sharding.MESH_AXES, mesh_shape))}); use a multiple of {batch_ways}")
    if mode == "grpo":
        _validate_grpo(config, batch_ways)
    elif mode == "generate":
        from r1jax.generate import validate_config  # lazily: generate imports this module

        validate_config(config)
    elif mode == "sft":
        from r1jax.sft import validate_config  # lazily: sft imports this module (from its functions)

        validate_config(config, batch_ways)
    elif mode == "distill":
        from r1jax.distill import validate_config  # lazily: distill imports this module

        validate_config(config)
    elif mode == "evaluate":
        from r1jax.evaluate_mode import validate_config  # lazily: evaluate_mode imports this module

        validate_config(config)
    elif mode == "benchmark":
        _validate_benchmark(config)


def _validate_benchmark(config: ml_collections.ConfigDict) -> None:
    from r1jax import runtime  # lazily: runtime imports what imports this module

    if config.steps <= 0:
        _fail("steps", f"{config.steps} must be positive: the timed forward passes")
    positions = runtime.model_config(config).max_position_embeddings
    if not 0 < config.seq_len <= positions:
        _fail("seq_len", f"{config.seq_len} must be in 1..{positions}, the model's positions")


def validate_generation(section: ml_collections.ConfigDict, prefix: str = "") -> None:
    """A section's sampler settings: budget, prompt length, stop strings, and what `sampler.SamplingSpec` checks."""
    from r1jax import sampler  # lazily: the sampler is only needed to check

    if section.max_new_tokens <= 0:
        _fail(f"{prefix}max_new_tokens", f"{section.max_new_tokens} must be positive")
    if section.get("max_prompt_len", 0) < 0:
        _fail(f"{prefix}max_prompt_len", f"{section.max_prompt_len} must be >= 0 (0: as the model allows)")
    if not all(isinstance(s, str) and s for s in section.stop_strings):
        _fail(f"{prefix}stop_strings", f"{section.stop_strings!r} must be non-empty strings, "
                                       f"e.g. --config.{prefix}stop_strings=\"('</answer>',)\"")
    try:
        sampler.SamplingSpec(temperature=section.temperature, top_k=section.top_k, top_p=section.top_p,
                             min_p=section.min_p)
    except ValueError as e:  # "top_p=1.5 must be in (0, 1] ..."
        name, _, problem = str(e).partition("=")
        _fail(f"{prefix}{name}", problem)


def validate_output_file(config: ml_collections.ConfigDict) -> None:
    """`config.output_file`: a file name, under the workdir (its folders are made as needed)."""
    if os.path.basename(config.output_file) in ("", ".", ".."):
        _fail("output_file", f"{config.output_file!r} names no file; give a file name, relative to the workdir")
    if os.path.isabs(config.output_file) or ".." in config.output_file.replace("\\", "/").split("/"):
        _fail("output_file", f"{config.output_file!r} leaves the workdir; give a path relative to it (the workdir "
                             "keeps what a continued run needs beside it)")


def validate_tokenizer(config: ml_collections.ConfigDict) -> None:
    """`config.tokenizer`: a path, 'char', or '' to use model.checkpoint's tokenizer."""
    if not config.tokenizer and not config.model.checkpoint:
        _fail("tokenizer", "is empty and there is no model.checkpoint to take it from; set a tokenizer path or 'char'")
    if config.tokenizer not in ("", "char") and not os.path.exists(config.tokenizer):
        _fail("tokenizer", f"{config.tokenizer!r} does not exist; give a tokenizer directory/file or 'char'")


def validate_optimizer(optimizer: ml_collections.ConfigDict) -> None:
    """The `optimizer` section (`optim.optimizer_config`) of every mode that trains."""
    checks = [
        ("schedule", optimizer.schedule in optim.SCHEDULES,
         f"{optimizer.schedule!r} is not one of {', '.join(optim.SCHEDULES)}"),
        ("learning_rate", optimizer.learning_rate > 0, f"{optimizer.learning_rate} must be positive"),
        ("warmup_steps", optimizer.warmup_steps >= 0, f"{optimizer.warmup_steps} must be >= 0"),
        ("b1", 0 <= optimizer.b1 < 1, f"{optimizer.b1} must be in [0, 1)"),
        ("b2", 0 <= optimizer.b2 < 1, f"{optimizer.b2} must be in [0, 1)"),
        ("eps", optimizer.eps > 0, f"{optimizer.eps} must be positive"),
        ("weight_decay", optimizer.weight_decay >= 0, f"{optimizer.weight_decay} must be >= 0"),
        ("max_grad_norm", optimizer.max_grad_norm >= 0, f"{optimizer.max_grad_norm} must be >= 0 (0: no clipping)"),
    ]
    for key, ok, message in checks:
        if not ok:
            _fail(f"optimizer.{key}", message)


def _validate_grpo(config: ml_collections.ConfigDict, batch_ways: int) -> None:
    from r1jax.rl import grpo

    validate_tokenizer(config)
    validate_task_data(config)
    validate_optimizer(config.optimizer)
    r, g = config.rollout, config.grpo
    checks = [
        # steps=0 only makes sense to pretrain a base and stop; otherwise it would export the untrained model.
        ("steps", config.steps > 0 or (config.steps == 0 and config.pretrain.steps > 0),
         f"{config.steps} must be positive (0 only with pretrain.steps > 0, to pretrain and stop)"),
        ("rollout.prompts_per_step", r.prompts_per_step > 0, f"{r.prompts_per_step} must be positive"),
        ("rollout.group_size", r.group_size >= 2,
         f"{r.group_size} must be at least 2: advantages compare samples of one prompt"),
        ("grpo.num_iterations", g.num_iterations > 0, f"{g.num_iterations} must be positive"),
        ("grpo.beta", g.beta >= 0, f"{g.beta} must be >= 0 (the KL weight; 0: no KL term, no reference model)"),
        ("grpo.epsilon_low", 0 <= g.epsilon_low < 1, f"{g.epsilon_low} must be in [0, 1): the ratio's floor is 1 - it"),
        ("grpo.epsilon_high", g.epsilon_high >= 0, f"{g.epsilon_high} must be >= 0"),
        ("eval.every", config.eval.every >= 0,
         f"{config.eval.every} must be >= 0 (0: only before the first step and after the last)"),
        ("eval.num_examples", config.eval.num_examples > 0, f"{config.eval.num_examples} must be positive"),
        ("eval.batch_size", config.eval.batch_size > 0, f"{config.eval.batch_size} must be positive"),
        ("checkpoint_every", config.checkpoint_every > 0, f"{config.checkpoint_every} must be positive"),
        ("keep_checkpoints", config.keep_checkpoints > 0, f"{config.keep_checkpoints} must be positive"),
        ("log_samples_every", config.log_samples_every >= 0, f"{config.log_samples_every} must be >= 0 (0: never)"),
    ]
    for key, ok, message in checks:
        if not ok:
            _fail(key, message)
    validate_generation(r, "rollout.")
    if r.temperature == 0:
        _fail("rollout.temperature", "GRPO needs sampling (> 0): greedy samples of a prompt are all the same, so "
                                     "every advantage is 0 and nothing is learned")
    if r.rules:
        try:
            sharding.get_rules(r.rules)
        except ValueError as e:
            _fail("rollout.rules", f"{e}; or '' to sample in the training layout")
    rows = r.prompts_per_step * r.group_size
    if g.minibatch_size <= 0 or rows % g.minibatch_size:
        _fail("grpo.minibatch_size", f"{g.minibatch_size} must divide prompts_per_step * group_size = {rows}")
    if g.microbatch_size < 0 or (g.microbatch_size and (g.minibatch_size % g.microbatch_size
                                                          or g.microbatch_size % batch_ways)):
        _fail("grpo.microbatch_size", f"{g.microbatch_size} must divide minibatch_size={g.minibatch_size} and be a "
                                      f"multiple of the {batch_ways} ways the mesh splits the batch (0: no split)")
    if g.minibatch_size % batch_ways:
        _fail("grpo.minibatch_size", f"{g.minibatch_size} is not a multiple of the {batch_ways} ways the mesh "
                                     f"splits the batch")
    for key, value, options in (("loss_type", g.loss_type, grpo.LOSS_TYPES),
                                ("advantage_scale", g.advantage_scale, grpo.ADVANTAGE_SCALES),
                                ("kl_estimator", g.kl_estimator, grpo.KL_ESTIMATORS),
                                ("importance_level", g.importance_level, grpo.IMPORTANCE_LEVELS)):
        if value not in options:
            _fail(f"grpo.{key}", f"{value!r} is not one of {', '.join(options)}")
    validate_rewards(config)
    _validate_pretrain(config)


def validate_task_data(config: ml_collections.ConfigDict) -> None:
    """`config.data` as `task_data_config` lays it out."""
    from r1jax.data import prompts, tasks

    if config.data.name not in tasks.TASKS:
        _fail("data.name", f"{config.data.name!r} is not one of {', '.join(tasks.TASKS)}")
    templates = prompts.TASK_TEMPLATES[config.data.name]
    if config.data.template not in templates:
        _fail("data.template", f"{config.data.template!r} is not one of {', '.join(templates)} "
                               f"(the {config.data.name} task's templates)")
    if config.data.name == "countdown":
        validate_countdown_data(config.data.countdown)
    if config.data.name in ("math", "code"):
        validate_problem_files(config.data.name, config.data[config.data.name])


def validate_countdown_data(countdown: ml_collections.ConfigDict) -> None:
    """A `countdown_data_config` section, as `r1jax.data.countdown.CountdownConfig` checks it."""
    from r1jax.data import countdown as countdown_lib

    try:
        countdown_lib.CountdownConfig(**dict(countdown))
    except (TypeError, ValueError) as e:
        _fail("data.countdown", str(e))


def validate_rewards(config: ml_collections.ConfigDict) -> None:
    """`config.rewards` (registry entries) and `config.accuracy_reward`, one of their keys."""
    from r1jax.rewards import registry

    if not config.rewards:
        _fail("rewards", "is empty; list at least one reward, e.g. [dict(name='countdown', weight=1.0)]")
    keys = []
    for i, entry in enumerate(config.rewards):
        try:
            spec = registry.RewardSpec.from_config(entry)
            registry.BoundReward(spec)  # the name, its keyword arguments and the weight
        except (KeyError, ValueError, TypeError, ImportError) as e:
            _fail(f"rewards[{i}]", str(e).strip("'\""))
        keys.append(spec.log_key)
    if config.accuracy_reward not in keys:
        _fail("accuracy_reward", f"{config.accuracy_reward!r} is not one of the reward keys {keys}")
    for key, minimum in dict(config.get("min_scores") or {}).items():
        if key not in keys:
            _fail(f"min_scores.{key}", f"is not one of the reward keys {keys}")
        if isinstance(minimum, bool) or not isinstance(minimum, (int, float)):
            _fail(f"min_scores.{key}", f"{minimum!r} must be a number")
    if config.reward_workers < 0:
        _fail("reward_workers", f"{config.reward_workers} must be >= 0 (0 scores in this process)")


def _validate_pretrain(config: ml_collections.ConfigDict) -> None:
    from r1jax.data import synthetic

    p = config.pretrain
    if p.steps < 0:
        _fail("pretrain.steps", f"{p.steps} must be 0 (no pretraining) or positive")
    if not p.steps:
        return
    if config.model.checkpoint:
        _fail("pretrain.steps", "pretraining starts from random weights, but model.checkpoint is set; "
                                "set pretrain.steps=0 to start from the checkpoint")
    if config.data.name != "countdown":
        _fail("pretrain.steps", f"synthetic pretraining traces exist for countdown only, not {config.data.name!r}")
    if p.style not in synthetic.STYLES:
        _fail("pretrain.style", f"{p.style!r} is not one of {', '.join(synthetic.STYLES)}")
    if not 1 <= p.min_attempts <= p.max_attempts:
        _fail("pretrain.min_attempts", f"need 1 <= min_attempts <= max_attempts, got {p.min_attempts}, "
                                       f"{p.max_attempts}")
    if p.arithmetic_facts and not p.max_value:
        _fail("pretrain.arithmetic_facts", "needs pretrain.max_value, the bound the drilled results stay under")
    for key in ("batch_size", "seq_len", "traces_per_example", "learning_rate", "checkpoint_every"):
        if p[key] <= 0:
            _fail(f"pretrain.{key}", f"{p[key]} must be positive")
    if p.warmup_steps < 0:
        _fail("pretrain.warmup_steps", f"{p.warmup_steps} must be >= 0")


def validate_problem_files(task: str, files: ml_collections.ConfigDict,
                           file_keys: Sequence[str] = ("train_file", "test_file")) -> None:
    """A `data.math` or `data.code` section: its files exist, its field names are set."""
    for key in file_keys:
        if not os.path.isfile(files[key]):
            _fail(f"data.{task}.{key}", f"{files[key]!r} is not a file; point it at a JSONL file with one problem "
                                        "per line")
    for key in ("question_key", "answer_key" if task == "math" else "tests_key"):
        if not files[key]:
            _fail(f"data.{task}.{key}", "is empty; name the JSON field that holds it")


def _validate_positions(config: ml_collections.ConfigDict) -> None:
    """Every generation budget leaves the model's positions room for a prompt (checked here, not after a
    pretraining stage)."""
    from r1jax import hf, runtime  # lazily: runtime imports what imports this module

    try:
        positions = runtime.model_config(config).max_position_embeddings
    except hf.CheckpointError as e:
        _fail("model.checkpoint", str(e))
    for prefix in ("rollout.", "sampling.", ""):
        section = config.get(prefix[:-1]) if prefix else config
        budget = section.get("max_new_tokens") if isinstance(section, ml_collections.ConfigDict) else None
        if isinstance(budget, int) and budget >= positions:
            _fail(f"{prefix}max_new_tokens", f"{budget} leaves no room for a prompt: the model has {positions} "
                                             "positions")


def _validate_model(model: ml_collections.ConfigDict) -> None:
    if model.checkpoint:
        if not os.path.isdir(model.checkpoint):
            _fail("model.checkpoint", f"{model.checkpoint!r} is not a directory; point it at a Hugging Face "
                                      "model directory (config.json + *.safetensors) or set it to '' to use model.name")
        if not os.path.isfile(os.path.join(model.checkpoint, "config.json")):
            _fail("model.checkpoint", f"{model.checkpoint!r} has no config.json; it must be a Hugging Face model directory")
        if model.vocab_size:
            _fail("model.vocab_size", "is set, but model.checkpoint decides the vocabulary; set it to 0")
    elif model.name not in model_lib.MODEL_CONFIGS:
        _fail("model.name", f"{model.name!r} is not a known model; choose one of "
                            f"{', '.join(sorted(model_lib.MODEL_CONFIGS))} or set model.checkpoint")
    if model.vocab_size < 0:
        _fail("model.vocab_size", f"{model.vocab_size} must be 0 (the model's own) or positive")
    for key in ("dtype", "param_dtype"):
        if model[key] not in DTYPES:
            _fail(f"model.{key}", f"{model[key]!r} is not one of {', '.join(DTYPES)}")
    if model.remat not in model_lib.REMAT_POLICIES:
        _fail("model.remat", f"{model.remat!r} is not one of {', '.join(model_lib.REMAT_POLICIES)}")
    if model.attention_impl not in ("xla", "cudnn"):
        _fail("model.attention_impl", f"{model.attention_impl!r} is not 'xla' or 'cudnn'")
    if model.attention_impl == "cudnn" and jnp.dtype(model.dtype) == jnp.float32:
        _fail("model.attention_impl", "cudnn attention needs dtype bfloat16 or float16; set --config.model.dtype=bfloat16")
