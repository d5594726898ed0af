"""Multi-process runs: the distributed settings, and two processes on this machine (over localhost, 4 CPU
devices each) that train to the parameters one process with the same 8 devices reaches (this one, see
conftest): SFT with the parameters sharded across both processes, GRPO data-parallel."""

import contextlib
import glob
import os
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from conftest import xla_flags
from safetensors.numpy import load_file

from r1jax import distributed, sft
from r1jax import metrics as metrics_lib
from r1jax.config import load_config_file
from r1jax.rl import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT_CONFIG = os.path.join(REPO, "configs", "sft_journey_tiny.py:journey,smoke")
SFT_CHANGES = {"mesh.data": 1, "mesh.fsdp": -1}  # every parameter split over all 8 devices, so over both processes
GRPO_CONFIG = os.path.join(REPO, "configs", "countdown_tiny.py:smoke")
# No pretraining stage (time); 3 held-out prompts: the 2 processes score 2 rows each, one of them twice.
GRPO_CHANGES = {"pretrain.steps": 0, "eval.every": 0, "eval.num_examples": 3, "eval.batch_size": 3,
                "log_samples_every": 1}
JOB_TIMEOUT_S = 420


# ---------------------------------------------------------------------------------------------
# Settings


def _no_initialize(*args, **kwargs):
    raise AssertionError("jax.distributed.initialize was called")


@pytest.mark.parametrize("arguments,environ,words", [
    (dict(num_processes=2, process_id=0), {}, "the coordinator address is missing"),
    (dict(coordinator_address="localhost:1234"), {}, "the number of processes and the process id are missing"),
    (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2), {}, "process id 2 is not in [0, 2)"),
    (dict(coordinator_address="localhost:1234", num_processes=0, process_id=0), {}, "number of processes is 0"),
    ({}, {"R1JAX_COORDINATOR_ADDRESS": "h:1", "R1JAX_NUM_PROCESSES": "two", "R1JAX_PROCESS_ID": "0"},
     "R1JAX_NUM_PROCESSES='two' is not an integer"),
    # A flag overrides its environment variable.
    (dict(process_id=3), {"R1JAX_COORDINATOR_ADDRESS": "h:1", "R1JAX_NUM_PROCESSES": "2", "R1JAX_PROCESS_ID": "1"},
     "process id 3 is not in [0, 2)"),
])
def test_bad_settings_fail_before_joining_anything(monkeypatch, arguments, environ, words):
    monkeypatch.setattr(jax.distributed, "initialize", _no_initialize)
    with pytest.raises(distributed.SetupError) as error:
        distributed.initialize(**arguments, environ=environ)
    assert words in str(error.value)


def test_settings_come_from_flags_or_the_environment_and_none_means_one_process(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kwargs: calls.append((args, kwargs)))
    distributed.initialize(environ={})
    assert calls == []  # no settings and no cluster: a single process, untouched
    distributed.initialize(environ={"R1JAX_COORDINATOR_ADDRESS": "h:1", "R1JAX_NUM_PROCESSES": "4",
                                    "R1JAX_PROCESS_ID": "3"})
    distributed.initialize("g:2", 2, 1, environ={"R1JAX_COORDINATOR_ADDRESS": "h:1"})
    assert calls == [(("h:1",), dict(num_processes=4, process_id=3)), (("g:2",), dict(num_processes=2, process_id=1))]
    # A SLURM job step with several tasks is left to JAX's own detection.
    slurm = {"SLURM_JOB_ID": "7", "SLURM_STEP_NODELIST": "node[01-02]", "SLURM_NTASKS": "2", "SLURM_PROCID": "1",
             "SLURM_LOCALID": "0"}
    for name, value in slurm.items():
        monkeypatch.setenv(name, value)
    distributed.initialize(environ={})
    assert calls[-1] == ((), {})
    monkeypatch.setenv("SLURM_NTASKS", "1")
    distributed.initialize(environ={})
    assert len(calls) == 3  # one task: a single process


def test_cpu_devices_come_from_the_flag_or_the_environment_and_are_checked_once_jax_runs():
    assert jax.device_count() == 8  # started, with conftest.py's 8 CPU devices
    distributed.set_cpu_devices(None, environ={})  # neither: JAX's default, untouched
    distributed.set_cpu_devices(8)
    distributed.set_cpu_devices(None, environ={"R1JAX_CPU_DEVICES": "8"})
    for count, environ, words in [(2, {}, "2 CPU devices asked for, but JAX already runs with 8"),
                                  (None, {"R1JAX_CPU_DEVICES": "2"}, "already runs with 8"),
                                  (0, {}, "0 CPU devices: give at least 1"),
                                  (None, {"R1JAX_CPU_DEVICES": "two"}, "R1JAX_CPU_DEVICES='two' is not an integer")]:
        with pytest.raises(distributed.SetupError, match=re.escape(words)):
            distributed.set_cpu_devices(count, environ=environ)
    assert jax.device_count() == 8


