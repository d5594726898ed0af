"""tools/aot_compile.py: a tiny config's train step compiled for a TPU preset on the 8 fake CPU devices."""

import os
import re

import pytest

from r1jax import model as model_lib
from tools import aot_compile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SFT_TINY = os.path.join(REPO, "configs", "sft_countdown_tiny.py")


def test_config_flags_apply_after_the_topology():
    config, machine = aot_compile.parse_config(["--config", SFT_TINY, "--topology", "v5e-16", "--config.mesh.data=2",
                                                "--config.mesh.fsdp=4", "--config.batch_size=32"])
    assert machine == "v5e-16"
    assert (config.mesh.data, config.mesh.fsdp, config.mesh.tensor, config.batch_size) == (2, 4, 2, 32)


def test_the_memory_table_of_a_tiny_sft_step(capsys):
    # v5e-8 has as many devices as the tests: the tool uses them whether or not JAX has started.
    report = aot_compile.main(["--config", SFT_TINY, "--topology", "v5e-8"])
    printed = capsys.readouterr().out
    table = {name: int(size.replace(",", "")) for name, size in re.findall(r"^(\w+) +([\d,]+) +[\d.]+$", printed, re.M)}
    assert table == report.memory and report.mesh == dict(data=1, fsdp=4, tensor=2)
    assert "v5e-8" in printed and "the device has 16 GiB" in printed

    config = model_lib.get_model_config("tiny")  # what the config's placeholder checkpoint stands for
    param_bytes = config.num_params() * 4  # float32
    assert report.parameters == config.num_params()
    # Sharded over fsdp and tensor, though not every array divides 8 ways.
    assert param_bytes / 8 <= report.param_bytes_per_device < param_bytes / 2
    # The weights and Adam's two moments come in, and go out again into the donated buffers.
    assert table["arguments"] >= 3 * report.param_bytes_per_device
    assert 3 * report.param_bytes_per_device <= table["aliased"] <= table["outputs"]
    assert table["total"] == table["arguments"] + table["outputs"] - table["aliased"] + table["temporaries"]
    assert table["temporaries"] > 0 and table["total"] < 2**30
    tokens = 8 * 256  # batch_size x sft.seq_len
    assert 6 * param_bytes / 4 * tokens / 8 / 2 < report.flops_per_device < 6 * param_bytes / 4 * tokens / 8 * 2


@pytest.mark.parametrize("argv, message", [
    (["--config", "configs/no_such.py"], "--config: 'configs/no_such.py' is not a file"),
    (["--config", "configs/generate.py"], "a 'generate' config; only the modes with a train step"),
    (["--config", SFT_TINY, "--config.stepz=1"], "--config.stepz: the config has no field 'stepz'"),
    (["--config", SFT_TINY, "--topology", "v5e-8", "--config.batch_size=6"],  # 6 rows over fsdp=4
     "partitioned 4 times, but the dimension size is 6"),
])
def test_bad_input_is_one_line(argv, message, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as exit_:
        aot_compile.main(argv)
    assert str(exit_.value).startswith("aot_compile: ") and message in str(exit_.value)
