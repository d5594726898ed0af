"""The in-run pretraining stage: the base model made once, RL starting from it, and a run stopped by SIGTERM
while pretraining resuming to the base model an uninterrupted run makes."""

import json
import os
import signal
import sys
import time

import jax
import numpy as np
from interrupted import kill_after_checkpoint

from r1jax import checkpoint, hf, pretrain, sft
from r1jax import model as model_lib
from r1jax.config import load_config_file
from r1jax.rl import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "countdown_tiny.py:smoke")

# Steps of small batches of short rows (a tenth of a second or so), enough of them after the first
# checkpoint that the SIGTERM sent once it appears lands before the last.
PRETRAIN_CHANGES = {"pretrain.steps": 16, "pretrain.checkpoint_every": 4, "pretrain.batch_size": 2,
                    "pretrain.seq_len": 96, "eval.every": 0}


def _config():
    config = load_config_file(SMOKE)
    config.update_from_flattened_dict(PRETRAIN_CHANGES)
    return config


def _pretrain_record(workdir):
    with open(os.path.join(pretrain.base_model_dir(str(workdir)), "pretrain.json")) as f:
        return json.load(f)


def test_a_run_stopped_while_pretraining_exits_75_and_resumes_to_the_uninterrupted_base(tmp_path, monkeypatch,
                                                                                       capsys):
    """One test, since every part needs a pretrained base: the uninterrupted run, the stopped and resumed
    one, then a rerun that must not pretrain again."""
    uninterrupted = trainer.GRPORun(_config(), str(tmp_path / "a"))
    base_dir = pretrain.base_model_dir(str(tmp_path / "a"))
    assert os.path.exists(os.path.join(base_dir, "tokenizer.json"))
    base = hf.load_params(base_dir, uninterrupted.model_config)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(uninterrupted.state["params"]), base)  # RL's start
    fresh = jax.device_get(model_lib.init_params(uninterrupted.model_config, jax.random.key(0)))
    assert not any(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(base)))
    assert not os.path.exists(pretrain.base_checkpoints_dir(str(tmp_path / "a")))  # gone once the base is written

    workdir = tmp_path / "b"
    checkpoints = pretrain.base_checkpoints_dir(str(workdir))
    command = [sys.executable, "-m", "r1jax.main", "--config", SMOKE, "--workdir", str(workdir),
               *(f"--config.{key}={value}" for key, value in PRETRAIN_CHANGES.items())]
    stopped = kill_after_checkpoint(command, workdir, 4, cwd=REPO, sig=signal.SIGTERM,
                                    checkpoints=os.path.basename(checkpoints))
    assert stopped.returncode == checkpoint.STOPPED_EXIT_CODE, stopped.stdout[-3000:]
    saved = [int(name) for name in os.listdir(checkpoints) if name.isdigit()]
    assert len(saved) == 1 and 4 <= saved[0] < 16  # the step the signal reached, forced
    assert (f"pretraining stopped by a signal at step {saved[0]} of 16, saved in {checkpoints}; the same command "
            "continues it") in stopped.stdout
    assert not os.path.exists(pretrain.base_model_dir(str(workdir)))

    start = time.perf_counter()
    resumed = trainer.GRPORun(_config(), str(workdir))
    resume_seconds = time.perf_counter() - start
    assert f"resumed from step {saved[0]} in {checkpoints}" in capsys.readouterr().out
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.state["params"]), base)
    assert not os.path.exists(checkpoints)
    record, reference = _pretrain_record(workdir), _pretrain_record(tmp_path / "a")
    assert len(record["losses"]) == 16
    np.testing.assert_allclose(record["losses"], reference["losses"], rtol=1e-6)
    assert record["seconds"] > resume_seconds  # the stopped run's time counts too

    def no_second_pretraining(*args, **kwargs):
        raise AssertionError("the base model was trained again")

    monkeypatch.setattr(sft, "train", no_second_pretraining)
    again = trainer.GRPORun(_config(), str(workdir))
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(again.state["params"]), base)
