"""`mode: sft`: record encoding, packed = unpacked loss, zero gradient off the trained tokens, exact gradient
accumulation, bad input, and whole runs: files, SIGTERM, SIGKILL and resume, NaN."""

import json
import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tokenizers
from hypothesis import given, settings
from hypothesis import strategies as st
from interrupted import kill_after_checkpoint

from r1jax import distributed, hf, main, optim, runtime, sft
from r1jax import metrics as metrics_lib
from r1jax import model as model_lib
from r1jax.config import ConfigError, load_config_file, validate
from r1jax.data import records as records_lib
from r1jax.data.char_tokenizer import EOS, write_char_tokenizer
from r1jax.tokenizer import load_tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "configs", "sft_journey_tiny.py:journey,smoke")
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"},
                {"role": "assistant", "content": "6"}]


def _tokenizer(directory, **tokenizer_config):
    """The character tokenizer, with `tokenizer_config.json` entries changed."""
    write_char_tokenizer(str(directory))
    path = directory / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **tokenizer_config}))
    return load_tokenizer(str(directory))


@pytest.fixture
def chat_tokenizer(tmp_path):
    return _tokenizer(tmp_path / "chatml", chat_template=CHATML)


def _write_jsonl(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


# ---------------------------------------------------------------------------------------------
# Records -> parts


def test_a_conversation_trains_exactly_its_assistant_turns(chat_tokenizer):
    parts = sft.encode_record({"messages": CONVERSATION}, chat_tokenizer)
    texts = [chat_tokenizer.decode(part) for part in parts]
    assert texts == ["<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                     "<|im_start|>assistant\n", "4<|im_end|>\n", "<|im_start|>user\nand 3+3?<|im_end|>\n<|im_start|>assistant\n",
                     "6<|im_end|>\n"]
    assert "".join(texts) == chat_tokenizer.apply_chat_template(CONVERSATION)
    # A prompt/completion record with chat_template=True is the user turn and the assistant turn.
    pair = sft.encode_record({"prompt": "2+2?", "completion": "4"}, chat_tokenizer, chat_template=True)
    assert pair == sft.encode_record({"messages": [{"role": "user", "content": "2+2?"},
                                                   {"role": "assistant", "content": "4"}]}, chat_tokenizer)
    rows = sft.pack([parts], seq_len=256, pad_id=0)
    trained = rows.tokens[rows.loss_mask]
    assert chat_tokenizer.decode(trained) == "4<|im_end|>\n6<|im_end|>\n"


def test_plain_records_get_one_bos_and_one_eos(tmp_path):
    tokenizer = _tokenizer(tmp_path / "plain")
    eos = tokenizer.eos_id
    assert sft.encode_record({"prompt": "ab", "completion": "c"}, tokenizer) == [tokenizer.encode("ab"),
                                                                                tokenizer.encode("c") + [eos]]
    assert sft.encode_record({"prompt": "ab", "completion": "c" + EOS}, tokenizer)[1] == tokenizer.encode("c") + [eos]
    assert sft.encode_record({"prompt": "ab", "completion": "c"}, tokenizer, add_eos=False)[1] == tokenizer.encode("c")
    named_only = _tokenizer(tmp_path / "named", bos_token="<think>")  # named, but never added (GPT-2 style)
    assert sft.encode_record({"prompt": "ab", "completion": "c"}, named_only)[0] == named_only.encode("ab")
    with_bos = _tokenizer(tmp_path / "bos", bos_token="<think>")
    bos = with_bos.bos_id
    added = tokenizers.Tokenizer.from_file(str(tmp_path / "bos" / "tokenizer.json"))
    added.post_processor = tokenizers.processors.TemplateProcessing(single="<think> $A",
                                                                    special_tokens=[("<think>", bos)])
    added.save(str(tmp_path / "bos" / "tokenizer.json"))  # a post-processor that adds it (Llama 3 style)
    with_bos = load_tokenizer(str(tmp_path / "bos"))
    assert sft.encode_record({"prompt": "ab", "completion": "c"}, with_bos)[0] == [bos] + with_bos.encode("ab")
    # A prompt rendered by a chat template may start with BOS already.
    assert sft.encode_record({"prompt": "<think>ab", "completion": "c"}, with_bos)[0] == [bos] + with_bos.encode("ab")


def test_array_record_files_read_like_jsonl(tmp_path):
    from array_record.python import array_record_module

    tokenizer = _tokenizer(tmp_path / "tok")
    lines = [{"prompt": f"{i}+1=", "completion": str(i + 1), "extra": [i]} for i in range(5)]
    writer = array_record_module.ArrayRecordWriter(str(tmp_path / "data.array_record"), "group_size:1")
    for line in lines:
        writer.write(json.dumps(line).encode())
    writer.close()
    from_array_record = sft.load_sequences(str(tmp_path / "data.array_record"), tokenizer, seq_len=32)
    assert from_array_record == sft.load_sequences(_write_jsonl(tmp_path / "data.jsonl", lines), tokenizer, seq_len=32)


GOOD = {"prompt": "1+1=", "completion": "2"}


@pytest.mark.parametrize("line,words", [
    ('{"prompt": "1+1=", "completion": ', "not a JSON line"),
    ("[1, 2]", "expected a JSON object"),
    ({"text": "1+1=2"}, "expected 'messages', or string 'prompt' and 'completion'"),
    ({"prompt": 1, "completion": "2"}, "expected 'messages'"),
    ({"prompt": "", "completion": "2"}, "the prompt is empty"),
    ({"prompt": "1+1=", "completion": "2" * 40}, "more than sft.seq_len=32; raise sft.seq_len or set data.drop_overlong"),
    ({"messages": [{"role": "assistant", "content": "2"}]}, "messages[0] is an assistant turn"),
    ({"messages": [{"role": "user", "content": "1+1="}]}, "no assistant turn"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "2"}]}, "messages[0] is not an object"),
    ({"messages": "1+1=2"}, "'messages' must be a non-empty list"),
])
def test_bad_records_raise_naming_file_and_line(tmp_path, chat_tokenizer, line, words):
    path = _write_jsonl(tmp_path / "bad.jsonl", [GOOD, "", line])
    with pytest.raises(ValueError) as error:
        sft.load_sequences(path, chat_tokenizer, seq_len=32)
    assert f"{path}:3: " in str(error.value) and words in str(error.value)


