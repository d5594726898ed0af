"""Hugging Face checkpoints: logits parity with `transformers`, round trips, sharded loading, errors."""

import json
import os

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import transformers
from hf_models import HF_VARIANTS, hf_logits, make_hf_model

from r1jax import hf, sharding
from r1jax import model as model_lib

PARITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=sorted(HF_VARIANTS))
def saved_hf_model(request, tmp_path_factory):
    model = make_hf_model(request.param)
    path = str(tmp_path_factory.mktemp(request.param))
    model.save_pretrained(path)
    return request.param, model, path


def _tokens(vocab_size: int, batch: int = 2, length: int = 48, seed: int = 0) -> np.ndarray:
    # Longer than the llama3 variant's original context (32), so every RoPE band is exercised.
    return np.random.RandomState(seed).randint(0, vocab_size, (batch, length))


def test_logits_match_transformers(saved_hf_model):
    variant, model, path = saved_hf_model
    config, params = hf.load_pretrained(path)
    assert config.family == {"qwen2": "qwen2", "llama": "llama", "qwen3": "qwen3"}[model.config.model_type]
    assert config.tie_embeddings == model.config.tie_word_embeddings
    tokens = _tokens(config.vocab_size)
    ours = np.asarray(model_lib.forward(config, params, jnp.asarray(tokens)))
    diff = np.abs(ours - hf_logits(model, tokens)).max()
    print(f"{variant}: max abs logits difference {diff:.2e}")
    assert diff < PARITY_TOLERANCE


def test_save_pretrained_round_trip_through_transformers(saved_hf_model, tmp_path):
    _, model, path = saved_hf_model
    config, params = hf.load_pretrained(path)
    hf.save_pretrained(config, params, str(tmp_path))
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert type(reloaded) is type(model)
    tokens = _tokens(config.vocab_size, seed=1)
    np.testing.assert_array_equal(hf_logits(reloaded, tokens), hf_logits(model, tokens))


def test_sharded_save_writes_index_and_reloads_identically(tmp_path):
    config = model_lib.get_model_config("tiny-llama")
    params = model_lib.init_params(config, jax.random.key(3))
    hf.save_pretrained(config, params, str(tmp_path), max_shard_bytes=20_000)
    with open(tmp_path / "model.safetensors.index.json") as f:
        weight_map = json.load(f)["weight_map"]
    files = sorted(set(weight_map.values()))
    assert len(files) > 2 and all((tmp_path / name).exists() for name in files)
    reloaded_config, reloaded = hf.load_pretrained(str(tmp_path))
    assert reloaded_config == config
    jax.tree.map(np.testing.assert_array_equal, reloaded, params)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    tokens = _tokens(config.vocab_size, seed=2)
    ours = np.asarray(model_lib.forward(config, params, jnp.asarray(tokens)))
    assert np.abs(ours - hf_logits(hf_model, tokens)).max() < PARITY_TOLERANCE


def test_a_save_replaces_the_weights_of_an_earlier_save_in_the_other_layout(tmp_path):
    config = model_lib.get_model_config("tiny-llama")
    first, second, third = (model_lib.init_params(config, jax.random.key(seed)) for seed in range(3))
    hf.save_pretrained(config, first, str(tmp_path), max_shard_bytes=20_000)  # shards and an index
    hf.save_pretrained(config, second, str(tmp_path))  # one file
    assert sorted(f for f in os.listdir(tmp_path) if "safetensors" in f) == ["model.safetensors"]
    jax.tree.map(np.testing.assert_array_equal, hf.load_pretrained(str(tmp_path))[1], second)
    hf.save_pretrained(config, third, str(tmp_path), max_shard_bytes=20_000)
    assert "model.safetensors" not in os.listdir(tmp_path)
    jax.tree.map(np.testing.assert_array_equal, hf.load_pretrained(str(tmp_path))[1], third)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path))
    np.testing.assert_array_equal(hf_model.get_input_embeddings().weight.detach().numpy(),
                                  np.asarray(third["embed"]))


