"""Checkpoint round trips (bit-exact, across meshes), retention, intervals, preemption, killed saves."""

import os
import shlex
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from r1jax import model as model_lib
from r1jax import sharding as sharding_lib
from r1jax.checkpoint import Checkpointer, CheckpointUnreadable, PreemptionGuard, StoppedBySignal, batch_starts

CONFIG = model_lib.get_model_config("tiny-qwen3")
OPTIMIZER = optax.adamw(1e-3, weight_decay=0.1)


def _train_state(param_shardings=None) -> dict:
    """params, AdamW state after one update, step and typed key: what the trainers checkpoint."""
    params = model_lib.init_params(CONFIG, jax.random.key(0), param_shardings)

    @jax.jit
    def one_update(params):
        opt_state = OPTIMIZER.init(params)
        grads = jax.tree.map(lambda p: jnp.sin(p) + 0.5, params)
        updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    params, opt_state = one_update(params)
    return {"params": params, "opt_state": opt_state, "step": jnp.int32(1), "rng": jax.random.key(42)}


def _state_shardings(state: dict, param_shardings, other: jax.sharding.Sharding) -> dict:
    """Parameter shardings for params and every optimizer-state copy of them; `other` elsewhere."""
    opt_shardings = optax.tree_map_params(OPTIMIZER, lambda _, s: s, state["opt_state"], param_shardings,
                                          transform_non_params=lambda _: other)
    return {"params": param_shardings, "opt_state": opt_shardings, "step": other, "rng": other}


def _abstract(state: dict, shardings: dict) -> dict:
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def _assert_bit_exact(actual: dict, expected: dict) -> None:
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    assert actual["rng"].dtype == expected["rng"].dtype  # still a typed key of the same impl
    unwrap = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        assert a.dtype == e.dtype
        np.testing.assert_array_equal(np.asarray(unwrap(a)), np.asarray(unwrap(e)))


def _assert_placed(state: dict, shardings: dict) -> None:
    for array, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(shardings)):
        assert array.sharding.is_equivalent_to(sharding, array.ndim), (array.sharding, sharding)


@pytest.fixture(scope="module")
def mesh():
    return sharding_lib.make_mesh({"fsdp": 4, "tensor": 2})


@pytest.fixture(scope="module")
def sharded_params(mesh):
    rules = sharding_lib.get_rules("fsdp_tensor")
    return sharding_lib.param_shardings(model_lib.param_logical_axes(CONFIG), model_lib.param_shapes(CONFIG), mesh,
                                        rules)


def test_round_trip_is_bit_exact_with_metadata(tmp_path):
    state, expected = _train_state(), _train_state()
    device = SingleDeviceSharding(jax.devices()[0])
    abstract = _abstract(state, jax.tree.map(lambda _: device, state))
    metadata = {"data": {"epoch": 2, "index": 1234}, "config": {"lr": 1e-3, "name": "tiny"}, "note": None}
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=2) as ckpt:
        assert ckpt.latest_step() is None
        assert ckpt.save(1, state, metadata)
        # The async save has copied the arrays off the devices: the trainer may donate them now.
        for array in jax.tree.leaves(state):
            array.delete()
        ckpt.wait_until_finished()
        restored, restored_metadata = ckpt.restore(abstract)
    _assert_bit_exact(restored, expected)
    assert restored_metadata == metadata


@pytest.mark.parametrize("direction", ["unsharded_to_sharded", "sharded_to_unsharded"])
def test_restore_onto_another_sharding(tmp_path, mesh, sharded_params, direction):
    replicated = NamedSharding(mesh, PartitionSpec())
    device = SingleDeviceSharding(jax.devices()[0])
    reference = _train_state()
    sharded = _state_shardings(reference, sharded_params, replicated)
    unsharded = jax.tree.map(lambda _: device, reference)
    save_shardings, restore_shardings = ((unsharded, sharded) if direction == "unsharded_to_sharded"
                                         else (sharded, unsharded))
    state = jax.device_put(reference, save_shardings)
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=1) as ckpt:
        ckpt.save(1, state, {})
        ckpt.wait_until_finished()
        restored, _ = ckpt.restore(_abstract(state, restore_shardings))
    _assert_placed(restored, restore_shardings)
    _assert_bit_exact(restored, reference)
    assert any(len(p.sharding.device_set) == 8 for p in jax.tree.leaves(restored if direction ==
                                                                        "unsharded_to_sharded" else state))