def test_bad_files_and_templates_raise_naming_the_file(tmp_path):
    plain = _tokenizer(tmp_path / "plain")
    with pytest.raises(ValueError, match="no-such.jsonl' is not a file"):
        sft.load_sequences(str(tmp_path / "no-such.jsonl"), plain, seq_len=32)
    with pytest.raises(ValueError, match="empty.jsonl: no records"):
        sft.load_sequences(_write_jsonl(tmp_path / "empty.jsonl", [""]), plain, seq_len=32)
    chat = _write_jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION}])
    with pytest.raises(ValueError, match="chat.jsonl:1: .*has no chat template"):
        sft.load_sequences(chat, plain, seq_len=256)
    # A template that rewrites earlier turns (here: as Qwen3's, drops their thinking) cannot be split by turn.
    drops_earlier_thinking = _tokenizer(tmp_path / "qwen3_like", chat_template=(
        "{% for m in messages %}{% if m['role'] == 'assistant' %}<A>{{ m['content'] if loop.last else "
        "m['content'].split('</think>')[-1] }}{% else %}<U>{{ m['content'] }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<A>{% endif %}"))
    two_turns = _write_jsonl(tmp_path / "two_turns.jsonl", [{"messages": [
        {"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "<think>1+1</think>2"},
        {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "<think>2+2</think>4"}]}])
    with pytest.raises(ValueError, match="two_turns.jsonl:1: the chat template does not render messages\\[3\\] after "
                                         "the turns before it .*one record per assistant turn"):
        sft.load_sequences(two_turns, drops_earlier_thinking, seq_len=256)
    # DeepSeek-R1-Distill's way: the generation prompt opens <think>, a rendered turn drops the thinking.
    r1_distill = _tokenizer(tmp_path / "r1_distill", chat_template=(
        "{% for m in messages %}{% if m['role'] == 'assistant' %}<A>{{ m['content'].split('</think>')[-1] }}"
        "{% else %}<U>{{ m['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}<A><think>\n{% endif %}"))
    with pytest.raises(ValueError, match=r"chat.jsonl:1: the chat template renders messages\[2\] otherwise than after "
                                         r"its generation prompt, which ends .*<A><think>\\n' where the rendered turn goes on"):
        sft.load_sequences(chat, r1_distill, seq_len=256)
    long = _write_jsonl(tmp_path / "long.jsonl", [GOOD, {"prompt": "1+1=", "completion": "2" * 40}])
    sequences, dropped = sft.load_sequences(long, plain, seq_len=32, drop_overlong=True)
    assert len(sequences) == 1 and dropped == 1


# ---------------------------------------------------------------------------------------------
# Loss and gradients

# One small layer: these tests check the loss's bookkeeping, which any model shows.
SMALL = model_lib.get_model_config("tiny", vocab_size=104, hidden_size=32, intermediate_size=64, num_layers=1,
                                   num_heads=2, num_kv_heads=1, head_dim=16)
SEQUENCES = [[[5, 6, 7], [8, 9]], [[10], [11, 12, 13], [14, 15], [16]], [[17, 18], [19]], [[20, 21, 22, 23], [24, 25]]]


def _rows(rows):
    return sft.PackedRows(*map(jnp.asarray, rows))


def test_packed_loss_equals_one_sequence_per_row():
    params = model_lib.init_params(SMALL, jax.random.key(0))
    teacher = sft.Teacher(SMALL, model_lib.init_params(SMALL, jax.random.key(1)))
    packed = sft.pack(SEQUENCES, seq_len=16, pad_id=0)
    assert len(packed.tokens) == 2  # several sequences share a row
    unpacked = sft.pack(SEQUENCES, seq_len=8, pad_id=0)  # 8: no two sequences fit one row
    assert len(unpacked.tokens) == len(SEQUENCES)
    terms_fn = jax.jit(lambda rows: sft.completion_loss_terms(SMALL, params, rows, teacher))
    packed_terms, unpacked_terms = (np.array(terms_fn(_rows(rows))) for rows in (packed, unpacked))
    assert packed_terms[2] == unpacked_terms[2] == 9  # trained tokens
    np.testing.assert_allclose(packed_terms, unpacked_terms, rtol=2e-5)
    assert packed_terms[1] > 0  # a KL to a different teacher


def test_untrained_tokens_get_exactly_zero_gradient(monkeypatch):
    """Prompt/user tokens and padding: no gradient through their logits, from the NLL or the KL."""
    rows = _rows(sft.pack(SEQUENCES, seq_len=16, pad_id=0))
    student = jax.random.normal(jax.random.key(1), (2, 16, SMALL.vocab_size))
    teacher = sft.Teacher(SMALL, jax.random.normal(jax.random.key(2), (2, 16, SMALL.vocab_size)))
    # The "model" returns its params as the logits, so the gradient is d loss / d logits.
    monkeypatch.setattr(sft.model_lib, "forward", lambda config, params, *args: params)

    def loss(logits):
        nll, kl, count = sft.completion_loss_terms(SMALL, logits, rows, teacher)
        return (nll + 0.5 * kl) / count

    grad_norms = np.abs(np.asarray(jax.grad(loss)(student))).sum(-1)
    # Logits at t predict token t + 1: they matter exactly when token t + 1 is trained.
    predicts_trained = np.zeros((2, 16), bool)
    predicts_trained[:, :-1] = np.asarray(rows.loss_mask)[:, 1:]
    assert predicts_trained.sum() == 9
    assert np.all(grad_norms[~predicts_trained] == 0)
    assert np.all(grad_norms[predicts_trained] > 0)


def test_microbatches_accumulate_to_the_whole_batch_update():
    params = model_lib.init_params(SMALL, jax.random.key(0))
    teacher = model_lib.init_params(SMALL, jax.random.key(1))
    rows = sft.pack(SEQUENCES * 4, seq_len=8, pad_id=0)  # 8 rows
    optimizer = optax.sgd(1.0)  # the update is the gradient itself
    results = []
    for microbatch_size in (0, 2):
        state = dict(params=jax.tree.map(np.copy, params), opt_state=optimizer.init(params), step=np.int32(0))
        step = sft.make_train_step(SMALL, optimizer, optax.constant_schedule(1.0), microbatch_size=microbatch_size,
                                   teacher_config=SMALL, kl_weight=0.5)
        new_state, metrics = step(state, teacher, rows, sft.loss_divisor(sft.trained_per_row(rows)))
        results.append((jax.device_get(new_state["params"]), jax.device_get(metrics)))
    (whole, whole_metrics), (accumulated, accumulated_metrics) = results
    for key in ("loss", "nll", "kl", "grad_norm"):
        np.testing.assert_allclose(accumulated_metrics[key], whole_metrics[key], rtol=1e-5)
    np.testing.assert_allclose(whole_metrics["loss"], whole_metrics["nll"] + 0.5 * whole_metrics["kl"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), accumulated, whole)


# ---------------------------------------------------------------------------------------------
# Config validation


def _smoke_config(**changes):
    config = load_config_file(SMOKE)
    config.model.name = "tiny-qwen3"  # smaller than 'tiny': faster to compile
    config.update_from_flattened_dict({"steps": 4, **changes})
    return config


@pytest.mark.parametrize("changes,key", [
    ({"data.train_file": "x.jsonl"}, "config.data.train_file"),
    ({"data.synthetic": "", "data.train_file": "/no/such.jsonl"}, "config.data.train_file"),
    ({"data.synthetic": "detour"}, "config.data.synthetic"),
    ({"data.eval_size": 4}, "config.data.eval_size"),
    ({"data.eval_file": "/no/such.jsonl"}, "config.data.eval_file"),
    ({"data.journey.min_wrong": 4}, "config.data.journey.min_wrong"),
    ({"data.countdown.min_count": 1}, "config.data.countdown"),
    ({"sft.microbatch_size": 3}, "config.sft.microbatch_size"),
    ({"sft.microbatch_size": 4}, "config.sft.microbatch_size"),  # divides 8, but the mesh splits the batch 8 ways
    ({"sft.kl_weight": 1.0}, "config.sft.teacher_checkpoint"),
    ({"sft.teacher_checkpoint": "/no/such/dir", "sft.kl_weight": 1.0}, "config.sft.teacher_checkpoint"),
    ({"sft.seq_len": 1}, "config.sft.seq_len"),
    ({"batch_size": 12}, "config.batch_size"),
    ({"steps": 0}, "config.steps"),
])
def test_invalid_sft_configs_name_the_key(changes, key):
    with pytest.raises(ConfigError) as error:
        validate(_smoke_config(**changes), known_modes=main.MODES, num_devices=8)
    assert str(error.value).startswith(key + ":") and "\n" not in str(error.value)


def test_eval_needs_held_out_records(tmp_path):
    train = _write_jsonl(tmp_path / "train.jsonl", [GOOD])
    config = _smoke_config(**{"data.synthetic": "", "data.train_file": train})
    with pytest.raises(ConfigError, match="^config.eval.every: .*no held-out records"):
        validate(config, known_modes=main.MODES, num_devices=8)
    config.data.eval_size = 1
    validate(config, known_modes=main.MODES, num_devices=8)


# ---------------------------------------------------------------------------------------------
# Whole runs: the journey smoke config (a random tiny model) on prompt/completion files

SUMS = [{"prompt": f"{a}+{b}=", "completion": str(a + b), "teacher": "provenance is ignored"}
        for a in range(10) for b in range(10)]
RUN_FLAGS = {"data.synthetic": "", "data.eval_size": 20, "sft.seq_len": 32, "steps": 12, "eval.every": 4,
             "log_every": 3, "checkpoint_every": 2, "keep_checkpoints": 2, "optimizer.learning_rate": 3e-3}


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", SUMS)


def _run_config(train_file, **changes):
    return _smoke_config(**{**RUN_FLAGS, "data.train_file": train_file, **changes})


@pytest.fixture(scope="module")
def uninterrupted(train_file, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    return workdir, sft.run(_run_config(train_file), str(workdir))


def test_a_run_writes_metrics_checkpoints_and_an_export(uninterrupted):
    workdir, summary = uninterrupted
    assert summary["steps"] == 12
    records = metrics_lib.read_metrics(str(workdir))
    # Logged every 3 steps, and at every evaluation and checkpoint (a NaN must never reach one).
    assert [r["step"] for r in records] == [0, 2, 3, 4, 6, 8, 9, 10, 12]
    evals = [r["eval/loss"] for r in records if "eval/loss" in r]
    assert len(evals) == 4 and evals[-1] < evals[0]
    assert {"loss", "grad_norm", "learning_rate", "tokens_per_s", "epoch"} <= set(records[-1])
    assert sorted(os.listdir(workdir / "checkpoints")) == ["10", "12"]
    assert (workdir / "hf_export" / "tokenizer.json").exists() and (workdir / "curves.png").exists()
    exported = hf.load_params(str(workdir / "hf_export"), hf.load_config(str(workdir / "hf_export")))
    jax.tree.map(np.testing.assert_array_equal, exported, jax.device_get(summary["params"]))


def test_killed_and_preempted_runs_resume_to_the_parameters_of_an_uninterrupted_one(train_file, uninterrupted,
                                                                                    tmp_path, monkeypatch):
    """SIGKILL after step 2's checkpoint; the rerun gets SIGTERM and saves; the third run finishes."""
    workdir = tmp_path / "interrupted"
    flags = [f"--config.{k}={v}" for k, v in {**RUN_FLAGS, "data.train_file": train_file}.items()]
    kill_after_checkpoint([sys.executable, "-m", "r1jax.main", "--config", SMOKE, "--workdir", str(workdir),
                           "--config.model.name=tiny-qwen3", *flags], workdir, 2, cwd=REPO)

    real_write = metrics_lib.MetricsWriter.write
    written = []

    def preempted_at_second_log(self, step, metrics):
        real_write(self, step, metrics)
        written.append(step)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(metrics_lib.MetricsWriter, "write", preempted_at_second_log)
    preempted = sft.run(_run_config(train_file), str(workdir))
    # The signal lands after that step's save decision: the next step is saved and ends the run.
    assert written[0] >= 2 and preempted["steps"] == written[1] + 1 < 12
    assert str(preempted["steps"]) in os.listdir(workdir / "checkpoints") and not (workdir / "hf_export").exists()
    monkeypatch.setattr(metrics_lib.MetricsWriter, "write", real_write)
    resumed = sft.run(_run_config(train_file), str(workdir))
    assert resumed["steps"] == 12 and (workdir / "hf_export").exists()
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed["params"]),
                 jax.device_get(uninterrupted[1]["params"]))
    steps = [r["step"] for r in metrics_lib.read_metrics(str(workdir))]
    assert steps == sorted(set(steps)) and steps[-1] == 12  # each step once, though some ran twice

    # The batches follow from the data: other data in this workdir is not resumed.
    with pytest.raises(ValueError, match="the training data changed"):
        sft.run(_run_config(train_file, **{"data.eval_size": 21}), str(workdir))


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(train_file, tmp_path, monkeypatch):
    def fake_train_step(*args, **kwargs):
        """Counts steps and reports a NaN loss from step 2 (without compiling a model)."""

        def step(state, *rest):
            state = dict(state, step=state["step"] + 1)
            loss = jnp.where(state["step"] >= 2, jnp.nan, 1.0)
            return state, dict(loss=loss, grad_norm=loss, learning_rate=loss)

        return step

    monkeypatch.setattr(sft, "make_train_step", fake_train_step)
    with pytest.raises(optim.TrainingDiverged, match=r"loss is nan at step 2"):
        sft.run(_run_config(train_file, **{"eval.every": 0, "checkpoint_every": 1}), str(tmp_path))
    assert sorted(int(name) for name in os.listdir(tmp_path / "checkpoints")) == [1]