def test_an_export_with_its_tokenizer_names_the_special_token_ids(tmp_path):
    from r1jax.data.char_tokenizer import write_char_tokenizer
    from r1jax.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(write_char_tokenizer(str(tmp_path / "tok")))
    config = model_lib.get_model_config("tiny-llama", vocab_size=104)
    hf.save_pretrained(config, model_lib.init_params(config, jax.random.key(0)), str(tmp_path / "export"),
                       tokenizer=tokenizer)
    hf_config = transformers.AutoConfig.from_pretrained(str(tmp_path / "export"))
    assert (hf_config.bos_token_id, hf_config.eos_token_id, hf_config.pad_token_id) == (
        tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    assert load_tokenizer(str(tmp_path / "export")).encode("12+7") == tokenizer.encode("12+7")


def test_every_process_gathers_the_same_tensors_in_the_same_order_and_only_the_main_one_writes(
        tmp_path, monkeypatch):
    # In a multi-process run each fetch is a collective: a process that fetched in another order would hang.
    config = model_lib.get_model_config("tiny-llama")
    params = model_lib.init_params(config, jax.random.key(5))
    largest_tensor_bytes = max([x[0].nbytes for x in jax.tree.leaves(params["layers"])] + [
        x.nbytes for key, tree in params.items() if key != "layers" for x in jax.tree.leaves(tree)])
    fetched = {}
    for main in (True, False):
        shapes = fetched[main] = []

        def fetch(x, shapes=shapes):
            shapes.append(x.shape)
            return jax.device_get(x)

        monkeypatch.setattr(hf.distributed, "to_host", fetch)
        monkeypatch.setattr(hf.distributed, "is_main_process", lambda main=main: main)
        hf.save_pretrained(config, params, str(tmp_path / str(main)), max_shard_bytes=20_000)
    assert fetched[True] == fetched[False]
    assert len(fetched[True]) == len(hf.read_checkpoint_tensors(str(tmp_path / "True")))
    assert max(np.prod(shape) * 4 for shape in fetched[True]) <= largest_tensor_bytes  # one layer's tensor at most
    assert not (tmp_path / "False").exists()


def test_bfloat16_checkpoint_loads_in_requested_dtype(tmp_path):
    config = model_lib.get_model_config("tiny-qwen3")
    params = model_lib.init_params(config, jax.random.key(4))
    hf.save_pretrained(config, params, str(tmp_path), dtype="bfloat16")
    assert json.load(open(tmp_path / "config.json"))["torch_dtype"] == "bfloat16"
    as_bf16 = hf.load_pretrained(str(tmp_path), dtype="bfloat16")[1]
    as_f32 = hf.load_pretrained(str(tmp_path), dtype="float32")[1]
    for loaded16, loaded32, original in zip(jax.tree.leaves(as_bf16), jax.tree.leaves(as_f32), jax.tree.leaves(params)):
        assert loaded16.dtype == jnp.bfloat16 and loaded32.dtype == jnp.float32
        expected = np.asarray(original).astype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(np.asarray(loaded16), expected)
        np.testing.assert_array_equal(np.asarray(loaded32), expected.astype(np.float32))
    assert hf.load_pretrained(str(tmp_path), param_dtype="bfloat16")[0].param_dtype == "bfloat16"
    assert hf.load_pretrained(str(tmp_path), dtype="bfloat16", param_dtype="bfloat16")[0].param_dtype == "bfloat16"
    with pytest.raises(ValueError, match="disagree"):
        hf.load_pretrained(str(tmp_path), dtype="float32", param_dtype="bfloat16")


def test_load_places_each_parameter_on_its_sharding(saved_hf_model):
    _, _, path = saved_hf_model
    config = hf.load_config(path)
    mesh = sharding.make_mesh(dict(fsdp=4, tensor=2))
    shardings = sharding.param_shardings(model_lib.param_logical_axes(config), model_lib.param_shapes(config),
                                         mesh, sharding.FSDP_TENSOR_RULES)
    sharded = hf.load_params(path, config, shardings)
    unsharded = hf.load_params(path, config)
    for got, want_sharding, reference in zip(jax.tree.leaves(sharded), jax.tree.leaves(shardings),
                                             jax.tree.leaves(unsharded)):
        assert got.sharding == want_sharding
        np.testing.assert_array_equal(np.asarray(got), np.asarray(reference))
    q_spec = sharded["layers"]["attn"]["q_proj"].sharding.spec
    assert q_spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)


def _write_config(path, **fields):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(fields, f)


def test_unsupported_architecture_is_named(tmp_path):
    _write_config(tmp_path, model_type="gpt2", vocab_size=10)
    with pytest.raises(hf.CheckpointError, match="model_type 'gpt2' is not supported"):
        hf.load_pretrained(str(tmp_path))


