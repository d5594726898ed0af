"""`mode: pipeline`: stages that run one after another, each reading what the earlier ones wrote.

    python -m r1jax.main --config configs/r1_pipeline_tiny.py

DeepSeek-R1 chains cold-start SFT, RL, rejection sampling, SFT and RL again; a pipeline config writes such a
chain as a list of stages. A stage is a config file (`configs/x.py[:variant]`, relative to the current
directory, as `--config` takes it) and overrides of its keys. An override's string value may name
`{stage}`, an earlier stage's workdir, or `{var}`, a value of the pipeline's `vars`:
`model.checkpoint='{rl}/hf_export'`, `data.train_file='{rejection}/distill.jsonl'`; `{{text}}` is the
literal `{text}`.

Stage `name` runs in `<workdir>/<name>`. A finished stage leaves `stage.json` there (its mode and wall
time), so running the same command again skips the finished stages and reruns the unfinished one in its
workdir, where it resumes from its own checkpoints. Its config must be the one it started with (its
`config.json` there): a stage config file edited since is refused, as `main` refuses a workdir of another
run, unless `--allow_config_change`; so is a finished stage's, which then keeps what it made (delete its
directory to run it again). So is a finished stage that reads an earlier stage which has finished again since
(its directory deleted and the stage rerun): what it made came from that stage's old output.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any

import ml_collections

from r1jax import checkpoint
from r1jax.config import ConfigError, load_config_file, validate
from r1jax.data import records
from r1jax.modes import MODES

STAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"\{(\{[A-Za-z][A-Za-z0-9_]*\})\}|\{([A-Za-z][A-Za-z0-9_]*)\}")  # {{text}}, or {name}
DONE_FILE = "stage.json"


def pipeline_config() -> ml_collections.ConfigDict:
    """Defaults of `mode: pipeline`; a config file fills `stages` (and `vars`)."""
    config = ml_collections.ConfigDict()
    config.mode = "pipeline"
    config.vars = ml_collections.ConfigDict()  # name -> string, substituted for {name} in overrides
    config.stages = []  # dicts: name, config ('configs/x.py[:variant]'), overrides ({dotted key: value})
    return config


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Stage names, config files, modes and placeholders; each stage's own config is validated when it starts,
    since it may name files that earlier stages write."""
    if not config.stages:
        raise ConfigError("config.stages: is empty; list the stages as dicts with name, config and overrides")
    known = set(config.vars)
    for index, stage in enumerate(config.stages):
        where = f"config.stages[{index}]"
        if not isinstance(stage, Mapping) or set(stage) - {"name", "config", "overrides"} or "config" not in stage:
            raise ConfigError(f"{where}: {stage!r} must be a dict with 'name', 'config' and optional 'overrides'")
        name = stage.get("name", "")
        if not STAGE_NAME.fullmatch(name) or name in known:
            raise ConfigError(f"{where}.name: {name!r} must be a new identifier (letters, digits, _), "
                              f"unlike the earlier stages and vars {sorted(known)}")
        path = stage["config"].partition(":")[0]
        if not os.path.isfile(path):
            raise ConfigError(f"{where}.config: {path!r} is not a file; give a config path relative to the "
                              f"current directory, as --config takes it")
        mode = load_config_file(stage["config"]).get("mode", "")
        if mode not in MODES or mode == "pipeline":
            raise ConfigError(f"{where}.config: its mode {mode!r} cannot be a stage; use one of "
                              f"{', '.join(sorted(set(MODES) - {'pipeline'}))}")
        for key, value in dict(stage.get("overrides", {})).items():
            for _, placeholder in PLACEHOLDER.findall(value) if isinstance(value, str) else ():
                if placeholder and placeholder not in known:
                    raise ConfigError(f"{where}.overrides[{key!r}]: {{{placeholder}}} is neither an earlier stage "
                                      f"nor a var; known: {sorted(known)}")
        known.add(name)


def stage_config(stage: Mapping[str, Any], names: Mapping[str, str]) -> ml_collections.ConfigDict:
    """The stage's config file with its overrides applied, `{name}` placeholders replaced from `names`."""
    config = load_config_file(stage["config"])
    config.lock()  # an override naming no field is an error, not a new field
    for key, value in dict(stage.get("overrides", {})).items():
        if isinstance(value, str):
            value = PLACEHOLDER.sub(lambda m: m.group(1) or names[m.group(2)], value)
        try:
            config.update_from_flattened_dict({key: value})
        except (KeyError, AttributeError, TypeError) as e:
            raise ConfigError(f"stage {stage['name']}: override {key}={value!r} does not fit its config "
                              f"({stage['config']}): {e}") from None
    config.unlock()
    return config


