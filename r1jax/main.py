"""Command line: `python -m r1jax.main --config configs/<x>.py[:variant] [--workdir DIR] [--config.a.b=v]`.

Parses flags, joins a multi-process job if this is one (`r1jax.distributed`), validates the config before
anything is compiled or written, then calls the mode's `run(config, workdir)`; tests and notebooks import
those functions directly.
"""

from __future__ import annotations

import importlib
import linecache
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from r1jax.modes import MODES

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file, optionally ':variant'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go (default: workdir/<config name>).")
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 in a multi-process run (else $R1JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Processes in a multi-process run (else $R1JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index in a multi-process run (else $R1JAX_PROCESS_ID).")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "Present this host's CPU as this many JAX devices (else $R1JAX_CPU_DEVICES, else JAX's "
    "default); the mesh's data axis then runs a shard on each, in parallel. See docs/performance.md.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_boolean(
    "allow_config_change", False, "Resume the run in --workdir although its config.json differs from this config.")


def default_workdir(config_file: str) -> str:
    """`workdir/<config name>`, with the variant: `configs/x.py:smoke` -> `workdir/x_smoke`."""
    name, _, variant = os.path.basename(config_file).partition(":")
    return os.path.join("workdir", "_".join([os.path.splitext(name)[0], *filter(None, variant.split(","))]))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax  # after flag parsing, so --help stays fast

    # absl logs at INFO by default; JAX's accelerator probe and TFDS's file writes are noise there.
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)

    from r1jax import checkpoint, distributed
    from r1jax.config import ConfigError, validate

    config = _CONFIG.value
    try:
        distributed.set_cpu_devices(_CPU_DEVICES.value)
        distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        if jax.process_count() > 1 and config.mode not in distributed.MULTIHOST_MODES:
            raise ConfigError(f"config.mode: {config.mode!r} runs in a single process; multi-process runs are "
                              f"for the modes {', '.join(distributed.MULTIHOST_MODES)}")
        validate(config, known_modes=MODES, num_devices=jax.device_count())
    except (distributed.SetupError, ConfigError) as e:
        print(f"r1jax: {e}", file=sys.stderr)
        sys.exit(2)
    distributed.silence_other_processes()
    workdir = _WORKDIR.value or default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
    before = checkpoint.snapshot_workdir(workdir)
    problem = checkpoint.prepare_workdir(workdir, config.to_json_best_effort(indent=2),
                                         write=distributed.is_main_process(),
                                         allow_config_change=_ALLOW_CONFIG_CHANGE.value)
    if problem:
        print(f"r1jax: {problem}", file=sys.stderr)
        sys.exit(2)
    try:
        # A pipeline compares each stage's config with the one its unfinished stage started with.
        extra = dict(allow_config_change=_ALLOW_CONFIG_CHANGE.value) if config.mode == "pipeline" else {}
        result = importlib.import_module(MODES[config.mode]).run(config, workdir, **extra)
    except checkpoint.StoppedBySignal as stopped:  # its progress is saved: the same command continues it
        print(stopped, flush=True)
        sys.exit(checkpoint.STOPPED_EXIT_CODE)
    except checkpoint.CheckpointUnreadable as e:
        print(f"r1jax: {e}", file=sys.stderr)
        sys.exit(1)
    except (ValueError, FileNotFoundError) as e:
        # A ConfigError the mode found (a pipeline checks each stage's config as it starts it), or an input the
        # mode refused (a data file, a prompts file): one line. Anything else is a bug: its traceback.
        if not (isinstance(e, ConfigError) or _refused_input(e)):
            raise
        if distributed.is_main_process():
            checkpoint.restore_config_if_nothing_saved(workdir, before)
        print(f"r1jax: {e}", file=sys.stderr)
        sys.exit(2)
    summaries = result if isinstance(result, list) else [result]  # the pipeline's: one per stage
    if any(isinstance(summary, dict) and summary.get("stopped") for summary in summaries):
        sys.exit(checkpoint.STOPPED_EXIT_CODE)


def _refused_input(error: BaseException) -> bool:
    """Whether r1jax raised `error` itself, with a `raise` statement of its own code, to say what is wrong with
    an input; not a bug, nor a library's failure (a `ValueError` deep in JAX), whose traceback is wanted."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return False
    filename = frame.tb_frame.f_code.co_filename
    in_package = os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)
    return in_package and linecache.getline(filename, frame.tb_lineno).lstrip().startswith("raise ")


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that a missing config file, a bad variant or an override naming no config
    field is one line and exit code 2."""
    from r1jax.config import config_file_problem, first_unknown_override, load_config_file

    config_file = _config_file_argument(argv)
    problem = config_file and config_file_problem(config_file)
    if not problem:
        try:
            return app.parse_flags_with_usage(argv)
        except (AttributeError, KeyError, TypeError, ValueError):  # what ml_collections raises for such an override
            problem = config_file and first_unknown_override(load_config_file(config_file), argv)
            if not problem:
                raise
    print(f"r1jax: {problem}", file=sys.stderr)
    sys.exit(2)


def _config_file_argument(argv: list[str]) -> str:
    config_file = ""
    for arg, following in zip(argv, [*argv[1:], ""]):
        if arg == "--config":
            config_file = following
        elif arg.startswith("--config="):
            config_file = arg.partition("=")[2]
    return config_file


def cli() -> None:
    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    cli()