# ---------------------------------------------------------------------------------------------
# Packed rows on disk, read lazily


class _Killed(Exception):
    pass


class _RecordingArray:
    """An array that records the row ids each read asks for."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.reads = array, array.shape, array.dtype, []

    def __getitem__(self, ids):
        self.reads.append(np.asarray(ids).tolist())
        return self.array[ids]


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(num_rows=st.integers(1, 9), data=st.data())
def test_a_row_view_reads_only_the_indexed_rows(num_rows, data):
    array = np.arange(num_rows * 3, dtype=np.int32).reshape(num_rows, 3) + 10
    rows = np.asarray(data.draw(st.lists(st.integers(-1, num_rows - 1), min_size=1, max_size=12)))
    first, second = (data.draw(st.slices(size)) for size in (len(rows), 3))
    recording = _RecordingArray(array)
    view = sft.RowView(recording, rows, fill=7)
    assert view.shape == (len(rows), 3) and view.dtype == np.int32
    eager = np.where(rows[:, None] >= 0, array[rows], 7)
    np.testing.assert_array_equal(view[first, second], eager[first, second])
    np.testing.assert_array_equal(view[first], eager[first])
    wanted = [row for row in rows[first].tolist() if row >= 0]
    assert recording.reads == [wanted, wanted]


def test_host_to_global_reads_each_devices_rows_once():
    packed = sft.pack(SEQUENCES * 4, seq_len=8, pad_id=0)  # 16 rows
    recordings = sft.PackedRows(*map(_RecordingArray, packed))
    ids = np.random.default_rng(0).permutation(len(packed.tokens))[:8]
    mesh = jax.make_mesh((8,), ("data",))
    shardings = sft.PackedRows(*[jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data", None))] * 4)
    batch = distributed.host_to_global(recordings.view(ids, pad_id=0), shardings)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(batch), packed.select(ids))
    for recording in recordings:
        assert sorted(recording.reads) == [[row] for row in sorted(ids)]  # one row per device, each read once


def test_rows_are_packed_once_and_again_when_the_inputs_change(train_file, tmp_path, monkeypatch, capsys):
    workdir = str(tmp_path / "run")
    config = _run_config(train_file, **{"data.drop_overlong": True})
    tokenizer = runtime.tokenizer(config, workdir)
    loaded, real_load = [], sft.load_sequences

    def load_sequences(path, *args, **kwargs):
        loaded.append(path)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(sft, "load_sequences", load_sequences)
    train, eval_rows, rng = sft._packed_data(config, tokenizer, workdir)
    assert loaded == [train_file] and isinstance(train.rows.tokens, np.memmap)
    # As packed in memory: the records shuffled by the seed, eval_size held out, the generator after the shuffle.
    sequences, _ = real_load(train_file, tokenizer, seq_len=32)
    expected_rng = np.random.default_rng(config.seed)
    order = expected_rng.permutation(len(sequences))
    jax.tree.map(np.testing.assert_array_equal, train.rows, sft.pack([sequences[i] for i in order[20:]], 32, 0))
    jax.tree.map(np.testing.assert_array_equal, eval_rows, sft.pack([sequences[i] for i in order[:20]], 32, 0))
    np.testing.assert_array_equal(train.trained_per_row, train.rows.loss_mask.sum(axis=1))
    np.testing.assert_array_equal(train.tokens_per_row, (train.rows.segment_ids > 0).sum(axis=1))
    assert rng.integers(1 << 30) == expected_rng.integers(1 << 30)

    packed_dir = tmp_path / "run" / sft.PACKED_DIR
    files = {name: os.stat(packed_dir / name) for name in os.listdir(packed_dir)}
    sft._packed_data(config, tokenizer, workdir)
    assert loaded == [train_file]  # reused: not tokenized again, the files untouched
    assert {name: (s.st_ino, s.st_mtime_ns) for name, s in files.items()} == {
        name: (os.stat(packed_dir / name).st_ino, os.stat(packed_dir / name).st_mtime_ns) for name in files}

    # Another seq_len: packed again. Killed after writing one file, it leaves files that pass for neither.
    old_inputs = sft._packing_inputs(config, tokenizer, train_file, "")
    config.sft.seq_len = 24
    real_save, saved = np.save, []

    def killed_on_the_second_file(file, array):
        if saved:
            raise _Killed
        saved.append(real_save(file, array))

    monkeypatch.setattr(np, "save", killed_on_the_second_file)
    with pytest.raises(_Killed):
        sft._packed_data(config, tokenizer, workdir)
    monkeypatch.setattr(np, "save", real_save)
    assert np.load(packed_dir / "train.tokens.npy").shape[1] == 24
    for inputs in (old_inputs, sft._packing_inputs(config, tokenizer, train_file, "")):
        assert sft._read_packing(str(packed_dir), inputs) is None
    shorter, _, _ = sft._packed_data(config, tokenizer, workdir)
    assert shorter.rows.tokens.shape[1] == 24 and loaded == [train_file] * 3

    # Another file, then the file changed: packed again. Records past seq_len are dropped, and every run says so.
    capsys.readouterr()
    long = {"prompt": "1+1=", "completion": "2" * 40}
    config.data.train_file = other = _write_jsonl(tmp_path / "other.jsonl", SUMS + [long])
    sft._packed_data(config, tokenizer, workdir)
    sft._packed_data(config, tokenizer, workdir)
    assert loaded[3:] == [other] and capsys.readouterr().out.count("dropped 1 records longer than sft.seq_len=24") == 2
    _write_jsonl(tmp_path / "other.jsonl", SUMS[:-1] + [long])
    sft._packed_data(config, tokenizer, workdir)
    assert loaded[3:] == [other, other]

    config.batch_size = 1000
    with pytest.raises(ValueError, match="fewer than batch_size=1000"):
        sft._packed_data(config, tokenizer, workdir)
    config.data.eval_size = 200
    with pytest.raises(ValueError, match="data.eval_size=200 leaves none of the 99 records"):
        sft._packed_data(config, tokenizer, workdir)


def test_writing_the_same_records_again_keeps_the_file_so_its_packing_stays_valid(tmp_path):
    path = str(tmp_path / "data.jsonl")
    records_lib.write_records(path, SUMS)
    before = os.stat(path)
    records_lib.write_records(path, SUMS)
    assert (os.stat(path).st_ino, os.stat(path).st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not os.path.exists(path + ".partial")
    records_lib.write_records(path, SUMS[:-1])
    assert [record for _, record in records_lib.read_records(path)] == SUMS[:-1]