def _small_state(value: float) -> dict:
    return {"w": jnp.full((4, 3), value, jnp.float32), "step": jnp.int32(int(value)), "rng": jax.random.key(7)}


def _abstract_small() -> dict:
    device = SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), _small_state(0))


def test_interval_force_keep_last_and_restart(tmp_path):
    with Checkpointer(tmp_path, save_interval_steps=3, max_to_keep=2, async_save=False) as ckpt:
        saved = [step for step in range(1, 11) if ckpt.save(step, _small_state(step), {"step": step})]
        assert saved == [3, 6, 9]
        assert ckpt.save(10, _small_state(10), {"step": 10}, force=True)
        assert ckpt.all_steps() == [9, 10]  # keep-last-2
        # A forced save of a step that already exists (preempted right after resuming) is a no-op.
        assert not ckpt.save(10, _small_state(-1), {"step": -1}, force=True)

    with Checkpointer(tmp_path, save_interval_steps=3, max_to_keep=2) as restarted:
        assert restarted.latest_step() == 10
        state, metadata = restarted.restore(_abstract_small())
        assert metadata == {"step": 10} and int(state["step"]) == 10
        state, metadata = restarted.restore(_abstract_small(), step=9)
        assert metadata == {"step": 9} and float(state["w"][0, 0]) == 9.0


def test_restore_without_checkpoint_or_sharding_fails_clearly(tmp_path):
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=None) as ckpt:
        with pytest.raises(FileNotFoundError):
            ckpt.restore(_abstract_small())
        ckpt.save(1, _small_state(1))
        ckpt.wait_until_finished()
        no_sharding = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _small_state(0))
        with pytest.raises(ValueError, match="no sharding"):
            ckpt.restore(no_sharding)
        # Concrete arrays serve as the abstract state too; their shardings are used.
        state, metadata = ckpt.restore(_small_state(0))
        assert metadata == {} and float(state["w"][0, 0]) == 1.0


def test_preemption_guard_sets_flag_and_restores_handlers():
    previous_term, previous_int = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with PreemptionGuard() as guard:
        assert not guard.requested and not guard.stop_agreed()
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested and guard.received == signal.SIGTERM and guard.stop_agreed()
    assert signal.getsignal(signal.SIGTERM) is previous_term
    assert signal.getsignal(signal.SIGINT) is previous_int


def test_an_enclosing_guard_hears_the_signal_an_inner_one_caught_and_python_handlers_do_not():
    with PreemptionGuard() as outer:
        with PreemptionGuard() as inner:
            os.kill(os.getpid(), signal.SIGTERM)
        assert inner.requested and outer.requested and outer.received == signal.SIGTERM
    with PreemptionGuard():  # SIGINT's own handler raises KeyboardInterrupt: not replayed after a saved stop
        os.kill(os.getpid(), signal.SIGINT)
    with PreemptionGuard() as outer, PreemptionGuard():
        pass
    assert not outer.requested


def test_a_guard_entered_after_its_enclosing_guard_caught_a_signal_starts_stopping():
    with PreemptionGuard() as pipeline_guard:
        os.kill(os.getpid(), signal.SIGTERM)  # while a stage sets up, before its own guard
        with PreemptionGuard() as stage_guard:
            assert stage_guard.requested and stage_guard.received == signal.SIGTERM and stage_guard.stop_agreed()
    assert pipeline_guard.requested
    with PreemptionGuard(), PreemptionGuard() as quiet:
        assert not quiet.requested


