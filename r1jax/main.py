"""Command line: `python -m r1jax.main --config configs/<x>.py[:variant] [--workdir DIR] [--config.a.b=v]`.

Parses flags, joins a multi-process job if this is one (`r1jax.distributed`), validates the config before
anything is compiled or written, then calls the mode's `run(config, workdir)`; tests and notebooks import
those functions directly.
"""

from __future__ import annotations

import importlib
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from r1jax.modes import MODES

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a config file, optionally ':variant'.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and metrics go (default: workdir/<config name>).")
_COORDINATOR_ADDRESS = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 in a multi-process run (else $R1JAX_COORDINATOR_ADDRESS).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Processes in a multi-process run (else $R1JAX_NUM_PROCESSES).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "This process's index in a multi-process run (else $R1JAX_PROCESS_ID).")


def default_workdir() -> str:
    path = config_flags.get_config_filename(flags.FLAGS["config"])
    return os.path.join("workdir", os.path.splitext(os.path.basename(path))[0])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax  # after flag parsing, so --help stays fast

    # absl logs at INFO by default; JAX's accelerator probe and TFDS's file writes are noise there.
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)

    from r1jax import distributed
    from r1jax.config import ConfigError, validate

    config = _CONFIG.value
    try:
        distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        if jax.process_count() > 1 and config.mode not in distributed.MULTIHOST_MODES:
            raise ConfigError(f"config.mode: {config.mode!r} runs in a single process; multi-process runs are "
                              f"for the modes {', '.join(distributed.MULTIHOST_MODES)}")
        validate(config, known_modes=MODES, num_devices=jax.device_count())
    except (distributed.SetupError, ConfigError) as e:
        print(f"r1jax: {e}", file=sys.stderr)
        sys.exit(2)
    distributed.silence_other_processes()
    workdir = _WORKDIR.value or default_workdir()
    os.makedirs(workdir, exist_ok=True)
    if distributed.is_main_process():
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    importlib.import_module(MODES[config.mode]).run(config, workdir)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, except that an override naming no config field is one line and exit code 2."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError, TypeError):  # what ml_collections raises for such an override
        problem = _unknown_override(argv)
        if problem is None:
            raise
        print(f"r1jax: {problem}", file=sys.stderr)
        sys.exit(2)


def _unknown_override(argv: list[str]) -> str | None:
    from r1jax.config import load_config_file, unknown_override

    config_file = ""
    for arg, following in zip(argv, [*argv[1:], ""]):
        if arg == "--config":
            config_file = following
        elif arg.startswith("--config="):
            config_file = arg.partition("=")[2]
    if not config_file:
        return None
    config = load_config_file(config_file)
    overrides = (arg.partition("=")[0].removeprefix("--config.") for arg in argv if arg.startswith("--config."))
    return next(filter(None, (unknown_override(config, dotted) for dotted in overrides)), None)


def cli() -> None:
    flags.mark_flag_as_required("config")
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    cli()