def test_the_cli_splits_the_cpu_into_the_devices_asked_for(tmp_path):
    """The flag beats the XLA flag this suite sets, and the mesh's data axis fills the devices."""
    config = os.path.join(REPO, "configs", "benchmark.py")
    result = subprocess.run([sys.executable, "-m", "r1jax.main", "--config", config, "--workdir", str(tmp_path),
                             "--config.steps=1", "--config.seq_len=16", "--config.batch_size=2", "--cpu_devices=2"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "XLA_FLAGS": xla_flags(8), "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "'data': 2, 'fsdp': 1, 'tensor': 1" in result.stdout


def test_the_cli_rejects_incomplete_settings_with_exit_code_2_and_writes_nothing(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "r1jax.main", "--config", SFT_CONFIG, "--workdir", str(workdir),
                             "--num_processes=2", "--process_id=0"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "the coordinator address is missing" in result.stderr
    assert not workdir.exists()


# ---------------------------------------------------------------------------------------------
# Two processes against one


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _two_process_run(config: str, changes: dict, workdir):
    """Starts both processes of an `r1jax.main` run, 4 CPU devices each, runs the block meanwhile, then waits
    for them: a process failing, or the run outlasting JOB_TIMEOUT_S (a hang), fails the test.

    Each process's stdout goes to `<workdir>/process<i>.stdout`, its stderr to `process<i>.log`."""
    env = {**os.environ, "XLA_FLAGS": xla_flags(4)}
    command = [sys.executable, "-m", "r1jax.main", "--config", config, "--workdir", str(workdir),
               "--coordinator_address", f"localhost:{_free_port()}", "--num_processes=2",
               *(f"--config.{key}={value}" for key, value in changes.items())]
    os.makedirs(workdir)
    processes, logs = [], []
    try:
        for process_id in range(2):
            logs.append(os.path.join(workdir, f"process{process_id}.log"))
            with open(os.path.join(workdir, f"process{process_id}.stdout"), "w") as stdout, \
                    open(logs[-1], "w") as stderr:
                processes.append(subprocess.Popen([*command, f"--process_id={process_id}"], cwd=REPO, env=env,
                                                  stdout=stdout, stderr=stderr))
        yield
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while any(process.poll() is None for process in processes):
            failed = [log for process, log in zip(processes, logs) if process.poll() not in (None, 0)]
            assert not failed, f"a process failed:\n{open(failed[0]).read()[-3000:]}"
            assert time.monotonic() < deadline, f"the run did not finish in {JOB_TIMEOUT_S} s"
            time.sleep(0.5)
        for process, log in zip(processes, logs):
            assert process.returncode == 0, open(log).read()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def _exported(workdir) -> dict[str, np.ndarray]:
    return load_file(*glob.glob(os.path.join(workdir, "hf_export", "*.safetensors")))


def _config(path: str, changes: dict):
    config = load_config_file(path)
    config.update_from_flattened_dict(changes)
    return config


def _without_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def _assert_same_run(one_dir, two_dir, exact_keys) -> None:
    """Parameters within float32 rounding (the cross-process reductions add in another order), the same
    checkpoints, metric records written once with `exact_keys` equal to the bit, and the same samples."""
    one, two = _exported(one_dir), _exported(two_dir)
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-6, atol=1e-6, err_msg=name)
    assert sorted(os.listdir(two_dir / "checkpoints")) == sorted(os.listdir(one_dir / "checkpoints"))
    one_records, two_records = metrics_lib.read_metrics(str(one_dir)), metrics_lib.read_metrics(str(two_dir))
    assert [r["step"] for r in two_records] == [r["step"] for r in one_records]
    for a, b in zip(one_records, two_records):
        assert a.keys() == b.keys()
        assert [a[k] for k in exact_keys if k in a] == [b[k] for k in exact_keys if k in b]
    samples = [_without_time(metrics_lib.read_metrics(str(d / metrics_lib.SAMPLES_FILE))) for d in (one_dir, two_dir)]
    assert samples[0] == samples[1]
    # Only process 0 printed.
    assert "step 1:" in open(os.path.join(two_dir, "process0.stdout")).read()
    assert open(os.path.join(two_dir, "process1.stdout")).read() == ""


def test_sft_on_two_processes_ends_with_the_parameters_of_one(tmp_path):
    with _two_process_run(SFT_CONFIG, SFT_CHANGES, tmp_path / "two"):
        summary = sft.run(_config(SFT_CONFIG, SFT_CHANGES), str(tmp_path / "one"))
    sharded = [leaf for leaf in jax.tree.leaves(summary["params"]) if not leaf.sharding.is_fully_replicated]
    assert sharded and all(len(leaf.sharding.device_set) == 8 for leaf in sharded)
    _assert_same_run(tmp_path / "one", tmp_path / "two", exact_keys=("epoch", "learning_rate"))


def test_grpo_on_two_processes_ends_with_the_parameters_of_one(tmp_path):
    with _two_process_run(GRPO_CONFIG, GRPO_CHANGES, tmp_path / "two"):
        trainer.run(_config(GRPO_CONFIG, GRPO_CHANGES), str(tmp_path / "one"))
    # The same completions and, gathered from the processes that scored them, the same rewards.
    _assert_same_run(tmp_path / "one", tmp_path / "two",
                     exact_keys=("reward/countdown", "reward/format_tags", "reward/total", "response_length/mean",
                                 "eval/accuracy", "eval/response_length_sampled"))
    assert len(metrics_lib.read_metrics(str(tmp_path / "two" / metrics_lib.SAMPLES_FILE))) == 2


_STOP_AGREEMENT_SCRIPT = """
import os, signal, sys
import jax
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from r1jax.checkpoint import PreemptionGuard
with PreemptionGuard() as guard:
    before = guard.stop_agreed()
    if jax.process_index() == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    print(before, guard.requested, guard.stop_agreed())
"""


def test_a_signal_to_one_process_stops_every_process_at_the_same_step():
    address = f"localhost:{_free_port()}"
    env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
    processes = [subprocess.Popen([sys.executable, "-c", _STOP_AGREEMENT_SCRIPT, address, str(i)], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    # Only process 1 got the signal; both agree to stop, and neither did before it.
    results = [out.strip().splitlines()[-1].split() for out, _ in outputs]  # after gloo's connection lines
    assert results == [["False", "False", "True"], ["False", "True", "True"]]