def test_unfinished_temporary_step_is_ignored_and_cleaned(tmp_path):
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=None) as ckpt:
        ckpt.save(1, _small_state(1))
    # What a save killed before its final rename leaves behind.
    leftover = tmp_path / "2.orbax-checkpoint-tmp"
    (leftover / "state").mkdir(parents=True)
    (leftover / "state" / "_METADATA").write_text("{")
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=None) as ckpt:
        assert ckpt.latest_step() == 1
        # Orbax deletes leftovers in the background; the next save waits for that first.
        assert ckpt.save(3, _small_state(3))
        assert not leftover.exists()
    assert sorted(os.listdir(tmp_path)) == ["1", "3"]


_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import jax, jax.numpy as jnp, numpy as np
    from r1jax.checkpoint import Checkpointer

    directory = sys.argv[1]
    ckpt = Checkpointer(directory, save_interval_steps=1, max_to_keep=None)
    ckpt.save(1, {"w": jnp.ones((4, 3)), "rng": jax.random.key(1)}, {"step": 1})
    ckpt.wait_until_finished()
    # Large and incompressible, so writing it takes far longer than the loop below.
    big = np.random.default_rng(0).standard_normal((8, 4 * 1024 * 1024), dtype=np.float32)
    ckpt.save(2, {"w": jnp.asarray(big), "rng": jax.random.key(2)}, {"step": 2})
    deadline = time.time() + 10
    while time.time() < deadline and not any(".orbax-checkpoint-tmp" in n for n in os.listdir(directory)):
        time.sleep(0.001)
    print("saw temporary step:", any(".orbax-checkpoint-tmp" in n for n in os.listdir(directory)), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_process_killed_during_async_save_leaves_previous_step_latest(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    child = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True, env=env,
                           timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert "saw temporary step: True" in child.stdout, child.stdout + child.stderr[-2000:]
    assert "2.orbax-checkpoint-tmp" in os.listdir(tmp_path)  # the half-written step 2 is on disk ...
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=None) as ckpt:
        assert ckpt.latest_step() == 1  # ... but never taken for a checkpoint
        device = SingleDeviceSharding(jax.devices()[0])
        abstract = {"w": jax.ShapeDtypeStruct((4, 3), jnp.float32, sharding=device),
                    "rng": jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=device)}
        state, metadata = ckpt.restore(abstract)
        assert metadata == {"step": 1}
        np.testing.assert_array_equal(np.asarray(state["w"]), np.ones((4, 3)))
        np.testing.assert_array_equal(jax.random.key_data(state["rng"]), jax.random.key_data(jax.random.key(1)))
        # Training goes on: step 2 can be saved again over the leftover.
        assert ckpt.save(2, {"w": jnp.zeros((4, 3)), "rng": jax.random.key(2)}, {"step": 2})
        ckpt.wait_until_finished()
        assert ckpt.all_steps() == [1, 2]


def test_batch_starts_continue_from_a_batch_and_stop_before_the_next_once_signalled():
    assert list(batch_starts(10, 3, what="x", unit="items")) == [0, 3, 6, 9]
    guard = PreemptionGuard()  # not entered: the flag is set by hand
    starts = batch_starts(10, 3, first_batch=1, preemption=guard, what="x", unit="items", saved_in="f")
    assert next(starts) == 3
    guard.requested, guard.received = True, signal.SIGTERM
    with pytest.raises(StoppedBySignal,
                       match=r"^x stopped by SIGTERM after 6 of 10 items; f holds them; the same command continues it$"):
        next(starts)
    unsaved = batch_starts(10, 3, preemption=guard, what="y", unit="items")
    with pytest.raises(StoppedBySignal, match=r"^y stopped by SIGTERM after 0 of 10 items; the same command "
                                                         r"runs it again$"):
        next(unsaved)