def run(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False
        ) -> list[dict[str, Any]]:
    """Runs the unfinished stages in order; returns one record per stage (name, mode, seconds, workdir).
    An unfinished stage whose config differs from the one it started with is a `ConfigError`, unless
    `allow_config_change`.

    A stage stopped by a signal (it saved) ends the pipeline there: a training stage's record is marked
    `stopped`; a sampling stage (generate, distill) raises `checkpoint.StoppedBySignal`.

    `seconds` is wall time; `cpu_seconds` is this process's CPU time (all its threads), the fairer
    figure when other jobs share the machine.
    """
    validate_config(config)
    names = {key: str(value) for key, value in config.vars.items()}
    finished_at: dict[str, float] = {}  # stage name -> when its stage.json was written
    records = []
    with checkpoint.PreemptionGuard() as preemption:  # hears a signal a stage's own guard caught too
        for stage in config.stages:
            if preemption.requested:
                raise checkpoint.StoppedBySignal(f"pipeline stopped by {preemption.received.name} before stage "
                                                 f"{stage['name']}; the same command continues it")
            record = _run_stage(stage, names, workdir, allow_config_change, finished_at)
            records.append(record)
            if record.get("stopped"):
                return records
    width = max(len(r["name"]) for r in records)
    print("\n".join(f"{r['name']:<{width}}  {r['mode']:<8}  {r['seconds']:7.0f} s  {r['workdir']}" for r in records))
    return records


def _run_stage(stage: Mapping[str, Any], names: dict[str, str], workdir: str, allow_config_change: bool,
               finished_at: dict[str, float]) -> dict[str, Any]:
    """Runs one stage (or reads the record of its earlier finished run); its record, with `stopped` if a
    signal stopped it. Adds the stage's workdir to `names` and, once it has finished, when to `finished_at`."""
    import jax

    stage_dir = os.path.join(workdir, stage["name"])
    stage_cfg = stage_config(stage, names)
    names[stage["name"]] = stage_dir
    done_path = os.path.join(stage_dir, DONE_FILE)
    if os.path.exists(done_path):
        _refuse_if_stale(stage, done_path, finished_at, allow_config_change)
        changes = []
        if os.path.isfile(os.path.join(stage_dir, "config.json")):
            with open(os.path.join(stage_dir, "config.json")) as f:
                # Settings a newer r1jax added are not changes: the stage finished without them.
                changes = records.json_changes(json.load(f), json.loads(stage_cfg.to_json_best_effort()),
                                               new_keys=False)
        if changes and not allow_config_change:
            raise ConfigError(f"stage {stage['name']} finished in {stage_dir} with another config "
                              f"({checkpoint.shown_changes(changes)}); delete {stage_dir} to run it again with this "
                              "one, or pass --allow_config_change to keep what it made")
        print(f"stage {stage['name']}: finished earlier ({stage_dir})", flush=True)
        finished_at[stage["name"]] = os.path.getmtime(done_path)
        with open(done_path) as f:
            return json.load(f)
    try:
        validate(stage_cfg, known_modes=MODES, num_devices=jax.device_count())
    except ConfigError as e:
        raise ConfigError(f"stage {stage['name']}: {e}") from None
    before = checkpoint.snapshot_workdir(stage_dir)
    problem = checkpoint.prepare_workdir(stage_dir, stage_cfg.to_json_best_effort(indent=2), write=True,
                                         allow_config_change=allow_config_change)
    if problem:
        raise ConfigError(f"stage {stage['name']}: {problem}")
    print(f"stage {stage['name']}: mode {stage_cfg.mode} in {stage_dir}", flush=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        summary = importlib.import_module(MODES[stage_cfg.mode]).run(stage_cfg, stage_dir)
    except Exception:
        checkpoint.restore_config_if_nothing_saved(stage_dir, before)
        raise
    record = dict(name=stage["name"], mode=stage_cfg.mode, seconds=time.perf_counter() - start,
                  cpu_seconds=time.process_time() - cpu_start, workdir=stage_dir)
    if isinstance(summary, dict) and summary.get("stopped"):  # saved on a signal: not finished
        print(f"stage {stage['name']}: stopped at step {summary['steps']} of {stage_cfg.steps}; the same "
              f"command continues it", flush=True)
        return dict(record, stopped=True)
    with open(done_path + ".partial", "w") as f:
        json.dump(record, f)
    os.replace(done_path + ".partial", done_path)
    finished_at[stage["name"]] = os.path.getmtime(done_path)
    return record


def _refuse_if_stale(stage: Mapping[str, Any], done_path: str, finished_at: Mapping[str, float],
                     allow_config_change: bool) -> None:
    """ConfigError if an earlier stage that `stage` reads (a `{name}` in its overrides) finished after it did."""
    read = {match.group(2) for value in dict(stage.get("overrides", {})).values() if isinstance(value, str)
            for match in PLACEHOLDER.finditer(value) if match.group(2) in finished_at}
    newer = sorted(name for name in read if finished_at[name] > os.path.getmtime(done_path))
    if newer and not allow_config_change:
        stage_dir = os.path.dirname(done_path)
        raise ConfigError(f"stage {stage['name']} finished in {stage_dir} before stage {', '.join(newer)}, which it "
                          f"reads, ran again: it was made from the old output; delete {stage_dir} to run it again, "
                          "or pass --allow_config_change to keep what it made")