def test_unsupported_features_are_named(tmp_path):
    base = hf.config_to_hf(model_lib.get_model_config("tiny"))
    _write_config(tmp_path, **{**base, "use_sliding_window": True})
    with pytest.raises(hf.CheckpointError, match="use_sliding_window"):
        hf.load_config(str(tmp_path))
    _write_config(tmp_path, **{**base, "rope_scaling": None, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}})
    with pytest.raises(hf.CheckpointError, match="rope type 'yarn'"):
        hf.load_config(str(tmp_path))
    # Llama's and Qwen3's attention_bias also biases o_proj, which the model does not have.
    for name in ("tiny-llama", "tiny-qwen3"):
        _write_config(tmp_path, **{**hf.config_to_hf(model_lib.get_model_config(name)), "attention_bias": True})
        with pytest.raises(hf.CheckpointError, match="attention_bias=true is not supported"):
            hf.load_config(str(tmp_path))
    with pytest.raises(hf.CheckpointError, match="no Hugging Face equivalent"):
        hf.config_to_hf(model_lib.get_model_config("tiny-llama", qkv_bias=True))


def test_missing_config_and_missing_tensors_are_named(tmp_path):
    with pytest.raises(hf.CheckpointError, match="no config.json"):
        hf.load_pretrained(str(tmp_path))
    config = model_lib.get_model_config("tiny-llama")
    hf.save_pretrained(config, model_lib.init_params(config, jax.random.key(0)), str(tmp_path))
    tensors = hf.read_safetensors(str(tmp_path / "model.safetensors"))
    kept = [(name, t.shape, t.dtype, lambda t=t: np.asarray(t)) for name, t in tensors.items()
            if name != "model.layers.1.mlp.up_proj.weight"]
    hf.write_safetensors(str(tmp_path / "model.safetensors"), kept)
    with pytest.raises(hf.CheckpointError, match=r"missing tensors .*model\.layers\.1\.mlp\.up_proj\.weight"):
        hf.load_pretrained(str(tmp_path))


def test_truncated_config_and_safetensors_header_are_named(tmp_path):
    text = json.dumps(hf.config_to_hf(model_lib.get_model_config("tiny")))
    (tmp_path / "config.json").write_text(text[:40])
    with pytest.raises(hf.CheckpointError, match=f"^{tmp_path / 'config.json'}: not valid JSON .*may be truncated"):
        hf.load_config(str(tmp_path))
    path = str(tmp_path / "model.safetensors")
    hf.write_safetensors(path, [("a", (2,), np.float32, lambda: np.zeros(2, np.float32))])
    with open(path, "rb") as f:
        data = f.read()
    for broken in (data[:30], data[:5], b"version https://git-lfs.github.com/spec/v1\n"):
        with open(path, "wb") as f:
            f.write(broken)
        with pytest.raises(hf.CheckpointError, match=f"^{path}: not a safetensors file, or a truncated one"):
            hf.read_safetensors(path)


def test_safetensors_format_matches_the_reference_library(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, -2, 3], np.int64),
              "c": np.linspace(-1, 1, 5).astype(np.float16)}
    ours = str(tmp_path / "ours.safetensors")
    hf.write_safetensors(ours, [(k, v.shape, v.dtype, lambda v=v: v) for k, v in arrays.items()])
    for name, value in safetensors_numpy.load_file(ours).items():
        np.testing.assert_array_equal(value, arrays[name])
    theirs = str(tmp_path / "theirs.safetensors")
    safetensors_numpy.save_file(arrays, theirs)
    for name, value in hf.read_safetensors(theirs).items():
        np.testing.assert_array_equal(value, arrays[name])


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
def test_keys_a_config_json_leaves_out_take_the_transformers_defaults(model_type):
    given = dict(model_type=model_type, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                 num_attention_heads=4, num_key_value_heads=2)
    reference = transformers.AutoConfig.for_model(**given)
    config = hf.config_from_hf(given)
    expected_head_dim = getattr(reference, "head_dim", None) or reference.hidden_size // reference.num_attention_heads
    assert config.head_dim == expected_head_dim  # 128 for Qwen3, hidden / heads otherwise
    assert config.max_position_embeddings == reference.max_position_embeddings
    assert config.rms_norm_eps == reference.rms_norm_eps and config.tie_embeddings == reference.tie_word_embeddings