def test_a_damaged_step_is_named_with_the_step_to_resume_from(tmp_path):
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=None) as ckpt:
        for step in (1, 2):
            ckpt.save(step, _small_state(step), {"step": step})
    for item in (tmp_path / "2" / "metadata").iterdir():
        item.unlink()  # a damaged disk, a partial copy
    (tmp_path / "2" / "metadata").rmdir()
    with Checkpointer(tmp_path, save_interval_steps=1, max_to_keep=None) as ckpt:
        with pytest.raises(CheckpointUnreadable, match=rf"{tmp_path / '2'} cannot be restored .* move it away to "
                                                       r"resume from step 1"):
            ckpt.restore(_small_state(0))
        assert ckpt.restore(_small_state(0), step=1)[1] == {"step": 1}


def test_a_save_to_a_read_only_disk_fails_at_once_and_the_process_exits(tmp_path):
    """Orbax created step directories in the background, and its other threads then waited out a 5-minute
    barrier after the mkdir failed."""
    with Checkpointer(tmp_path / "ck", save_interval_steps=1, max_to_keep=None) as ckpt:
        ckpt.save(1, _small_state(1))
    script = textwrap.dedent(f"""
        import jax.numpy as jnp
        from r1jax.checkpoint import Checkpointer
        ckpt = Checkpointer({str(tmp_path / "ck")!r}, save_interval_steps=1, max_to_keep=None)
        try:
            ckpt.save(2, {{"w": jnp.ones(4)}})
            ckpt.wait_until_finished()
        except OSError as e:
            print("refused:", e)
    """)
    command = (f"mount --bind -o ro {tmp_path} {tmp_path} && "
               f"{sys.executable} -c {shlex.quote(script)}")
    try:
        result = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=90)
    except FileNotFoundError:
        pytest.skip("no unshare here")
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(f"no private read-only mount here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0 and "refused: [Errno 30] Read-only file system" in result.stdout, result.stderr


def test_a_signal_during_the_final_export_waits_for_it(tmp_path, monkeypatch):
    from r1jax import hf, runtime

    written = []

    def save_pretrained_signalled_midway(model_config, params, path, *, tokenizer):
        os.kill(os.getpid(), signal.SIGTERM)
        written.append(path)

    def killed_mid_export(signum, frame):
        raise RuntimeError("the default SIGTERM action would end the process mid-export")

    monkeypatch.setattr(hf, "save_pretrained", save_pretrained_signalled_midway)
    previous = signal.signal(signal.SIGTERM, killed_mid_export)
    try:
        assert runtime.export_final_model(str(tmp_path), None, None, None) == str(tmp_path / "hf_export")
        with PreemptionGuard() as pipeline_guard:  # a pipeline around the stage still stops after it
            runtime.export_final_model(str(tmp_path), None, None, None)
        assert pipeline_guard.requested and written == [str(tmp_path / "hf_export")] * 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_config_json_is_put_back_after_a_failure_only_if_nothing_was_saved(tmp_path):
    from r1jax import checkpoint

    before = checkpoint.snapshot_workdir(str(tmp_path))  # a new workdir
    (tmp_path / "config.json").write_text('{"steps": 9}')
    checkpoint.restore_config_if_nothing_saved(str(tmp_path), before)
    assert not (tmp_path / "config.json").exists()

    (tmp_path / "config.json").write_text('{"steps": 5}')  # a run of 5 steps saved step 2
    (tmp_path / "checkpoints" / "2").mkdir(parents=True)
    before = checkpoint.snapshot_workdir(str(tmp_path))
    (tmp_path / "config.json").write_text('{"steps": 9}')  # --allow_config_change, then an input refused
    checkpoint.restore_config_if_nothing_saved(str(tmp_path), before)
    assert (tmp_path / "config.json").read_text() == '{"steps": 5}'

    (tmp_path / "config.json").write_text('{"steps": 9}')
    (tmp_path / "checkpoints" / "4").mkdir()  # the new config saved a step before failing: its config stays
    checkpoint.restore_config_if_nothing_saved(str(tmp_path), before)
    assert (tmp_path / "config.json").read_text() == '{"steps": 9}'
